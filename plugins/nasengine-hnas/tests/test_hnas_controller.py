"""The ``hnas-hierarchical`` controller (METHODS.md §2.4-2.5, the acceptance checks of §2.12 and the directional
test of §2.10): sizes, teacher forcing, uniform choices at zero weights, the position's gradient into the cell
controllers, the loss and baseline of §2.5, epochs, the state round trip, refusing other spaces."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nasengine.controller import Result
from nasengine.errors import ConfigError
from nasengine.reward import Reward
from nasengine.statecodec import decode_state, encode_state
from nasengine_hnas.controller import HierarchicalController
from nasengine_hnas.space import HnasSpace

REWARD = Reward.from_config([["psnr_rgb_shave", "max"]])


def make(space=None, seed=0, reward=REWARD, **options):
    return HierarchicalController(space or HnasSpace(L=4, channels=4), reward, seed=seed, **options)


def result(space, genome, reward, **metrics):
    return Result(genome=genome, key=space.genome_key(genome), status="ok", metrics=metrics, reward=reward)


def test_sizes_are_the_released_arch_master():
    """§2.4: per cell an LSTMCell(100, 100), Embedding(4 + 1 + n_ops, 100), W_emb / W_hid 100x100 and v 100x1 (no
    bias), w_soft Linear(100, n_ops); the position LSTMCell(200, 100), Embedding(L, 100) and its attention."""
    ctl = make(HnasSpace())  # L = 12, 6 normal ops, 5 upsampling ops
    lstm, attention = 4 * 100 * 200 + 2 * 4 * 100, 2 * 100 * 100 + 100
    cells = sum(lstm + (5 + n) * 100 + attention + 100 * n + n for n in (6, 5))
    position = 4 * 100 * 300 + 2 * 4 * 100 + 12 * 100 + attention
    assert sum(p.numel() for p in ctl.policy.parameters()) == cells + position
    assert ctl.policy.length == 33 and all(b.abs().max() == 0 for b in (c.w_soft.bias for c in ctl.policy.cells))
    assert max(float(p.detach().abs().max()) for p in ctl.policy.parameters()) <= 0.1


@settings(max_examples=6, deadline=None)
@given(L=st.integers(1, 6), nodes=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_teacher_forced_log_prob_equals_the_sampling_log_prob(L, nodes, seed):
    space = HnasSpace(L=L, nodes=nodes, channels=4)
    ctl = make(space, seed=seed)
    for genome, log_p, entropy in ctl.sample_with_log_prob(3):
        space.validate(genome)
        assert space.from_json(space.to_json(genome)) == genome
        assert ctl.log_prob(genome) == pytest.approx(log_p, abs=1e-4)
        assert entropy > 0


def test_all_zero_parameters_make_every_choice_uniform():
    """§2.12: input choices uniform over node_idx + 2, ops uniform, the position uniform over L."""
    space = HnasSpace(L=5, channels=4)
    ctl = make(space)
    with torch.no_grad():
        for p in ctl.policy.parameters():
            p.zero_()
    genome = ctl.sample(1)[0]
    probs = ctl.probabilities(genome)
    want = []
    for n_ops in (len(space.normal_ops), len(space.upsampling_ops)):
        for node in range(space.nodes):
            want += [node + 2, node + 2, n_ops, n_ops]
    want.append(space.L)
    assert [len(p) for p in probs] == want
    for p in probs:
        np.testing.assert_allclose(p, 1.0 / len(p), atol=1e-7)
    expected = 2 * sum(2 * np.log(n + 2) for n in range(4)) + 8 * np.log(6) + 8 * np.log(5) + np.log(5)
    assert ctl.log_prob(genome) == pytest.approx(-expected, abs=1e-5)


def test_the_position_log_prob_trains_the_cell_controllers():
    """§2.4: concat(h_N, h_U) is not detached, so d log p_P reaches both cell LSTMs."""
    ctl = make()
    g = ctl.sample(1)[0]
    _, parts, _ = ctl.policy.parts(ctl.tokens_of(g))
    parts[2].sum().backward()
    for cell in ctl.policy.cells:
        assert float(cell.lstm.weight_hh.grad.abs().sum()) > 0


def test_loss_baseline_and_optimiser_are_the_released_ones():
    """§2.5: loss = -(lp_N + lp_U + 10 lp_P)(R - b) - (H_N + H_U + 10 H_P), b <- 0.95 b + 0.05 R before the
    advantage (b = R at the first update), Adam 3e-4 betas (0.5, 0.999) wd 5e-4."""
    space = HnasSpace(L=4, channels=4)
    ctl = make(space, seed=2)
    group = ctl.learner.optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (3e-4, (0.5, 0.999), 5e-4)
    baseline = None
    for R in (3.0, 5.0, 4.0):
        g = ctl.ask()[0]
        with torch.no_grad():
            _, lp, h = ctl.policy.parts(ctl.tokens_of(g))
        baseline = R if baseline is None else 0.95 * baseline + 0.05 * R
        want = -(lp[0] + lp[1] + 10 * lp[2]) * (R - baseline) - (h[0] + h[1] + 10 * h[2])
        ctl.tell([result(space, g, R)])
        assert ctl.stats()["loss"] == pytest.approx(float(want[0]), rel=1e-5)
        assert ctl.learner.baseline == pytest.approx(baseline)


def test_epochs_reset_the_baseline_and_halve_the_rate_at_100():
    """§2.6: the baseline restarts each controller epoch; MultiStepLR x0.5 at (0-based) epoch 100."""
    space = HnasSpace(L=3, channels=4)
    ctl = make(space)
    ctl.start_epoch(1)
    g = ctl.ask()[0]
    ctl.tell([result(space, g, 2.0)])
    assert ctl.learner.baseline == 2.0
    ctl.start_epoch(100)
    assert ctl.learner.baseline is None and ctl.learner.optimizer.param_groups[0]["lr"] == 3e-4
    ctl.start_epoch(101)
    assert ctl.learner.optimizer.param_groups[0]["lr"] == 1.5e-4
    kept = make(space, baseline_reset=False)
    kept.tell([result(space, kept.ask()[0], 2.0)])
    kept.start_epoch(2)
    assert kept.learner.baseline == 2.0


def test_state_round_trip_is_exact():
    space = HnasSpace(L=4, channels=4)
    ctl = make(space, seed=5)
    ctl.start_epoch(3)
    for R in (1.0, 2.0):
        ctl.tell([result(space, ctl.ask()[0], R)])
    pending = ctl.ask(1)
    state = decode_state(encode_state(ctl.state_dict()))
    twin = make(space, seed=99)
    twin.load_state_dict(state)
    assert twin.epoch == 3 and twin.pending == pending
    for a in (ctl, twin):
        a.tell([result(space, pending[0], 1.5)])
    assert twin.stats() == ctl.stats()
    assert [space.genome_key(g) for g in twin.sample(3)] == [space.genome_key(g) for g in ctl.sample(3)]
    assert space.genome_key(twin.argmax()) == space.genome_key(ctl.argmax())
    with pytest.raises(ConfigError, match="hidden_size"):
        make(space, hidden_size=8).load_state_dict(state)


def test_refuses_a_space_that_is_not_hierarchical():
    from nasengine.plugins import get_plugins

    space = get_plugins().spaces.get("simple")()
    with pytest.raises(ConfigError) as info:
        make(space)
    assert "hierarchical" in str(info.value) and "\n" not in str(info.value)


def test_directional_cost_only_reward_favours_late_upsampling_and_cheap_ops():
    """§2.10's directional test: lambda = 0 and cost_mode sampled with true Mult-Adds (the supernet untouched: the
    reward does not read the PSNR): over 200 updates the expected upsampling position rises (fewer HR cells) and
    skip_connect and the interpolations (free) gain probability."""
    from nasengine.cost import analytic_cost
    from nasengine_hnas.reward import hnas_joint_reward

    space = HnasSpace(L=4, nodes=2, channels=4)
    # true Mult-Adds at LR 48x48 in units of 2e6 (a spread of ~3 between sampled children)
    reward = hnas_joint_reward(lam=0.0, cost_metric="mult_adds", cost_scale=5e-7, cost_round=None)
    ctl = make(space, seed=0, reward=reward)
    cheap = ({space.normal_ops.index("skip_connect")},
             {space.upsampling_ops.index(o) for o in ("bilinear", "nearest", "area")})
    probe = ctl.sample(8)
    per_cell = 4 * space.nodes

    def measure():
        position, share = [], []
        for g in probe:
            probs = ctl.probabilities(g)
            position.append(float(np.dot(probs[-1], np.arange(space.L))))
            for c in range(2):
                for i in range(space.nodes):
                    for k in (2, 3):
                        share.append(sum(probs[c * per_cell + 4 * i + k][j] for j in cheap[c]))
        return np.mean(position), np.mean(share)

    before = measure()
    for _ in range(200):
        g = ctl.ask()[0]
        key = space.genome_key(g)
        metrics = {"psnr_rgb_shave": 30.0, "mult_adds": float(analytic_cost(space.decode(g), (48, 48)).mult_adds)}
        ctl.tell([Result(genome=g, key=key, status="ok", metrics=metrics, reward=reward.scalar(metrics))])
    after = measure()
    assert after[0] > before[0] + 0.5, (before, after)  # seed 0: 1.49 -> 2.57
    assert after[1] > before[1] + 0.03, (before, after)  # seed 0: 0.384 -> 0.438
