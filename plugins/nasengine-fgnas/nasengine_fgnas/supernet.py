"""The FGNAS supernet: weights and per-channel gates ψ trained together (METHODS §3.1, §3.3).

Every gate is a straight-through estimator (§3.3, eq. 1): forward ``g(ψ) = 1[ψ > threshold]`` (exactly 0 or
1), backward ``dσ(ψ)/dψ``; the hard masks multiply the feature maps, so ψ gets its gradient through σ′ even
while its channel is pruned (it can revive). The forward pass is the space's supernet (:mod:`nasengine_fgnas.
space`) with the masks applied::

    h = head(x) * g(head)
    p = pw(s) * g(pw);  y = conv1(p);  a = (relu(y) g(relu) + prelu(y) g(prelu) + tanh(y) g(tanh)) / 3
    r = conv2(a) * g(out);  s = s + r                    (per block; s starts at h)
    u = body_end(s) * g(body_end) + h;  SR = shuffle(tail(u))

The **cost term** counts channels with the union rule γ (§3.3, eq. 4: forward 1[Σ_i g_i ≥ 1], backward Σ_i
g_i): a first 3x3 conv's output is γ over its three activation sub-maps; the channels entering the next conv
are nested unions ``γ(S_b) = γ(γ(S_{b-1}), g(out_b))`` (skip ∪ residual), so the head's gates get gradient
from every later block; the tail reads ``γ(E ∪ H)``. :meth:`FgnasSupernet.counts` gives these counts per node
of the supernet graph (``space.decode(space.densest())``) and :meth:`FgnasSupernet.cost_term` evaluates the
registered ops' own cost formulas on them (the engine's :class:`nasengine.cost.DifferentiableCost`): R(ψ) of
§3.4 is its ``mult_adds``.

The gates ψ are their own parameter group (:meth:`FgnasSupernet.param_groups`), so that a loop gives them
their own learning rate (METHODS §3.4: at lr 1e-4 a gate needs >= 5,000 Adam steps to cross 0.5).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from nasengine_fgnas.genome import ACTIVATIONS, BLOCK_FIELDS, Block, FgnasGenome
from nasengine_fgnas.space import FgnasSpace, type_name

__all__ = ["FgnasSupernet", "st_gate", "st_union"]

_ALL = type_name(7)  # "relu_prelu_tanh": the one activation group of the supernet graph


def st_gate(psi: Tensor, threshold: float = 0.5) -> Tensor:
    """§3.3 eq. 1: forward ``1[ψ > threshold]`` (exactly 0/1), backward ``σ′(ψ)``."""
    from nasengine.cost import st_gate as engine_st_gate

    return engine_st_gate(psi, threshold)


def st_union(*gates: Tensor) -> Tensor:
    """§3.3 eq. 4, per channel: forward ``1[Σ g_i ≥ 1]``, backward ``Σ g_i`` (gradient 1 to every sub-map)."""
    from nasengine.cost import st_union as engine_st_union

    return engine_st_union(*gates)


class _Block(nn.Module):
    """One searchable block's weights and gates (module docstring)."""

    def __init__(self, channels: int, psi0: float):
        super().__init__()
        c = channels
        self.pw = nn.Conv2d(c, c, 1)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        # One slope per channel per block, init 0.25 (METHODS §3.1 [E]; the [G] counts assume it).
        self.prelu = nn.PReLU(c, init=0.25)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.psi_pw = nn.Parameter(torch.full((c,), float(psi0)))
        self.psi_act = nn.Parameter(torch.full((3, c), float(psi0)))  # rows: relu, prelu, tanh (ACTIVATIONS)
        self.psi_out = nn.Parameter(torch.full((c,), float(psi0)))


def _mask(g: Tensor) -> Tensor:
    return g.view(1, -1, 1, 1)


class FgnasSupernet(nn.Module):
    """The supernet of an :class:`~nasengine_fgnas.space.FgnasSpace` (its ``blocks``, ``channels``, ``scale``,
    ``gate_body_end``, ``threshold`` and ``psi0``), as a torch module (module docstring).

    ``FgnasSupernet(space)`` or ``FgnasSupernet(blocks=2, channels=8)`` (the space's options). Input and
    output: RGB, ``N x 3 x H x W -> N x 3 x sH x sW``; the pixel range is the trainer's (the λ of §3.4
    depends on it).
    """

    def __init__(self, space: FgnasSpace | None = None, **options: Any):
        super().__init__()
        if space is None:
            space = FgnasSpace(**options)
        elif options:
            raise TypeError("give either a space or its options, not both")
        self.space = space
        c, s, psi0 = space.channels, space.scale, space.psi0
        self.threshold = space.threshold
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.blocks = nn.ModuleList(_Block(c, psi0) for _ in range(space.blocks))
        self.body_end = nn.Conv2d(c, c, 3, padding=1)
        self.tail = nn.Conv2d(c, 3 * s * s, 3, padding=1)
        self.shuffle = nn.PixelShuffle(s)
        self.psi_head = nn.Parameter(torch.full((c,), float(psi0)))
        if space.gate_body_end:
            self.psi_body_end = nn.Parameter(torch.full((c,), float(psi0)))
        else:
            self.register_parameter("psi_body_end", None)
        self._cost_models: dict = {}

    # ---- gates -------------------------------------------------------------------------------------------
    def gates(self) -> dict[str, Tensor]:
        """Every gate vector, straight-through (forward 0/1, backward σ′): ``head``, ``b{b}.pw``,
        ``b{b}.relu`` / ``.prelu`` / ``.tanh``, ``b{b}.out``, ``body_end`` (when gated)."""
        t = self.threshold
        out = {"head": st_gate(self.psi_head, t)}
        for b, blk in enumerate(self.blocks):
            out[f"b{b}.pw"] = st_gate(blk.psi_pw, t)
            acts = st_gate(blk.psi_act, t)
            for i, act in enumerate(ACTIVATIONS):
                out[f"b{b}.{act}"] = acts[i]
            out[f"b{b}.out"] = st_gate(blk.psi_out, t)
        if self.psi_body_end is not None:
            out["body_end"] = st_gate(self.psi_body_end, t)
        return out

    def genome(self) -> FgnasGenome:
        """The hard masks (ψ > threshold) as a genome of the space."""
        with torch.no_grad():
            on = {k: [int(v) for v in (g > 0.5).tolist()] for k, g in self.gates().items()}
        blocks = tuple(Block(*(on[f"b{b}.{f}"] for f in BLOCK_FIELDS)) for b in range(len(self.blocks)))
        return FgnasGenome(on["head"], blocks, on.get("body_end"))

    def set_genome(self, genome: FgnasGenome, margin: float = 0.5) -> None:
        """Set every ψ to ``threshold ± margin`` as ``genome`` says (on: +, off: −)."""
        self.space.validate(genome)
        t = self.threshold

        def fill(param: Tensor, bits) -> None:
            param.copy_(torch.tensor([t + margin if v else t - margin for v in bits], dtype=param.dtype))

        with torch.no_grad():
            fill(self.psi_head, genome.head)
            for blk, gb in zip(self.blocks, genome.blocks):
                fill(blk.psi_pw, gb.pw)
                for i, act in enumerate(ACTIVATIONS):
                    fill(blk.psi_act[i], getattr(gb, act))
                fill(blk.psi_out, gb.out)
            if self.psi_body_end is not None:
                fill(self.psi_body_end, genome.body_end)

    # ---- parameter groups -----------------------------------------------------------------------------------
    def gate_parameters(self) -> list[nn.Parameter]:
        """The gate parameters ψ (every parameter whose name starts with ``psi``)."""
        return [p for n, p in self.named_parameters() if n.rsplit(".", 1)[-1].startswith("psi")]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Everything else: conv kernels and biases, PReLU slopes."""
        return [p for n, p in self.named_parameters() if not n.rsplit(".", 1)[-1].startswith("psi")]

    def param_groups(self, lr: float, gate_lr: float | None = None) -> list[dict]:
        """Two optimizer parameter groups, ``weights`` at ``lr`` and ``gates`` at ``gate_lr`` (default ``lr``)."""
        return [{"params": self.weight_parameters(), "lr": lr, "name": "weights"},
                {"params": self.gate_parameters(), "lr": lr if gate_lr is None else gate_lr, "name": "gates"}]

    # ---- forward ------------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        g = self.gates()
        h = self.head(x) * _mask(g["head"])
        s = h
        for b, blk in enumerate(self.blocks):
            p = blk.pw(s) * _mask(g[f"b{b}.pw"])
            y = blk.conv1(p)
            a = (F.relu(y) * _mask(g[f"b{b}.relu"]) + blk.prelu(y) * _mask(g[f"b{b}.prelu"])
                 + torch.tanh(y) * _mask(g[f"b{b}.tanh"])) * (1 / 3)  # "scaling of 1/3" (§3.1 [P])
            s = s + blk.conv2(a) * _mask(g[f"b{b}.out"])
        e = self.body_end(s)
        if "body_end" in g:
            e = e * _mask(g["body_end"])
        return self.shuffle(self.tail(e + h))

    # ---- union counting and the cost term ----------------------------------------------------------------------
    def unions(self, gates: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Per-channel union indicators γ (forward 0/1, backward sum; §3.3): ``b{b}.act`` (A_b), ``b{b}.skip``
        (S_b, nested from S_0 = H) and ``tail_in`` (U = E ∪ H)."""
        g = self.gates() if gates is None else gates
        out = {}
        S = g["head"]
        for b in range(len(self.blocks)):
            out[f"b{b}.act"] = st_union(g[f"b{b}.relu"], g[f"b{b}.prelu"], g[f"b{b}.tanh"])
            S = st_union(S, g[f"b{b}.out"])
            out[f"b{b}.skip"] = S
        E = g.get("body_end", torch.ones_like(g["head"]))
        out["tail_in"] = st_union(E, g["head"])
        return out

    def counts(self, gates: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Soft output channel counts by node name of the supernet graph (``space.decode(space.densest())``):
        what :class:`nasengine.cost.DifferentiableCost` takes (table of §3.4)."""
        g = self.gates() if gates is None else gates
        u = self.unions(g)
        out = {"head": g["head"].sum()}
        for b in range(len(self.blocks)):
            out[f"b{b}.pw"] = g[f"b{b}.pw"].sum()
            out[f"b{b}.conv1.{_ALL}"] = u[f"b{b}.act"].sum()      # a conv channel is computed iff one act uses it
            out[f"b{b}.prelu.{_ALL}"] = g[f"b{b}.prelu"].sum()      # a slope per PReLU-alive channel
            out[f"b{b}.act.{_ALL}"] = u[f"b{b}.act"].sum()          # the sum of the three: the union again
            out[f"b{b}.conv2"] = g[f"b{b}.out"].sum()
            out[f"b{b}.skip"] = u[f"b{b}.skip"].sum()               # skip ∪ residual enters the next conv
        if "body_end" in g:
            out["body_end"] = g["body_end"].sum()
        out["global_skip"] = u["tail_in"].sum()
        return out

    def supernet_graph(self):
        """The supernet's :class:`~nasengine.graph.ArchGraph` (the space's all-on genome)."""
        return self.space.decode(self.space.densest())

    def cost_term(self, lr_size=(96, 96)):
        """The :class:`nasengine.cost.SoftCost` of the gated supernet at LR ``lr_size`` (``mult_adds`` is R(ψ)
        of §3.4, with gradient to every ψ). METHODS §3.4 [I]: the paper's λ = 1e-9 fits R at the training
        patch (LR 96x96 at x2) with L1 on 0-255."""
        from nasengine.cost import DifferentiableCost

        key = tuple(int(v) for v in lr_size)
        model = self._cost_models.get(key)
        if model is None:
            model = self._cost_models[key] = DifferentiableCost(self.supernet_graph(), lr_size=key)
        return model(self.counts())

    def derive(self):
        """The pruned network of the hard masks with this supernet's weights (:func:`nasengine_fgnas.derive.derive`;
        what the engine's differentiable loop records and saves as the derived model)."""
        from nasengine_fgnas.derive import derive

        return derive(self)

    def extra_repr(self) -> str:
        return repr(self.space)

