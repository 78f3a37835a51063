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

import pluggy

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
]

# Each hook's parameter is named ``registry``; pluggy passes it by keyword.


@hookspec
def nasengine_register_ops(registry) -> None:
    """Register graph operations (:class:`nasengine.ops.OpSpec`): ``registry.add(spec)``.

    An operation carries its torch builder, its shape rule and its cost formula together, so a plugin that
    adds an op is costed and built like the built-ins.
    """


@hookspec
def nasengine_register_search_spaces(registry) -> None:
    """Register search spaces: ``registry.add(name, cls)`` with ``cls`` a :class:`nasengine.space.SearchSpace`
    subclass whose keyword arguments are the options of a preset's ``space`` section."""


@hookspec
def nasengine_register_controllers(registry) -> None:
    """Register controllers: ``registry.add(name, cls)`` with ``cls`` a :class:`nasengine.controller.Controller`
    subclass, constructed as ``cls(space, reward, seed=..., **options)``."""


@hookspec
def nasengine_register_evaluators(registry) -> None:
    """Register evaluators: ``registry.add(name, cls)`` with ``cls`` a :class:`nasengine.evaluator.Evaluator`
    subclass constructed with a preset's ``evaluator`` options (plain data; it runs in worker processes)."""


@hookspec
def nasengine_register_cost_models(registry) -> None:
    """Register cost models: ``registry.add(name, cls)`` with ``cls`` a :class:`nasengine.cost.CostModel`
    subclass."""


@hookspec
def nasengine_register_rewards(registry) -> None:
    """Register rewards: ``registry.add(name, factory)`` with ``factory(**options) -> nasengine.reward.Reward``
    (or a subclass overriding ``scalar`` for a paper's reward)."""


@hookspec
def nasengine_register_methods(registry) -> None:
    """Register methods (recipes with presets): ``registry.add(method.name, method)`` with a
    :class:`nasengine.method.Method`."""


@hookspec
def nasengine_register_executors(registry) -> None:
    """Register executors (where evaluations run): ``registry.add(name, cls)`` with ``cls`` a
    :class:`nasengine.executors.Executor` subclass."""


@hookspec
def nasengine_register_models(registry) -> None:
    """Register ready-made models for ``--model NAME``: ``registry.add(name, factory)`` with
    ``factory(scale=..., weights=None|path, device="cpu") -> nasengine.sr.models.Upscaler``
    (for example published architectures with importable official weights)."""


@hookspec
def nasengine_register_architectures(registry) -> None:
    """Register named architectures (published models as data): ``registry.add("falsr:FALSR-A", path)`` with
    ``path`` a genome file (see :mod:`nasengine.genomefile`) shipped as package data. Wherever a GENOME is
    expected (``nasengine cost``, ``train``, ``export``, ``evaluate --model``) the name works as a path does."""


@hookspec
def nasengine_register_search_options(registry) -> None:
    """Register command-line options of ``nasengine search`` and ``resume``: ``registry.add(name,
    nasengine.options.SearchOption(key="executor.address", executor="ray", help=...))`` adds ``--NAME VALUE``,
    whose value becomes the config override at ``key``; an option with ``executor`` also selects that executor
    unless ``--executor`` is given (``--ray-address ADDR``)."""
