"""The ``deconas-lstm`` controller (METHODS.md §1.4, §1.5, the acceptance checks of §1.11 and the directional
test of §1.9): teacher forcing, the logit bound, the baseline, the state round-trip, and generic spaces."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nasengine.controller import Result
from nasengine.reward import Reward
from nasengine.statecodec import decode_state, encode_state
from nasengine.testing import ControllerContract
from nasengine_deconas.controller import DeconasController
from nasengine_deconas.space import DeconasSpace

REWARD = Reward.from_config([["psnr_y_float_nocrop", "max"]])
PSNR = "psnr_y_float_nocrop"


def make(space=None, seed=0, **options):
    return DeconasController(space or DeconasSpace(), REWARD, seed=seed, **options)


def result(space, genome, reward, psnr=None):
    metrics = {} if psnr is None else {PSNR: psnr}
    return Result(genome=genome, key=space.genome_key(genome), status="ok", metrics=metrics, reward=reward)


@pytest.mark.parametrize("fusion", [False, True])
def test_teacher_forced_log_prob_equals_the_sampling_log_prob(fusion):
    space = DeconasSpace(fusion=fusion)
    ctl = make(space, seed=3)
    assert ctl.grouped == "dnb" and ctl.policy.length == (38 if fusion else 30)
    # the paper's sizes: 2 x [128, 256] LSTM, g_emb 64, op_emb 8 x 64, 3 heads of [64, 2] + 2 (+ the fusion ones)
    extra = (4 + 4) * (64 * 2 + 2) + 16 * 64 if fusion else 0
    assert sum(p.numel() for p in ctl.policy.parameters()) == 2 * 128 * 256 + 64 + 8 * 64 + 3 * 130 + extra
    for genome, log_p, entropy in ctl.sample_with_log_prob(4):
        space.validate(genome)
        assert ctl.log_prob(genome) == pytest.approx(log_p, abs=1e-5)
        assert -log_p > 0 and entropy > 0.6 * ctl.policy.length  # every bit's entropy >= 0.605 nats (§1.4)


@settings(max_examples=6, deadline=None)
@given(N=st.integers(1, 3), M=st.integers(1, 4), fusion=st.booleans(), seed=st.integers(0, 2**16))
def test_teacher_forcing_property(N, M, fusion, seed):
    """Any space size: the bit count, the genome round trip and log p by teacher forcing == log p of the draw."""
    space = DeconasSpace(N=N, M=M, channels=4, fusion=fusion)
    ctl = make(space, seed=seed)
    assert ctl.policy.length == 3 * M * (M + 1) // 2 + (M + N if fusion else 0)
    genome, log_p, _ = ctl.sample_with_log_prob(1)[0]
    assert space.from_json(space.to_json(genome)) == genome
    assert ctl.log_prob(genome) == pytest.approx(log_p, abs=1e-5)


def test_all_weights_zero_give_every_bit_one_half():
    for fusion in (False, True):
        ctl = make(DeconasSpace(fusion=fusion))
        with torch.no_grad():
            for p in ctl.policy.parameters():
                p.zero_()
        genome = ctl.sample(1)[0]
        assert np.allclose(ctl.bit_probabilities(genome), 0.5)
        assert ctl.log_prob(genome) == pytest.approx(ctl.policy.length * math.log(0.5))


def test_op_bit_probabilities_are_bounded_by_the_tanh_constant():
    """0.44 * tanh(.) bounds every op logit: p(bit) in [0.293, 0.707] (§1.4); the fusion heads have no tanh."""
    space = DeconasSpace(fusion=True)
    ctl = make(space)
    with torch.no_grad():
        for w in ctl.policy.head_w:  # W_op [3, 64, 2], lff_w, gff_w
            w.mul_(1000.0)
    probs = np.concatenate([ctl.bit_probabilities(g) for g in ctl.sample(8)])
    ops = probs.reshape(8, -1)[:, :30].ravel()
    floor = 1 / (1 + math.exp(2 * 0.44))
    assert floor == pytest.approx(0.2932, abs=1e-4)
    assert ops.min() >= floor - 1e-6 and ops.max() <= 1 - floor + 1e-6
    assert ops.min() < floor + 0.02 and ops.max() > 1 - floor - 0.02  # the scaled heads come near the bound
    fusion = probs.reshape(8, -1)[:, 30:].ravel()
    assert fusion.min() < 0.1 or fusion.max() > 0.9


def test_the_baseline_is_an_ema_of_the_psnr_updated_before_the_advantage():
    space = DeconasSpace()
    ctl = make(space, baseline_metric=PSNR)
    g1 = ctl.ask()[0]
    ctl.tell([result(space, g1, reward=29.0, psnr=30.0)])
    assert ctl.learner.baseline == 30.0  # b := the first PSNR, not the reward
    g2 = ctl.ask()[0]
    with torch.no_grad():
        _, log_p, entropy = ctl.policy.run(ctl.tokens_of(g2))
    ctl.tell([result(space, g2, reward=31.0, psnr=32.0)])
    b = 0.99 * 30.0 + 0.01 * 32.0
    assert ctl.learner.baseline == pytest.approx(b)
    # loss = -log p * (R + 1e-4 H - b), with b already holding the current PSNR (§1.5)
    advantage = 31.0 + 1e-4 * float(entropy[0]) - b
    assert ctl.stats()["loss"] == pytest.approx(-float(log_p[0]) * advantage, rel=1e-5)
    assert ctl.stats()["baseline"] == pytest.approx(b) and ctl.stats()["reward"] == 31.0
    # without baseline_metric the baseline tracks the reward
    other = make(space)
    g = other.ask()[0]
    other.tell([result(space, g, reward=29.0, psnr=30.0)])
    assert other.learner.baseline == pytest.approx(29.0 + 1e-4 * other.stats()["entropy"])


def test_a_result_without_the_baseline_metric_is_an_error_naming_it():
    space = DeconasSpace()
    ctl = make(space, baseline_metric=PSNR)
    g = ctl.ask()[0]
    with pytest.raises(Exception, match="psnr_y_float_nocrop"):
        ctl.tell([result(space, g, reward=29.0)])


def test_state_round_trip_is_exact():
    space = DeconasSpace(N=1, M=3)
    ctl = make(space, seed=1, baseline_metric=PSNR)
    for i in range(3):
        g = ctl.ask()[0]
        ctl.tell([result(space, g, reward=-float(i), psnr=20.0 + i)])
    ctl.ask()  # one pending
    state = decode_state(encode_state(ctl.state_dict()))
    twin = make(space, seed=99, baseline_metric=PSNR)
    twin.load_state_dict(state)
    for a, b in zip(ctl.policy.parameters(), twin.policy.parameters()):
        assert torch.equal(a, b)
    assert twin.learner.baseline == ctl.learner.baseline and twin.stats() == ctl.stats()
    for c in (ctl, twin):  # tell the pending one, then go on
        c.tell([result(space, c.pending[0], reward=1.0, psnr=21.0)])
    assert [space.genome_key(g) for g in ctl.ask(3)] == [space.genome_key(g) for g in twin.ask(3)]
    assert ctl.sample(2) == twin.sample(2) and ctl.argmax() == twin.argmax()
    with pytest.raises(Exception, match="lr"):
        make(space, lr=1e-3, baseline_metric=PSNR).load_state_dict(state)


def _rates(ctl, n=400):
    """Mean p(bit = 1) per op (conv, sep, dil) over ``n`` sampled strings (a fixed generator)."""
    with torch.no_grad():
        _, _, _, p_one = ctl.policy.decisions(n=n, generator=torch.Generator().manual_seed(1))
    return p_one.mean(0).numpy().reshape(-1, 3).mean(0)


def test_directional_cb_penalty_lowers_the_costly_ops():
    """METHODS §1.9: the child frozen, reward = -50*cb (no PSNR), 300 controller steps at the paper's settings.
    The baseline tracks the reward here (baseline_metric none): with no PSNR a PSNR-only baseline is constant, the
    advantage all negative, and 300 steps barely move any bit (measured: rates stay ~0.49). One DNB (N=1): the 30
    bits and both cb's per-bit weights are those of N=4 (cb_code does not depend on N), and it costs 5x less."""
    space = DeconasSpace(N=1)
    rates = {}
    for cb in ("cb_code", "cb_paper"):
        ctl = make(space, seed=0)
        assert np.allclose(_rates(ctl), 0.5, atol=0.01)
        for _ in range(300):
            g = ctl.ask()[0]
            ctl.tell([result(space, g, reward=-50.0 * space.genome_metrics(g)[cb])])
        rates[cb] = _rates(ctl)
    conv, sep, dil = rates["cb_code"]
    # conv and dil bits (weight 36,864 each) fall from 0.5 toward the floor 0.293
    assert conv < 0.35 and dil < 0.35
    # sep bits (weight 640) barely move: well above conv and dil
    assert sep > max(conv, dil) + 0.05
    conv, sep, dil = rates["cb_paper"]
    # with the paper's cb (true params: a sep bit also costs its pointwise 64x64) all three fall
    assert conv < 0.35 and dil < 0.35 and sep < 0.45 and sep < rates["cb_code"][1] - 0.02


def test_generic_space_one_step_per_position():
    from nasengine.spaces.simple import SimpleSpace

    space = SimpleSpace()
    ctl = DeconasController(space, REWARD, seed=0)
    lo, hi = space.vector_bounds()
    assert ctl.grouped == "per_position" and ctl.policy.choices == (np.asarray(hi) - lo + 1).tolist()
    for genome, log_p, _ in ctl.sample_with_log_prob(3):
        space.validate(genome)
    with pytest.raises(Exception, match="grouping"):
        DeconasController(space, REWARD, grouping="dnb")
    # the DeCoNAS space can be run per position too (one LSTM step per bit, a head per bit)
    flat = make(DeconasSpace(N=1, M=2), grouping="per_position")
    assert flat.grouped == "per_position" and len(flat.policy.steps) == 9
    g, log_p, _ = flat.sample_with_log_prob(1)[0]
    assert flat.log_prob(g) == pytest.approx(log_p, abs=1e-5)


class TestDeconasControllerContract(ControllerContract):
    """The engine's controller contract on a small DeCoNAS space (the registered-controller test covers the others)."""

    generations = 2
    state_examples = 2
    uses_vectors = True

    def make_space(self):
        return DeconasSpace(N=1, M=2, channels=4)

    def make_controller(self, space, reward, seed):
        return DeconasController(space, reward, seed=seed, population_size=3)


@pytest.mark.parametrize("preset", ["paper", "smoke"])
def test_the_deconas_method_configures_the_papers_controller(preset):
    """The method's controller section builds this controller with §1.4-1.5's settings, grouped per DNB step."""
    from nasengine.plugins import get_plugins

    cfg = get_plugins().methods.get("deconas").config(preset)
    options = {k: v for k, v in cfg["controller"].items() if k != "name"}
    ctl = DeconasController(DeconasSpace(**cfg["space"]), REWARD, seed=0, **options)
    assert ctl.grouped == "dnb" and ctl.policy.logit_scale == pytest.approx(0.44)
    assert (ctl.population_size, ctl.hidden_size, ctl.num_layers, ctl.lr, ctl.baseline_decay, ctl.entropy_weight,
            ctl.baseline_metric) == (1, 64, 2, 3e-4, 0.99, 1e-4, PSNR)
    assert ctl.learner.update_baseline_first and ctl.learner.entropy_in == "reward"
