"""The policy-gradient machinery (:mod:`nasengine.controllers.policy`), the generic ``reinforce`` controller and
``Controller.sample``; ``reinforce`` end to end through the CLI on the simple space and on FALSR."""
from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
import torch

from nasengine.cli import EXIT_OK, main
from nasengine.controller import Result
from nasengine.controllers import RandomSearch, Reinforce
from nasengine.controllers.policy import LSTMPolicy, PolicyGradient
from nasengine.errors import ConfigError
from nasengine.reward import Reward
from nasengine.spaces import SimpleSpace
from nasengine.store import ExperimentStore

REWARD = Reward.from_config([["psnr", "max"], ["params", "min"]])
# vector_decode ignores the layer slots beyond the depth: a repairing decode (many token vectors, one genome)
SPACE = SimpleSpace(scale=2, channels="y", max_depth=4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def small_policy(seed=0, **kw) -> LSTMPolicy:
    kw.setdefault("hidden_size", 16)
    kw.setdefault("embedding_dim", 8)
    return LSTMPolicy(SPACE, seed=seed, **kw)


def result(genome, psnr, status="ok") -> Result:
    key = SPACE.genome_key(genome)
    if status != "ok":
        return Result(genome=genome, key=key, status=status)
    metrics = {"psnr": float(psnr), "params": 1000.0}
    return Result(genome=genome, key=key, status="ok", metrics=metrics, objectives=tuple(REWARD.vector(metrics)),
                  reward=REWARD.scalar(metrics))


# ---- the LSTM policy ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"num_layers": 2}, {"tanh_constant": 1.5, "temperature": 2.0}])
def test_teacher_forced_log_prob_equals_the_sampling_log_prob(kw):
    policy = small_policy(seed=3, **kw)
    tokens, log_p, entropy = policy.sample_tokens(6)
    assert tokens.shape == (6, policy.length) == (6, len(SPACE.vector_bounds()[0]))
    forced_lp, forced_h = policy.log_prob_and_entropy(tokens)
    assert torch.allclose(forced_lp, log_p, atol=1e-5) and torch.allclose(forced_h, entropy, atol=1e-5)
    assert torch.allclose(policy.log_prob(tokens[2]), log_p[2], atol=1e-5)  # one [L] vector -> a scalar
    assert torch.allclose(policy.log_prob(tokens.numpy()), log_p, atol=1e-5)
    # gradients flow through both
    (log_p.sum() + forced_lp.sum()).backward()
    assert policy.head.weight.grad is not None and policy.start.grad is not None


def test_sample_gives_a_valid_genome_and_its_log_prob():
    policy = small_policy(seed=1)
    genome, log_p, entropy = policy.sample()
    SPACE.validate(genome)
    assert log_p.dim() == 0 and log_p < 0 and entropy > 0
    # scoring the genome itself goes through vector_encode, which zeroes the unused slots
    tokens = policy.tokens(genome)
    assert policy.genome(tokens) == genome
    assert torch.allclose(policy.log_prob(genome), policy.log_prob(tokens))


def test_zero_weights_give_uniform_choice_probabilities():
    policy = small_policy(seed=2, num_layers=2)
    with torch.no_grad():
        for p in policy.parameters():
            p.zero_()
    tokens, log_p, entropy = policy.sample_tokens(5)
    uniform = sum(math.log(n) for n in policy.choices)
    assert torch.allclose(log_p, torch.full((5,), -uniform)) and torch.allclose(entropy, torch.full((5,), uniform))
    lo, hi = SPACE.vector_bounds()
    assert policy.choices == [int(n) for n in hi - lo + 1]


def test_tokens_out_of_range_are_refused():
    from nasengine.errors import ValidationError

    policy = small_policy()
    bad = torch.zeros(policy.length, dtype=torch.long)
    bad[-1] = policy.choices[-1]
    with pytest.raises(ValidationError, match="out of range"):
        policy.log_prob(bad)
    with pytest.raises(ValidationError, match="tokens"):
        policy.log_prob(torch.zeros(policy.length + 1, dtype=torch.long))


# ---- the policy-gradient helper -------------------------------------------------------------------------------
def _favour_first_choice(policy, learner, position: int, choice: int, updates: int):
    for _ in range(updates):
        with torch.no_grad():
            tokens, _, _ = policy.sample_tokens(8, learner.generator)
        rewards = (tokens[:, position] == choice).float()
        log_p, entropy = policy.log_prob_and_entropy(tokens)
        learner.step(log_p, rewards, entropies=entropy)


def _first_decision_probs(policy) -> torch.Tensor:
    with torch.no_grad():
        out, _ = policy.lstm(policy.start.reshape(1, 1, -1))
        return torch.softmax(policy._logits(0, out[:, 0]), dim=-1)[0]


@pytest.mark.parametrize("options", [{}, {"baseline": False}, {"update_baseline_first": True},
                                     {"entropy_weight": 0.01, "entropy_in": "reward"}])
def test_a_reward_that_favours_one_choice_raises_its_probability(options):
    policy = small_policy(seed=5)
    learner = PolicyGradient(policy, lr=0.05, generator=policy.generator, **options)
    before = float(_first_decision_probs(policy)[1])
    _favour_first_choice(policy, learner, position=0, choice=1, updates=30)
    after = float(_first_decision_probs(policy)[1])
    assert after > before + 0.2, (before, after)
    assert learner.steps == 30 and learner.samples == 240


def test_baseline_is_an_ema_of_the_batch_means():
    policy = small_policy()
    after = PolicyGradient(policy, baseline_decay=0.5)
    tokens, _, _ = policy.sample_tokens(2)
    after.step(policy.log_prob(tokens), [1.0, 3.0])
    assert after.baseline == 2.0  # started at the first batch's mean
    after.step(policy.log_prob(tokens), [5.0, 7.0])
    assert after.baseline == 0.5 * 2.0 + 0.5 * 6.0
    tracked = PolicyGradient(small_policy(), baseline_decay=0.5)
    tracked.step(policy.log_prob(tokens).detach().requires_grad_(), [1.0, 3.0], baseline_values=[10.0, 10.0])
    assert tracked.baseline == 10.0


def test_entropy_weight_as_a_regulariser_spreads_the_policy():
    policy = small_policy(seed=7)
    learner = PolicyGradient(policy, lr=0.05, entropy_weight=1.0)
    tokens, _, _ = policy.sample_tokens(4)
    h0 = float(policy.log_prob_and_entropy(tokens)[1].detach().mean())
    for _ in range(10):
        log_p, entropy = policy.log_prob_and_entropy(tokens)
        learner.step(log_p, torch.zeros(4), entropies=entropy)  # no reward signal: only the entropy term
    assert float(policy.log_prob_and_entropy(tokens)[1].detach().mean()) > h0


def test_state_dict_round_trip_gives_the_same_samples_and_updates():
    policy = small_policy(seed=11)
    learner = PolicyGradient(policy, lr=0.01, generator=policy.generator)
    _favour_first_choice(policy, learner, 0, 1, 3)
    state = pickle.loads(pickle.dumps(learner.state_dict()))
    twin_policy = small_policy(seed=99)  # other weights and generator: everything comes from the state
    twin = PolicyGradient(twin_policy, lr=0.01, generator=twin_policy.generator)
    twin.load_state_dict(copy.deepcopy(state))
    assert twin.baseline == learner.baseline and twin.steps == learner.steps
    _favour_first_choice(policy, learner, 0, 1, 3)
    _favour_first_choice(twin_policy, twin, 0, 1, 3)
    for name, value in policy.state_dict().items():
        assert torch.equal(value, twin_policy.state_dict()[name]), name
    assert torch.equal(learner.generator.get_state(), twin.generator.get_state())
    assert learner.baseline == twin.baseline
    # the saved state is a copy, not a view of the live policy
    assert not torch.equal(state["parameters"]["head.weight"], policy.head.weight.detach())


def test_a_state_of_another_shape_is_refused():
    learner = PolicyGradient(small_policy(hidden_size=16))
    with pytest.raises(ConfigError, match="does not fit"):
        PolicyGradient(small_policy(hidden_size=8)).load_state_dict(learner.state_dict())


# ---- the reinforce controller ---------------------------------------------------------------------------------
def make(seed=0, **options) -> Reinforce:
    options.setdefault("population_size", 4)
    options.setdefault("hidden_size", 16)
    options.setdefault("embedding_dim", 8)
    return Reinforce(SPACE, REWARD, seed=seed, **options)


def test_the_update_scores_the_sampled_tokens_not_a_re_encoding():
    ctl = make(seed=1, population_size=6)
    genomes = ctl.ask()
    sampled = torch.tensor(ctl.pending_tokens)
    encoded = torch.stack([ctl.policy.tokens(g) for g in genomes])
    assert not torch.equal(sampled, encoded)  # the space repaired (zeroed) unused layer slots
    twin = copy.deepcopy(ctl)
    results = [result(g, 30.0 + i) for i, g in enumerate(genomes)]
    ctl.tell(results)
    log_p, entropy = twin.policy.log_prob_and_entropy(sampled)
    twin.learner.step(log_p, [r.reward for r in results], entropies=entropy)
    for name, value in ctl.policy.state_dict().items():
        assert torch.equal(value, twin.policy.state_dict()[name]), name
    assert ctl.pending == [] and ctl.pending_tokens == []


def test_repeated_genomes_keep_their_own_sampled_tokens():
    # a tiny space: depth-1 genomes ignore the second slot's width, so one genome has two token vectors
    tiny = SimpleSpace(min_depth=1, max_depth=2, widths=[8, 16], kernels=[3], activations=["relu"],
                       upsamplers=["deconv"])
    ctl = Reinforce(tiny, REWARD, seed=0, population_size=16, hidden_size=8, embedding_dim=4)
    genomes = ctl.ask()
    sampled = [list(t) for t in ctl.pending_tokens]
    keys = [tiny.genome_key(g) for g in genomes]
    assert any(keys[i] == keys[j] and sampled[i] != sampled[j] for i in range(16) for j in range(i))
    twin = copy.deepcopy(ctl)
    metrics = {"psnr": 30.0, "params": 1000.0}
    results = [Result(genome=g, key=k, status="ok", metrics={**metrics, "psnr": 30.0 + i}, reward=30.0 + i)
               for i, (g, k) in enumerate(zip(genomes, keys))]
    ctl.tell(results[:5])  # in two batches: the first told copy of a genome takes the first pending tokens
    ctl.tell(results[5:])
    for part in (slice(0, 5), slice(5, 16)):
        log_p, entropy = twin.policy.log_prob_and_entropy(torch.tensor(sampled[part]))
        twin.learner.step(log_p, [r.reward for r in results[part]], entropies=entropy)
    for name, value in ctl.policy.state_dict().items():
        assert torch.equal(value, twin.policy.state_dict()[name]), name


def test_failures_get_the_lowest_reward_told_so_far_or_failure_reward():
    ctl = make(seed=2, population_size=3)
    a, b, c = ctl.ask()
    ctl.tell([result(a, 0, "failed"), result(b, 0, "infeasible"), result(c, 0, "failed")])
    assert ctl.learner.steps == 0  # nothing to compare a failure with yet: not learned from
    a, b, c = ctl.ask()
    assert ctl.reward_of(result(a, 0, "failed")) is None
    ctl.tell([result(a, 31.0), result(b, 0, "failed"), result(c, 29.0)])
    assert ctl.learner.steps == 1 and ctl.learner.samples == 3 and ctl.worst_reward == 29.0
    assert ctl.reward_of(result(a, 0, "failed")) == 29.0 == ctl.reward_of(result(a, 0, "infeasible"))
    fixed = make(failure_reward=-5.0)
    assert fixed.reward_of(result(a, 0, "failed")) == -5.0
    fixed.tell([result(g, 0, "failed") for g in fixed.ask()])
    assert fixed.learner.steps == 1


def test_results_it_did_not_ask_for_are_not_learned_from():
    ctl = make(seed=3)
    seeded = [SPACE.sample(np.random.default_rng(i)) for i in range(3)]
    ctl.tell([result(g, 30.0) for g in seeded])
    assert ctl.learner.steps == 0 and ctl.n_told == 3


def test_reinforce_learns_a_rewarded_choice():
    ctl = make(seed=4, population_size=8, lr=0.05)
    for _ in range(25):
        genomes = ctl.ask()
        ctl.tell([result(g, 30.0 + (g.upsampler == "deconv")) for g in genomes])
    share = np.mean([g.upsampler == "deconv" for g in ctl.sample(200)])
    assert share > 0.6, share  # uniform: 1 / len(upsamplers)
    assert len(SPACE.upsamplers) >= 2


def test_state_round_trip_through_pickle_gives_the_same_asks_and_updates():
    ctl = make(seed=5)
    for _ in range(2):
        ctl.tell([result(g, 30.0 + 0.1 * g.depth) for g in ctl.ask()])
    asked = ctl.ask(3)  # pending: their sampled tokens travel with the state
    state = pickle.loads(pickle.dumps(ctl.state_dict()))
    twin = make(seed=77)
    twin.load_state_dict(state)
    assert twin.pending_tokens == ctl.pending_tokens
    for c in (ctl, twin):
        c.tell([result(g, 30.0 + i) for i, g in enumerate(asked)])
    for _ in range(2):
        a, b = ctl.ask(), twin.ask()
        assert [SPACE.genome_key(g) for g in a] == [SPACE.genome_key(g) for g in b]
        ctl.tell([result(g, 30.0 + 0.1 * g.depth) for g in a])
        twin.tell([result(g, 30.0 + 0.1 * g.depth) for g in b])
    for name, value in ctl.policy.state_dict().items():
        assert torch.equal(value, twin.policy.state_dict()[name]), name
    assert ctl.learner.baseline == twin.learner.baseline


@pytest.mark.parametrize("options, field", [({"lr": 0}, "lr"), ({"hidden_size": 0}, "hidden_size"),
                                            ({"baseline_decay": 1.0}, "baseline_decay"),
                                            ({"baseline": "yes"}, "baseline"), ({"temperature": -1}, "temperature"),
                                            ({"entropy_weight": "x"}, "entropy_weight"), ({"lstm": 1}, "lstm")])
def test_bad_options_name_the_option(options, field):
    with pytest.raises(ConfigError, match=field):
        make(**options)


# ---- Controller.sample ----------------------------------------------------------------------------------------
def test_default_sample_is_the_space_sampler_with_the_controller_rng():
    ctl = RandomSearch(SPACE, REWARD, seed=8, population_size=3)
    rng = np.random.default_rng(8)
    assert ctl.sample(3) == [SPACE.sample(rng) for _ in range(3)]
    assert ctl.pending == [] and ctl.seen == set()
    assert ctl.rng.bit_generator.state == rng.bit_generator.state  # it advanced the controller's rng
    assert ctl.sample(0) == []
    with pytest.raises(ConfigError, match="sample"):
        ctl.sample(-1)


def test_reinforce_sample_draws_from_the_policy_without_recording():
    ctl = make(seed=9)
    twin = copy.deepcopy(ctl)
    drawn = ctl.sample(4)
    for g in drawn:
        SPACE.validate(g)
    assert ctl.pending == [] and ctl.pending_tokens == [] and ctl.seen == set()
    with torch.no_grad():
        tokens, _, _ = twin.policy.sample_tokens(4)
    assert drawn == [twin.policy.genome(t) for t in tokens]


# ---- through the CLI ------------------------------------------------------------------------------------------
def _run(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


TINY = ["--set", "controller.name=reinforce", "--set", "controller.population_size=2", "--set",
        "evaluator.steps=2", "--set", "evaluator.patch_size=32", "--executor", "inline", "-q"]


def test_reinforce_searches_the_simple_space_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["search", "simple", "--preset", "smoke", "--out", str(out), "--seed", "2",
            "--set", "budget.generations=1", "--set", "controller.hidden_size=8", *TINY]
    assert _run(argv) == EXIT_OK
    assert "controller reinforce, population 2" in capsys.readouterr().out
    assert _run(["resume", str(out), "--set", "budget.generations=2", "-q"]) == EXIT_OK
    store = ExperimentStore.open(out)
    assert store.run.status == "done" and len(store.candidates()) == 4
    store.close()


def test_reinforce_searches_falsr(tmp_path, capsys):
    pytest.importorskip("nasengine_falsr")
    out = tmp_path / "run"
    argv = ["search", "falsr", "--preset", "smoke", "--out", str(out), "--seed", "1",
            "--set", "budget.generations=1", *TINY]
    assert _run(argv) == EXIT_OK
    assert "controller reinforce, population 2" in capsys.readouterr().out
    store = ExperimentStore.open(out)
    records = store.candidates()
    assert store.run.status == "done" and len(records) == 2 and any(r.status == "ok" for r in records)
    store.close()


# ---- the PolicyController protocol on Reinforce ---------------------------------------------------------------
def test_reinforce_scores_draws_and_genomes_through_the_policy_protocol():
    ctl = make(seed=10)
    twin = copy.deepcopy(ctl)
    draws = ctl.sample_with_log_prob(3)
    tokens, log_p, entropy = twin.policy.sample_tokens(3)  # the same generator state: the same draws
    assert [SPACE.genome_key(g) for g, _, _ in draws] == [SPACE.genome_key(twin.policy.genome(t)) for t in tokens]
    assert [lp for _, lp, _ in draws] == pytest.approx(log_p.tolist(), abs=1e-6)
    assert [h for _, _, h in draws] == pytest.approx(entropy.tolist(), abs=1e-6)
    genome = draws[0][0]
    assert ctl.log_prob(genome) == pytest.approx(float(ctl.policy.log_prob(genome)), abs=1e-6)
    assert ctl.argmax is None  # LSTMPolicy has no greedy decoding (tests/test_oneshot.py refuses derive: argmax)
    with pytest.raises(ConfigError, match="greedy"):
        ctl.policy.run(greedy=True)
