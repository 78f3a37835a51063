"""DeCoNAS's controller (Ahn & Cho; METHODS.md §1.4–1.5): an LSTM policy over the dense space's bits,
trained by REINFORCE with the engine's :class:`~nasengine.controllers.policy.PolicyGradient`.

Registered as ``deconas-lstm``. The policy network (:class:`DeconasPolicy`) is the released sampler's:

* a 2-layer stacked LSTM, hidden 64, **no bias**: the gates ``(i, f, o, g)`` of layer ``l`` come from one
  matrix ``W_l : [2·64, 4·64]`` applied to ``[x, h_l]``; the initial ``c``, ``h`` are 0;
* a learned start input ``g_emb : [1, 64]``; an op embedding ``op_emb`` of ``2^K = 8`` rows;
* one LSTM step per (node ``m``, input ``j``) pair (``M(M+1)/2`` steps), and at each step ``K`` binary
  decisions (conv, sep, dil) from the **same** top hidden state through the heads ``W_op[k] : [64, 2]`` +
  ``b_op[k]``, **shared across steps**; logits squashed to ``(tanh_constant / op_tanh_reduce)·tanh(·)``
  (``1.10 / 2.5 = 0.44``: every bit's probability lies in ``[0.293, 0.707]``); the next input is
  ``op_emb[4·a_conv + 2·a_sep + a_dil]``;
* with the space's fusion search, one more step gives the ``M`` local-fusion bits (heads ``lff_w[i]``, with a
  bias, no tanh), whose next input is ``lff_emb[int(bits)]`` (first bit most significant; the released code
  indexes ``op_emb``, out of range for ``M = 4`` — §1.4's ``[E]`` fix), and one more the ``N`` global-fusion
  bits (``gff_w[i]``);
* every weight drawn from ``U(-init_range, init_range)`` (0.1), the heads' biases 0 (the code; the paper says
  variance scaling 0.02, §1.8 #9).

Parameter names: ``g_emb``; ``w_lstm.l`` (``W_l``); ``head_w.0`` / ``head_b.0`` (``W_op`` ``[K, 64, 2]`` /
``b_op``), ``head_w.1`` and ``.2`` (``lff_w``, ``gff_w``); ``emb.0`` (``op_emb``), ``emb.1`` (``lff_emb``).

Learning (§1.5): the reward of a told result is ``Result.reward`` (the method's reward, DeCoNAS's ``deconas-cb``:
PSNR − α·cb) plus ``entropy_weight`` (1e-4) times the sample's summed decision entropy, without gradient; the
baseline is an EMA (``baseline_decay`` 0.99) of ``baseline_metric`` only (DeCoNAS: ``psnr_y_float_nocrop``, the
reward PSNR; ``None``: the reward itself), started at its first value and updated **before** the advantage is
formed; the loss ``-Σ log p(a) · (R - b)`` takes one Adam step (``lr`` 3e-4, TF's default betas and epsilon, no
clipping) per ``tell``. A batch of ``population_size`` > 1 results is averaged (the paper: one child per update).

**Other spaces** (``grouping``): on a space that declares the DeCoNAS layout (attributes ``N``, ``M``, ``K``,
``fusion`` and a vector of ``K·M(M+1)/2 (+ M + N)`` bits) the decisions are grouped as above (``"dnb"``). On any
other space with a vector encoding (``"per_position"``, what ``"auto"`` picks there) every position ``i`` of
``vector_bounds`` is one LSTM step with one categorical of ``upper[i] - lower[i] + 1`` choices, read through a
head of its own (no sharing across positions), squashed like the op heads, and the next input is that
position's embedding row of the choice (one table, a block of rows per position). The same LSTM, start input,
REINFORCE and baseline serve both.

``ask(n)`` samples and records the sampled decisions until told (a space's ``vector_decode`` may repair a
vector; the update scores the sampled decisions); ``sample(n)`` draws without recording (shared-weight
training, derivation); ``argmax()`` decodes greedily (the most likely choice of every decision, in order);
``log_prob(genome)`` scores a genome by teacher forcing; ``stats()`` gives the last update's numbers for a
progress bar. All randomness comes from ``seed`` (a torch generator seeded from ``self.rng``), and
``state_dict()`` round-trips exactly (weights, Adam state, baseline, generator, pending decisions).
"""
from __future__ import annotations

from typing import Any, Sequence

import attrs
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nasengine.controllers.policy import PolicyGradient
from nasengine.controllers.reinforce import PolicyController
from nasengine.errors import ConfigError
from nasengine.options import choice, optional, option, positive, real, string, whole
from nasengine.reward import Reward
from nasengine.space import Genome, SearchSpace

__all__ = ["DeconasController", "DeconasPolicy", "Step", "dnb_steps", "per_position_steps"]

GROUPINGS = ("auto", "dnb", "per_position")


@attrs.frozen
class Step:
    """One LSTM step of the policy: it decides the vector ``positions`` (consecutive), position ``p`` through
    head ``p`` of the head bank ``bank`` (a bank's heads all have the same number of choices and serve every
    step that names it), tanh-squashed or not, and the next input is row ``offset + (the choices as a
    mixed-radix number, first position most significant)`` of the embedding ``table`` (``None``: nothing
    follows)."""

    positions: tuple[int, ...]
    bank: int
    squash: bool
    table: int | None
    offset: int = 0


#: a layout: the steps, the head banks as (heads, choices per head), the embedding tables' row counts
Layout = tuple[list[Step], list[tuple[int, int]], list[int]]


def dnb_steps(N: int, M: int, K: int, fusion: bool) -> Layout:
    """DeCoNAS's decision layout (COMMON §9 vector order). Bank 0 is ``W_op`` (``K`` heads of 2, one per op,
    shared by the ``M(M+1)/2`` (node, input) steps), then ``lff_w`` (``M``) and ``gff_w`` (``N``); table 0 is
    ``op_emb`` (``2^K`` rows), table 1 ``lff_emb`` (``2^M`` rows)."""
    pairs = M * (M + 1) // 2
    steps = [Step(tuple(range(t * K, (t + 1) * K)), 0, True, 0) for t in range(pairs)]
    banks, tables = [(K, 2)], [2 ** K]
    if fusion:
        base = pairs * K
        steps.append(Step(tuple(range(base, base + M)), 1, False, 1))  # no tanh on the fusion heads [C]
        steps.append(Step(tuple(range(base + M, base + M + N)), 2, False, None))
        banks += [(M, 2), (N, 2)]
        tables.append(2 ** M)
    return steps, banks, tables


def per_position_steps(choices: Sequence[int]) -> Layout:
    """The generic layout: one step and one head (a bank of its own) per vector position; one table,
    ``choices[i]`` rows per position."""
    offsets = np.concatenate([[0], np.cumsum(choices)]).astype(int)
    steps = [Step((i,), i, True, 0, int(offsets[i])) for i in range(len(choices))]
    return steps, [(1, int(c)) for c in choices], [int(offsets[-1])]


class DeconasPolicy(nn.Module):
    """The policy network over ``steps`` (see the module docstring): ``hidden_size`` wide, ``num_layers``
    bias-free LSTM layers, head banks ``head_w[b] : [heads, hidden, choices]`` + ``head_b[b]``, embedding
    tables ``emb[t] : [rows, hidden]``; squashed heads give ``logit_scale · tanh(h W + b)`` (``None``: raw).
    Parameters ``U(-init_range, init_range)`` drawn with ``generator``, the head biases 0."""

    def __init__(self, steps: Sequence[Step], banks: Sequence[tuple[int, int]], table_sizes: Sequence[int], *,
                 hidden_size: int = 64, num_layers: int = 2, logit_scale: float | None = 1.10 / 2.5,
                 init_range: float = 0.1, generator: torch.Generator | None = None):
        super().__init__()
        self.steps = list(steps)
        self.length = sum(len(s.positions) for s in self.steps)
        self.choices = [0] * self.length
        for s in self.steps:
            heads, n = banks[s.bank]
            if len(s.positions) != heads or list(s.positions) != list(range(s.positions[0], s.positions[-1] + 1)):
                raise ConfigError(f"policy step {s}: needs {heads} consecutive positions for bank {s.bank}")
            for p in s.positions:
                self.choices[p] = int(n)
        self.hidden_size = int(hidden_size)
        self.logit_scale = None if logit_scale is None else float(logit_scale)
        H = self.hidden_size
        self.g_emb = nn.Parameter(torch.empty(1, H))
        self.w_lstm = nn.ParameterList([nn.Parameter(torch.empty(2 * H, 4 * H)) for _ in range(num_layers)])
        self.head_w = nn.ParameterList([nn.Parameter(torch.empty(k, H, n)) for k, n in banks])
        self.head_b = nn.ParameterList([nn.Parameter(torch.zeros(k, n)) for k, n in banks])
        self.emb = nn.ParameterList([nn.Parameter(torch.empty(rows, H)) for rows in table_sizes])
        # the mixed-radix weights of each step's choices (first position most significant)
        self._radix = [torch.tensor([banks[s.bank][1] ** (len(s.positions) - 1 - i) for i in range(len(s.positions))])
                       for s in self.steps]
        with torch.no_grad():
            for name, p in self.named_parameters():
                if not name.startswith("head_b"):  # softmax biases start at 0 [C]
                    p.uniform_(-init_range, init_range, generator=generator)

    def _cell(self, x: torch.Tensor, state: list[tuple[torch.Tensor, torch.Tensor]]):
        """One step of the stacked bias-free LSTM (gate order i, f, o, g as the released ``lstm``)."""
        new = []
        for w, (c, h) in zip(self.w_lstm, state):
            i, f, o, g = torch.cat([x, h], dim=1).matmul(w).chunk(4, dim=1)
            c = torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(f) * c
            h = torch.sigmoid(o) * torch.tanh(c)
            new.append((c, h))
            x = h
        return x, new

    def run(self, tokens: torch.Tensor | None = None, n: int = 1, generator: torch.Generator | None = None,
            greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decide every step in order: ``(tokens [B, L], log_prob [B], entropy [B])``. With ``tokens`` (``[B, L]``
        0-based choices) the decisions are teacher-forced, else ``n`` sequences are drawn with ``generator``
        (or, ``greedy``, the most likely choice each time). The entropy sums each decision's entropy."""
        tokens, log_p, entropy, _ = self.decisions(tokens, n, generator, greedy)
        return tokens, log_p.sum(dim=1), entropy

    def decisions(self, tokens: torch.Tensor | None = None, n: int = 1, generator: torch.Generator | None = None,
                  greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`run` per decision: ``(tokens [B, L], log p of each decision [B, L], entropy [B],
        p(choice 1) of each decision [B, L])``."""
        B = n if tokens is None else tokens.shape[0]
        zeros = torch.zeros(B, self.hidden_size)
        state = [(zeros, zeros) for _ in self.w_lstm]
        x = self.g_emb.expand(B, -1)
        picks, log_p, p_one = [], [], []
        entropy = torch.zeros(B)
        for step, radix in zip(self.steps, self._radix):
            top, state = self._cell(x, state)
            logits = torch.einsum("bh,khn->bkn", top, self.head_w[step.bank]) + self.head_b[step.bank]
            if step.squash and self.logit_scale is not None:
                logits = self.logit_scale * torch.tanh(logits)
            lp = F.log_softmax(logits, dim=-1)  # [B, heads, choices]
            if tokens is not None:
                pick = tokens[:, step.positions[0]: step.positions[-1] + 1]
            elif greedy:
                pick = lp.detach().argmax(dim=-1)
            else:
                flat = lp.detach().exp().reshape(-1, lp.shape[-1])
                pick = torch.multinomial(flat, 1, generator=generator).reshape(B, -1)
            picks.append(pick)
            log_p.append(lp.gather(2, pick.unsqueeze(2)).squeeze(2))
            p_one.append(lp[..., 1].exp() if lp.shape[-1] > 1 else torch.zeros(pick.shape))
            entropy = entropy - (lp.exp() * lp).sum(dim=(1, 2))
            if step.table is not None:
                x = self.emb[step.table][(pick * radix).sum(dim=1) + step.offset]
        return torch.cat(picks, dim=1), torch.cat(log_p, dim=1), entropy, torch.cat(p_one, dim=1)


class DeconasController(PolicyController):
    """The ``deconas-lstm`` controller (module docstring): DeCoNAS's LSTM policy and REINFORCE update, on the
    engine's :class:`~nasengine.controllers.reinforce.PolicyController` (ask/tell, sampling, learning, state)."""

    registry_name = "deconas-lstm"

    @attrs.frozen(kw_only=True)
    class Options(PolicyController.Options):
        # §1.4: one sampled architecture per controller update
        population_size: int = option(1, whole(1), help="genomes per ask() and per policy update")
        hidden_size: int = option(64, whole(1), help="LSTM hidden width (= the embeddings' width)")
        num_layers: int = option(2, whole(1), help="stacked bias-free LSTM layers")
        tanh_constant: float | None = option(1.10, optional(positive),
                                             help="op logits squashed to tanh_constant/op_tanh_reduce*tanh(.) "
                                                  "(none: raw logits)")
        op_tanh_reduce: float = option(2.5, positive, help="divides tanh_constant for the op heads")
        init_range: float = option(0.1, real(0.0), help="weights start uniform in [-init_range, init_range]")
        lr: float = option(3e-4, positive, help="Adam learning rate of the policy")
        baseline_decay: float = option(0.99, real(0.0, 1.0, hi_open=True), help="EMA decay of the baseline")
        baseline_metric: str | None = option(None, optional(string()),
                                             help="metric the EMA baseline tracks (DeCoNAS: psnr_y_float_nocrop; "
                                                  "none: the reward)")
        entropy_weight: float = option(1e-4, real(0.0),
                                       help="weight of the sample's entropy added to the reward (no gradient)")
        failure_reward: float | None = option(None, optional(real()),
                                              help="reward of failed/infeasible results (none: lowest told)")
        grouping: str = option("auto", choice(*GROUPINGS),
                               help="decisions per LSTM step: dnb (DeCoNAS: K op bits per (node, input)), "
                                    "per_position (one per vector position), auto (dnb where the space has it)")

    def __init__(self, space: SearchSpace, reward: Reward, *, seed: int = 0, **options: Any):
        super().__init__(space, reward, seed=seed, **options)
        lower, upper = self._vector_bounds()
        self.lower = lower
        layout = dnb_layout(space)
        if self.grouping == "dnb" and isinstance(layout, str):
            raise ConfigError(f"controller.grouping: 'dnb' needs the DeCoNAS layout, but {layout}")
        if self.grouping == "per_position" or isinstance(layout, str):
            steps, banks, tables = per_position_steps((upper - lower + 1).tolist())
            self.grouped = "per_position"
        else:
            steps, banks, tables = dnb_steps(*layout)
            self.grouped = "dnb"
        scale = None if self.tanh_constant is None else self.tanh_constant / self.op_tanh_reduce
        generator = self._torch_generator()
        self.policy = DeconasPolicy(steps, banks, tables, hidden_size=self.hidden_size, num_layers=self.num_layers,
                                    logit_scale=scale, init_range=self.init_range, generator=generator)
        # §1.5: the baseline takes the current value in before the advantage; the entropy joins the reward.
        self.learner = PolicyGradient(self.policy, lr=self.lr, baseline=True, baseline_decay=self.baseline_decay,
                                      update_baseline_first=True, entropy_weight=self.entropy_weight,
                                      entropy_in="reward", generator=generator)

    def options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in attrs.fields_dict(type(self).Options)}

    def bit_probabilities(self, genome: Genome | None = None) -> np.ndarray:
        """The probability of choice 1 of every decision given the decisions of ``genome`` before it (default:
        the all-zeros vector). For checks and plots."""
        tokens = torch.zeros(1, self.policy.length, dtype=torch.long) if genome is None else self.tokens_of(genome)
        with torch.no_grad():
            return self.policy.decisions(tokens)[3][0].numpy().astype(float)


def dnb_layout(space: SearchSpace) -> tuple[int, int, int, bool] | str:
    """``(N, M, K, fusion)`` when ``space`` declares DeCoNAS's layout and its vector fits it (binary, of length
    ``K·M(M+1)/2`` plus ``M + N`` with fusion), else why not (a phrase)."""
    try:
        N, M, K = (int(getattr(space, a)) for a in ("N", "M", "K"))
        fusion = bool(getattr(space, "fusion"))
    except (AttributeError, TypeError, ValueError):
        return f"the space {space.name} has no N, M, K and fusion attributes"
    lower, upper = (np.asarray(b).reshape(-1) for b in space.vector_bounds())
    want = K * M * (M + 1) // 2 + (M + N if fusion else 0)
    if lower.size != want or np.any(lower != 0) or np.any(upper != 1):
        return (f"the space {space.name}'s vector is not {want} bits (N={N}, M={M}, K={K}, fusion={fusion}): "
                f"bounds {lower.tolist()} .. {upper.tolist()}")
    return N, M, K, fusion
