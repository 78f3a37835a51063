"""Contract tests for search spaces: subclass, give a space, get every test of the SearchSpace contract.

In a plugin's test suite::

    from nasengine.testing.contract import SearchSpaceContract

    class TestMySpace(SearchSpaceContract):
        def make_space(self):
            return MySpace(scale=2)

or, to cover several option sets, a (parametrized) ``space`` fixture instead of ``make_space``::

    class TestMySpaceScales(SearchSpaceContract):
        max_examples = 10

        @pytest.fixture(params=[2, 3, 4])
        def space(self, request):
            return MySpace(scale=request.param)

What is checked (:class:`nasengine.space.SearchSpace` states the contract):

* ``sample`` is deterministic given the rng, and its genomes validate and are hashable;
* ``to_json`` survives ``json.dumps`` / ``json.loads`` and ``from_json`` gives the genome back;
* ``genome_key`` and ``key`` are stable (same genome twice, after a JSON round trip, on a fresh space);
* ``decode`` gives a graph that validates, upscales by ``space.scale`` and keeps the image channels;
* the built module (:func:`nasengine.builder.build`) maps an LR tensor to ``scale`` times its size, and the
  analytic cost equals what forward hooks count (:func:`nasengine.cost.count_with_hooks`);
* ``mutate`` and ``crossover`` return valid genomes, deterministically given the rng;
* ``vector_encode`` lies within ``vector_bounds`` and round-trips; ``vector_decode`` of any in-bounds
  vector validates;
* ``size()`` is a positive ``int``;
* ``from_json`` of fuzzed data either parses to a valid genome or raises ``ValidationError`` — nothing else;
  ``validate(None)`` raises ``ValidationError``.

Class attributes tune the run: ``max_examples`` (hypothesis examples per property; ``--nasengine-examples N``
on the pytest command line overrides it), ``build_examples`` (examples of the tests that build torch modules,
which are slower), ``lr_size`` (the LR size of the forward and cost checks), ``max_mutations`` (variation
steps of drawn genomes), ``same_channels`` (whether output channels must equal input channels).
"""
from __future__ import annotations

import copy
import json
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from nasengine.errors import ValidationError
from nasengine.space import SearchSpace
from nasengine.testing.genomes import fuzzed_json, genome_pairs, genomes, seeds, vectors

__all__ = ["SearchSpaceContract"]


def _input_and_output_channels(graph) -> tuple[int, int]:
    resolved = graph.resolve()
    c_in = next(r.attrs["channels"] for r in resolved if r.op == "input")
    c_out = next(r.shape.channels for r in resolved if r.op == "output")
    return c_in, c_out


class SearchSpaceContract:
    """Base class of contract tests for a :class:`~nasengine.space.SearchSpace` (see the module docstring).

    Not collected by itself (its name does not start with ``Test``); subclass it as ``TestSomething``.
    """

    #: hypothesis examples per property (``--nasengine-examples N`` overrides it)
    max_examples: int = 25
    #: examples of the properties that build a torch module and run it
    build_examples: int = 6
    #: LR input ``(height, width)`` of the forward and cost checks (non-square on purpose)
    lr_size: tuple[int, int] = (8, 6)
    #: mutations / crossovers applied to drawn genomes
    max_mutations: int = 3
    #: SR maps an image to an image: the output has the input's channels
    same_channels: bool = True

    # ---- what a subclass provides ---------------------------------------------------------------------
    def make_space(self) -> SearchSpace:
        """The space under test; override this or the ``space`` fixture."""
        raise NotImplementedError(
            f"{type(self).__name__}: give the contract a space — define make_space() or a `space` fixture"
        )

    @pytest.fixture
    def space(self) -> SearchSpace:
        return self.make_space()

    @pytest.fixture
    def _contract_examples(self, request) -> tuple[int, int]:
        """(examples per property, examples per build property), scaled by ``--nasengine-examples``."""
        n = request.config.getoption("nasengine_examples", default=None)
        if n:
            return int(n), max(1, min(int(n), int(n) * self.build_examples // max(1, self.max_examples)))
        return self.max_examples, self.build_examples

    # ---- helpers ---------------------------------------------------------------------------------------
    @staticmethod
    def _settings(n: int) -> Callable:
        return settings(
            max_examples=n,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                   HealthCheck.data_too_large],
        )

    def _genomes(self, space):
        return genomes(space, max_mutations=self.max_mutations)

    def _fresh_space(self, space: SearchSpace) -> SearchSpace:
        """Another instance of the space under test (``make_space()`` when defined, else a deep copy)."""
        if type(self).make_space is not SearchSpaceContract.make_space:
            return self.make_space()
        return copy.deepcopy(space)

    # ---- the contract ------------------------------------------------------------------------------------
    def test_scale_is_a_positive_int(self, space):
        assert isinstance(space.scale, int) and not isinstance(space.scale, bool) and space.scale >= 1

    def test_sample_validates_and_is_deterministic(self, space, _contract_examples):
        @self._settings(_contract_examples[0])
        @given(seed=seeds())
        def check(seed):
            genome = space.sample(np.random.default_rng(seed))
            space.validate(genome)
            hash(genome)
            assert space.sample(np.random.default_rng(seed)) == genome

        check()

    def test_json_round_trip(self, space, _contract_examples):
        @self._settings(_contract_examples[0])
        @given(genome=self._genomes(space))
        def check(genome):
            text = json.dumps(space.to_json(genome))
            back = space.from_json(json.loads(text))
            assert back == genome
            assert hash(back) == hash(genome)
            assert json.dumps(space.to_json(back), sort_keys=True) == json.dumps(json.loads(text), sort_keys=True)

        check()

    def test_keys_are_stable(self, space, _contract_examples):
        fresh = self._fresh_space(space)

        @self._settings(_contract_examples[1])
        @given(genome=self._genomes(space))
        def check(genome):
            gk = space.genome_key(genome)
            assert isinstance(gk, str) and gk
            assert space.genome_key(genome) == gk
            twin = space.from_json(json.loads(json.dumps(space.to_json(genome))))
            assert space.genome_key(twin) == gk
            assert fresh.genome_key(genome) == gk
            key = space.key(genome)
            assert isinstance(key, str) and key
            assert space.key(twin) == key
            assert fresh.key(genome) == key

        check()

    def test_decode_gives_a_valid_graph_of_the_space_scale(self, space, _contract_examples):
        @self._settings(_contract_examples[0])
        @given(genome=self._genomes(space))
        def check(genome):
            graph = space.decode(genome)
            graph.validate()
            assert graph.scale == space.scale
            if self.same_channels:
                c_in, c_out = _input_and_output_channels(graph)
                assert c_out == c_in, f"output has {c_out} channels, input {c_in}"

        check()

    def test_build_and_forward(self, space, _contract_examples):
        import torch

        from nasengine.builder import build

        h, w = self.lr_size

        @self._settings(_contract_examples[1])
        @given(genome=self._genomes(space))
        def check(genome):
            graph = space.decode(genome)
            c_in, c_out = _input_and_output_channels(graph)
            torch.manual_seed(0)
            module = build(graph)
            with torch.no_grad():
                y = module(torch.rand(2, c_in, h, w))
            s = space.scale
            assert tuple(y.shape) == (2, c_out, s * h, s * w)
            assert torch.isfinite(y).all()

        check()

    def test_analytic_cost_equals_hook_count(self, space, _contract_examples):
        from nasengine.builder import build
        from nasengine.cost import analytic_cost, count_with_hooks

        @self._settings(_contract_examples[1])
        @given(genome=self._genomes(space))
        def check(genome):
            graph = space.decode(genome)
            analytic = analytic_cost(graph, self.lr_size)
            counted = count_with_hooks(build(graph), graph, self.lr_size)
            assert analytic.as_metrics() == counted.as_metrics()
            assert analytic.params > 0 and analytic.mult_adds > 0

        check()

    def test_mutate_closure(self, space, _contract_examples):
        @self._settings(_contract_examples[0])
        @given(genome=self._genomes(space), seed=seeds())
        def check(genome, seed):
            child = space.mutate(genome, np.random.default_rng(seed))
            space.validate(child)
            hash(child)
            assert space.mutate(genome, np.random.default_rng(seed)) == child

        check()

    def test_crossover_closure(self, space, _contract_examples):
        @self._settings(_contract_examples[0])
        @given(pair=genome_pairs(space, self.max_mutations), seed=seeds())
        def check(pair, seed):
            a, b = pair
            children = space.crossover(a, b, np.random.default_rng(seed))
            assert len(children) == 2
            for child in children:
                space.validate(child)
                hash(child)
            assert tuple(space.crossover(a, b, np.random.default_rng(seed))) == tuple(children)

        check()

    def test_vector_encoding_within_bounds_and_round_trips(self, space, _contract_examples):
        lo, hi = (np.asarray(b) for b in space.vector_bounds())
        assert lo.shape == hi.shape and lo.ndim == 1 and np.all(lo <= hi)

        @self._settings(_contract_examples[0])
        @given(genome=self._genomes(space))
        def check(genome):
            v = np.asarray(space.vector_encode(genome))
            assert v.shape == lo.shape
            assert np.issubdtype(v.dtype, np.integer)
            assert np.all(lo <= v) and np.all(v <= hi)
            assert space.vector_decode(v) == genome

        check()

    def test_vector_decode_of_any_in_bounds_vector_validates(self, space, _contract_examples):
        @self._settings(_contract_examples[0])
        @given(vector=vectors(space))
        def check(vector):
            genome = space.vector_decode(vector)
            space.validate(genome)
            again = space.vector_decode(space.vector_encode(genome))
            assert again == genome

        check()

    def test_size_is_a_positive_int(self, space):
        n = space.size()
        assert isinstance(n, int) and not isinstance(n, bool) and n > 0

    def test_from_json_of_fuzzed_data_raises_only_validation_error(self, space, _contract_examples):
        @self._settings(2 * _contract_examples[0])
        @given(data=fuzzed_json(space))
        def check(data: Any):
            try:
                genome = space.from_json(data)
            except ValidationError:
                return
            space.validate(genome)
            assert space.from_json(json.loads(json.dumps(space.to_json(genome)))) == genome

        check()

    def test_validate_rejects_a_non_genome(self, space):
        with pytest.raises(ValidationError):
            space.validate(None)

    def test_describe_is_a_string(self, space):
        genome = space.sample(np.random.default_rng(0))
        assert isinstance(space.describe(genome), str) and space.describe(genome)
