"""REINFORCE controllers (Williams 1992): :class:`PolicyController`, the ask/tell machinery of every controller
that samples genomes from a learned policy and trains it by policy gradient, and :class:`Reinforce`, that machinery
with an autoregressive LSTM policy over any space's vector encoding (the controller of ENAS-style searches, here in
ask/tell form for the generational, steady and one-shot loops)."""
from __future__ import annotations

import math
from typing import Any, Sequence

import attrs
import numpy as np

from nasengine.controller import Result
from nasengine.controllers._common import GenomeController, check_n, fitness_of
from nasengine.controllers.random_search import IN_FLIGHT_HELP
from nasengine.errors import ConfigError, ValidationError
from nasengine.options import flag, option, optional, positive, real, whole
from nasengine.reward import Reward
from nasengine.space import Genome, SearchSpace

__all__ = ["PolicyController", "Reinforce"]


class PolicyController(GenomeController):
    """Base of the policy-gradient controllers: a policy samples token vectors (0-based choices, ``vector -
    lower`` of the space's vector encoding), a :class:`~nasengine.controllers.policy.PolicyGradient` learns from
    the told rewards. A subclass builds, in its ``__init__`` after this one's, ``self.policy``, ``self.learner``
    (whose ``generator`` is the policy's source of randomness) and ``self.lower`` (the vector's lower bounds).

    The policy is any ``torch.nn.Module`` with ``length`` (the number of tokens), optionally ``choices`` (the
    choices of each position, checked by :meth:`tokens_of`), and
    ``run(tokens=None, n=1, generator=None, greedy=False) -> (tokens [B, L], log_prob [B], entropy [B])``: with
    ``tokens`` (``[B, L]`` long) the decisions are teacher-forced, else ``n`` sequences are drawn with
    ``generator`` (``greedy``: the most likely choice each time); ``log_prob`` and ``entropy`` are per-sample
    sums over the decisions, with gradient.

    * ``ask(n)`` samples ``n`` token vectors (default ``population_size``) and decodes them with the space's
      ``vector_decode``. Repeats are not avoided (the samples must follow the policy); the search loop records
      repeats as duplicates carrying their earlier result, which is told and learned from.
    * The sampled tokens of every asked genome are kept until it is told (``pending_tokens``), and the update
      scores those tokens — not ``vector_encode`` of the genome, which differs when ``vector_decode`` repairs
      (e.g. ignores unused slots). Results of genomes this controller did not ask (e.g. seeded by the loop) are
      not learned from.
    * ``tell`` makes one :class:`PolicyGradient` step over the batch. The reward of an ``ok`` result is the
      engine's ``fitness_of`` (``Result.reward``, else the reward's scalar of the metrics). A failed or
      infeasible result, or one without a finite reward, gets a low reward: ``failure_reward`` when set, else
      the lowest finite reward told so far (this batch included); until a finite reward has been told, such
      results are not learned from. The baseline tracks ``baseline_metric`` of each result when that option is
      set (an ``ok`` result without it is an error; a failed one leaves the baseline where it is), else the
      rewards as the learner uses them.
    * ``sample(n)`` / ``sample_with_log_prob(n)`` draw from the policy without recording anything (shared-weight
      training, derivation); they advance the policy's generator. ``argmax()`` decodes greedily;
      ``log_prob(genome)`` scores a genome by teacher forcing its ``vector_encode``.
    * ``stats()`` gives the last update's ``loss``, mean ``entropy``, mean ``reward`` learned from and the
      ``baseline`` after it; ``state_dict()`` round-trips exactly (the learner's state, the pending tokens, the
      worst reward, the last update's numbers).

    Hooks for what differs between policies: :meth:`update_terms` (the log-probabilities and entropies the
    update uses), :meth:`_reward_value` (the reward of an ``ok`` result), :meth:`_before_update` (runs when a
    batch has been matched to its tokens) and :meth:`_update_stats` (more numbers for ``stats()``).
    """

    #: the metric the EMA baseline tracks (``None``: the reward); a subclass may declare it as an option
    baseline_metric: str | None = None
    failure_reward: float | None = None

    def __init__(self, space: SearchSpace, reward: Reward, *, seed: int = 0, **options: Any):
        super().__init__(space, reward, seed=seed, **options)
        self.pending_tokens: list[list[int]] = []  # aligned with self.pending
        self.worst_reward: float | None = None      # lowest finite reward told so far
        self.last: dict[str, float] = {}            # what stats() shows of the last update

    # ---- helpers for a subclass's __init__ ------------------------------------------------------------------
    def _vector_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The space's ``vector_bounds`` as flat int arrays; :class:`ConfigError` (naming the controller) when the
        space has none or they are unusable."""
        name = self.registry_name or type(self).__name__
        try:
            lower, upper = (np.asarray(b, dtype=np.int64).reshape(-1) for b in self.space.vector_bounds())
        except Exception as exc:  # noqa: BLE001 - a space without a usable vector encoding
            raise ConfigError(f"controller {name!r} needs a space with vector_bounds; {self.space.name}: {exc}") \
                from None
        if lower.size == 0 or lower.shape != upper.shape or np.any(upper < lower):
            raise ConfigError(f"controller {name!r}: the space {self.space.name} has no usable vector_bounds "
                              f"(lower {lower.tolist()}, upper {upper.tolist()})")
        return lower, upper

    def _torch_generator(self):
        """A torch generator seeded from ``self.rng`` (all the policy's randomness comes from ``seed``)."""
        from nasengine.controllers.policy import seeded_generator  # torch, lazily

        return seeded_generator(int(self.rng.integers(2**63 - 1)))

    # ---- tokens <-> genomes ------------------------------------------------------------------------------------
    def genome_of(self, tokens: Any) -> Genome:
        """``vector_decode(lower + tokens)``."""
        return self.space.vector_decode(self.lower + np.asarray(tokens, dtype=np.int64).reshape(-1))

    def tokens_of(self, genome: Genome):
        """``vector_encode(genome) - lower`` as a ``[1, L]`` long tensor (checked against the policy's choices)."""
        import torch

        t = np.asarray(self.space.vector_encode(genome), dtype=np.int64).reshape(-1) - self.lower
        choices = getattr(self.policy, "choices", None)
        if t.shape != (self.policy.length,) or np.any(t < 0) or (
                choices is not None and np.any(t >= np.asarray(choices))):
            within = "" if choices is None else f" within {list(choices)}"
            raise ValidationError(f"the space's vector_encode gives {t.tolist()} (minus lower), not "
                                  f"{self.policy.length} choices{within}", field="genome")
        return torch.as_tensor(t).reshape(1, -1)

    # ---- sampling --------------------------------------------------------------------------------------------
    def _draw(self, n: int) -> list[tuple[Genome, list[int]]]:
        if n == 0:
            return []
        import torch

        with torch.no_grad():
            tokens, _, _ = self.policy.run(n=n, generator=self.learner.generator)
        return [(self.genome_of(t.numpy()), [int(v) for v in t.tolist()]) for t in tokens]

    def ask(self, n: int | None = None) -> list[Genome]:
        n = check_n(n, self.population_size)
        out = []
        for genome, tokens in self._draw(n):
            out.extend(self._propose([(genome, self.space.genome_key(genome))]))
            self.pending_tokens.append(tokens)
        return out

    def sample(self, n: int) -> list[Genome]:
        """``n`` genomes from the policy, not recorded as asked (advances the policy's generator)."""
        return [genome for genome, _ in self._draw(check_n(n, 0))]

    def sample_with_log_prob(self, n: int = 1) -> list[tuple[Genome, float, float]]:
        """``n`` draws as ``(genome, log_prob, entropy)`` (METHODS §4), not recorded as asked."""
        import torch

        with torch.no_grad():
            tokens, log_p, entropy = self.policy.run(n=check_n(n, 0), generator=self.learner.generator)
        return [(self.genome_of(t.numpy()), float(lp), float(h)) for t, lp, h in zip(tokens, log_p, entropy)]

    def argmax(self) -> Genome:
        """The greedy decoding: the most likely choice of every decision, each given the ones before."""
        import torch

        with torch.no_grad():
            tokens, _, _ = self.policy.run(n=1, greedy=True)
        return self.genome_of(tokens[0].numpy())

    def log_prob(self, genome: Genome) -> float:
        """``log p(genome)`` by teacher forcing its ``vector_encode``."""
        import torch

        with torch.no_grad():
            _, log_p, _ = self.policy.run(self.tokens_of(genome))
        return float(log_p[0])

    # ---- learning --------------------------------------------------------------------------------------------
    def _fitness(self, result: Result) -> float:
        return fitness_of(result, self.reward) if result.status == "ok" else -math.inf

    def _reward_value(self, result: Result) -> float:
        """The reward of ``result`` before the failure rule (``-inf`` or NaN: none). Hook; default ``_fitness``."""
        return self._fitness(result)

    def reward_of(self, result: Result) -> float | None:
        """The reward learned from ``result`` (``None``: not learned from), as the class docstring says."""
        value = self._reward_value(result)
        if math.isfinite(value):
            return value
        return self.failure_reward if self.failure_reward is not None else self.worst_reward

    def _tracked(self, result: Result, reward: float) -> float:
        """What the baseline takes in for ``result``: its ``baseline_metric`` (without one: the reward; a
        failed result leaves the baseline where it is; an ``ok`` one without the metric is an error)."""
        if self.baseline_metric is None:
            return reward
        value = result.metrics.get(self.baseline_metric) if result.ok else None
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = math.nan
        if math.isfinite(value):
            return value
        if result.ok:
            raise ValidationError(f"controller.baseline_metric: the result of {result.key} has no finite "
                                  f"{self.baseline_metric!r} (metrics: {sorted(result.metrics)})",
                                  field="controller.baseline_metric")
        return self.learner.baseline if self.learner.baseline is not None else reward

    def update_terms(self, tokens):
        """``(log_prob [B], entropy [B], shown)`` of ``tokens`` (``[B, L]``) for the update, with gradient, and
        the mean entropy ``stats()`` shows. Hook; default: the policy's summed terms by teacher forcing."""
        _, log_p, entropy = self.policy.run(tokens)
        return log_p, entropy, float(entropy.detach().mean())

    def _before_update(self, told: Sequence[tuple[list[int] | None, Result]]) -> None:
        """Hook: runs in ``tell`` once the results are matched to their sampled tokens (``None``: not asked) and
        the worst reward is updated, before their rewards are taken."""

    def _update_stats(self) -> dict[str, float]:
        """Hook: more numbers for ``stats()`` after an update."""
        return {}

    def tell(self, results: Sequence[Result]) -> None:
        """One policy update over the results of asked genomes that have a reward (class docstring)."""
        import torch

        told: list[tuple[list[int] | None, Result]] = []
        for result in results:
            key = self.space.genome_key(result.genome)
            tokens = self.pending_tokens[self._pending_keys.index(key)] if key in self._pending_keys else None
            self._members([result])  # drops the pending entry (the first with this key) and its tokens
            told.append((tokens, result))
        finite = [v for v in (self._fitness(r) for _, r in told) if math.isfinite(v)]
        if finite:
            self.worst_reward = min(finite if self.worst_reward is None else [*finite, self.worst_reward])
        self._before_update(told)
        batch = []
        for tokens, result in told:
            value = self.reward_of(result) if tokens is not None else None
            if value is not None:
                batch.append((tokens, value, self._tracked(result, value)))
        if not batch:
            return
        log_p, entropy, shown = self.update_terms(torch.tensor([t for t, _, _ in batch], dtype=torch.long))
        rewards = [v for _, v, _ in batch]
        tracked = None if self.baseline_metric is None else [b for _, _, b in batch]  # None: the rewards as used
        loss = self.learner.step(log_p, rewards, entropies=entropy, baseline_values=tracked)
        self.last = {"loss": loss, "entropy": shown, "reward": float(np.mean(rewards))}
        if self.learner.baseline is not None:
            self.last["baseline"] = float(self.learner.baseline)
        self.last.update(self._update_stats())

    def stats(self) -> dict[str, float]:
        """The last update's ``loss``, mean ``entropy`` and ``reward`` and the ``baseline`` after it (empty
        before the first update)."""
        return dict(self.last)

    def _drop_pending(self, genome_key: str) -> None:
        if genome_key in self._pending_keys:
            del self.pending_tokens[self._pending_keys.index(genome_key)]
        super()._drop_pending(genome_key)

    # ---- state -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(pending_tokens=[list(t) for t in self.pending_tokens], worst_reward=self.worst_reward,
                     last=dict(self.last), policy_gradient=self.learner.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.pending_tokens = [[int(v) for v in t] for t in state["pending_tokens"]]
        if len(self.pending_tokens) != len(self.pending):
            raise ConfigError(f"controller {self.registry_name or type(self).__name__!r}: the saved state has "
                              f"{len(self.pending)} pending genomes but {len(self.pending_tokens)} token vectors")
        self.worst_reward = None if state["worst_reward"] is None else float(state["worst_reward"])
        self.last = {k: float(v) for k, v in state.get("last", {}).items()}  # older states have none
        self.learner.load_state_dict(state["policy_gradient"])


class Reinforce(PolicyController):
    """A policy-gradient controller on any space with ``vector_bounds``: an :class:`LSTMPolicy` samples the
    vector encoding's decisions, :class:`PolicyGradient` learns from the told rewards (the ask/tell machinery of
    :class:`PolicyController`).

    * ``ask(n)`` samples ``n`` token vectors (default ``population_size``) and decodes them with the space's
      ``vector_decode``. Repeats are not avoided (the samples must follow the policy); the search loop
      records repeats as duplicates carrying their earlier result, which is told and learned from.
    * The sampled tokens of every asked genome are kept until it is told, and the update scores those tokens —
      not ``vector_encode`` of the genome, which differs when ``vector_decode`` repairs (e.g. ignores unused
      slots). Results of genomes this controller did not ask (e.g. seeded by the loop) are not learned from.
    * ``tell`` makes one :class:`PolicyGradient` step over the batch. The reward of an ``ok`` result is the
      engine's ``fitness_of`` (``Result.reward``, else the reward's scalar of the metrics). A failed or
      infeasible result, or one without a finite reward, gets a low reward: ``failure_reward`` when set, else
      the lowest finite reward told so far (this batch included); until a finite reward has been told, such
      results are not learned from.
    * ``sample(n)`` draws from the policy without recording anything (for shared-weight training); it
      advances the policy's generator.

    Options: ``population_size`` (8), ``in_flight`` (steady-state, see
    :class:`~nasengine.controller.Controller`), the policy's ``hidden_size`` (64), ``num_layers`` (1),
    ``embedding_dim`` (64), ``init_range`` (0.1), ``tanh_constant`` (none), ``temperature`` (1), and the
    update's ``lr`` (1e-3, Adam), ``baseline`` (true: EMA baseline), ``baseline_decay`` (0.9),
    ``entropy_weight`` (0: the summed decision entropy as a loss regulariser), ``failure_reward`` (none).
    All randomness comes from ``seed``: ``self.rng`` seeds the policy's torch generator. The LSTM policy has no
    greedy decoding, so there is no ``argmax()`` (a one-shot loop's ``derive: argmax`` is refused).
    """

    registry_name = "reinforce"
    argmax = None  # LSTMPolicy has no greedy decoding

    @attrs.frozen(kw_only=True)
    class Options(PolicyController.Options):
        in_flight: int | None = option(None, optional(whole(1)), help=IN_FLIGHT_HELP)
        hidden_size: int = option(64, whole(1), help="LSTM hidden width")
        num_layers: int = option(1, whole(1), help="stacked LSTM layers")
        embedding_dim: int = option(64, whole(1), help="width of the choice embeddings fed back to the LSTM")
        init_range: float = option(0.1, real(0.0), help="weights start uniform in [-init_range, init_range]")
        tanh_constant: float | None = option(None, optional(positive),
                                             help="logits squashed to c*tanh(logits / temperature) (none: raw)")
        temperature: float = option(1.0, positive, help="logits divided by it")
        lr: float = option(1e-3, positive, help="Adam learning rate of the policy")
        baseline: bool = option(True, flag, help="subtract an EMA baseline from the reward")
        baseline_decay: float = option(0.9, real(0.0, 1.0, hi_open=True), help="EMA decay of the baseline")
        entropy_weight: float = option(0.0, real(0.0), help="weight of the summed decision entropy in the loss")
        failure_reward: float | None = option(None, optional(real()),
                                              help="reward of failed/infeasible results (none: lowest told)")

    def __init__(self, space: SearchSpace, reward: Reward, *, seed: int = 0, **options: Any):
        super().__init__(space, reward, seed=seed, **options)
        self.lower, _ = self._vector_bounds()

        from nasengine.controllers.policy import LSTMPolicy, PolicyGradient  # torch, lazily

        generator = self._torch_generator()
        self.policy = LSTMPolicy(space, hidden_size=self.hidden_size, num_layers=self.num_layers,
                                 embedding_dim=self.embedding_dim, init_range=self.init_range,
                                 tanh_constant=self.tanh_constant, temperature=self.temperature,
                                 generator=generator)
        self.learner = PolicyGradient(self.policy, lr=self.lr, baseline=self.baseline,
                                      baseline_decay=self.baseline_decay, entropy_weight=self.entropy_weight,
                                      generator=generator)

    def options(self) -> dict[str, Any]:
        return {"population_size": self.population_size, "in_flight": self.in_flight,
                "hidden_size": self.hidden_size, "num_layers": self.num_layers, "embedding_dim": self.embedding_dim,
                "init_range": self.init_range, "tanh_constant": self.tanh_constant, "temperature": self.temperature,
                "lr": self.lr, "baseline": self.baseline, "baseline_decay": self.baseline_decay,
                "entropy_weight": self.entropy_weight, "failure_reward": self.failure_reward}
