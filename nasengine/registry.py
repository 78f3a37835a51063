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

__all__ = ["Registry", "Entry", "Accepts", "UnknownNameError", "DuplicateNameError", "RegistrationError"]

T = TypeVar("T")


class UnknownNameError(InputError, KeyError):
    """A name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0] if self.args else ""


class DuplicateNameError(NasengineError):
    """Two plugins registered the same name for the same role."""


class RegistrationError(NasengineError):
    """A plugin registered something that is not what the role takes (a number as a search space)."""


def _resolve(target: str | type) -> type:
    """``"package.module:Name"`` imported (targets are named so that making a registry imports nothing)."""
    if isinstance(target, type):
        return target
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@attrs.frozen
class Accepts:
    """What a registry takes: ``"subclass"`` of ``target`` (a class or ``"module:Name"``), ``"instance"`` of it,
    a ``"factory"`` (any callable) or a ``"path"`` (``str`` or ``os.PathLike``)."""

    how: str = attrs.field(validator=attrs.validators.in_(("subclass", "instance", "factory", "path")))
    target: str | type | None = None

    @classmethod
    def subclass(cls, target: str | type) -> "Accepts":
        return cls("subclass", target)

    @classmethod
    def instance(cls, target: str | type) -> "Accepts":
        return cls("instance", target)

    @classmethod
    def factory(cls) -> "Accepts":
        return cls("factory")

    @classmethod
    def path(cls) -> "Accepts":
        return cls("path")

    def describe(self) -> str:
        if self.how in ("subclass", "instance"):
            t = _resolve(self.target)
            qual = f"{t.__module__}.{t.__qualname__}"
            return f"a subclass of {qual}" if self.how == "subclass" else f"a {qual}"
        return "a callable factory" if self.how == "factory" else "a file path (str or os.PathLike)"

    def accepts(self, obj: Any) -> bool:
        if self.how == "subclass":
            return isinstance(obj, type) and issubclass(obj, _resolve(self.target))
        if self.how == "instance":
            return isinstance(obj, _resolve(self.target))
        if self.how == "factory":
            return callable(obj)
        import os

        return isinstance(obj, (str, os.PathLike)) and bool(str(obj))


def _shown(obj: Any) -> str:
    text = repr(obj)
    if len(text) > 60:
        text = text[:57] + "..."
    kind = "class" if isinstance(obj, type) else type(obj).__name__
    return f"{kind} {text}"


@attrs.frozen
class Entry(Generic[T]):
    """One registered implementation: its name, the object, the plugin that brought it, a one-line summary."""

    name: str
    obj: T
    plugin: str
    description: str = ""


class Registry(Generic[T]):
    """Registered implementations of one role (search spaces, controllers, ...).

    ``kind`` is the role's name in messages ("search space"). ``accepts`` (an :class:`Accepts`) is checked by
    :meth:`add`, so a plugin that registers the wrong kind of object fails when it loads, not when a search
    builds the object; ``validate(name, obj)`` is a further check of the role. The plugin manager sets
    ``current_plugin`` while it calls each plugin's hook, so ``add`` records who registered what without
    plugins saying so.
    """

    def __init__(self, kind: str, validate: Callable[[str, Any], None] | None = None, *,
                 accepts: Accepts | None = None):
        self.kind = kind
        self.accepts = accepts
        self._entries: dict[str, Entry[T]] = {}
        self._validate = validate
        self.current_plugin = "unknown"

    def add(self, name: str, obj: T, *, description: str = "", plugin: str | None = None) -> T:
        """Register ``obj`` under ``name`` (brought by ``plugin``, default: ``current_plugin``); returns ``obj``.

        :class:`RegistrationError` (naming the plugin and the role) when ``obj`` is not what the role takes,
        :class:`DuplicateNameError` (naming both plugins) when ``name`` is taken.
        """
        plugin = plugin or self.current_plugin
        if not isinstance(name, str) or not name or name != name.strip():
            raise RegistrationError(f"plugin {plugin!r}: {self.kind} name must be a non-empty string without "
                                    f"spaces around it, got {name!r}")
        if name in self._entries:
            prev = self._entries[name]
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by plugin {prev.plugin!r} and by plugin {plugin!r}"
            )
        if self.accepts is not None and not self.accepts.accepts(obj):
            raise RegistrationError(f"plugin {plugin!r} registered {_shown(obj)} as {self.kind} {name!r}; "
                                    f"expected {self.accepts.describe()}")
        if self._validate is not None:
            self._validate(name, obj)
        if not description:
            doc = getattr(obj, "__doc__", None) or ""
            description = doc.strip().splitlines()[0] if doc.strip() else ""
        self._entries[name] = Entry(name, obj, plugin, description)
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
        raise UnknownNameError(self._unknown(name))

    def _unknown(self, name: Any) -> str:
        known = ", ".join(f"{e.name} (from {e.plugin})" for e in self._entries.values()) or "none"
        close = difflib.get_close_matches(str(name), list(self._entries), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} registered: {known}"

    def plugin_of(self, name: str) -> str:
        """The plugin that registered ``name``."""
        return self.entry(name).plugin

    def copy(self) -> "Registry[T]":
        """An independent registry with the same entries (add to it without touching this one)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._entries = dict(self._entries)
        return new

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
