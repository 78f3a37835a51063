"""Command-line options that plugins add to ``nasengine search`` and ``nasengine resume``.

A plugin registers a :class:`SearchOption` through ``nasengine_register_search_options``; the CLI turns it into
``--NAME VALUE`` on both commands, and a given value becomes a config override at ``key`` (a dotted path, as
with ``--set``). ``executor`` names the executor the option belongs to: giving the option selects that
executor unless ``--executor`` says otherwise. For example the Ray plugin registers::

    registry.add("ray-address", SearchOption(key="executor.address", executor="ray",
                                             help="the Ray cluster (HEAD:6379 or auto)", metavar="ADDR"))

so ``nasengine search simple --ray-address HEAD:6379`` means ``--executor ray --set executor.address=HEAD:6379``.
"""
from __future__ import annotations

import difflib
import inspect
import re
from typing import Any, Callable, Mapping

import attrs

from nasengine.errors import ConfigError

__all__ = ["SearchOption", "validate_search_option", "search_option_overrides", "construct"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
#: options the CLI itself defines; a plugin cannot take them
RESERVED = frozenset({"preset", "out", "seed", "executor", "workers", "set", "plan", "top", "quiet", "help"})


@attrs.frozen
class SearchOption:
    """One ``--NAME VALUE`` option of ``search``/``resume`` mapped onto the config path ``key``."""

    key: str
    help: str = ""
    type: Callable[[str], Any] = str
    metavar: str | None = None
    executor: str | None = None

    def override(self, value: Any) -> dict:
        """The config override for ``value``."""
        from nasengine.method import override_at

        return override_at(self.key, value)


def validate_search_option(name: str, obj: Any) -> None:
    """Registry check: a lower-case dashed name that the CLI does not use itself, and a dotted key."""
    if not isinstance(obj, SearchOption):
        raise ConfigError(f"search option {name!r} must be a nasengine.options.SearchOption, got {type(obj).__name__}")
    if not _NAME.match(name) or name in RESERVED:
        raise ConfigError(f"search option name {name!r} must be lower-case words joined by '-' and not one of "
                          f"the CLI's own ({', '.join(sorted(RESERVED))})")
    if not _KEY.match(obj.key):
        raise ConfigError(f"search option {name!r}: key must be a dotted config path like 'executor.address', "
                          f"got {obj.key!r}")


def search_option_overrides(options: Mapping[str, SearchOption], values: Mapping[str, Any],
                            executor: str | None) -> tuple[dict, str | None]:
    """Overrides for the options given (``values``: option name -> value or None) and the executor to use.

    The executor an option implies is used when ``executor`` (``--executor``) is not given; two options that
    imply different executors, or one that contradicts ``--executor``, are an error naming both.
    """
    from nasengine.method import deep_merge

    overrides: dict = {}
    implied: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        opt = options[name]
        overrides = deep_merge(overrides, opt.override(value))
        if opt.executor:
            implied[name] = opt.executor
    wanted = sorted(set(implied.values()))
    if executor is not None:
        clash = sorted(n for n, e in implied.items() if e != executor)
        if clash:
            raise ConfigError(f"{', '.join('--' + n for n in clash)} belongs to the {implied[clash[0]]!r} executor, "
                              f"not --executor {executor}")
        return overrides, executor
    if len(wanted) > 1:
        raise ConfigError("options for different executors given together: "
                          + ", ".join(f"--{n} ({e})" for n, e in sorted(implied.items())))
    return overrides, (wanted[0] if wanted else None)


# Provisional (session): the `options` helper replaces this with the full declared-options version.
def construct(role: str, name: str, factory: Any, options: Mapping, /, *args: Any, **fixed: Any) -> Any:
    """``factory(*args, **fixed, **options)``; an option the factory does not take is a one-line
    :class:`ConfigError` naming ``role.KEY`` (with a did-you-mean), checked against its signature first."""
    options = dict(options)
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        params = sig.parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            named = [n for n, p in params.items()
                     if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
            positional = [n for n, p in params.items() if p.kind is not inspect.Parameter.KEYWORD_ONLY]
            taken = set(positional[:len(args)]) | set(fixed)
            known = [n for n in named if n not in taken]
            for key in options:
                if key not in known:
                    near = difflib.get_close_matches(str(key), known, n=1)
                    hint = f"; did you mean {near[0]!r}?" if near else ";"
                    raise ConfigError(f"{role}.{key}: unknown option of {role} {name!r}{hint} "
                                      f"known: {', '.join(known) or 'none'}")
        try:
            sig.bind(*args, **fixed, **options)
        except TypeError as exc:
            raise ConfigError(f"{role} {name!r}: {exc}") from None
    return factory(*args, **fixed, **options)
