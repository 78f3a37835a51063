"""Registry-driven contract tests (STYLE.md 12): everything registered by any installed plugin is checked.

Spaces get the full SearchSpace contract with their default options (or the small ``contract_options`` a
space declares when its defaults are too large for a quick test); every controller passes the controller
contract on every space it accepts; every method's presets resolve to a valid configuration.
"""
from __future__ import annotations

import numpy as np
import pytest

from nasengine.plugins import get_plugins
from nasengine.testing.contract import ControllerContract, SearchSpaceContract

PLUGINS = get_plugins()
SPACES = PLUGINS.spaces.names()


def make_space(name: str):
    cls = PLUGINS.spaces.get(name)
    return cls(**dict(getattr(cls, "contract_options", {}) or {}))
CONTROLLERS = PLUGINS.controllers.names()


class TestEveryRegisteredSpace(SearchSpaceContract):
    max_examples = 8
    build_examples = 2

    @pytest.fixture(params=SPACES)
    def space(self, request):
        return make_space(request.param)


class TestEveryRegisteredController(ControllerContract):
    """The controller contract for every registered controller on every registered space it accepts (a
    controller may refuse a space it cannot drive: it must say why, with a NasengineError)."""

    generations = 2
    state_examples = 2
    uses_vectors = None  # the vectors of those that decode vectors are checked

    @pytest.fixture(params=[(c, s) for c in CONTROLLERS for s in SPACES], ids="-on-".join)
    def pair(self, request):
        return request.param

    @pytest.fixture
    def space(self, pair):
        return make_space(pair[1])

    @pytest.fixture
    def new_controller(self, pair, space):
        from nasengine.errors import NasengineError

        controller_name = pair[0]
        cls = PLUGINS.controllers.get(controller_name)

        def make(space, reward, seed):
            return cls(space, reward, seed=seed, population_size=4)

        try:
            make(space, self.make_reward(), 0)
        except Exception as exc:
            assert isinstance(exc, NasengineError) and str(exc), exc
            pytest.skip(f"{controller_name} refuses {type(space).__name__}: {exc}")
        return make


@pytest.mark.parametrize("method_name", PLUGINS.methods.names())
def test_every_method_preset_resolves(method_name):
    """Every preset of every method reads as a run spec and every role of it can be built (whatever its loop)."""
    from nasengine.errors import DataError
    from nasengine.spec import RunSpec

    method = PLUGINS.methods.get(method_name)
    assert method.space in PLUGINS.spaces and method.evaluator in PLUGINS.evaluators
    for preset in method.presets:
        spec = RunSpec.from_config(PLUGINS, method.config(preset), seed=0)
        assert (spec.method, spec.preset, spec.loop) == (method_name, preset, method.loop)
        space = spec.instantiate("space", PLUGINS)
        reward = spec.instantiate("reward", PLUGINS)
        assert spec.instantiate("cost", PLUGINS).metrics(space.decode(space.sample(np.random.default_rng(0))))
        spec.instantiate("controller", PLUGINS, space, reward, seed=spec.seed)
        evaluator = spec.instantiate("evaluator", PLUGINS)
        spec.instantiate("executor", PLUGINS).close()
        try:
            evaluator.check()
        except DataError as exc:  # data this machine lacks (the paper's DIV2K)
            assert "unknown" in str(exc) and preset != "smoke", f"{method_name}/{preset}: {exc}"


def test_every_op_costs_and_builds_in_random_graphs():
    """Random graphs drawn from every built-in op family: analytic cost == forward-hook count."""
    from nasengine.builder import build
    from nasengine.cost import analytic_cost, count_with_hooks
    from nasengine.testing.strategies import random_arch_graph

    for seed in range(6):
        graph = random_arch_graph(seed)
        module = build(graph)
        assert analytic_cost(graph, lr_size=(12, 10)) == count_with_hooks(module, graph, lr_size=(12, 10))
