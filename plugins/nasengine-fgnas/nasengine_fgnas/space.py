"""The FGNAS search space (METHODS §3.1-3.2): gate masks over a fixed supernet, decoded to the pruned network.

Supernet (C channels, B searchable blocks, RGB in and out; all gates on)::

    head     conv3x3 3->C                                                     -> h   (gated: H)
    block b  p = conv1x1 C->C (x)                                    gated P_b
             y = conv3x3 C->C (p);  a = (ReLU(y) + PReLU(y) + tanh(y)) / 3  each activation gated per channel
             r = conv3x3 C->C (a)                                    gated O_b;  out = x + r
    body end conv3x3 C->C -> e (gated E when gate_body_end) ;  u = e + h
    tail     conv3x3 C->3s² -> PixelShuffle(s)

Every conv has a bias; PReLU has one slope per channel per block, initialised to 0.25 (METHODS §3.1 [E]).

Decoding a genome (the boolean masks) gives the **pruned** network, with the union rules of §3.2-3.3:
``S_0 = H``, ``S_b = S_{b-1} ∪ O_b`` (skip ∪ residual), ``A_b = relu_b ∪ prelu_b ∪ tanh_b``, ``U = E ∪ H``;
block b keeps the 1x1 conv ``S_{b-1} -> P_b``, the first 3x3 ``P_b -> A_b``, the second ``A_b -> O_b`` and
writes its output on ``S_b``; the body-end conv is ``S_B -> E``, the tail ``U -> 3s²``. In the graph:

* the first 3x3 conv is split by activation type (one conv per non-empty subset of {ReLU, PReLU, tanh},
  7 at most), each followed by the sum of its activations and ``scale(1/3)``; a ``concat`` of the groups
  is ``A_b`` (in type order, channels ascending within a type). Parameters and Mult-Adds equal one conv
  ``P_b -> A_b``; PReLU slopes exist for the channels whose PReLU is alive;
* a block whose output set differs from its input's adds skip and residual with ``channel_scatter_add``
  into ``S_b`` (channels ascending); equal sets use a plain ``add``;
* a conv whose input set is empty but whose output set is not emits its bias: ``bias_map`` (METHODS §3.9
  pitfall 7: such channels still carry act(bias) constants);
* gates whose channels feed nothing are ignored (:meth:`FgnasSpace.effective`): a block with no residual
  channel (``O_b = ∅``) is the identity, the 1x1 conv of a block without activation channels is dead, and
  with ``E = ∅`` the whole body is (the tail then reads the head's channels only).

The all-on genome decodes to the supernet itself, with built-in ops only (``densest()``).

Node names (stable, shared by every genome): ``head``, ``b{b}.pw``, ``b{b}.conv1.{acts}`` (``acts`` e.g.
``relu_tanh``), ``b{b}.{act}.{acts}``, ``b{b}.act.{acts}`` (the sum), ``b{b}.scale.{acts}``, ``b{b}.act``
(the concat), ``b{b}.conv2``, ``b{b}.skip``, ``body_end``, ``global_skip``, ``tail``, ``upsampler``.
"""
from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from nasengine.errors import ValidationError
from nasengine.options import choice, flag, option, read_options, real, whole
from nasengine.space import SearchSpace
from nasengine_fgnas.genome import ACTIVATIONS, Block, FgnasGenome, n_bits
from nasengine_fgnas.ops import format_index

__all__ = ["FgnasSpace", "Plan", "BlockPlan", "type_name"]


def type_name(act_type: int) -> str:
    """``relu_prelu_tanh`` for bitmask 7, ``prelu`` for 2, ...: the activations of a type, in order."""
    return "_".join(a for i, a in enumerate(ACTIVATIONS) if act_type >> i & 1)


def _on(mask) -> tuple[int, ...]:
    return tuple(c for c, v in enumerate(mask) if v)


@attrs.frozen
class BlockPlan:
    """The channel sets of one live block (supernet channel indices, ascending): input ``S`` (= S_{b-1}),
    1x1 output ``P``, activation groups ``groups`` (``(type bitmask, channels)`` in type order; their
    concatenation is A_b's order), residual ``O`` and output ``S_out`` (= S_b)."""

    index: int
    S: tuple[int, ...]
    P: tuple[int, ...]
    groups: tuple[tuple[int, tuple[int, ...]], ...]
    O: tuple[int, ...]
    S_out: tuple[int, ...]

    @property
    def A(self) -> tuple[int, ...]:
        """A_b in the order of the decoded concat (type order, ascending within a type)."""
        return tuple(c for _, chans in self.groups for c in chans)


@attrs.frozen
class Plan:
    """The channel sets of a decoded genome: head ``H``, the live blocks, ``S_B`` (the body's output set),
    body-end ``E``, tail input ``U`` (all ascending supernet channel indices)."""

    H: tuple[int, ...]
    blocks: tuple[BlockPlan, ...]
    S_B: tuple[int, ...]
    E: tuple[int, ...]
    U: tuple[int, ...]


class FgnasSpace(SearchSpace):
    """FGNAS's space of gate masks over a ``blocks`` x ``channels`` supernet at ``scale`` (module docstring).

    Options (a preset's ``space`` section): ``blocks`` B (16 = S, 32 = M, 64 = L), ``channels`` C (64),
    ``scale`` (2, 3, 4: x3/x4 widen the tail, §3.6), ``gate_body_end`` (true: the body-end conv's output is
    gated too, METHODS §3.2 [I]), and two supernet settings carried here so that every part reads them from one
    place: ``threshold`` (0.5: a gate is on iff ψ > threshold, on ψ itself as printed, §3.3; 0 gives
    σ(ψ) > 0.5) and ``psi0`` (1.0: the initial ψ, [E] §3.3 — above the threshold, so the supernet starts alive).

    ``size() = 2 ** n_bits`` with ``n_bits = C·(1 + 5B [+ 1])`` (5,248 bits for B = 16, C = 64).
    """

    genome_schema = "1"
    #: The registry-wide contract tests use a 2-block, 8-channel space (the defaults' 5,248 bits make an LSTM
    #: controller's contract test take minutes); this plugin's own tests check the defaults.
    contract_options = {"blocks": 2, "channels": 8}

    @attrs.frozen(kw_only=True)
    class Options:
        blocks: int = option(16, whole(1), help="searchable blocks B (16 / 32 / 64 for FGNAS-S / M / L)")
        channels: int = option(64, whole(1), help="supernet channels C (64 in the paper)")
        scale: int = option(2, choice(2, 3, 4), help="upscaling factor (x3/x4: the tail conv emits 3*s*s)")
        gate_body_end: bool = option(True, flag, help="gate the body-end conv's output (METHODS §3.2 [I])")
        threshold: float = option(0.5, real(), help="a gate is on iff psi > threshold (0.5 on psi as printed; "
                                                    "0 = sigmoid(psi) > 0.5)")
        psi0: float = option(1.0, real(), help="initial psi of every gate (above threshold: all alive at start)")

    def __init__(self, **options: Any):
        declared = read_options("space", type(self).Options, options, name="fgnas")
        self.blocks = int(declared.blocks)
        self.channels = int(declared.channels)
        self.scale = int(declared.scale)
        self.gate_body_end = bool(declared.gate_body_end)
        self.threshold = float(declared.threshold)
        self.psi0 = float(declared.psi0)

    @property
    def name(self) -> str:
        return "fgnas"

    def options(self) -> dict[str, Any]:
        """The options this space was made with (plain data, as a genome file's ``options``)."""
        return {"blocks": self.blocks, "channels": self.channels, "scale": self.scale,
                "gate_body_end": self.gate_body_end, "threshold": self.threshold, "psi0": self.psi0}

    def __repr__(self) -> str:
        return f"FgnasSpace({', '.join(f'{k}={v!r}' for k, v in self.options().items())})"

    @property
    def n_bits(self) -> int:
        """The number of gates (bits of a genome)."""
        return n_bits(self.blocks, self.channels, self.gate_body_end)

    # ---- sampling and variation ---------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> FgnasGenome:
        """Uniform over the space: every gate a fair coin."""
        return self._from_bits(rng.integers(0, 2, size=self.n_bits))

    def mutate(self, genome: FgnasGenome, rng: np.random.Generator) -> FgnasGenome:
        """One gate (uniform) flips; the child always differs from ``genome``."""
        bits = self._bits(genome)
        i = int(rng.integers(self.n_bits))
        bits[i] = 1 - bits[i]
        return self._from_bits(bits)

    def crossover(self, a: FgnasGenome, b: FgnasGenome,
                  rng: np.random.Generator) -> tuple[FgnasGenome, FgnasGenome]:
        """One-point crossover of the flat gate vectors (cut uniform in 1..n_bits-1; with one bit, a swap)."""
        x, y = self._bits(a), self._bits(b)
        k = int(rng.integers(1, self.n_bits)) if self.n_bits > 1 else 0
        return self._from_bits(x[:k] + y[k:]), self._from_bits(y[:k] + x[k:])

    def differentiable_supernet(self):
        """The gated supernet (:class:`~nasengine_fgnas.supernet.FgnasSupernet`) the engine's differentiable loop
        trains: ``param_groups(lr, gate_lr)``, ``cost_term(lr_size)``, ``genome()``, ``derive()``."""
        from nasengine_fgnas.supernet import FgnasSupernet

        return FgnasSupernet(self)

    def densest(self) -> FgnasGenome:
        """The all-on genome: the supernet (every slot at its widest)."""
        return FgnasGenome.filled(self.blocks, self.channels, self.gate_body_end, 1)

    # ---- validity ---------------------------------------------------------------------------------------------
    def validate(self, genome: Any) -> None:
        """Raise :class:`ValidationError` naming the field unless ``genome`` is an :class:`FgnasGenome` with
        B blocks of C-bit masks (and a body-end mask exactly when gated). Every such mask set is valid."""
        if not isinstance(genome, FgnasGenome):
            raise ValidationError(f"expected an FgnasGenome, got {type(genome).__name__}", field="genome")
        genome.check(self.blocks, self.channels, self.gate_body_end)

    def effective(self, genome: FgnasGenome) -> FgnasGenome:
        """``genome`` with the gates whose channels feed nothing turned off (module docstring): with
        ``E = ∅`` every block gate; in a block with ``O_b = ∅`` its pw and activation gates; in a block
        with ``A_b = ∅`` its pw gates. Decodes to the same network; its hard cost term equals the network's
        analytic cost (the supernet's R counts dead convs too)."""
        self.validate(genome)
        zero = (0,) * self.channels
        if genome.body_end is not None and not any(genome.body_end):
            blocks = tuple(Block.filled(self.channels, 0) for _ in genome.blocks)
            return FgnasGenome(genome.head, blocks, genome.body_end)
        blocks = []
        for block in genome.blocks:
            if not any(block.out):
                block = Block(zero, zero, zero, zero, zero)
            elif not any(block.act):
                block = attrs.evolve(block, pw=zero)
            blocks.append(block)
        return FgnasGenome(genome.head, tuple(blocks), genome.body_end)

    # ---- the channel sets --------------------------------------------------------------------------------------
    def plan(self, genome: FgnasGenome) -> Plan:
        """The channel sets of the effective genome (:class:`Plan`): what :meth:`decode` builds and what
        derivation slices the supernet's weights by."""
        g = self.effective(genome)
        H = _on(g.head)
        S = H
        blocks = []
        for b, block in enumerate(g.blocks):
            O = _on(block.out)
            if not O:
                continue
            groups: dict[int, list[int]] = {}
            for c in range(self.channels):
                t = block.act_type(c)
                if t:
                    groups.setdefault(t, []).append(c)
            S_out = tuple(sorted(set(S) | set(O)))
            blocks.append(BlockPlan(b, S, _on(block.pw), tuple((t, tuple(groups[t])) for t in sorted(groups)),
                                    O, S_out))
            S = S_out
        E = _on(g.body_end) if g.body_end is not None else tuple(range(self.channels))
        U = tuple(sorted(set(E) | set(H)))
        return Plan(H, tuple(blocks), S, E, U)

    # ---- decoding -------------------------------------------------------------------------------------------------
    def decode(self, genome: FgnasGenome):
        """The pruned :class:`~nasengine.graph.ArchGraph` of ``genome`` (module docstring)."""
        from nasengine.graph import ArchGraph

        plan = self.plan(genome)
        g = ArchGraph()
        x = g.input(channels=3, name="lr_rgb")  # RGB in and out (EDSR lineage, METHODS §3.1)

        def conv(src, src_set, n_out, kernel, name):
            """A conv over the channels ``src_set`` of ``src`` (its bias alone when the set is empty)."""
            if not src_set:
                return g.add("bias_map", x, channels=n_out, name=name)
            return g.add("conv", src, out_channels=n_out, kernel=kernel, name=name)

        h = g.add("conv", x, out_channels=len(plan.H), kernel=3, name="head") if plan.H else None
        s = h
        for bp in plan.blocks:
            b = bp.index
            if bp.groups:
                p = conv(s, bp.S, len(bp.P), 1, f"b{b}.pw") if bp.P else None
                parts = []
                for t, chans in bp.groups:
                    tn = type_name(t)
                    y = conv(p, bp.P, len(chans), 3, f"b{b}.conv1.{tn}")
                    acts = []
                    for i, act in enumerate(ACTIVATIONS):
                        if t >> i & 1:
                            attrs_ = {"num_parameters": len(chans)} if act == "prelu" else {}
                            acts.append(g.add(act, y, name=f"b{b}.{act}.{tn}", **attrs_))
                    a = acts[0] if len(acts) == 1 else g.add("add", acts, name=f"b{b}.act.{tn}")
                    # The paper's "scaling of 1/3" whatever the number of alive activations (§3.1 [P]).
                    parts.append(g.add("scale", a, value=1 / 3, name=f"b{b}.scale.{tn}"))
                a = parts[0] if len(parts) == 1 else g.add("concat", parts, name=f"b{b}.act")
                r = g.add("conv", a, out_channels=len(bp.O), kernel=3, name=f"b{b}.conv2")
            else:
                r = g.add("bias_map", x, channels=len(bp.O), name=f"b{b}.conv2")
            s = _union(g, s, bp.S, r, bp.O, bp.S_out, f"b{b}.skip")
        e = conv(s, plan.S_B, len(plan.E), 3, "body_end") if plan.E else None
        u = _union(g, e, plan.E, h, plan.H, plan.U, "global_skip")
        t = conv(u, plan.U, 3 * self.scale ** 2, 3, "tail")
        g.output(g.add("pixel_shuffle", t, factor=self.scale, name="upsampler"))
        return g

    # ---- serialisation -------------------------------------------------------------------------------------------
    def to_json(self, genome: FgnasGenome) -> dict:
        """See :mod:`nasengine_fgnas.genome` (lists of 0/1)."""
        self.validate(genome)
        return genome.to_json()

    def from_json(self, data: Any) -> FgnasGenome:
        return FgnasGenome.from_json(data, self.blocks, self.channels, self.gate_body_end)

    def describe(self, genome: FgnasGenome) -> str:
        """Alive channels: head, per block ``|P|/|A|/|O|->|S|``, body end, tail input."""
        plan = self.plan(genome)
        live = {bp.index: bp for bp in plan.blocks}
        parts = []
        for b in range(self.blocks):
            bp = live.get(b)
            parts.append(f"{len(bp.P)}/{len(bp.A)}/{len(bp.O)}->{len(bp.S_out)}" if bp else "-")
        return (f"head {len(plan.H)} | blocks (pw/act/out->skip) {' '.join(parts)} | body_end {len(plan.E)} "
                f"| tail in {len(plan.U)}")

    # ---- vector encoding --------------------------------------------------------------------------------------
    def vector_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """One bit per gate (:mod:`nasengine_fgnas.genome`)."""
        return np.zeros(self.n_bits, dtype=np.int64), np.ones(self.n_bits, dtype=np.int64)

    def vector_encode(self, genome: FgnasGenome) -> np.ndarray:
        return np.asarray(self._bits(genome), dtype=np.int64)

    def vector_decode(self, vector: Any) -> FgnasGenome:
        v = np.asarray(vector)
        if v.shape != (self.n_bits,):
            raise ValidationError(f"expected {self.n_bits} entries, got shape {v.shape}", field="vector")
        if not np.all((v == 0) | (v == 1)):
            bad = int(np.flatnonzero((v != 0) & (v != 1))[0])
            raise ValidationError(f"entries must be 0 or 1, got {v[bad]!r}", field=f"vector[{bad}]")
        return self._from_bits(v)

    def size(self) -> int:
        return 2 ** self.n_bits

    # ---- helpers -------------------------------------------------------------------------------------------------
    def _bits(self, genome: FgnasGenome) -> list[int]:
        self.validate(genome)
        return genome.bits()

    def _from_bits(self, bits) -> FgnasGenome:
        return FgnasGenome.from_bits([int(v) for v in bits], self.blocks, self.channels, self.gate_body_end)


def _union(g, a, a_set, b, b_set, out_set, name):
    """The tensor on ``out_set = a_set ∪ b_set`` (ascending) from ``a`` on ``a_set`` and ``b`` on ``b_set``."""
    if not a_set:
        return b
    if not b_set:
        return a
    if a_set == b_set:
        return g.add("add", a, b, name=name)
    pos = {c: i for i, c in enumerate(out_set)}
    index = format_index([[pos[c] for c in a_set], [pos[c] for c in b_set]])
    return g.add("channel_scatter_add", a, b, channels=len(out_set), index=index, name=name)
