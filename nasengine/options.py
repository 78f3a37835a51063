"""Options: the declared options of the roles, and the command-line options plugins add.

**Declared options** (below): one public set of checks (:func:`whole`, :func:`real`, :data:`positive`,
:data:`probability`, :data:`flag`, :func:`choice`, :func:`optional`, :func:`sequence`, :func:`mapping`,
:func:`string`), usable as attrs validators and raising :class:`OptionError` (a ``ConfigError`` with
``.option`` and ``.reason``); :func:`option` makes a checked kw-only field with its help;
:func:`read_options` / :func:`construct` turn every problem into one line naming ``role.KEY``;
:func:`declared_options` and :func:`method_options` list them (``nasengine methods --options METHOD``).

**Search options**: a plugin registers a :class:`SearchOption` through ``nasengine_register_search_options``;
the CLI turns it into ``--NAME VALUE`` on ``search`` and ``resume``, and a given value becomes a config override at ``key`` (a dotted path, as
with ``--set``). ``executor`` names the executor the option belongs to: giving the option selects that
executor unless ``--executor`` says otherwise. For example the Ray plugin registers::

    registry.add("ray-address", SearchOption(key="executor.address", executor="ray",
                                             help="the Ray cluster (HEAD:6379 or auto)", metavar="ADDR"))

so ``nasengine search simple --ray-address HEAD:6379`` means ``--executor ray --set executor.address=HEAD:6379``.
"""
from __future__ import annotations

import math
import numbers
import re
from typing import Any, Callable, Iterable, Mapping

import attrs

from nasengine.errors import ConfigError

__all__ = ["SearchOption", "validate_search_option", "search_option_overrides", "OptionError", "Check",
           "OptionDoc", "whole", "real", "positive", "probability", "flag", "choice", "optional", "sequence",
           "mapping", "string", "anything", "option", "options_class", "read_options", "declared_options",
           "check_options", "construct", "method_options", "ROLE_WORDS"]

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


# =========================================================================================================
# Declared options: checks usable as attrs validators, one-line ConfigErrors naming ``role.option``
# =========================================================================================================
#
# A role declares its options as an attrs class named ``Options`` on the role class (a subclass extends its
# parent's ``Options`` by subclassing it), each field made with :func:`option`::
#
#     class MyController(GenomeController):
#         @attrs.frozen(kw_only=True)
#         class Options(GenomeController.Options):
#             temperature: float = option(1.0, positive, help="softmax temperature")
#
# and reads them with ``read_options("controller", type(self).Options, options, name=...)``. The nearest
# class of the MRO that defines ``Options`` declares them, unless a class before it defines its own
# ``__init__`` without declaring ``Options``: then (as for plain functions, e.g. reward factories, unless
# they carry an ``Options`` attribute) the constructor's signature says which keywords it takes.

#: How messages call each role (``space.depthh: unknown option of search space 'simple'``).
ROLE_WORDS = {"space": "search space", "controller": "controller", "evaluator": "evaluator", "reward": "reward",
              "cost": "cost model", "executor": "executor", "budget": "budget"}


class OptionError(ConfigError):
    """A bad option: ``option`` (the key), ``reason`` (what is wrong), ``role`` (the config section, if known).

    The message is ``role.option: reason`` (``option: reason`` without a role)."""

    def __init__(self, option: str, reason: str, role: str | None = None):
        self.option = option
        self.reason = reason
        self.role = role
        super().__init__(f"{role + '.' if role else ''}{option}: {reason}")

    def under(self, role: str) -> "OptionError":
        """The same error named under ``role`` (unchanged when it has a role already)."""
        return self if self.role else OptionError(self.option, self.reason, role)

    def __reduce__(self):
        return OptionError, (self.option, self.reason, self.role)


class _Bad(Exception):
    """Raised inside a check's test: the value does not fit (the check words the message)."""


@attrs.frozen
class Check:
    """A check of one option value: an attrs validator ``(inst, attribute, value)`` that raises
    :class:`OptionError`, and :meth:`value` that returns the value normalised (``3.0`` -> ``3`` for a whole
    number, a list -> a tuple for a sequence). ``text`` words what it accepts ("a whole number >= 1");
    ``test(value)`` returns the normalised value or raises ``TypeError``/``ValueError`` to refuse it."""

    text: str
    test: Callable[[Any], Any] = attrs.field(repr=False)

    def value(self, name: str, value: Any) -> Any:
        """``value`` normalised, or :class:`OptionError` naming ``name``."""
        try:
            return self.test(value)
        except OptionError:
            raise
        except _Bad as exc:
            reason = str(exc) or f"must be {self.text}, got {value!r}"
            raise OptionError(name, reason) from None
        except (TypeError, ValueError):  # a test written without _Bad: the value does not fit
            raise OptionError(name, f"must be {self.text}, got {value!r}") from None

    def __call__(self, inst: Any, attribute: Any, value: Any) -> None:
        self.value(attribute.name, value)

    def where(self, predicate: Callable[[Any], bool], text: str) -> "Check":
        """This check, then ``predicate`` on the normalised value; ``text`` words what the two accept."""

        def test(v):
            v = self.test(v)
            if not predicate(v):
                raise _Bad
            return v

        return Check(text, test)


def _bound_text(minimum, maximum, lo_open=False, hi_open=False) -> str:
    if minimum is not None and maximum is not None:
        if not lo_open and not hi_open:
            return f" between {minimum:g} and {maximum:g}"
        return f" in {'(' if lo_open else '['}{minimum:g}, {maximum:g}{')' if hi_open else ']'}"
    if minimum is not None:
        return f" {'>' if lo_open else '>='} {minimum:g}"
    if maximum is not None:
        return f" {'<' if hi_open else '<='} {maximum:g}"
    return ""


def _in_bounds(v, minimum, maximum, lo_open, hi_open) -> bool:
    if minimum is not None and (v < minimum or (lo_open and v == minimum)):
        return False
    return not (maximum is not None and (v > maximum or (hi_open and v == maximum)))


def whole(minimum: int | None = None, maximum: int | None = None) -> Check:
    """A whole number (not a bool) in ``[minimum, maximum]``; a float with no fraction is accepted as an int."""

    def test(v):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not _in_bounds(v, minimum, maximum,
                                                                                       False, False):
            raise _Bad
        return int(v)

    return Check("a whole number" + _bound_text(minimum, maximum), test)


def real(minimum: float | None = None, maximum: float | None = None, *, lo_open: bool = False,
         hi_open: bool = False) -> Check:
    """A finite real number (not a bool) within the bounds (``lo_open``/``hi_open``: the bound excluded)."""

    def test(v):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)) \
                or not _in_bounds(float(v), minimum, maximum, lo_open, hi_open):
            raise _Bad
        return float(v)

    return Check("a number" + _bound_text(minimum, maximum, lo_open, hi_open), test)


#: a finite number > 0
positive = real(0.0, lo_open=True)
#: a probability, a number in [0, 1]
probability = Check("a probability in [0, 1]", real(0.0, 1.0).test)


def _flag(v):
    if not isinstance(v, bool):
        raise _Bad
    return v


#: true or false
flag = Check("true or false", _flag)


def choice(*values: Any) -> Check:
    """One of ``values``."""

    def test(v):
        if isinstance(v, bool) and not any(isinstance(x, bool) for x in values):
            raise _Bad
        for x in values:  # the declared value (2 for 2.0)
            if x == v and isinstance(x, bool) == isinstance(v, bool):
                return x
        raise _Bad

    return Check("one of " + ", ".join(map(repr, values)), test)


def optional(check: Check) -> Check:
    """``None`` or what ``check`` accepts."""
    return Check(f"none or {check.text}", lambda v: None if v is None else check.test(v))


def sequence(item: Check, *, length: int | None = None, min_length: int = 0, distinct: bool = False) -> Check:
    """A list (not a string) of items ``item`` accepts, as a tuple: exactly ``length`` items, else at least
    ``min_length``; ``distinct``: no item twice."""
    size = f"a list of {length}" if length is not None else "a non-empty list" if min_length else "a list"
    text = f"{size}, each {item.text}"
    if distinct:
        text += " (no repeats)"

    def test(v):
        if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Iterable):
            raise _Bad
        items = tuple(v)
        if (length is not None and len(items) != length) or len(items) < min_length:
            raise _Bad
        out = []
        for x in items:
            try:
                out.append(item.test(x))
            except (_Bad, TypeError, ValueError):
                raise _Bad(f"must be {text}; {x!r} is not {item.text}") from None
        if distinct and len(set(out)) != len(out):
            raise _Bad(f"must be {text}, got {list(items)!r} (repeated entries)")
        return tuple(out)

    return Check(text, test)


def mapping(keys: Check, values: Check) -> Check:
    """A mapping (a table) of ``keys`` to ``values``, as a dict."""
    text = f"a mapping of {keys.text} to {values.text}"

    def test(v):
        if not isinstance(v, Mapping):
            raise _Bad
        out = {}
        for k, x in v.items():
            try:
                out[keys.test(k)] = values.test(x)
            except (_Bad, TypeError, ValueError):
                raise _Bad(f"must be {text}; {k!r}: {x!r} is not") from None
        return out

    return Check(text, test)


def string(*, empty: bool = False) -> Check:
    """A string (by default not empty or blank)."""

    def test(v):
        if not isinstance(v, str) or (not empty and not v.strip()):
            raise _Bad
        return v

    return Check("a string" if empty else "a non-empty string", test)


#: any value (the role checks it itself)
anything = Check("any value", lambda v: v)


def option(default: Any = attrs.NOTHING, check: Check = anything, *, help: str = "",
           factory: Callable[[], Any] | None = None, type: str | None = None) -> Any:
    """A kw-only attrs field of an ``Options`` class: checked and normalised by ``check`` (the default too),
    with ``help`` (and the accepted values' ``type`` text, default ``check.text``) in its metadata."""

    def convert(value, field):
        return check.value(field.name, value)

    return attrs.field(default=default if factory is None else attrs.Factory(factory), kw_only=True,
                       converter=attrs.Converter(convert, takes_field=True),
                       metadata={"help": help, "type": type or check.text, "check": check})


def options_class(factory: Any) -> type | None:
    """The attrs ``Options`` class ``factory`` declares, or ``None`` (then its signature says; see above)."""
    if isinstance(factory, type):
        for klass in factory.__mro__:
            declared = vars(klass).get("Options")
            if declared is not None:
                return declared if attrs.has(declared) else None
            if "__init__" in vars(klass):
                return None
        return None
    declared = getattr(factory, "Options", None)
    return declared if isinstance(declared, type) and attrs.has(declared) else None


def _did_you_mean(key: str, known: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown(role: str, name: str | None, key: str, known: Iterable[str]) -> OptionError:
    known = sorted(known)
    what = ROLE_WORDS.get(role, role)
    of = f"{what} {name!r}" if name else f"this {what}"
    listed = ", ".join(known) if known else "none"
    hint = _did_you_mean(key, known) or ";"
    return OptionError(key, f"unknown option of {of}{hint} known: {listed}", role)


def read_options(role: str, options_cls: type, options: Mapping[str, Any], *, name: str | None = None) -> Any:
    """``options_cls(**options)`` with every problem a one-line :class:`OptionError` naming ``role.KEY``: an
    unknown key (with did-you-mean and the known keys) or a value a check refuses."""
    fields = attrs.fields_dict(options_cls)
    for key in options:
        if key not in fields or not fields[key].init:
            raise _unknown(role, name, str(key), (k for k, f in fields.items() if f.init))
    for key, f in fields.items():
        if f.init and f.default is attrs.NOTHING and key not in options:
            what = ROLE_WORDS.get(role, role)
            raise OptionError(key, f"is required by {what} {name!r}" if name else "is required", role)
    try:
        return options_cls(**options)
    except OptionError as exc:
        raise exc.under(role) from None


@attrs.frozen
class OptionDoc:
    """One declared option: its name, default (``attrs.NOTHING``-free: ``None`` when required), help text
    and the accepted values (``type``); ``required`` when it has no default."""

    name: str
    default: Any
    help: str = ""
    type: str = ""
    required: bool = False

    def as_dict(self) -> dict:
        return attrs.asdict(self)


_SKIP_PARAMS = frozenset({"self", "cls"})


def declared_options(factory: Any, *, skip: Iterable[str] = ()) -> list[OptionDoc]:
    """The options ``factory`` takes: its ``Options`` fields, else its signature's keyword parameters
    (``[]`` when it declares none and takes no keywords). ``skip``: names the caller passes itself
    (e.g. ``seed``, the space and reward of a controller)."""
    skip = set(skip)
    declared = options_class(factory)
    out = []
    if declared is not None:
        for f in attrs.fields(declared):
            if not f.init or f.name in skip:
                continue
            default = f.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = default.factory()
            required = default is attrs.NOTHING
            check = f.metadata.get("check")
            if not required and isinstance(check, Check):
                default = check.value(f.name, default)
            out.append(OptionDoc(f.name, None if required else _plain(default), f.metadata.get("help", ""),
                                 f.metadata.get("type", ""), required))
        return out
    import inspect

    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return []
    for p in sig.parameters.values():
        if p.name in skip or p.name in _SKIP_PARAMS or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        required = p.default is p.empty
        kind = "" if p.annotation is p.empty else (p.annotation if isinstance(p.annotation, str)
                                                    else getattr(p.annotation, "__name__", str(p.annotation)))
        out.append(OptionDoc(p.name, None if required else _plain(p.default), "", kind, required))
    return out


def _plain(value: Any) -> Any:
    """Tuples as lists (JSON/TOML-like plain data)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _signature_problem(role: str, name: str, factory: Any, options: Mapping, args: tuple,
                       fixed: Mapping) -> ConfigError | None:
    """For a factory without declared options: an unknown key, judged by its signature (``None``: fine or
    unknowable)."""
    import inspect

    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    params = sig.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    known = [p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
             and p.name not in fixed and p.name not in _SKIP_PARAMS]
    positional = [p.name for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    taken = set(positional[: len(args)])
    for key in options:
        if key not in known or key in taken:
            return _unknown(role, name, str(key), [k for k in known if k not in taken])
    try:
        sig.bind(*args, **fixed, **options)
    except TypeError as exc:  # e.g. a required option missing
        return ConfigError(f"{role} {name!r}: {exc}")
    return None


def check_options(role: str, name: str, factory: Any, options: Mapping[str, Any], /, *args: Any,
                  **fixed: Any) -> None:
    """What :func:`construct` checks before calling ``factory``: an unknown key, a key the caller sets itself
    (``fixed``), and (for declared options) every value; each a one-line :class:`ConfigError` naming
    ``role.KEY``."""
    for key in options:
        if key in fixed:
            raise OptionError(str(key), f"is set by the run, not by the {ROLE_WORDS.get(role, role)} options", role)
    declared = options_class(factory)
    if declared is not None:
        read_options(role, declared, options, name=name)
        return
    problem = _signature_problem(role, name, factory, options, args, fixed)
    if problem is not None:
        raise problem


def construct(role: str, name: str, factory: Any, options: Mapping[str, Any], /, *args: Any, **fixed: Any) -> Any:
    """``factory(*args, **fixed, **options)``, with every problem of ``options`` a one-line :class:`ConfigError`
    that names ``role.KEY`` (``space.depthh: unknown option of search space 'simple'; did you mean 'depth'?
    known: ...``; ``controller.population_size: must be a whole number >= 1, got 'x'``). A ``TypeError``
    raised by the constructor because of the options becomes such an error too; other exceptions pass."""
    options = dict(options)
    check_options(role, name, factory, options, *args, **fixed)
    try:
        return factory(*args, **fixed, **options)
    except OptionError as exc:
        raise exc.under(role) from None
    except ConfigError as exc:  # "KEY: reason" from a role that checks its options itself: name the role too
        text = str(exc)
        for key in options:
            if text.startswith(f"{key}: "):
                raise OptionError(str(key), text[len(str(key)) + 2:], role) from None
        raise
    except TypeError as exc:
        if not options:
            raise
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        named = [k for k in options if re.search(rf"\b{re.escape(str(k))}\b", text)]
        if named:
            raise OptionError(str(named[0]), f"{text} (got {options[named[0]]!r})", role) from None
        given = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise ConfigError(f"{role} {name!r}: {text} (options: {given})") from None


#: per role: (config section, the section key naming the implementation, the parameters the engine passes
#: itself, which are no options)
_ROLE_SECTIONS = (
    ("space", "space", "name", ()),
    ("controller", "controller", "name", ("space", "reward", "seed")),
    ("evaluator", "evaluator", "name", ()),
    ("reward", "reward", "name", ()),
    ("cost", "cost", "model", ("registry", "model")),
    ("executor", "executor", "name", ("workers",)),
)
#: options of the executor section that every executor has (the run reads them, not the executor class)
_EXECUTOR_GENERIC = (
    OptionDoc("workers", None, "parallel evaluations (none: the executor's default)", "a whole number >= 1 or none"),
    OptionDoc("device", "auto", "torch device of the evaluations (auto: a worker's GPU, else the CPU)",
              '"cpu", "cuda", "cuda:N", "mps" or "auto"'),
    OptionDoc("workdirs", False, "give each evaluation its own working folder in the run", "true or false"),
)


def method_options(plugins: Any, method: Any, preset: str | None = None) -> list[dict]:
    """Every option of each role ``method``'s ``preset`` (default: its default preset) uses: one dict per role
    with ``role``, ``name`` (the implementation) and ``options`` (each :class:`OptionDoc` as a dict, plus
    ``preset`` (the value the preset sets) and ``set`` (whether it sets one))."""
    from nasengine.method import DEFAULT_EXECUTOR

    cfg = method.config(preset)
    defaults = {"space": method.space, "controller": method.controller, "evaluator": method.evaluator,
                "reward": method.reward, "cost": method.cost_model, "executor": DEFAULT_EXECUTOR}
    registries = {"space": plugins.spaces, "controller": plugins.controllers, "evaluator": plugins.evaluators,
                  "reward": plugins.rewards, "cost": plugins.cost_models, "executor": plugins.executors}
    out = []
    for role, section_key, name_key, skip in _ROLE_SECTIONS:
        section = dict(cfg.get(section_key) or {})
        name = section.pop(name_key, None) or defaults[role]
        docs = declared_options(registries[role].get(name), skip=skip)
        if role == "executor":
            docs = list(_EXECUTOR_GENERIC) + [d for d in docs if d.name not in {g.name for g in _EXECUTOR_GENERIC}]
        rows = []
        for doc in docs:
            row = doc.as_dict()
            row["set"] = doc.name in section
            row["preset"] = _plain(section[doc.name]) if doc.name in section else None
            rows.append(row)
        out.append({"role": role, "name": name, "options": rows})
    return out
