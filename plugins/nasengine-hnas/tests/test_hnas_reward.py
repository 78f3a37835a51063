"""The ``hnas-joint`` reward (METHODS.md §2.5): the formula and its units, option errors, and the released
``compute_flops``'s accumulating cost (``cost_mode: repo_accumulating``): a term that does not follow the sampled
architecture."""
from __future__ import annotations

import numpy as np
import pytest

from nasengine.controller import Result
from nasengine.cost import analytic_cost
from nasengine.errors import ConfigError
from nasengine_hnas.controller import HierarchicalController
from nasengine_hnas.reward import REPO_UNIT, RepoFlopsCounter, hnas_joint_reward
from nasengine_hnas.space import HnasSpace


def test_joint_reward_formula_and_repo_units():
    """R = lam * PSNR - (1 - lam) * round(Cost, 3), Cost = 5e-10 x the conv2d_48px_x10 figure at LR 480x480 = 0.5 x
    the paper's "FLOPs" (HNAS-A: 30.6306 G, §2.8 -> 15.315)."""
    r = hnas_joint_reward(lam=0.2)
    metrics = {"psnr_rgb_shave": 30.0, "mult_adds_conv2d_48px_x10": 30.6306e9}
    assert r.cost_of(metrics) == pytest.approx(15.3153)
    assert r.scalar(metrics) == pytest.approx(0.2 * 30.0 - 0.8 * 15.315)
    assert [o.metric for o in r.objectives] == ["psnr_rgb_shave", "mult_adds_conv2d_48px_x10"]
    assert hnas_joint_reward(lam=1.0).scalar({"psnr_rgb_shave": 31.0}) == 31.0  # no cost needed at lam = 1
    with pytest.raises(ConfigError, match="mult_adds_conv2d_48px_x10"):
        r.scalar({"psnr_rgb_shave": 30.0})
    with pytest.raises(ConfigError, match="psnr_rgb_shave"):
        r.scalar({"mult_adds_conv2d_48px_x10": 1e9})
    with pytest.raises(ConfigError, match="reward.lam"):
        hnas_joint_reward(lam=1.5)
    with pytest.raises(ConfigError, match="reward.cost_mode"):
        hnas_joint_reward(cost_mode="accumulating")


def test_the_sampled_cost_is_the_released_compute_flops_of_that_architecture():
    """For one architecture run once, the counter (the released compute_flops at 48x48 x 0.5e-8) equals the sampled
    mode's cost from the conv2d_48px_x10 figure at 480x480 — except that two identical edges of a node share one
    supernet module, which the released count sees once (§2.3) and the derived network's figure twice."""
    space = HnasSpace(L=4, channels=8)
    rng = np.random.default_rng(1)
    seen = set()
    while seen != {True, False}:
        genome = space.sample(rng)
        graph = space.decode(genome)
        edges = [tuple(e) for e in space.to_json(genome)["upsampling"]] + \
            [tuple(e) for e in space.to_json(genome)["normal"]]
        duplicated = len(set(edges)) < len(edges)
        if duplicated in seen:
            continue
        seen.add(duplicated)
        figure = analytic_cost(graph, (480, 480), also=("conv2d_48px_x10",)).figures["conv2d_48px_x10"]
        sampled = hnas_joint_reward().cost_of({"mult_adds_conv2d_48px_x10": figure})
        counter = RepoFlopsCounter()
        if duplicated:
            assert counter.run(graph) < sampled
        else:
            # rel 1e-5: RCAB's channel-attention 1x1 convs run on the pooled 1x1 vector, the same count at 48x48 and
            # at 480x480, so "48x48 x 1e-8" and "480x480 / 1e10" differ by those few Mult-Adds
            assert counter.run(graph) == pytest.approx(sampled, rel=1e-5)
            assert counter.run(graph) == pytest.approx(sampled, rel=1e-5)  # running it again changes nothing


def test_repo_accumulating_cost_does_not_follow_the_sampled_architecture():
    """METHODS §2.5's finding, on a faithful compute_flops: run for a second architecture, the total is >= the
    first's and still holds modules only the first one used; over a search it grows towards the union of
    everything ever run, far above any one architecture's cost."""
    space = HnasSpace(L=4, channels=8)
    rng = np.random.default_rng(0)
    a, b = (space.decode(space.sample(rng)) for _ in range(2))
    counter = RepoFlopsCounter()
    first = counter.run(a)
    second = counter.run(b)
    only_a = set(RepoFlopsCounter.module_costs(a)) - set(RepoFlopsCounter.module_costs(b))
    assert only_a and only_a <= set(counter.modules)
    assert second >= first and second > REPO_UNIT * sum(RepoFlopsCounter.module_costs(b).values())
    for _ in range(20):
        total = counter.run(space.decode(space.sample(rng)))
    single = max(REPO_UNIT * sum(RepoFlopsCounter.module_costs(space.decode(space.sample(rng))).values())
                 for _ in range(5))
    assert total > 2 * single


def test_controller_learns_from_the_accumulated_cost_in_repo_mode():
    """With cost_mode repo_accumulating the controller draws the compute_flops architecture itself, keeps the
    counter in its state, and learns from lam * PSNR - (1 - lam) * the accumulated total."""
    space = HnasSpace(L=3, channels=4)
    reward = hnas_joint_reward(lam=0.5, cost_mode="repo_accumulating")
    ctl = HierarchicalController(space, reward, seed=0)
    totals = []
    for _ in range(3):
        g = ctl.ask()[0]
        metrics = {"psnr_rgb_shave": 30.0, "mult_adds_conv2d_48px_x10": 1e9}
        ctl.tell([Result(genome=g, key=space.genome_key(g), status="ok", metrics=metrics,
                         reward=reward.scalar(metrics))])
        totals.append(ctl.stats()["repo_cost"])
        assert ctl.stats()["reward"] == pytest.approx(0.5 * 30.0 - 0.5 * round(totals[-1], 3))
    assert totals == sorted(totals) and totals[0] > 0
    twin = HierarchicalController(space, reward, seed=1)
    twin.load_state_dict(ctl.state_dict())
    assert twin.counter.modules == ctl.counter.modules
