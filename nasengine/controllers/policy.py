"""Policy-gradient machinery for controllers that learn a distribution over genomes.

* :class:`PolicyGradient` — REINFORCE (Williams 1992) for any ``torch.nn.Module`` policy: an exponential
  moving-average baseline, an entropy weight, Adam, a seeded ``torch.Generator`` and a ``state_dict`` that
  round-trips exactly (parameters, optimiser state, baseline, generator, counters). The policy computes the
  log-probabilities (and entropies) of its samples; the helper turns rewards into one optimiser step.
* :class:`LSTMPolicy` — an autoregressive LSTM over a space's categorical decisions: position ``i`` of the
  space's vector encoding (``vector_bounds``) is one categorical with ``upper[i] - lower[i] + 1`` choices,
  decided in order, each conditioned on the previous ones through the LSTM (ENAS-style: a learned start
  input, then the embedding of each decision as the next input).

Token vectors are ``vector - lower`` (0-based choices). A space's ``vector_decode`` may repair a vector (e.g.
ignore slots a genome does not use), so ``vector_encode(genome)`` need not give back the tokens that were
sampled: learners keep the sampled tokens and score those (:meth:`LSTMPolicy.log_prob` of a token array).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nasengine.errors import ConfigError, ValidationError
from nasengine.space import Genome, SearchSpace

__all__ = ["PolicyGradient", "LSTMPolicy", "seeded_generator"]


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``."""
    return torch.Generator().manual_seed(int(seed))


class PolicyGradient:
    """One REINFORCE step per :meth:`step` on a batch of sampled decisions.

    The loss is ``-mean_b[(R_b - b) * log p_b] - entropy_weight * mean_b[H_b]`` (``entropy_in="loss"``: the
    entropy is a regulariser with gradient), or with ``entropy_in="reward"`` the entropy is added to each
    reward, without gradient, ``R_b += entropy_weight * H_b``. The baseline ``b`` is the EMA
    ``b <- decay * b + (1 - decay) * x`` of the batch mean ``x`` of what it tracks (the rewards, or the
    ``baseline_values`` given to :meth:`step`), started at the first batch's mean. With
    ``update_baseline_first`` the baseline takes the current batch in before the advantage is formed, else
    after (the advantage then uses the previous baseline; the very first batch its own mean).
    ``baseline=False`` uses ``R`` itself as the advantage; setting :attr:`baseline` to ``None`` restarts the
    EMA at the next batch. Adam (``lr``, ``betas``, ``weight_decay``) steps
    the policy's parameters.

    ``generator`` (default: one seeded with ``seed``) is the policy's source of randomness: pass the same
    object to the policy's sampling, so that :meth:`state_dict` captures it.
    """

    def __init__(self, policy: nn.Module, *, lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999),
                 weight_decay: float = 0.0, baseline: bool = True, baseline_decay: float = 0.9,
                 update_baseline_first: bool = False, entropy_weight: float = 0.0, entropy_in: str = "loss",
                 generator: torch.Generator | None = None, seed: int = 0):
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"policy gradient: lr must be a number > 0, got {lr!r}")
        if not (isinstance(baseline_decay, (int, float)) and 0.0 <= baseline_decay < 1.0):
            raise ConfigError(f"policy gradient: baseline_decay must be in [0, 1), got {baseline_decay!r}")
        if entropy_in not in ("loss", "reward"):
            raise ConfigError(f"policy gradient: entropy_in must be 'loss' or 'reward', got {entropy_in!r}")
        self.policy = policy
        self.generator = seeded_generator(seed) if generator is None else generator
        self.use_baseline = bool(baseline)
        self.baseline_decay = float(baseline_decay)
        self.update_baseline_first = bool(update_baseline_first)
        self.entropy_weight = float(entropy_weight)
        self.entropy_in = entropy_in
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=float(lr), betas=tuple(betas),
                                          weight_decay=float(weight_decay))
        self.baseline: float | None = None
        self.steps = 0    # optimiser steps taken
        self.samples = 0  # samples learned from

    def _track(self, value: float) -> None:
        d = self.baseline_decay
        self.baseline = value if self.baseline is None else d * self.baseline + (1 - d) * value

    def step(self, log_probs: torch.Tensor, rewards: Sequence[float] | torch.Tensor, *,
             entropies: torch.Tensor | None = None, baseline_values: Sequence[float] | None = None) -> float:
        """One optimiser step for a batch: ``log_probs`` ``[B]`` (with gradient) of the sampled decisions,
        their ``rewards`` ``[B]``, optionally their ``entropies`` ``[B]`` and the values the baseline tracks
        (default: the rewards as used, entropy bonus included). Returns the loss."""
        log_probs = log_probs.reshape(-1)
        rewards = torch.as_tensor(rewards, dtype=torch.float32).reshape(-1)
        if rewards.shape != log_probs.shape:
            raise ValueError(f"{rewards.numel()} rewards for {log_probs.numel()} log-probabilities")
        if entropies is not None:
            entropies = entropies.reshape(-1)
            if self.entropy_in == "reward" and self.entropy_weight:
                rewards = rewards + self.entropy_weight * entropies.detach().to(torch.float32)
        tracked = rewards if baseline_values is None else torch.as_tensor(baseline_values, dtype=torch.float32)
        mean = float(tracked.mean())
        if not self.use_baseline:
            advantage = rewards
        elif self.update_baseline_first:
            self._track(mean)
            advantage = rewards - self.baseline
        else:
            advantage = rewards - (mean if self.baseline is None else self.baseline)
        loss = -(advantage * log_probs).mean()
        if entropies is not None and self.entropy_in == "loss" and self.entropy_weight:
            loss = loss - self.entropy_weight * entropies.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.use_baseline and not self.update_baseline_first:
            self._track(mean)
        self.steps += 1
        self.samples += int(log_probs.numel())
        return float(loss.detach())

    # ---- state -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Copies (independent of the live objects) of everything :meth:`step` and sampling depend on."""
        return {
            "parameters": {k: v.detach().clone() for k, v in self.policy.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "baseline": self.baseline,
            "generator": self.generator.get_state().clone(),
            "steps": self.steps,
            "samples": self.samples,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore exactly; a state of a policy of another shape raises :class:`ConfigError`."""
        try:
            self.policy.load_state_dict({k: v.clone() for k, v in state["parameters"].items()})
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ConfigError(f"policy gradient: the saved policy does not fit this one: {exc}") from None
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.generator.set_state(state["generator"].clone())
        self.steps = int(state["steps"])
        self.samples = int(state["samples"])


class LSTMPolicy(nn.Module):
    """An autoregressive policy over the categorical decisions of ``space`` (``vector_bounds``).

    Step ``t`` feeds ``x_t`` (``x_0``: a learned start vector; then the embedding of decision ``t - 1``, one
    embedding row per choice of each position) to a ``num_layers``-layer LSTM (zero initial state) and reads
    position ``t``'s logits from the top hidden state through a linear head (its slice of one
    ``hidden_size -> sum(choices)`` layer). Logits are divided by ``temperature`` and, with
    ``tanh_constant`` C, squashed to ``C * tanh(logits)``. Parameters are drawn from
    ``U(-init_range, init_range)`` with ``generator`` (head biases 0); ``generator`` (default: seeded with
    ``seed``) is also the default source of :meth:`sample`'s randomness.
    """

    def __init__(self, space: SearchSpace, *, hidden_size: int = 64, num_layers: int = 1,
                 embedding_dim: int = 64, init_range: float = 0.1, tanh_constant: float | None = None,
                 temperature: float = 1.0, generator: torch.Generator | None = None, seed: int = 0):
        super().__init__()
        lower, upper = (np.asarray(b, dtype=np.int64).reshape(-1) for b in space.vector_bounds())
        if lower.size == 0 or lower.shape != upper.shape or np.any(upper < lower):
            raise ConfigError(f"LSTM policy: the space {space.name} has no usable vector_bounds "
                              f"(lower {lower.tolist()}, upper {upper.tolist()})")
        if not temperature > 0:
            raise ConfigError(f"LSTM policy: temperature must be > 0, got {temperature!r}")
        if tanh_constant is not None and not tanh_constant > 0:
            raise ConfigError(f"LSTM policy: tanh_constant must be > 0 or None, got {tanh_constant!r}")
        self.space = space
        self.lower = lower
        self.choices = [int(n) for n in upper - lower + 1]
        self.temperature = float(temperature)
        self.tanh_constant = None if tanh_constant is None else float(tanh_constant)
        self.generator = seeded_generator(seed) if generator is None else generator
        offsets = np.concatenate([[0], np.cumsum(self.choices)])
        self.register_buffer("offsets", torch.as_tensor(offsets[:-1], dtype=torch.long), persistent=False)
        self._slices = [(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:])]
        total = int(offsets[-1])
        self.start = nn.Parameter(torch.empty(embedding_dim))
        self.embedding = nn.Embedding(total, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, total)
        with torch.no_grad():
            for p in self.parameters():
                nn.init.uniform_(p, -init_range, init_range, generator=self.generator)
            nn.init.zeros_(self.head.bias)

    @property
    def length(self) -> int:
        """The number of decisions (the space's vector length)."""
        return len(self.choices)

    # ---- tokens <-> genomes --------------------------------------------------------------------------------
    def tokens(self, genome: Genome) -> torch.Tensor:
        """``vector_encode(genome) - lower`` as a ``[L]`` long tensor."""
        return torch.as_tensor(np.asarray(self.space.vector_encode(genome), dtype=np.int64) - self.lower)

    def genome(self, tokens: Any) -> Genome:
        """``vector_decode(lower + tokens)`` (the space may repair the vector)."""
        t = np.asarray(tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens, dtype=np.int64)
        return self.space.vector_decode(self.lower + t.reshape(-1))

    def _as_tokens(self, x: Any) -> torch.Tensor:
        t = x if isinstance(x, (torch.Tensor, np.ndarray)) else self.tokens(x)
        t = torch.as_tensor(t, dtype=torch.long)
        t = t.reshape(1, -1) if t.dim() == 1 else t
        if t.dim() != 2 or t.shape[1] != self.length:
            raise ValidationError(f"must be [batch, {self.length}] tokens, got shape {tuple(t.shape)}",
                                  field="tokens")
        limit = torch.as_tensor(self.choices)
        if torch.any(t < 0) or torch.any(t >= limit):
            raise ValidationError(f"out of range: position i takes 0 .. choices[i] - 1, choices {self.choices}",
                                  field="tokens")
        return t

    # ---- the network -------------------------------------------------------------------------------------------
    def _logits(self, t: int, top: torch.Tensor) -> torch.Tensor:
        a, b = self._slices[t]
        logits = F.linear(top, self.head.weight[a:b], self.head.bias[a:b]) / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def _inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, L, E]``: the start vector, then the embeddings of decisions ``0 .. L-2``."""
        batch = tokens.shape[0]
        start = self.start.expand(batch, 1, -1)
        prev = self.embedding(tokens[:, :-1] + self.offsets[:-1])
        return torch.cat([start, prev], dim=1)

    def log_prob_and_entropy(self, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced ``(log p(tokens), entropy)``, each ``[B]`` (``x``: ``[L]`` or ``[B, L]`` tokens as a
        tensor or numpy array, or a genome, scored through ``vector_encode``). The entropy is the sum of each
        decision's categorical entropy given the decisions before it."""
        tokens = self._as_tokens(x)
        out, _ = self.lstm(self._inputs(tokens))
        log_p = torch.zeros(tokens.shape[0])
        entropy = torch.zeros(tokens.shape[0])
        for t in range(self.length):
            lp = F.log_softmax(self._logits(t, out[:, t]), dim=-1)
            log_p = log_p + lp.gather(1, tokens[:, t: t + 1]).reshape(-1)
            entropy = entropy - (lp.exp() * lp).sum(dim=-1)
        return log_p, entropy

    def log_prob(self, x: Any) -> torch.Tensor:
        """Teacher-forced ``log p`` of tokens (``[L]`` -> scalar, ``[B, L]`` -> ``[B]``) or of a genome."""
        log_p, _ = self.log_prob_and_entropy(x)
        single = not isinstance(x, (torch.Tensor, np.ndarray)) or np.ndim(x) == 1
        return log_p[0] if single else log_p

    def sample_tokens(self, n: int = 1, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` decision sequences drawn step by step: ``(tokens [n, L], log_prob [n], entropy [n])``."""
        g = self.generator if generator is None else generator
        x = self.start.expand(n, 1, -1)
        state = None
        tokens = []
        log_p = torch.zeros(n)
        entropy = torch.zeros(n)
        for t in range(self.length):
            out, state = self.lstm(x, state)
            lp = F.log_softmax(self._logits(t, out[:, 0]), dim=-1)
            choice = torch.multinomial(lp.detach().exp(), 1, generator=g)  # [n, 1]
            tokens.append(choice)
            log_p = log_p + lp.gather(1, choice).reshape(-1)
            entropy = entropy - (lp.exp() * lp).sum(dim=-1)
            x = self.embedding(choice + self.offsets[t])
        return torch.cat(tokens, dim=1), log_p, entropy

    def run(self, tokens: Any = None, n: int = 1, generator: torch.Generator | None = None,
            greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The policy protocol of :class:`~nasengine.controllers.reinforce.PolicyController`: ``(tokens [B, L],
        log_prob [B], entropy [B])`` of ``tokens`` (teacher-forced, :meth:`log_prob_and_entropy`) or of ``n``
        draws (:meth:`sample_tokens`). There is no greedy decoding (``greedy`` raises :class:`ConfigError`)."""
        if greedy:
            raise ConfigError("LSTM policy: no greedy decoding (argmax); sample instead")
        if tokens is None:
            return self.sample_tokens(n, generator)
        tokens = self._as_tokens(tokens)
        log_p, entropy = self.log_prob_and_entropy(tokens)
        return tokens, log_p, entropy

    def sample(self, generator: torch.Generator | None = None) -> tuple[Genome, torch.Tensor, torch.Tensor]:
        """One ``(genome, log_prob, entropy)`` (scalars with gradient, unless under ``torch.no_grad``)."""
        tokens, log_p, entropy = self.sample_tokens(1, generator)
        return self.genome(tokens[0]), log_p[0], entropy[0]
