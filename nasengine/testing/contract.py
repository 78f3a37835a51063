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

import attrs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from nasengine.errors import ValidationError
from nasengine.space import SearchSpace
from nasengine.testing.genomes import fuzzed_json, genome_pairs, genomes, seeds, vectors

__all__ = ["SearchSpaceContract", "ControllerContract"]


def _input_and_output_channels(graph) -> tuple[int, int]:
    resolved = graph.resolve()
    c_in = next(r.attrs["channels"] for r in resolved if r.op == "input")
    c_out = next(r.shape.channels for r in resolved if r.op == "output")
    return c_in, c_out


class _Contract:
    """What both contracts share: the plugins are loaded before each test (a space may use a plugin's op), and
    the ``space`` fixture is :meth:`make_space`."""

    def make_space(self) -> SearchSpace:  # pragma: no cover - each contract documents its own
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _nasengine_plugins_loaded(self):
        _load_plugins()

    @pytest.fixture
    def space(self) -> SearchSpace:
        return self.make_space()


class SearchSpaceContract(_Contract):
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
                                   HealthCheck.data_too_large, HealthCheck.large_base_example],
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
            if analytic.live_mult_adds is not None:  # built-but-unused nodes hold params but never run
                analytic = attrs.evolve(analytic, mult_adds=analytic.live_mult_adds)
            assert analytic.as_metrics() == counted.as_metrics()
            # a genome may prune every conv off the live path (FGNAS: all gates off leaves bias maps): 0 Mult-Adds
            assert analytic.params > 0 and analytic.mult_adds >= 0

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


# ---------------------------------------------------------------------------------------------------------
# Controllers
# ---------------------------------------------------------------------------------------------------------
class ControllerContract(_Contract):
    """Base class of contract tests for a :class:`~nasengine.controller.Controller`.

    In a plugin's test suite::

        from nasengine.testing import ControllerContract

        class TestMyController(ControllerContract):
            def make_space(self):
                return SimpleSpace(scale=2, channels="y", max_depth=4)

            def make_controller(self, space, reward, seed):
                return MyController(space, reward, seed=seed, population_size=4)

    (or ``space`` / ``new_controller`` fixtures instead, to parametrize). Results are synthetic (analytic cost
    at ``lr_size``, a PSNR proxy growing with the parameters, a fixed "noise" from the genome key); of every
    ``fail_every`` results told one is failed and one infeasible. What is checked:

    * ``ask()`` and ``ask(n)`` (and ``sample(n)``, where the controller has it) give valid genomes of the
      space (they validate and survive the space's JSON);
    * the same seed gives the same run (and, with ``seeded``, another seed another run);
    * a ``state_dict`` passed through the store's data format (:mod:`nasengine.statecodec`: no pickles) and
      loaded into a controller made with another seed asks exactly the same, also with genomes asked and
      not yet told;
    * failed and infeasible results, even whole generations of them, do not stop it;
    * with ``uses_vectors`` (a controller proposing vectors through ``space.vector_decode``; ``None``: when
      it turns out to): every vector
      it decodes lies within ``vector_bounds``, and genomes the space repaired from out-of-bounds vectors
      (told as results it did not ask for) are taken.
    """

    #: generations run by the tests
    generations: int = 3
    #: of every ``fail_every`` results told, one fails and one is infeasible
    fail_every: int = 5
    #: LR size of the synthetic results' analytic cost
    lr_size: tuple[int, int] = (16, 16)
    #: another seed gives another run
    seeded: bool = True
    #: the controller proposes vectors through ``space.vector_decode`` (``None``: check them if it does)
    uses_vectors: bool | None = False
    #: hypothesis examples of the state round-trip property
    state_examples: int = 4

    # ---- what a subclass provides ---------------------------------------------------------------------
    def make_space(self) -> SearchSpace:
        """The space to run the controller on; override this or the ``space`` fixture."""
        raise NotImplementedError(
            f"{type(self).__name__}: give the contract a space — define make_space() or a `space` fixture")

    def make_controller(self, space: SearchSpace, reward, seed: int):
        """A new controller under test; override this or the ``new_controller`` fixture."""
        raise NotImplementedError(
            f"{type(self).__name__}: define make_controller(space, reward, seed) or a `new_controller` fixture")

    def make_reward(self):
        """The reward told to the controller: PSNR up, Mult-Adds down, no constraint."""
        from nasengine.reward import Reward

        return Reward.from_config([["psnr", "max"], ["mult_adds", "min"]])


    @pytest.fixture
    def new_controller(self) -> Callable:
        return self.make_controller

    # ---- helpers ---------------------------------------------------------------------------------------
    def results(self, space: SearchSpace, genomes, reward, start: int = 0, status: str | None = None) -> list:
        """Synthetic results of ``genomes`` (numbered from ``start`` for the failed / infeasible pattern;
        ``status`` forces one status on all)."""
        import hashlib
        import math

        from nasengine.controller import Result
        from nasengine.cost import analytic_cost

        out = []
        for i, genome in enumerate(genomes, start):
            key = space.genome_key(genome)
            kind = status or ("failed" if i % self.fail_every == self.fail_every - 1
                              else "infeasible" if i % self.fail_every == 1 else "ok")
            if kind == "failed":
                out.append(Result(genome=genome, key=key, status="failed"))
                continue
            cost = analytic_cost(space.decode(genome), self.lr_size)
            noise = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32 - 0.5
            metrics = {"psnr": 30.0 + math.log10(cost.params) + 0.1 * noise, "mult_adds": float(cost.mult_adds),
                       "params": float(cost.params)}
            violation = 1.0 + noise if kind == "infeasible" else 0.0
            out.append(Result(genome=genome, key=key, status=kind, metrics=metrics,
                              objectives=tuple(reward.vector(metrics)), violation=violation,
                              reward=reward.scalar(metrics)))
        return out

    def _check_genomes(self, space: SearchSpace, genomes) -> None:
        for genome in genomes:
            space.validate(genome)
            hash(genome)
            assert space.from_json(json.loads(json.dumps(space.to_json(genome)))) == genome

    def _run(self, ctl, space, reward, generations: int, counter: list | None = None) -> list[str]:
        counter = counter if counter is not None else [0]
        keys = []
        for _ in range(generations):
            genomes = ctl.ask()
            assert genomes, "ask() gave no genome"
            self._check_genomes(space, genomes)
            ctl.tell(self.results(space, genomes, reward, counter[0]))
            counter[0] += len(genomes)
            keys += [space.genome_key(g) for g in genomes]
        return keys

    # ---- the contract ------------------------------------------------------------------------------------
    def test_ask_gives_valid_genomes_of_the_space(self, space, new_controller):
        reward = self.make_reward()
        ctl = new_controller(space, reward, 0)
        self._run(ctl, space, reward, self.generations)
        for n in (0, 1, 3):
            asked = ctl.ask(n)
            assert len(asked) == n, f"ask({n}) gave {len(asked)} genomes"
            self._check_genomes(space, asked)

    def test_sample_gives_valid_genomes(self, space, new_controller):
        """``sample(n)`` (architectures to train shared weights on, where the controller has it)."""
        reward = self.make_reward()
        ctl = new_controller(space, reward, 0)
        if not callable(getattr(ctl, "sample", None)):
            pytest.skip(f"{type(ctl).__name__} has no sample(n)")
        self._run(ctl, space, reward, 1)
        for n in (0, 1, 3):
            sampled = ctl.sample(n)
            assert len(sampled) == n, f"sample({n}) gave {len(sampled)} genomes"
            self._check_genomes(space, sampled)

    def test_same_seed_same_run(self, space, new_controller):
        reward = self.make_reward()
        a = self._run(new_controller(space, reward, 3), space, reward, self.generations)
        b = self._run(new_controller(space, reward, 3), space, reward, self.generations)
        assert a == b
        if self.seeded:
            c = self._run(new_controller(space, reward, 4), space, reward, self.generations)
            assert a != c, "another seed gave the same run"

    def test_pickled_state_dict_gives_the_same_asks(self, space, new_controller):
        from nasengine.statecodec import decode_state, encode_state

        from hypothesis import strategies as st

        reward = self.make_reward()

        @SearchSpaceContract._settings(self.state_examples)
        @given(seed=seeds(), before=st.integers(0, 2), pending=st.integers(0, 3))
        def check(seed, before, pending):
            ctl = new_controller(space, reward, seed)
            counter = [0]
            self._run(ctl, space, reward, before, counter)
            asked = ctl.ask(pending)  # asked, not yet told: must survive the round trip too
            # through the store's format: the state must be data (nasengine.statecodec)
            state = decode_state(encode_state(ctl.state_dict()))
            twin = new_controller(space, reward, seed + 12345)  # everything must come from the state
            twin.load_state_dict(state)
            told = self.results(space, asked, reward, counter[0])
            counter[0] += len(asked)
            ctl.tell(told)
            twin.tell(told)
            assert (self._run(ctl, space, reward, 2, list(counter))
                    == self._run(twin, space, reward, 2, list(counter)))

        check()

    def test_failed_and_infeasible_results_are_tolerated(self, space, new_controller):
        reward = self.make_reward()
        ctl = new_controller(space, reward, 1)
        for status in ("failed", "infeasible", "failed"):
            genomes = ctl.ask()
            self._check_genomes(space, genomes)
            ctl.tell(self.results(space, genomes, reward, status=status))
        self._run(ctl, space, reward, self.generations)

    def test_out_of_bounds_vectors_are_handled(self, space, new_controller):
        if self.uses_vectors is False:
            pytest.skip("the controller does not work on vectors (uses_vectors = False)")
        reward = self.make_reward()
        lo, hi = (np.asarray(b) for b in space.vector_bounds())
        seen: list = []
        decode = space.vector_decode

        def recording(vector):
            seen.append(np.asarray(vector).copy())
            return decode(vector)

        ctl = new_controller(space, reward, 2)
        try:
            object.__setattr__(space, "vector_decode", recording)
        except (AttributeError, TypeError):  # a space with __slots__: its vectors cannot be watched
            pytest.skip(f"cannot watch {type(space).__name__}.vector_decode (no instance __dict__)")
        try:
            self._run(ctl, space, reward, self.generations)
        finally:
            object.__delattr__(space, "vector_decode")
        if not seen:
            assert self.uses_vectors is None, "uses_vectors, but the controller never called space.vector_decode"
            pytest.skip("the controller did not call space.vector_decode")
        for v in seen:
            assert v.shape == lo.shape and np.all(lo <= v) and np.all(v <= hi), f"out-of-bounds vector {v}"
        # genomes a repairing vector_decode made from out-of-bounds vectors, told without being asked
        rng = np.random.default_rng(0)
        repaired = []
        for _ in range(4):
            v = rng.integers(lo - 3, hi + 4)
            try:
                repaired.append(space.vector_decode(v))
            except ValidationError:
                continue
        self._check_genomes(space, repaired)
        ctl.tell(self.results(space, repaired, reward, status="ok"))
        self._run(ctl, space, reward, 1)




def _load_plugins() -> None:
    """Load the plugins (their ops, spaces, ...) before a contract test runs: a space using a plugin's op
    must not depend on another test having loaded them first."""
    from nasengine.plugins import get_plugins

    get_plugins()
