"""Name -> factory registries, filled by plugins through the ``nasengine_register_*`` hooks.

A registry remembers which plugin brought each entry, refuses duplicates (naming both plugins) and answers
an unknown name with the list of what *is* registered, so a typo on the command line is easy to fix::

    >>> reg = Registry("search space")
    >>> reg.add("simple", SimpleSpace, description="a small plain SR space")
    >>> reg.get("simpel")
    UnknownNameError: unknown search space 'simpel'; registered: simple (from builtin)
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable, Generic, Iterator, TypeVar

import attrs

from nasengine.errors import InputError, NasengineError

__all__ = ["Registry", "Entry", "UnknownNameError", "DuplicateNameError"]

T = TypeVar("T")


class UnknownNameError(InputError, KeyError):
    """A name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0] if self.args else ""


class DuplicateNameError(NasengineError):
    """Two plugins registered the same name for the same role."""


@attrs.frozen
class Entry(Generic[T]):
    """One registered implementation: its name, the object, the plugin that brought it, a one-line summary."""

    name: str
    obj: T
    plugin: str
    description: str = ""


class Registry(Generic[T]):
    """Registered implementations of one role (search spaces, controllers, ...).

    ``kind`` is the role's name in messages ("search space"). The plugin manager sets ``current_plugin``
    while it calls each plugin's hook, so ``add`` records who registered what without plugins saying so.
    """

    def __init__(self, kind: str, validate: Callable[[str, Any], None] | None = None):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._validate = validate
        self.current_plugin = "unknown"

    def add(self, name: str, obj: T, *, description: str = "") -> T:
        """Register ``obj`` under ``name``; returns ``obj`` so it can be used as a decorator argument."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise NasengineError(f"{self.kind} name must be a non-empty string without spaces around it, got {name!r}")
        if name in self._entries:
            prev = self._entries[name]
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by plugin {prev.plugin!r} and by plugin "
                f"{self.current_plugin!r}"
            )
        if self._validate is not None:
            self._validate(name, obj)
        if not description:
            doc = getattr(obj, "__doc__", None) or ""
            description = doc.strip().splitlines()[0] if doc.strip() else ""
        self._entries[name] = Entry(name, obj, self.current_plugin, description)
        return obj

    def register(self, name: str, *, description: str = "") -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(obj: T) -> T:
            return self.add(name, obj, description=description)

        return deco

    def get(self, name: str) -> T:
        """The object registered under ``name``; :class:`UnknownNameError` lists the known names otherwise."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            pass
        known = ", ".join(f"{e.name} (from {e.plugin})" for e in self._entries.values()) or "none"
        close = difflib.get_close_matches(str(name), list(self._entries), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} registered: {known}")

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names, sorted; ``pattern`` filters with shell wildcards (``"falsr*"``)."""
        names = sorted(self._entries)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def by_plugin(self, plugin: str) -> list[str]:
        return [e.name for e in self.entries() if e.plugin == plugin]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
