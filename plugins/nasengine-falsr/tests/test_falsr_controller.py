"""FALSR's hybrid controller (``falsr-hybrid``, §4): initialisation, crossover, the three mutations, the policy
network and its gradient (Eq. 6), exact resumption, a synthetic search, and the fallback on a generic space.

Nothing is trained: metrics come from the engine's analytic cost model and a closed-form PSNR proxy."""
from __future__ import annotations

import copy
import logging
import math
import pickle

import numpy as np
import pytest
import torch

from nasengine.controller import Result
from nasengine.controllers import NSGA2
from nasengine.controllers.pareto import hypervolume
from nasengine.cost import analytic_cost
from nasengine.errors import ConfigError
from nasengine.reward import Reward
from nasengine.spaces import SimpleSpace
from nasengine.testing import ControllerContract
from nasengine_falsr.controller import MUTATION_KINDS, FalsrHybridController, FalsrPolicy, cell_costs
from nasengine_falsr.genome import FalsrGenome, macro_length
from nasengine_falsr.space import FalsrSpace

N_CELLS = 4
SPACE = FalsrSpace(n_cells=N_CELLS)
N_BITS = macro_length(N_CELLS)
REWARD = Reward.from_config([["psnr", "max"], ["mult_adds", "min"]])


def make(space=SPACE, reward=REWARD, **options) -> FalsrHybridController:
    options.setdefault("population_size", 16)
    return FalsrHybridController(space, reward, **options)


# ---- a synthetic problem: analytic cost + a closed-form PSNR proxy -------------------------------------------
_METRICS: dict[tuple, dict] = {}


def synthetic_metrics(space, genome) -> dict:
    """Mult-Adds and params from the analytic cost model (LR 480x480); a PSNR proxy that grows with
    log(Mult-Adds), plus a small fixed "noise" from the genome key and, for FALSR genomes, a bonus for 3x3
    kernels, in-cell skips and a few connections — so the two objectives really trade off."""
    key = (type(space).__name__, space.genome_key(genome))
    if key not in _METRICS:
        cost = analytic_cost(space.decode(genome))
        quality = 0.0
        if isinstance(genome, FalsrGenome):
            cells = genome.micro
            quality = (0.3 * np.mean([c.kernel == 3 for c in cells]) + 0.2 * np.mean([c.skip for c in cells])
                       - 0.3 * abs(sum(genome.macro) / len(genome.macro) - 0.3))
        noise = int(key[1][:8], 16) / 2**32 - 0.5
        psnr = 30.0 + 0.5 * math.log(cost.mult_adds / 1e9) + quality + 0.05 * noise
        _METRICS[key] = {"psnr": psnr, "mult_adds": float(cost.mult_adds), "params": float(cost.params)}
    return dict(_METRICS[key])


def evaluate(space, genome, reward=REWARD) -> Result:
    m = synthetic_metrics(space, genome)
    violation = reward.violation(m)
    return Result(genome=genome, key=space.genome_key(genome), status="ok", metrics=m,
                  objectives=tuple(reward.vector(m)), violation=violation, reward=reward.scalar(m))


def run(ctl, generations: int) -> list[list[Result]]:
    out = []
    for _ in range(generations):
        genomes = ctl.ask()
        for g in genomes:
            ctl.space.validate(g)
        batch = [evaluate(ctl.space, g, ctl.reward) for g in genomes]
        ctl.tell(batch)
        out.append(batch)
    return out


def _distinct_genomes():
    """Two genomes that differ in every cell and every connection bit."""
    cells = SPACE.cell_choices
    a = FalsrGenome(tuple(cells[i] for i in range(N_CELLS)), tuple(i % 2 for i in range(N_BITS)))
    b = FalsrGenome(tuple(cells[100 + i] for i in range(N_CELLS)), tuple(1 - i % 2 for i in range(N_BITS)))
    return a, b


# ---- registration and options ----------------------------------------------------------------------------------
def test_registered_as_falsr_hybrid():
    import warnings

    import nasengine_falsr.plugin as falsr_plugin
    from nasengine.plugins import Plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        plugins = Plugins(autoload=False, extra=(falsr_plugin,))
    assert plugins.controllers.get("falsr-hybrid") is FalsrHybridController
    assert issubclass(FalsrHybridController, NSGA2)  # the engine's NSGA-II machinery, FALSR's operators


def test_paper_default_population():
    assert FalsrHybridController(SPACE, REWARD).population_size == 64  # §6.1


@pytest.mark.parametrize("options, field", [
    ({"p_r": 1.5}, "controller.p_r"),
    ({"p_den": -0.1}, "controller.p_den"),
    ({"p_r": 0.7, "p_den": 0.5}, "controller.p_den"),
    ({"p_rl": "half"}, "controller.p_rl"),
    ({"p_mr": 0.8, "p_mf": 0.3}, "controller.p_mf"),
    ({"rws_floor": -1}, "controller.rws_floor"),
    ({"rl_embedding_dim": 0}, "controller.rl_embedding_dim"),
    ({"rl_hidden": [64]}, "controller.rl_hidden"),
    ({"rl_hidden": [64, 0]}, "controller.rl_hidden"),
    ({"rl_lr": 0.0}, "controller.rl_lr"),
    ({"rl_baseline": "yes"}, "controller.rl_baseline"),
    ({"rl_baseline_decay": 1.0}, "controller.rl_baseline_decay"),
    ({"rl_gene_prob": 2}, "controller.rl_gene_prob"),
    ({"rl_train_on": "some"}, "controller.rl_train_on"),
    ({"generic_fallback": 1}, "controller.generic_fallback"),
    ({"population_size": 0}, "controller.population_size"),
    ({"crossover_prob": 1.2}, "controller.crossover_prob"),
    ({"p_mutation": 0.5}, "p_mutation"),
])
def test_bad_options_raise_config_error_naming_the_option(options, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        make(**options)


# ---- the engine's controller contract ---------------------------------------------------------------------------
class TestFalsrHybridContract(ControllerContract):
    """Valid asks, same seed same run, pickled state asks the same, failed / infeasible results tolerated."""

    def make_space(self):
        return SPACE

    def make_controller(self, space, reward, seed):
        return make(space, reward, seed=seed, population_size=8)


class TestFalsrHybridOnTheSimpleSpaceContract(TestFalsrHybridContract):
    """The same on a generic space (the plain NSGA-II fallback)."""

    def make_space(self):
        return SimpleSpace(scale=2, channels="y", max_depth=5)


# ---- initialisation (§4.2) -------------------------------------------------------------------------------------
def test_initial_models_repeat_one_cell_and_cells_are_not_repeated_across_models():
    ctl = make(population_size=64)
    pop = ctl.initial_population()
    assert len(pop) == 64
    for g in pop:
        SPACE.validate(g)
        assert len(set(g.micro)) == 1  # one sampled cell repeated n times
    assert len({g.micro[0] for g in pop}) == 64  # no two models share their cell


def test_initial_population_larger_than_s_uses_every_cell_then_arbitrary_models():
    space = FalsrSpace(n_cells=N_CELLS, channels=[16])  # |S| = 48
    ctl = make(space, population_size=60)
    pop = ctl.initial_population()
    repeated, rest = pop[:48], pop[48:]
    assert all(len(set(g.micro)) == 1 for g in repeated)
    assert {g.micro[0] for g in repeated} == set(space.cell_choices)  # every cell of S exactly once
    assert len(rest) == 12 and all(len(set(g.micro)) > 1 for g in rest)  # arbitrarily sampled cells


def test_asked_first_generation_is_the_paper_initialisation():
    ctl = make(population_size=16)
    first = ctl.ask()
    assert len(first) == 16 and all(len(set(g.micro)) == 1 for g in first)
    assert ctl.origin_counts["init"] == 16


def test_connection_modes_follow_eq_3():
    p_r, p_den, draws = 0.5, 0.3, 3000
    ctl = make(p_r=p_r, p_den=p_den)
    modes, random_bits = [], []
    for _ in range(draws):
        mode, bits = ctl.connections()
        modes.append(mode)
        if mode == "dense":
            assert bits == (1,) * N_BITS
        elif mode == "none":
            assert bits == (0,) * N_BITS
        else:
            random_bits.extend(bits)
    for mode, p in (("random", p_r), ("dense", p_den), ("none", 1 - p_r - p_den)):
        freq = modes.count(mode) / draws
        assert abs(freq - p) < 5 * math.sqrt(p * (1 - p) / draws), (mode, freq, p)
    assert abs(np.mean(random_bits) - 0.5) < 5 * math.sqrt(0.25 / len(random_bits))  # uniform in the category
    # extremes: all random / all dense / all none
    assert {make(p_r=0.0, p_den=1.0).connections()[0] for _ in range(20)} == {"dense"}
    assert {make(p_r=0.0, p_den=0.0).connections()[0] for _ in range(20)} == {"none"}


# ---- crossover (§4.4) ------------------------------------------------------------------------------------------
def test_crossover_exchanges_one_cell_and_one_connection_row_at_once():
    a, b = _distinct_genomes()
    ctl = make(seed=3)
    seen_i, seen_j = set(), set()
    for _ in range(60):
        c1, c2 = ctl.crossover(a, b)
        for child, x, y in ((c1, a, b), (c2, b, a)):
            SPACE.validate(child)
            from_y = [i for i in range(N_CELLS) if child.micro[i] != x.micro[i]]
            assert len(from_y) == 1 and child.micro[from_y[0]] == y.micro[from_y[0]]  # micro point i
            rows = [s for s in range(N_CELLS) if child.rows[s] != x.rows[s]]
            assert len(rows) == 1 and child.rows[rows[0]] == y.rows[rows[0]]  # macro point j: a whole row
        i = next(i for i in range(N_CELLS) if c1.micro[i] != a.micro[i])
        j = next(s for s in range(N_CELLS) if c1.rows[s] != a.rows[s])
        # the sibling takes the same points
        assert c2.micro[i] == a.micro[i] and c2.rows[j] == a.rows[j]
        seen_i.add(i)
        seen_j.add(j)
    assert seen_i == set(range(N_CELLS)) and seen_j == set(range(N_CELLS))


# ---- mutation (§4.5) -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", MUTATION_KINDS)
def test_each_mutation_kind_gives_valid_genomes(kind):
    ctl = make(seed=1)
    parent, _ = _distinct_genomes()
    children = []
    for _ in range(25):
        child, got = ctl.mutate(parent, kind)
        assert got == kind
        SPACE.validate(child)
        children.append(child)
    if kind == "random":  # one gene changes
        for c in children:
            changed = sum(x != y for x, y in zip(c.micro, parent.micro)) + sum(
                x != y for x, y in zip(c.macro, parent.macro))
            assert changed == 1
    if kind.startswith("rws"):  # M_mac kept, M_mic redrawn
        assert all(c.macro == parent.macro for c in children)
        assert any(c.micro != parent.micro for c in children)
    if kind == "rl":  # the policy generates cells and connections
        assert len({c.micro for c in children}) > 1 and len({c.macro for c in children}) > 1


def test_mutation_kind_mix_follows_p_rl_and_eq_5():
    draws = 4000
    ctl = make(p_rl=0.2, p_mr=0.5, p_mf=0.3)
    kinds = [ctl.mutation_kind() for _ in range(draws)]
    expected = {"rl": 0.2, "random": 0.8 * 0.5, "rws_flops": 0.8 * 0.3, "rws_params": 0.8 * 0.2}
    for kind, p in expected.items():
        freq = kinds.count(kind) / draws
        assert abs(freq - p) < 5 * math.sqrt(p * (1 - p) / draws), (kind, freq, p)


def test_rl_mutation_with_partial_gene_prob_keeps_some_genes():
    ctl = make(rl_gene_prob=0.0)
    parent, _ = _distinct_genomes()
    assert ctl.mutate_rl(parent) == parent
    ctl = make(rl_gene_prob=0.5, seed=2)
    kept = [sum(x == y for x, y in zip(ctl.mutate_rl(parent).micro, parent.micro)) for _ in range(200)]
    assert 0.3 * N_CELLS < np.mean(kept) < 0.7 * N_CELLS


def test_cell_costs_come_from_the_analytic_cost_model():
    mult_adds, params = cell_costs(SPACE)
    assert mult_adds.shape == params.shape == (192,)
    assert np.all(mult_adds > 0) and np.all(params > 0)
    cells = SPACE.cell_choices
    # a 1-block 3x3 conv cell of f channels reading the 32-channel head at 480x480: 9*32*f MACs per pixel
    k = cells.index(next(c for c in cells if c.kind == "conv" and c.channels == 64 and c.kernel == 3
                         and c.blocks == 1 and not c.skip))
    assert mult_adds[k] == 480 * 480 * 9 * 32 * 64 and params[k] == 9 * 32 * 64 + 64
    # more blocks cost more
    k4 = cells.index(next(c for c in cells if c.kind == "conv" and c.channels == 64 and c.kernel == 3
                          and c.blocks == 4 and not c.skip))
    assert mult_adds[k4] > mult_adds[k]


def test_cell_costs_belong_to_the_controller(monkeypatch):
    """Computed once per controller from its own space (no process-wide cache a changed space could hit)."""
    space = FalsrSpace(n_cells=N_CELLS)
    calls = [0]
    decode = space.decode

    def counting(genome):
        calls[0] += 1
        return decode(genome)

    monkeypatch.setattr(space, "decode", counting)
    ctl = make(space=space)
    flops = ctl.rws_weights("mult_adds")
    assert calls[0] == len(space.cell_choices)
    ctl.rws_weights("params")
    assert calls[0] == len(space.cell_choices)  # both metrics from one computation
    twin = make(space=space)
    assert np.array_equal(twin.rws_weights("mult_adds"), flops) and calls[0] == 2 * len(space.cell_choices)


@pytest.mark.parametrize("kind, metric", [("rws_flops", 0), ("rws_params", 1)])
def test_roulette_wheel_favours_cheap_cells(kind, metric):
    ctl = make(p_rl=0.0, p_mr=0.0, p_mf=1.0 if kind == "rws_flops" else 0.0, seed=5)
    assert {ctl.mutation_kind() for _ in range(50)} == {kind}
    log_cost = np.log(cell_costs(SPACE)[metric])
    parent, _ = _distinct_genomes()
    drawn = []
    for _ in range(300):
        child, _ = ctl.mutate(parent)
        assert child.macro == parent.macro
        drawn.extend(SPACE.cell_index(c) for c in child.micro)
    sample = log_cost[drawn]
    uniform_mean, sd = log_cost.mean(), log_cost.std()
    # 1200 draws: the standard error of the mean is sd/35; the RWS mean lies well below the uniform one
    assert sample.mean() < uniform_mean - 10 * sd / math.sqrt(len(drawn))
    cheap = log_cost <= np.median(log_cost)
    assert np.mean(cheap[drawn]) > 0.6
    # and matches the wheel's own expectation
    p = ctl.rws_weights("mult_adds" if kind == "rws_flops" else "params")
    assert abs(sample.mean() - float(p @ log_cost)) < 5 * sd / math.sqrt(len(drawn))


# ---- the policy network (Fig. 2) and its gradient (Eq. 6) ------------------------------------------------------
def test_policy_network_shapes():
    n = 7
    ctl = make(FalsrSpace(n_cells=n), rl_embedding_dim=8, rl_hidden=[32, 16])
    policy = ctl.policy
    assert isinstance(policy, FalsrPolicy)
    micro = torch.randint(0, 192, (5, n), generator=torch.Generator().manual_seed(0))
    cell_probs, o_mac = policy(micro)
    assert cell_probs.shape == (n, 192)  # one 192-way head per cell
    assert torch.allclose(cell_probs.sum(dim=1), torch.ones(n))
    assert o_mac.shape == (5, n * (n + 1) // 2) == (5, 28)  # n(n+1)/2 sigmoids
    assert torch.all((o_mac > 0) & (o_mac < 1))
    # 3 fully connected layers on the concatenated cell embeddings
    assert policy.embedding.shape == (192, 8)
    assert (policy.fc1.in_features, policy.fc1.out_features) == (n * 8, 32)
    assert (policy.fc2.in_features, policy.fc2.out_features) == (32, 16)
    assert (policy.fc3.in_features, policy.fc3.out_features) == (16, 28)
    # O^mac depends on the cells (θ^mac sees M_mic), the heads do not
    other = torch.roll(micro, 1, dims=0)
    assert not torch.allclose(policy(other)[1], o_mac)


def test_policy_gradient_step_raises_the_log_probability_of_the_rewarded_sample():
    ctl = make(seed=4)
    good, bad = _distinct_genomes()
    before_good, before_bad = ctl.policy_log_prob(good), ctl.policy_log_prob(bad)
    ctl.policy_update([(good, 1.0), (bad, 0.0)])
    assert ctl.policy_log_prob(good) > before_good
    assert ctl.policy_log_prob(bad) < before_bad
    # both parts of Eq. (6) moved: the cell heads (θ^mic) and the connection network (θ^mac)
    idx = SPACE.cell_index(good.micro[0])
    assert ctl.policy.cell_logits[0, idx] > 0
    assert ctl.policy.fc3.bias.abs().sum() > 0


def test_policy_gradient_without_baseline_is_eq_6_as_printed():
    ctl = make(seed=4, rl_baseline=False)
    good, _ = _distinct_genomes()
    before = ctl.policy_log_prob(good)
    ctl.policy_update([(good, 2.0)])  # a lone positive reward still pushes its sample up
    assert ctl.policy_log_prob(good) > before
    assert ctl.baseline is None


def test_policy_learns_a_rewarded_cell():
    ctl = make(seed=6, rl_lr=0.1)
    target = SPACE.cell_choices[17]
    elite = FalsrGenome((target,) * N_CELLS, (0,) * N_BITS)  # e.g. a good model the EA found
    for _ in range(50):
        children = [ctl.mutate_rl(_distinct_genomes()[0]) for _ in range(15)]
        ctl.policy_update([(elite, 1.0)] + [(c, 0.0) for c in children])
    hits = np.mean([sum(x == target for x in ctl.mutate_rl(_distinct_genomes()[0]).micro) for _ in range(50)])
    assert hits > 1.0  # uniform sampling gives N_CELLS / 192 ~ 0.02


def test_tell_trains_the_policy_on_the_told_rewards():
    ctl = make(population_size=8)
    run(ctl, 2)
    assert ctl.rl_steps == 2 and ctl.baseline is not None
    only_rl = make(population_size=8, rl_train_on="rl", p_rl=0.0)
    run(only_rl, 3)
    assert only_rl.rl_steps == 0  # no RL-mutated child was told


def test_failed_and_infeasible_results_are_not_learned_from_and_lose_tournaments():
    # constraints as FALSR's (minimum PSNR, maximum Mult-Adds) arrive through the reward
    reward = Reward.from_config([["psnr", "max"], ["mult_adds", "min"]],
                                [["psnr", "min", 20.0], ["mult_adds", "max", 1e30]])
    ctl = make(reward=reward, population_size=3)
    g_ok, g_bad, g_failed = ctl.ask()
    ok = evaluate(SPACE, g_ok, reward)
    low = {**ok.metrics, "psnr": 10.0}  # misses the minimum PSNR: infeasible, but it has a reward
    bad = Result(genome=g_bad, key=ok.key + "x", status="ok", metrics=low, objectives=tuple(reward.vector(low)),
                 violation=reward.violation(low), reward=reward.scalar(low))
    assert bad.violation > 0
    failed = Result(genome=g_failed, key="f", status="failed")
    ctl.tell([ok, bad, failed])
    assert ctl.rl_steps == 1 and ctl.rl_samples == 2  # the failed one is not learned from
    winners = {ctl.population[ctl.tournament()].genome for _ in range(60)}
    assert winners == {g_ok}  # constraint domination: feasible beats infeasible, failed never drawn


# ---- state_dict ------------------------------------------------------------------------------------------------
def _json(space, genomes):
    return [space.to_json(g) for g in genomes]


@pytest.mark.parametrize("generations, told", [(0, 0), (3, 0), (3, 5)])
def test_state_dict_restores_exactly(generations, told):
    ctl = make(population_size=10, seed=11)
    run(ctl, generations)
    if told:  # a generation asked, partly told: pending offspring and told-but-not-survived ones
        genomes = ctl.ask()
        ctl.tell([evaluate(SPACE, g) for g in genomes[:told]])
    state = pickle.loads(pickle.dumps(ctl.state_dict()))
    twin = make(population_size=10, seed=999)  # a different seed: everything must come from the state
    twin.load_state_dict(copy.deepcopy(state))
    for name, value in ctl.policy.state_dict().items():
        assert torch.equal(value, twin.policy.state_dict()[name])
    for _ in range(3):
        a, b = ctl.ask(), twin.ask()
        assert _json(SPACE, a) == _json(SPACE, b)
        ctl.tell([evaluate(SPACE, g) for g in a])
        twin.tell([evaluate(SPACE, g) for g in b])
    assert ctl.origin_counts == twin.origin_counts
    for name, value in ctl.policy.state_dict().items():
        assert torch.equal(value, twin.policy.state_dict()[name])
    assert ctl.rng.random() == twin.rng.random()
    assert torch.equal(ctl.torch_generator.get_state(), twin.torch_generator.get_state())


def test_state_is_independent_of_the_live_controller():
    ctl = make(population_size=8)
    run(ctl, 2)
    state = ctl.state_dict()
    saved = {k: v.clone() for k, v in state["policy_gradient"]["parameters"].items()}
    run(ctl, 2)  # training goes on in place
    assert all(torch.equal(saved[k], state["policy_gradient"]["parameters"][k]) for k in saved)


def test_load_state_with_other_options_is_refused():
    ctl = make(population_size=8)
    run(ctl, 1)
    with pytest.raises(ConfigError, match="p_rl"):
        make(population_size=8, p_rl=0.1).load_state_dict(ctl.state_dict())


# ---- a synthetic search ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_generations_improve_the_hypervolume_of_the_initial_population(seed):
    ctl = make(population_size=16, seed=seed)
    history = run(ctl, 8)
    points = np.array([r.objectives for batch in history for r in batch])
    ref = points.max(axis=0) + 0.05 * (points.max(axis=0) - points.min(axis=0))
    initial = hypervolume([r.objectives for r in history[0]], ref)
    final = hypervolume([m.objectives for m in ctl.population], ref)
    assert final > initial, (initial, final)
    used = {k for k, v in ctl.origin_counts.items() if v}
    assert {"init", "rl", "random", "rws_flops", "rws_params"} <= used  # the whole hybrid took part


# ---- a generic space -------------------------------------------------------------------------------------------
SIMPLE = SimpleSpace(scale=2, channels="y", max_depth=5)
SIMPLE_REWARD = Reward.from_config([["psnr", "max"], ["params", "min"]])


def test_runs_on_the_builtin_simple_space_as_plain_nsga2(caplog):
    with caplog.at_level(logging.WARNING, logger="nasengine.falsr"):
        ctl = FalsrHybridController(SIMPLE, SIMPLE_REWARD, seed=0, population_size=8)
    assert not ctl.falsr and ctl.policy is None
    assert "n_cells, cell_choices, cell_index" in caplog.text and "plain NSGA-II" in caplog.text
    history = run(ctl, 4)
    assert len(history) == 4 and all(len(b) == 8 for b in history)
    assert set(ctl.origin_counts) >= {"init"} and ctl.origin_counts["rl"] == 0
    assert ctl.origin_counts["rws_flops"] == ctl.origin_counts["rws_params"] == 0
    # resumable there too
    twin = FalsrHybridController(SIMPLE, SIMPLE_REWARD, seed=5, population_size=8)
    twin.load_state_dict(pickle.loads(pickle.dumps(ctl.state_dict())))
    assert _json(SIMPLE, ctl.ask()) == _json(SIMPLE, twin.ask())


def test_generic_space_refused_when_asked_to():
    with pytest.raises(ConfigError, match="generic_fallback.*|needs a FALSR space"):
        FalsrHybridController(SIMPLE, SIMPLE_REWARD, generic_fallback=False)
    with pytest.raises(ConfigError, match="cell_choices"):
        FalsrHybridController(SIMPLE, SIMPLE_REWARD, generic_fallback=False)


def test_falsr_state_does_not_load_on_a_generic_space():
    ctl = make(population_size=8)
    run(ctl, 1)
    with pytest.raises(ConfigError):
        FalsrHybridController(SIMPLE, SIMPLE_REWARD, population_size=8).load_state_dict(ctl.state_dict())
