"""nasengine — neural architecture search for single-image super-resolution.

The engine is small and paper-agnostic; each published method is a plugin. A plugin is a module with
functions marked ``@nasengine.hookimpl`` named after the hooks of :mod:`nasengine.hookspecs`, exposed through
an entry point in the ``nasengine`` group::

    import nasengine

    @nasengine.hookimpl
    def nasengine_register_controllers(registry):
        registry.add("my-controller", MyController)

Everything a plugin needs is importable from here or from the documented public modules
(``nasengine.space``, ``nasengine.controller``, ``nasengine.evaluator``, ``nasengine.reward``,
``nasengine.method``, ``nasengine.graph``, ``nasengine.ops``, ``nasengine.cost``, ``nasengine.sr``,
``nasengine.testing``).
"""
from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Marker for plugin hook implementations.
hookimpl = pluggy.HookimplMarker("nasengine")

from nasengine.errors import (  # noqa: E402
    ConfigError,
    DataError,
    ImageError,
    InputError,
    NasengineError,
    ValidationError,
)

__all__ = [
    "__version__",
    "hookimpl",
    "NasengineError",
    "InputError",
    "ImageError",
    "DataError",
    "ConfigError",
    "ValidationError",
]
