"""The plugin contract: every hook a plugin may implement.

Each hook hands the plugin a :class:`nasengine.registry.Registry` for one role; the plugin calls
``registry.add(name, obj)`` for each implementation it brings. Names are global across plugins, so a plugin
prefixes them when they could clash (``"falsr"``, ``"falsr-hybrid"``). All hooks are optional.

Quick start for a plugin author (a package with an entry point in the ``nasengine`` group)::

    # pyproject.toml
    [project.entry-points.nasengine]
    mine = "my_package.plugin"

    # my_package/plugin.py
    import nasengine

    @nasengine.hookimpl
    def nasengine_register_search_spaces(registry):
        registry.add("my-space", MySpace)

Then ``nasengine plugins`` lists it and ``nasengine search`` can use it.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    from nasengine.controller import Controller
    from nasengine.cost import CostModel
    from nasengine.evaluator import Evaluator
    from nasengine.executors import Executor
    from nasengine.layouts import WeightLayout
    from nasengine.method import Method
    from nasengine.ops import OpRegistry
    from nasengine.options import SearchOption
    from nasengine.registry import Registry
    from nasengine.reward import Reward
    from nasengine.space import SearchSpace

hookspec = pluggy.HookspecMarker("nasengine")

__all__ = [
    "hookspec",
    "nasengine_register_ops",
    "nasengine_register_search_spaces",
    "nasengine_register_controllers",
    "nasengine_register_evaluators",
    "nasengine_register_cost_models",
    "nasengine_register_rewards",
    "nasengine_register_methods",
    "nasengine_register_executors",
    "nasengine_register_models",
    "nasengine_register_architectures",
    "nasengine_register_search_options",
    "nasengine_register_weight_layouts",
]

# Each hook's parameter is named ``registry``; pluggy passes it by keyword. The registry checks the kind of
# what is added (the type below), so a plugin registering the wrong kind fails when it loads, named.


@hookspec
def nasengine_register_ops(registry: OpRegistry) -> None:
    """Register graph operations (:class:`nasengine.ops.OpSpec`): ``registry.add(spec)``.

    An operation carries its torch builder, its shape rule and its cost formula together, so a plugin that
    adds an op is costed and built like the built-ins.
    """


@hookspec
def nasengine_register_search_spaces(registry: Registry[type[SearchSpace]]) -> None:
    """Register search spaces: ``registry.add(name, cls)`` with ``cls`` a :class:`nasengine.space.SearchSpace`
    subclass whose keyword arguments are the options of a preset's ``space`` section."""


@hookspec
def nasengine_register_controllers(registry: Registry[type[Controller]]) -> None:
    """Register controllers: ``registry.add(name, cls)`` with ``cls`` a :class:`nasengine.controller.Controller`
    subclass, constructed as ``cls(space, reward, seed=..., **options)``."""


@hookspec
def nasengine_register_evaluators(registry: Registry[type[Evaluator]]) -> None:
    """Register evaluators: ``registry.add(name, cls)`` with ``cls`` a :class:`nasengine.evaluator.Evaluator`
    subclass constructed with a preset's ``evaluator`` options (plain data; it runs in worker processes)."""


@hookspec
def nasengine_register_cost_models(registry: Registry[type[CostModel]]) -> None:
    """Register cost models: ``registry.add(name, cls)`` with ``cls`` a :class:`nasengine.cost.CostModel`
    subclass."""


@hookspec
def nasengine_register_rewards(registry: Registry[Callable[..., Reward]]) -> None:
    """Register rewards: ``registry.add(name, factory)`` with ``factory(**options) -> nasengine.reward.Reward``
    (or a subclass overriding ``scalar`` for a paper's reward)."""


@hookspec
def nasengine_register_methods(registry: Registry[Method]) -> None:
    """Register methods (recipes with presets): ``registry.add(method.name, method)`` with a
    :class:`nasengine.method.Method`."""


@hookspec
def nasengine_register_executors(registry: Registry[type[Executor]]) -> None:
    """Register executors (where evaluations run): ``registry.add(name, cls)`` with ``cls`` a
    :class:`nasengine.executors.Executor` subclass."""


@hookspec
def nasengine_register_models(registry: Registry[Callable[..., Any]]) -> None:
    """Register ready-made models for ``--model NAME``: ``registry.add(name, factory)`` with
    ``factory(scale=..., weights=None|path, device="auto") -> nasengine.sr.models.Upscaler``
    (for example published architectures with importable official weights). ``device`` is what the user
    gave (``"auto"`` by default); resolve it with :func:`nasengine.device.resolve_device`."""


@hookspec
def nasengine_register_architectures(registry: Registry[str | os.PathLike]) -> None:
    """Register named architectures (published models as data): ``registry.add("falsr:FALSR-A", path)`` with
    ``path`` a genome file (see :mod:`nasengine.genomefile`) shipped as package data. Wherever a GENOME is
    expected (``nasengine cost``, ``train``, ``export``, ``evaluate --model``) the name works as a path does."""


@hookspec
def nasengine_register_search_options(registry: Registry[SearchOption]) -> None:
    """Register command-line options of ``nasengine search`` and ``resume``: ``registry.add(name,
    nasengine.options.SearchOption(key="executor.address", executor="ray", help=...))`` adds ``--NAME VALUE``,
    whose value becomes the config override at ``key``; an option with ``executor`` also selects that executor
    unless ``--executor`` is given (``--ray-address ADDR``)."""


@hookspec
def nasengine_register_weight_layouts(registry: Registry[type[WeightLayout]]) -> None:
    """Register weight layouts of the weight-sharing supernet: ``registry.add(name, cls)`` with ``cls`` a
    :class:`nasengine.layouts.WeightLayout` subclass (made without arguments) that says which shared weights a
    slot uses when a child feeds it part of its widest input; a space selects one by its ``weight_layout``."""
