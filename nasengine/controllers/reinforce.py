"""REINFORCE with an autoregressive LSTM policy over any space's vector encoding (Williams 1992; the
controller of ENAS-style searches, here in ask/tell form for the generational and steady loops)."""
from __future__ import annotations

import math
from typing import Any, Sequence

import attrs

from nasengine.controller import Result
from nasengine.controllers._common import GenomeController, check_n, fitness_of
from nasengine.controllers.random_search import IN_FLIGHT_HELP
from nasengine.errors import ConfigError
from nasengine.options import flag, option, optional, positive, real, whole
from nasengine.reward import Reward
from nasengine.space import Genome, SearchSpace

__all__ = ["Reinforce"]

class Reinforce(GenomeController):
    """A policy-gradient controller on any space with ``vector_bounds``: an :class:`LSTMPolicy` samples the
    vector encoding's decisions, :class:`PolicyGradient` learns from the told rewards.

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
    All randomness comes from ``seed``: ``self.rng`` seeds the policy's torch generator.
    """

    registry_name = "reinforce"

    @attrs.frozen(kw_only=True)
    class Options(GenomeController.Options):
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
        try:
            space.vector_bounds()
        except Exception as exc:  # noqa: BLE001 - a space without a usable vector encoding
            raise ConfigError(f"controller 'reinforce' needs a space with vector_bounds; {space.name}: {exc}") \
                from None

        from nasengine.controllers.policy import LSTMPolicy, PolicyGradient, seeded_generator  # torch, lazily

        generator = seeded_generator(int(self.rng.integers(2**63 - 1)))
        self.policy = LSTMPolicy(space, hidden_size=self.hidden_size, num_layers=self.num_layers,
                                 embedding_dim=self.embedding_dim, init_range=self.init_range,
                                 tanh_constant=self.tanh_constant, temperature=self.temperature,
                                 generator=generator)
        self.learner = PolicyGradient(self.policy, lr=self.lr, baseline=self.baseline,
                                      baseline_decay=self.baseline_decay, entropy_weight=self.entropy_weight,
                                      generator=generator)
        self.pending_tokens: list[list[int]] = []  # aligned with self.pending
        self.worst_reward: float | None = None      # lowest finite reward told so far
        self._last: dict[str, float] = {}           # what stats() shows of the last update (not state)

    def options(self) -> dict[str, Any]:
        return {"population_size": self.population_size, "in_flight": self.in_flight,
                "hidden_size": self.hidden_size, "num_layers": self.num_layers, "embedding_dim": self.embedding_dim,
                "init_range": self.init_range, "tanh_constant": self.tanh_constant, "temperature": self.temperature,
                "lr": self.lr, "baseline": self.baseline, "baseline_decay": self.baseline_decay,
                "entropy_weight": self.entropy_weight, "failure_reward": self.failure_reward}

    # ---- sampling ------------------------------------------------------------------------------------------
    def _draw(self, n: int) -> list[tuple[Genome, list[int]]]:
        if n == 0:
            return []
        import torch

        with torch.no_grad():
            tokens, _, _ = self.policy.sample_tokens(n)
        return [(self.policy.genome(t), [int(v) for v in t.tolist()]) for t in tokens]

    def ask(self, n: int | None = None) -> list[Genome]:
        n = check_n(n, self.population_size)
        out = []
        for genome, tokens in self._draw(n):
            out.extend(self._propose([(genome, self.space.genome_key(genome))]))
            self.pending_tokens.append(tokens)
        return out

    def sample(self, n: int) -> list[Genome]:
        """``n`` genomes from the policy, not recorded as asked (advances the policy's generator)."""
        n = check_n(n, 0)
        return [genome for genome, _ in self._draw(n)]

    # ---- learning ------------------------------------------------------------------------------------------
    def _fitness(self, result: Result) -> float:
        return fitness_of(result, self.reward) if result.status == "ok" else -math.inf

    def reward_of(self, result: Result) -> float | None:
        """The reward learned from ``result`` (``None``: not learned from), as the class docstring says."""
        value = self._fitness(result)
        if math.isfinite(value):
            return value
        return self.failure_reward if self.failure_reward is not None else self.worst_reward

    def tell(self, results: Sequence[Result]) -> None:
        told: list[tuple[list[int] | None, Result]] = []
        for result in results:
            key = self.space.genome_key(result.genome)
            tokens = self.pending_tokens[self._pending_keys.index(key)] if key in self._pending_keys else None
            self._members([result])  # drops the pending entry (the first with this key) and its tokens
            told.append((tokens, result))
        finite = [v for v in (self._fitness(r) for _, r in told) if math.isfinite(v)]
        if finite:
            self.worst_reward = min(finite if self.worst_reward is None else [*finite, self.worst_reward])
        batch = [(tokens, self.reward_of(r)) for tokens, r in told if tokens is not None]
        batch = [(tokens, value) for tokens, value in batch if value is not None]
        if batch:
            import torch

            log_p, entropy = self.policy.log_prob_and_entropy(torch.tensor([t for t, _ in batch], dtype=torch.long))
            loss = self.learner.step(log_p, [value for _, value in batch], entropies=entropy)
            self._last = {"loss": loss, "entropy": float(entropy.detach().mean()),
                          "reward": sum(value for _, value in batch) / len(batch)}

    def stats(self) -> dict[str, float]:
        """The last update's ``loss``, mean ``entropy`` and mean ``reward`` learned from, and the ``baseline``."""
        out = dict(self._last)
        if self.learner.baseline is not None:
            out["baseline"] = float(self.learner.baseline)
        return out

    def _drop_pending(self, genome_key: str) -> None:
        if genome_key in self._pending_keys:
            del self.pending_tokens[self._pending_keys.index(genome_key)]
        super()._drop_pending(genome_key)

    # ---- state ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(pending_tokens=[list(t) for t in self.pending_tokens], worst_reward=self.worst_reward,
                     policy_gradient=self.learner.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.pending_tokens = [[int(v) for v in t] for t in state["pending_tokens"]]
        if len(self.pending_tokens) != len(self.pending):
            raise ConfigError(f"controller 'reinforce': the saved state has {len(self.pending)} pending genomes "
                              f"but {len(self.pending_tokens)} token vectors")
        self.worst_reward = None if state["worst_reward"] is None else float(state["worst_reward"])
        self.learner.load_state_dict(state["policy_gradient"])
