"""The generic controllers (random, evolution, nsga2) on the ``simple`` space with a cheap synthetic problem,
and the Pareto / hypervolume helpers."""
from __future__ import annotations

import copy
import hashlib
import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasengine.controller import Controller, Result
from nasengine.controllers import BUILTIN_CONTROLLERS, NSGA2, RandomSearch, RegularizedEvolution, Reinforce
from nasengine.controllers._common import Member
from nasengine.controllers.nsga2 import rank_and_crowding, survive
from nasengine.controllers.pareto import hypervolume, non_dominated, pareto_front
from nasengine.errors import ConfigError, ValidationError
from nasengine.reward import Reward
from nasengine.spaces import SimpleSpace
from nasengine.testing import ControllerContract

REWARD = Reward.from_config([["psnr", "max"], ["params", "min"]])
SPACE = SimpleSpace(scale=2, channels="y", max_depth=6)


# ---- a cheap synthetic SR problem --------------------------------------------------------------------------
def synthetic_metrics(space: SimpleSpace, genome) -> dict:
    """Params of the decoded network counted in closed form (no graph), and a PSNR proxy that grows with the
    log of the params, likes 3x3 kernels, PReLU, the residual and the bicubic skip, dislikes tanh and 1x1
    kernels, plus a small deterministic "noise" from the genome key. Tuned so that the trade-off between the
    two objectives is real and random sampling covers it poorly."""
    c, s, head = space.image_channels, space.scale, space.head_width
    params = 9 * c * head + head
    prev = head
    quality = 0.0
    for width, kernel, act in genome.layers:
        params += kernel * kernel * prev * width + width + (width if act == "prelu" else 0)
        prev = width
        quality += {3: 0.25, 5: 0.15, 1: -0.3}[kernel] + {"prelu": 0.1, "relu": 0.0, "tanh": -0.35}[act]
    feat = prev
    if genome.residual:
        if prev != head:
            params += prev * head + head
        feat = head
        quality += 0.6
    if genome.upsampler == "deconv":
        params += space.deconv_kernel ** 2 * feat * c + c
        quality -= 0.2
    else:
        params += 9 * feat * c * s * s + c * s * s
        quality += 0.5 if genome.upsampler == "bicubic_residual" else 0.0
    noise = int(hashlib.sha256(space.genome_key(genome).encode()).hexdigest()[:8], 16) / 2**32 - 0.5
    psnr = 30.0 + 1.2 * math.log(params / 1000.0) + quality + 0.1 * noise
    return {"psnr": psnr, "params": float(params)}


def evaluate(space, genome, reward=REWARD, fail=None) -> Result:
    key = space.genome_key(genome)
    if fail is not None and fail(genome):
        return Result(genome=genome, key=key, status="failed")
    m = synthetic_metrics(space, genome)
    violation = reward.violation(m)
    return Result(genome=genome, key=key, status="ok" if violation == 0 else "infeasible", metrics=m,
                  objectives=tuple(reward.vector(m)), violation=violation, reward=reward.scalar(m))


def run(controller, generations: int, fail=None, reward=REWARD) -> list[Result]:
    results = []
    for _ in range(generations):
        genomes = controller.ask()
        for g in genomes:
            controller.space.validate(g)
        batch = [evaluate(controller.space, g, reward, fail) for g in genomes]
        controller.tell(batch)
        results.extend(batch)
    return results


def make(name: str, seed: int = 0, space=SPACE, reward=REWARD, **options):
    return BUILTIN_CONTROLLERS[name](space, reward, seed=seed, **options)


NAMES = sorted(BUILTIN_CONTROLLERS)


# ---- basics ---------------------------------------------------------------------------------------------------
def test_builtin_names():
    assert BUILTIN_CONTROLLERS == {"random": RandomSearch, "evolution": RegularizedEvolution, "nsga2": NSGA2,
                                   "reinforce": Reinforce}


class TestBuiltinControllerContract(ControllerContract):
    """The engine's controller contract (nasengine.testing): valid asks, same seed same run, pickled state
    asks the same (with pending genomes), failed and infeasible results tolerated."""

    @pytest.fixture(params=NAMES)
    def new_controller(self, request):
        return lambda space, reward, seed: make(request.param, seed=seed, space=space, reward=reward,
                                                population_size=5)

    def make_space(self):
        return SPACE


class _Forgetful(RandomSearch):
    def load_state_dict(self, state):
        pass


class _Invalid(RandomSearch):
    def ask(self, n=None):
        return [None for _ in super().ask(n)]


class _VectorRandom(Controller):
    """Proposes uniform vectors within the space's bounds (``shift`` moves them out)."""

    shift = 0

    def ask(self, n=None):
        lo, hi = self.space.vector_bounds()
        n = self.population_size if n is None else n
        return [self.space.vector_decode(self.rng.integers(lo, hi + 1) + self.shift) for _ in range(n)]

    def tell(self, results):
        pass


class _OutOfBounds(_VectorRandom):
    shift = 1


class TestVectorControllerContract(ControllerContract):
    uses_vectors = True

    def make_space(self):
        return SPACE

    def make_controller(self, space, reward, seed):
        return _VectorRandom(space, reward, seed=seed, population_size=4)


def test_the_controller_contract_catches_a_broken_controller():
    contract = ControllerContract()
    with pytest.raises(AssertionError):
        contract.test_pickled_state_dict_gives_the_same_asks(SPACE, lambda sp, r, seed: _Forgetful(sp, r, seed=seed))
    with pytest.raises(Exception):
        contract.test_ask_gives_valid_genomes_of_the_space(SPACE, lambda sp, r, seed: _Invalid(sp, r, seed=seed))
    contract.uses_vectors = True
    with pytest.raises((AssertionError, ValidationError)):
        contract.test_out_of_bounds_vectors_are_handled(SPACE, lambda sp, r, seed: _OutOfBounds(sp, r, seed=seed))
    with pytest.raises(AssertionError, match="never called"):
        contract.test_out_of_bounds_vectors_are_handled(SPACE, lambda sp, r, seed: RandomSearch(sp, r, seed=seed))


@pytest.mark.parametrize("name", NAMES)
def test_first_generation_has_no_repeats(name):
    ctl = make(name, population_size=12)
    keys = [SPACE.genome_key(g) for g in ctl.ask()]
    assert len(set(keys)) == 12


# ---- state_dict ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), pending=st.integers(0, 5))
def test_state_dict_keeps_the_pending_genomes(name, seed, pending):
    ctl = make(name, seed=seed, population_size=5)
    run(ctl, 1)
    ctl.ask(pending)
    state = pickle.loads(pickle.dumps(ctl.state_dict()))
    assert len(state["pending"]) == pending
    twin = make(name, seed=12345, population_size=5)
    twin.load_state_dict(state)
    assert twin.state_dict()["rng"] == ctl.state_dict()["rng"] and len(twin.pending) == pending


@pytest.mark.parametrize("name", NAMES)
def test_state_holds_genomes_as_space_json(name):
    ctl = make(name, population_size=4)
    run(ctl, 2)
    ctl.ask(2)
    state = ctl.state_dict()
    for g in state["pending"]:
        assert SPACE.from_json(g) is not None and isinstance(g, dict)
    for m in state.get("population", []):
        assert isinstance(m["genome"], dict)
        assert m["objectives"] is None or all(isinstance(v, float) for v in m["objectives"])


def test_load_state_with_other_options_is_refused():
    state = make("evolution", population_size=6, tournament_size=2).state_dict()
    with pytest.raises(ConfigError, match="tournament_size"):
        make("evolution", population_size=6, tournament_size=3).load_state_dict(state)
    with pytest.raises(ConfigError, match="nsga2|evolution"):
        make("nsga2", population_size=6).load_state_dict(state)


# ---- options ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, options, field",
    [
        ("random", {"population_size": 0}, "population_size"),
        ("random", {"population_size": "8"}, "population_size"),
        ("random", {"max_tries": 0}, "max_tries"),
        ("random", {"temperature": 1.0}, "temperature"),
        ("evolution", {"tournament_size": 0}, "tournament_size"),
        ("evolution", {"population_size": 4, "tournament_size": 5}, "tournament_size"),
        ("nsga2", {"crossover_prob": 1.5}, "crossover_prob"),
        ("nsga2", {"mutation_prob": "high"}, "mutation_prob"),
        ("nsga2", {"tournament_size": 2}, "tournament_size"),
    ],
)
def test_bad_options_raise_config_error_naming_the_option(name, options, field):
    with pytest.raises(ConfigError, match=field):
        make(name, **options)


@pytest.mark.parametrize("name", NAMES)
def test_bad_ask_size(name):
    with pytest.raises(ConfigError, match="ask"):
        make(name).ask(-1)


# ---- random search ---------------------------------------------------------------------------------------------
TINY = SimpleSpace(min_depth=1, max_depth=1, widths=[8], kernels=[1, 3], activations=["relu"],
                   upsamplers=["deconv"])


def test_random_search_avoids_repeats_until_the_space_is_exhausted():
    assert TINY.size() == 4
    ctl = RandomSearch(TINY, REWARD, seed=0)
    first = {TINY.genome_key(g) for g in ctl.ask(4)}
    assert len(first) == 4
    more = ctl.ask(3)  # exhausted: repeats, and no endless search
    assert len(more) == 3 and {TINY.genome_key(g) for g in more} <= first


@pytest.mark.parametrize("name", ["evolution", "nsga2"])
def test_small_space_does_not_hang(name):
    ctl = make(name, space=TINY, population_size=4)
    results = run(ctl, 5)
    assert len(results) == 20


# ---- regularised evolution -------------------------------------------------------------------------------------
def test_evolution_ages_out_the_oldest():
    ctl = make("evolution", population_size=5, tournament_size=2)
    run(ctl, 1)
    assert [m.birth for m in ctl.population] == [0, 1, 2, 3, 4]
    children = ctl.ask(3)
    ctl.tell([evaluate(SPACE, g) for g in children])
    assert [m.birth for m in ctl.population] == [3, 4, 5, 6, 7]


def _one_mutation_apart(a, b) -> bool:
    """True when ``b`` is ``a`` with one gene of the simple space changed (or one layer inserted/deleted)."""
    if a.depth == b.depth:
        genes = lambda g: [g.residual, g.upsampler] + [x for layer in g.layers for x in layer]  # noqa: E731
        return sum(x != y for x, y in zip(genes(a), genes(b))) == 1
    longer, shorter = (a, b) if a.depth > b.depth else (b, a)
    return (longer.depth - shorter.depth == 1 and (a.residual, a.upsampler) == (b.residual, b.upsampler)
            and any(longer.layers[:i] + longer.layers[i + 1:] == shorter.layers for i in range(longer.depth)))


def test_evolution_children_are_mutations_of_population_members():
    ctl = make("evolution", population_size=6, tournament_size=3)
    run(ctl, 1)
    parents = [m.genome for m in ctl.population]
    for child in ctl.ask(10):
        assert any(_one_mutation_apart(p, child) for p in parents)


def _member(genome, status="ok", objectives=(0.0, 0.0), violation=0.0, fitness=0.0, birth=0):
    return Member(genome, SPACE.genome_key(genome), "k", status, objectives, violation, fitness, birth)


def test_evolution_tournament_prefers_feasible_then_small_violation():
    rng = np.random.default_rng(0)
    gs = [SPACE.sample(rng) for _ in range(4)]
    ctl = make("evolution", population_size=4, tournament_size=4)
    ctl.population = [
        _member(gs[0], status="infeasible", violation=0.2, fitness=99.0),
        _member(gs[1], fitness=1.0),
        _member(gs[2], status="infeasible", violation=0.1, fitness=50.0),
        _member(gs[3], fitness=2.0),
    ]
    assert ctl.tournament().genome == gs[3]  # feasible first, then the larger reward
    ctl.population = [ctl.population[0], ctl.population[2]]
    assert ctl.tournament().genome == gs[2]  # infeasible only: smaller violation


def test_evolution_never_breeds_from_failed_results():
    fail = lambda g: g.layers[0].kernel == 5  # noqa: E731
    ctl = make("evolution", population_size=8, tournament_size=8)
    run(ctl, 4, fail=fail)
    assert ctl.population and all(m.status != "failed" for m in ctl.population)


# ---- NSGA-II ---------------------------------------------------------------------------------------------------
def test_nsga2_never_picks_a_failed_parent_while_a_valid_one_exists():
    rng = np.random.default_rng(1)
    gs = [SPACE.sample(rng) for _ in range(6)]
    ctl = make("nsga2", population_size=6)
    ctl.population = [_member(g, status="failed", objectives=None) for g in gs[:5]] + [_member(gs[5])]
    ctl._update_rank()
    assert {ctl.tournament() for _ in range(30)} == {5}


def test_nsga2_survival_constraint_domination():
    rng = np.random.default_rng(2)
    gs = [SPACE.sample(rng) for _ in range(7)]
    members = [
        _member(gs[0], status="failed", objectives=None),
        _member(gs[1], status="infeasible", objectives=(0.0, 0.0), violation=0.5),
        _member(gs[2], objectives=(3.0, 3.0)),  # feasible but dominated
        _member(gs[3], status="infeasible", objectives=None, violation=0.1),
        _member(gs[4], objectives=(1.0, 2.0)),
        _member(gs[5], objectives=(2.0, 1.0)),
        _member(gs[6], status="ok", objectives=(-9.0, -9.0), violation=0.01),  # ok status, but violates
    ]
    order = survive(members, 7, np.random.default_rng(0))
    # feasible (front 0, then front 1), then infeasible by violation, the failed one last
    assert set(order[:2]) == {4, 5}
    assert order[2:] == [2, 6, 3, 1, 0]
    assert sorted(survive(members, 3, np.random.default_rng(0))) == [2, 4, 5]
    rank, crowding = rank_and_crowding(members)
    assert rank[4] == rank[5] == 0 and rank[2] == 1
    assert math.isinf(crowding[4]) and math.isinf(crowding[5])


def test_nsga2_tournament_feasible_beats_infeasible_and_smaller_violation_wins():
    rng = np.random.default_rng(3)
    gs = [SPACE.sample(rng) for _ in range(3)]
    ctl = make("nsga2", population_size=2)
    ctl.population = [_member(gs[0], status="infeasible", objectives=(-99.0, 0.0), violation=0.3),
                      _member(gs[1], objectives=(5.0, 5.0))]
    ctl._update_rank()
    assert {ctl.tournament() for _ in range(20)} == {1}
    ctl.population = [_member(gs[0], status="infeasible", violation=0.3),
                      _member(gs[2], status="infeasible", violation=0.05)]
    ctl._update_rank()
    assert {ctl.tournament() for _ in range(20)} == {1}


def test_nsga2_population_keeps_feasible_results_under_a_constraint():
    reward = Reward.from_config([["psnr", "max"], ["params", "min"]], [["params", "max", 6000]])
    ctl = make("nsga2", population_size=10, reward=reward)
    results = run(ctl, 6, reward=reward)
    assert any(r.status == "infeasible" for r in results)
    n_feasible = sum(r.ok for r in results)
    assert sum(m.status == "ok" and m.violation == 0 for m in ctl.population) == min(10, n_feasible)


def test_nsga2_survives_once_per_generation():
    ctl = make("nsga2", population_size=6)
    ctl.tell([evaluate(SPACE, g) for g in ctl.ask(4)])
    assert ctl.generation == 0 and not ctl.population
    ctl.tell([evaluate(SPACE, g) for g in ctl.ask(2)])
    assert ctl.generation == 1 and len(ctl.population) == 6
    run(ctl, 2)
    assert ctl.generation == 3 and len(ctl.population) == 6


# A fixed reference point for the synthetic problem: PSNR proxy >= 30 dB, params <= 40k (minimisation form).
REF = (-30.0, 40_000.0)


def _front_hv(results) -> float:
    return hypervolume([r.objectives for r in pareto_front(results)], REF)


def test_nsga2_improves_hypervolume_over_random_search():
    seeds = range(4)
    hv_nsga, hv_rand = [], []
    for seed in seeds:
        hv_nsga.append(_front_hv(run(make("nsga2", seed=seed, population_size=16), 12)))
        hv_rand.append(_front_hv(run(make("random", seed=seed, population_size=16), 12)))
    # a clear margin on average and a win on every seed (measured margin: see the report)
    assert np.mean(hv_nsga) > 1.1 * np.mean(hv_rand), (hv_nsga, hv_rand)
    assert all(a > b for a, b in zip(hv_nsga, hv_rand)), (hv_nsga, hv_rand)


# ---- pareto / hypervolume helpers --------------------------------------------------------------------------
def test_hypervolume_hand_computed():
    pts = [[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]
    # slices x in [1,2]: 1, [2,3]: 2, [3,4]: 3
    assert hypervolume(pts, [4.0, 4.0]) == pytest.approx(6.0)
    assert hypervolume(pts + [[3.0, 3.0]], [4.0, 4.0]) == pytest.approx(6.0)  # dominated point adds nothing
    assert hypervolume(pts + [[5.0, 0.0]], [4.0, 4.0]) == pytest.approx(6.0)  # beyond the reference point
    assert hypervolume([[0.0, 0.0]], [2.0, 3.0]) == pytest.approx(6.0)
    assert hypervolume([], [1.0, 1.0]) == 0.0
    assert hypervolume([[1.0, 1.0, 1.0]], [2.0, 3.0, 4.0]) == pytest.approx(6.0)


def test_non_dominated_indices():
    F = np.array([[1, 3], [2, 2], [2, 2], [3, 3], [3, 1], [0, 5]], dtype=float)
    assert non_dominated(F).tolist() == [0, 1, 2, 4, 5]
    assert non_dominated(np.zeros((0, 2))).tolist() == []


def test_pareto_front_only_feasible_non_dominated_results():
    def r(obj, status="ok", violation=0.0, key="k"):
        return Result(genome=None, key=key, status=status, objectives=obj, violation=violation)

    a, b, c = r((1.0, 3.0), key="a"), r((2.0, 2.0), key="b"), r((3.0, 3.0), key="c")
    failed = r(None, status="failed", key="f")
    infeasible = r((0.0, 0.0), status="infeasible", violation=1.0, key="i")
    violating = r((0.0, 0.0), violation=0.5, key="v")
    nan = r((math.nan, 0.0), key="n")
    front = pareto_front([c, failed, b, infeasible, a, violating, nan])
    assert [x.key for x in front] == ["b", "a"]
    assert pareto_front([failed]) == []
    # mappings work too (the report reads store rows)
    rows = [{"status": "ok", "violation": 0.0, "objectives": [1.0, 1.0]}, {"status": "ok", "objectives": [2, 2]}]
    assert pareto_front(rows) == rows[:1]


def test_deepcopy_of_state_is_plain_data():
    ctl = make("nsga2", population_size=4)
    run(ctl, 2)
    state = ctl.state_dict()
    assert copy.deepcopy(state) == state


def test_nsga2_variation_hooks_and_origin_tags():
    crossed = []

    class Tagged(NSGA2):
        def crossover(self, a, b):
            crossed.append((a, b))
            return super().crossover(a, b)

        def mutate(self, genome):
            return self.space.mutate(genome, self.rng), "custom"

    ctl = Tagged(SPACE, REWARD, seed=0, population_size=6, crossover_prob=1.0, mutation_prob=1.0)
    first = ctl.ask()
    assert [ctl.origins_made[SPACE.genome_key(g)] for g in first] == ["init"] * 6
    ctl.tell([evaluate(SPACE, g) for g in first])
    children = ctl.ask()
    tags = [ctl.origins_made[SPACE.genome_key(g)] for g in children]
    assert crossed and "custom" in tags and set(tags) <= {"custom", "mutation"}  # "mutation": last resort
    plain = NSGA2(SPACE, REWARD, seed=0, population_size=6, crossover_prob=1.0, mutation_prob=0.0)
    plain.tell([evaluate(SPACE, g) for g in plain.ask()])
    assert "crossover" in {plain.origins_made[SPACE.genome_key(g)] for g in plain.ask()} <= {"crossover", "mutation"}


def test_nsga2_samples_while_every_member_failed(monkeypatch):
    ctl = make("nsga2", population_size=4)
    run(ctl, 1, fail=lambda g: True)
    assert ctl.generation == 1 and all(m.status == "failed" for m in ctl.population)
    monkeypatch.setattr(ctl, "_mate", lambda: pytest.fail("bred from failed members"))
    assert len(ctl.ask()) == 4


@pytest.mark.parametrize("name", NAMES)
def test_tell_accepts_results_it_did_not_ask_for(name):
    ctl = make(name, population_size=3)
    seeded = [evaluate(SPACE, SPACE.sample(np.random.default_rng(i))) for i in range(3)]
    ctl.tell(seeded)  # e.g. published architectures seeded by the loop
    assert ctl.pending == []
    for g in ctl.ask():
        SPACE.validate(g)


def test_registered_through_the_builtin_plugin():
    import warnings

    from nasengine.plugins import Plugins
    from nasengine.spaces import BUILTIN_SPACES

    with warnings.catch_warnings():
        # another role of the built-in plugin may be unfinished; the controllers and spaces register first
        warnings.simplefilter("ignore", RuntimeWarning)
        plugins = Plugins(autoload=False)
    for name, cls in BUILTIN_CONTROLLERS.items():
        assert plugins.controllers.get(name) is cls
    assert plugins.spaces.get("simple") is BUILTIN_SPACES["simple"]
