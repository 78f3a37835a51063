"""HNAS's hierarchical controller (Guo et al.; METHODS.md §2.4–2.5): three LSTM cells that pick a normal cell, an
upsampling cell and the upsampling cell's position, trained by REINFORCE with the engine's
:class:`~nasengine.controllers.policy.PolicyGradient`.

Registered as ``hnas-hierarchical``. The policy network (:class:`HierarchicalPolicy`) is the released
``ArchMaster``'s:

* per cell type (normal, then upsampling; separate weights, zero initial state, a zero first input) an
  ``LSTMCell(100, 100)``, an embedding ``E`` of ``nodes + 1 + n_ops`` rows (rows ``0..nodes`` the node ids, then
  the ops), attention ``W_emb``, ``W_hid`` (``Linear(100, 100)``, no bias) and ``v`` (``Linear(100, 1)``, no
  bias), and an op head ``w_soft`` (``Linear(100, n_ops)``, bias 0 at the start);
* for each intermediate node ``t = 2..nodes+1``: two input choices among nodes ``0..t-1``, each by attention
  ``v · tanh(W_emb E[j] + W_hid h)`` over the node embeddings, then two op choices by the softmax head; the next
  input is the embedding row of the choice (ops after the node rows);
* the position cell ``LSTMCell(200, 100)`` fed once with ``concat(h_N, h_U)`` (the two cells' last hidden states,
  **not detached**: the position's log-prob trains the cell controllers too) and chooses among the ``L``
  positions by attention over a position embedding ``P`` (``Embedding(L, 100)``);
* every weight ``U(-init_range, init_range)`` (0.1), ``w_soft``'s bias 0; no temperature, no tanh squashing
  (the search run's settings, §2.4).

The decisions are the space's vector in the controller's token order (``from_1, from_2, op_1, op_2`` per node,
normal cell, then upsampling cell, then the position: HNAS-COMMON.md); a token is ``vector - lower``.

Learning (§2.5): one update per ``tell``: ``loss = -(log p_N + log p_U + position_weight · log p_P)(R - b)
- entropy_weight · (H_N + H_U + position_weight · H_P)`` (1 and 10: the entropies are a differentiable
regulariser, not a reward bonus, METHODS §2.9 #4-5), ``R`` the result's reward (``hnas-joint``), ``b`` an EMA
(``baseline_decay`` 0.95) of ``R`` (or of ``baseline_metric``) that takes the current value in **before** the
advantage and is **reset at the start of every controller epoch** (§2.9 #7); Adam ``lr`` 3e-4, betas (0.5, 0.999),
weight decay 5e-4, no clipping; the learning rate halved (``lr_gamma``) once the 0-based epoch reaches each of
``lr_milestones`` (100: MultiStepLR, §2.9 #6). The epoch comes from the one-shot loop through
:meth:`HierarchicalController.start_epoch` (engine epochs are numbered from 1: epoch ``e`` is the code's
``e - 1``); under a loop that does not call it, the baseline is never reset and the rate never decays.

``ask(n)`` samples and records; ``sample(n)`` draws without recording (shared-weight training, derivation);
``argmax()`` decodes greedily; ``log_prob(genome)`` scores a genome by teacher forcing (the plain log-probability,
without the position weight); ``stats()`` gives the last update's numbers. Randomness comes from ``seed`` (a
torch generator) and ``state_dict()`` round-trips exactly.

With the ``hnas-joint`` reward in ``cost_mode: repo_accumulating`` the controller also plays the released
``compute_flops`` (METHODS §2.5): at every update it draws one more architecture from the policy (the one the
released code's cost forward samples), runs it through a :class:`~nasengine_hnas.reward.RepoFlopsCounter` it
keeps in its state, and learns from ``reward.joint(metrics, counter total)`` instead of the result's reward.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import attrs
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nasengine.controller import Result
from nasengine.controllers.policy import PolicyGradient
from nasengine.controllers.reinforce import PolicyController
from nasengine.errors import ConfigError
from nasengine.options import flag, optional, option, positive, real, sequence, string, whole
from nasengine.reward import Reward
from nasengine.space import Genome, SearchSpace

__all__ = ["HierarchicalController", "HierarchicalPolicy", "CellPolicy", "hierarchical_layout"]

CELLS = ("normal", "upsampling")


def hierarchical_layout(space: SearchSpace) -> tuple[int, int, tuple[int, int]] | str:
    """``(L, nodes, (normal ops, upsampling ops))`` when ``space`` is hierarchical (attributes ``L``, ``nodes``,
    ``normal_ops``, ``upsampling_ops``, a vector of ``2 · 4 · nodes + 1`` positions in the controller's token
    order, HNAS-COMMON.md), else why not (a phrase)."""
    try:
        L, nodes = int(getattr(space, "L")), int(getattr(space, "nodes"))
        n_ops = (len(getattr(space, "normal_ops")), len(getattr(space, "upsampling_ops")))
    except (AttributeError, TypeError, ValueError):
        return f"the space {space.name} is not hierarchical (no L, nodes, normal_ops and upsampling_ops)"
    try:
        lower, upper = (np.asarray(b, dtype=np.int64).reshape(-1) for b in space.vector_bounds())
    except Exception as exc:  # noqa: BLE001 - a space without a usable vector encoding
        return f"the space {space.name} has no vector_bounds ({exc})"
    want = []
    for n in n_ops:
        for node in range(nodes):
            want += [node + 2, node + 2, n, n]
    want.append(L)
    have = (upper - lower + 1).tolist() if lower.shape == upper.shape else None
    if have != want:
        return (f"the space {space.name}'s vector is not the hierarchical token order: choices per position "
                f"{have}, want {want}")
    return L, nodes, n_ops


def _pick(lp: torch.Tensor, token: torch.Tensor | None, generator: torch.Generator | None, greedy: bool):
    """The chosen index ``[B]`` of a ``[B, n]`` log-softmax: ``token`` (teacher forcing), the argmax or a draw."""
    if token is not None:
        return token
    if greedy:
        return lp.detach().argmax(dim=-1)
    return torch.multinomial(lp.detach().exp(), 1, generator=generator).reshape(-1)


class _Attention(nn.Module):
    """``logits_j = v · tanh(W_emb e_j + W_hid h)`` over the rows ``e_j`` of a table (ENAS/HNAS input choice)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.w_emb = nn.Linear(hidden, hidden, bias=False)
        self.w_hid = nn.Linear(hidden, hidden, bias=False)
        self.v = nn.Linear(hidden, 1, bias=False)

    def forward(self, rows: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.v(torch.tanh(self.w_emb(rows).unsqueeze(0) + self.w_hid(h).unsqueeze(1))).squeeze(-1)


class CellPolicy(nn.Module):
    """One cell type's controller (module docstring): an ``LSTMCell``, the node/op embedding, the input
    attention and the op head."""

    def __init__(self, nodes: int, n_ops: int, hidden: int):
        super().__init__()
        self.nodes, self.n_ops, self.hidden = int(nodes), int(n_ops), int(hidden)
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.embedding = nn.Embedding(self.nodes + 1 + self.n_ops, hidden)
        self.attention = _Attention(hidden)
        self.w_soft = nn.Linear(hidden, self.n_ops)

    @property
    def length(self) -> int:
        return 4 * self.nodes

    def forward(self, tokens: torch.Tensor | None, B: int, generator: torch.Generator | None = None,
                greedy: bool = False):
        """``(picks [B, 4·nodes], log p [B], entropy [B], last hidden state [B, hidden], the probabilities of
        every decision (a list of ``[B, choices]``, detached))``."""
        h = c = x = torch.zeros(B, self.hidden)
        picks, log_p, entropy, probs = [], torch.zeros(B), torch.zeros(B), []
        k = 0
        for node in range(self.nodes):
            for kind in ("input", "input", "op", "op"):
                h, c = self.lstm(x, (h, c))
                if kind == "input":  # among nodes 0 .. node + 1
                    logits = self.attention(self.embedding.weight[: node + 2], h)
                else:
                    logits = self.w_soft(h)
                lp = F.log_softmax(logits, dim=-1)
                a = _pick(lp, None if tokens is None else tokens[:, k], generator, greedy)
                picks.append(a)
                probs.append(lp.detach().exp())
                log_p = log_p + lp.gather(1, a.unsqueeze(1)).squeeze(1)
                entropy = entropy - (lp.exp() * lp).sum(dim=-1)
                x = self.embedding(a if kind == "input" else a + self.nodes + 1)
                k += 1
        return torch.stack(picks, dim=1), log_p, entropy, h, probs


class HierarchicalPolicy(nn.Module):
    """The three-level policy (module docstring): ``cells[0]`` normal, ``cells[1]`` upsampling, then the position
    cell ``position`` (``LSTMCell(2·hidden, hidden)``), its embedding ``P`` and attention."""

    def __init__(self, L: int, nodes: int, n_ops: Sequence[int], *, hidden_size: int = 100, init_range: float = 0.1,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.L, self.nodes, self.hidden = int(L), int(nodes), int(hidden_size)
        self.cells = nn.ModuleList([CellPolicy(nodes, n, self.hidden) for n in n_ops])
        self.position = nn.LSTMCell(2 * self.hidden, self.hidden)
        self.P = nn.Embedding(self.L, self.hidden)
        self.position_attention = _Attention(self.hidden)
        self.length = sum(c.length for c in self.cells) + 1
        self.choices = [n for c in self.cells for node in range(c.nodes)
                        for n in (node + 2, node + 2, c.n_ops, c.n_ops)] + [self.L]  # choices per token
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-init_range, init_range, generator=generator)
            for cell in self.cells:
                cell.w_soft.bias.zero_()  # §2.4: w_soft.bias = 0

    def run(self, tokens: torch.Tensor | None = None, n: int = 1, generator: torch.Generator | None = None,
            greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`parts` with the three log-probabilities and entropies summed (unweighted): the policy protocol
        of :class:`~nasengine.controllers.reinforce.PolicyController`."""
        tokens, log_ps, entropies = self.parts(tokens, n, generator, greedy)
        return tokens, sum(log_ps), sum(entropies)

    def parts(self, tokens: torch.Tensor | None = None, n: int = 1, generator: torch.Generator | None = None,
              greedy: bool = False) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Decide every token in order: ``(tokens [B, length], [log p_N, log p_U, log p_P], [H_N, H_U, H_P])``
        (each ``[B]``). With ``tokens`` the decisions are teacher-forced, else ``n`` sequences are drawn with
        ``generator`` (``greedy``: the most likely choice each time)."""
        tokens, log_ps, entropies, _ = self.decisions(tokens, n, generator, greedy)
        return tokens, log_ps, entropies

    def decisions(self, tokens: torch.Tensor | None = None, n: int = 1, generator: torch.Generator | None = None,
                  greedy: bool = False):
        """:meth:`parts` plus the probabilities of every decision given the ones before it (a list of
        ``length`` tensors ``[B, choices]``, detached; for checks and plots)."""
        B = n if tokens is None else int(tokens.shape[0])
        picks, log_ps, entropies, last, probs = [], [], [], [], []
        k = 0
        for cell in self.cells:
            part = None if tokens is None else tokens[:, k: k + cell.length]
            p, lp, h_ent, h, pr = cell(part, B, generator, greedy)
            probs += pr
            picks.append(p)
            log_ps.append(lp)
            entropies.append(h_ent)
            last.append(h)
            k += cell.length
        zeros = torch.zeros(B, self.hidden)
        h, _ = self.position(torch.cat(last, dim=1), (zeros, zeros))  # not detached (§2.4)
        lp = F.log_softmax(self.position_attention(self.P.weight, h), dim=-1)
        a = _pick(lp, None if tokens is None else tokens[:, k], generator, greedy)
        picks.append(a.unsqueeze(1))
        log_ps.append(lp.gather(1, a.unsqueeze(1)).squeeze(1))
        entropies.append(-(lp.exp() * lp).sum(dim=-1))
        probs.append(lp.detach().exp())
        return torch.cat(picks, dim=1), log_ps, entropies, probs


class HierarchicalController(PolicyController):
    """The ``hnas-hierarchical`` controller (module docstring), on the engine's
    :class:`~nasengine.controllers.reinforce.PolicyController` (ask/tell, sampling, learning, state)."""

    registry_name = "hnas-hierarchical"

    @attrs.frozen(kw_only=True)
    class Options(PolicyController.Options):
        # §2.5: one sampled architecture per controller update
        population_size: int = option(1, whole(1), help="genomes per ask() and per policy update")
        hidden_size: int = option(100, whole(1), help="width of the three LSTM cells and the embeddings (§2.4)")
        init_range: float = option(0.1, real(0.0), help="weights start uniform in [-init_range, init_range]")
        lr: float = option(3e-4, positive, help="Adam learning rate of the policy (§2.5)")
        betas: tuple = option((0.5, 0.999), sequence(real(0.0, 1.0, hi_open=True), length=2),
                              help="Adam betas (§2.5: 0.5, 0.999)")
        weight_decay: float = option(5e-4, real(0.0), help="Adam weight decay (§2.5)")
        lr_milestones: tuple = option((100,), sequence(whole(0)),
                                      help="0-based controller epochs at which the rate is multiplied by lr_gamma "
                                           "(§2.6: MultiStepLR at 100)")
        lr_gamma: float = option(0.5, positive, help="factor of the rate at each milestone")
        baseline_decay: float = option(0.95, real(0.0, 1.0, hi_open=True), help="EMA decay of the baseline (§2.5)")
        baseline_reset: bool = option(True, flag, help="restart the baseline at every controller epoch (§2.9 #7)")
        baseline_metric: str | None = option(None, optional(string()),
                                             help="metric the EMA baseline tracks (none: the reward, as HNAS)")
        entropy_weight: float = option(1.0, real(0.0),
                                       help="weight of the summed entropies as a loss regulariser (§2.5: 1)")
        position_weight: float = option(10.0, real(0.0),
                                        help="factor of the position's log-prob and entropy (§2.5: 10)")
        failure_reward: float | None = option(None, optional(real()),
                                              help="reward of failed results (none: lowest told)")

    def __init__(self, space: SearchSpace, reward: Reward, *, seed: int = 0, **options: Any):
        super().__init__(space, reward, seed=seed, **options)
        layout = hierarchical_layout(space)
        if isinstance(layout, str):
            raise ConfigError(f"controller 'hnas-hierarchical' needs a hierarchical space (normal cell, upsampling "
                              f"cell, position): {layout}")
        self.L, self.nodes, n_ops = layout
        self.lower, _ = self._vector_bounds()
        generator = self._torch_generator()
        self.policy = HierarchicalPolicy(self.L, self.nodes, n_ops, hidden_size=self.hidden_size,
                                         init_range=self.init_range, generator=generator)
        self.learner = PolicyGradient(self.policy, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay,
                                      baseline=True, baseline_decay=self.baseline_decay, update_baseline_first=True,
                                      entropy_weight=self.entropy_weight, entropy_in="loss", generator=generator)
        self.epoch: int | None = None
        # the released compute_flops, played when the reward asks for it (hnas-joint, cost_mode repo_accumulating)
        self.counter = None
        if getattr(reward, "cost_mode", None) == "repo_accumulating":
            from nasengine_hnas.reward import RepoFlopsCounter

            self.counter = RepoFlopsCounter(lr_size=reward.repo_lr_size)

    def options(self) -> dict[str, Any]:
        return {name: (list(v) if isinstance(v, tuple) else v)
                for name, v in ((n, getattr(self, n)) for n in attrs.fields_dict(type(self).Options))}

    # ---- epochs -------------------------------------------------------------------------------------------
    def start_epoch(self, epoch: int) -> None:
        """The one-shot loop starts controller epoch ``epoch`` (1-based): the baseline restarts (``baseline_reset``)
        and the rate is ``lr · lr_gamma^(milestones <= epoch - 1)``."""
        self.epoch = int(epoch)
        if self.baseline_reset:
            self.learner.baseline = None
        self._set_lr()

    def current_lr(self) -> float:
        e = 0 if self.epoch is None else self.epoch - 1
        return self.lr * self.lr_gamma ** sum(1 for m in self.lr_milestones if e >= m)

    def _set_lr(self) -> None:
        for group in self.learner.optimizer.param_groups:
            group["lr"] = self.current_lr()

    # ---- scores -----------------------------------------------------------------------------------------
    def log_prob_parts(self, genome: Genome) -> tuple[float, float, float]:
        """``(log p_N, log p_U, log p_P)`` of ``genome`` by teacher forcing."""
        with torch.no_grad():
            _, parts, _ = self.policy.parts(self.tokens_of(genome))
        return tuple(float(p[0]) for p in parts)  # type: ignore[return-value]

    def log_prob(self, genome: Genome) -> float:
        """``log p(genome)`` (the three parts summed, unweighted) by teacher forcing its ``vector_encode``."""
        return float(sum(self.log_prob_parts(genome)))

    def probabilities(self, genome: Genome) -> list[np.ndarray]:
        """The distribution of every decision given ``genome``'s decisions before it (token order; the last is
        ``p(position)`` given ``genome``'s cells). For checks and plots."""
        with torch.no_grad():
            probs = self.policy.decisions(self.tokens_of(genome))[3]
        return [p[0].numpy().astype(float) for p in probs]

    # ---- learning -----------------------------------------------------------------------------------------
    def _reward_value(self, result: Result) -> float:
        """With the repo-accumulating cost, the reward of the result's metrics and the counter's total (module
        docstring); else the result's reward (then, for a failed result, ``failure_reward`` or the lowest finite
        reward told so far, :meth:`reward_of`)."""
        value = self._fitness(result)
        if math.isfinite(value) and self.counter is not None:
            value = float(self.reward.joint(result.metrics, self.counter.total))
        return value

    def _before_update(self, told: Sequence[tuple[list[int] | None, Result]]) -> None:
        if self.counter is not None and any(t is not None for t, _ in told):
            # the released compute_flops runs a forward that samples an architecture of its own (§2.5)
            (extra, _), = self._draw(1)
            self.counter.run(self.space.decode(extra))

    def update_terms(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``log p_N + log p_U + position_weight · log p_P`` and the same sum of the entropies (§2.5); ``stats()``
        shows the unweighted sum of the three mean entropies."""
        _, log_ps, entropies = self.policy.parts(tokens)
        w = self.position_weight
        log_p = log_ps[0] + log_ps[1] + w * log_ps[2]
        entropy = entropies[0] + entropies[1] + w * entropies[2]
        return log_p, entropy, float(sum(e.detach().mean() for e in entropies))

    def _update_stats(self) -> dict[str, float]:
        """The rate of the update (``lr``) and, with the repo-accumulating cost, the counter's total."""
        out = {"lr": self.current_lr()}
        if self.counter is not None:
            out["repo_cost"] = float(self.counter.total)
        return out

    # ---- state --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(epoch=self.epoch, counter=None if self.counter is None else self.counter.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.epoch = None if state.get("epoch") is None else int(state["epoch"])
        if self.counter is not None and state.get("counter") is not None:
            self.counter.load_state_dict(state["counter"])
