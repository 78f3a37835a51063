"""The DeCoNAS search space (METHODS.md §1.1-1.3): N densely connected blocks (DNBs) of M mix nodes sharing one
bit string, in the fixed RDN-like skeleton of DeCoNASNet.

Decoded network (C = ``channels``; every conv has a bias unless said otherwise; no activation outside the
DNBs; §1.1)::

    x = LR RGB - mean                                  (shift; the released code's BGR mean, in RGB order)
    F_-1 = conv3x3(3 -> C)                 "sfe1"      (global residual)
    F_0  = conv3x3(C -> C)                 "sfe2"
    inp = F_0
    for d in 0..N-1:
        F_{d+1} = DNB_d(inp)                            (below; output "d{d}.out")
        inp = conv1x1(concat(F_0..F_{d+1}))  "bc{d}"    (dense block connection; the one after the last
                                                         DNB is built but unused: op `unused`, §1.8 #3)
    x = conv1x1(concat(F_0..F_N))          "gff"       (with fusion search: F_i where gff[i] = 1, and F_N)
    x = conv3x3(x) "gff3x3" + F_-1
    x = conv3x3(C -> C*s*s) "up0", pixel_shuffle(s)    (x4: two stages of 2: "up0", "up1")
    y = conv3x3(C -> 3) "out" + mean

    DNB_d(u): layers = [u]
      for node m: for each op k with a selected input set S (bits of masks[m][j], MSB = conv):
                    o_k = op_k(concat(layers[j] for j in S))           "d{d}.n{m}.conv" / ".sep" / ".dil"
                  y = relu(mean(o_k)) if any op else relu(layers[-1])  (code; paper: no relu, §1.8 #1)
                  layers.append(channel_attention(y, reduction 4))     "d{d}.n{m}.ca"
      return conv1x1(concat(layers)) "d{d}.lff" + u    (with fusion search: layers[i] where lff[i] = 1, and
                                                         the last node)

Ops (``op_variant``): ``fixed`` (the released final network, §1.2): conv3x3 = ReLU -> conv + b; sepconv3x3 =
ReLU -> depthwise 3x3 (no bias) -> pointwise 1x1 + b; dilconv3x3_r3 = ReLU -> 3x3 rate 3 + b.
``released_supernet`` (the released search's supernet, §1.3 #1-2): no pre-activation ReLU, and the conv op
without its bias (the released code creates that bias but never adds it: it is no parameter of the
computation, so it is not built). The ReLU is applied to the concatenation (the same as to each input).

Slot names (COMMON design §1): every node with parameters is named by its role (above), the same in every
genome; so are the parameter-free nodes a slot may read (``d{d}.out``, the DNB outputs that feed the dense
concatenations) so that a supernet can match every concatenated input by its producer's name.
"""
from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from nasengine.errors import ValidationError
from nasengine.options import choice, flag, option, read_options, whole
from nasengine.space import SearchSpace
from nasengine_deconas import genome as G
from nasengine_deconas.genome import DeconasGenome

__all__ = ["DeconasSpace", "RGB_MEAN"]

#: The released code's mean colour, (103.154, 111.561, 114.356)/255 in BGR (``train.py``; §1.1), in RGB order:
#: the engine's images are RGB.
RGB_MEAN = (114.356 / 255, 111.561 / 255, 103.154 / 255)



def _cb_bit_weights(C: int) -> tuple[int, int, int]:
    """Per-bit weights (conv, sep, dil) of the code's complexity penalty (§1.5)."""
    # [I] the code's constants written for any C: 3*3*C*C for conv and dil, 3*3*C + C for sep (the pointwise
    # C*C is missing in the code, §1.5); at C = 64: 36,864 / 640 / 36,864.
    return 9 * C * C, 9 * C + C, 9 * C * C


class DeconasSpace(SearchSpace):
    """DeCoNAS's dense space (module docstring): ``N`` DNBs of ``M`` mix nodes, ``K = 3`` ops per (node, input)
    bit; ``size() = 2**(K*M(M+1)/2)`` (2**30 at N = M = 4), ``* 2**(M+N)`` with ``fusion`` (2**38).

    Options (a preset's ``space`` section; §1.1-1.3, §1.9): ``N`` (4), ``M`` (4), ``channels`` (C = SFE width,
    64), ``scale`` (2; 3; 4 = two x2 stages), ``fusion`` (search the lff/gff bits), ``reduction`` (channel
    attention, 4 as the code), ``op_variant`` (``fixed`` | ``released_supernet``), ``weight_layout``
    (``per_slot`` | ``tf_reshape``: how a supernet shares a slot's weights, §1.3), ``dead_connection`` (build
    the released net's unused last block connection, counted in its 1,713,795 params).
    """

    genome_schema = "1"

    @attrs.frozen(kw_only=True)
    class Options:
        N: int = option(4, whole(1), help="dense blocks (DNBs); 4 in the paper's search and DeCoNASNet")
        M: int = option(4, whole(1), help="mix nodes per DNB; 4 in the paper's search and DeCoNASNet")
        channels: int = option(64, whole(1), help="feature width C (SFE, nodes, fusions); 64 in the paper")
        scale: int = option(2, choice(2, 3, 4), help="upscaling factor (x4 = two conv + shuffle-2 stages, §1.1)")
        fusion: bool = option(False, flag, help="also search the feature-fusion bits (lff: M, gff: N; §1.2)")
        reduction: int = option(4, whole(1), help="channel-attention reduction (4 in the code, §1.8 #2)")
        op_variant: str = option("fixed", choice("fixed", "released_supernet"),
                                 help="fixed: ReLU + op + bias (the released final net); released_supernet: no "
                                      "pre-activation ReLU, conv without bias (the released search, §1.3)")
        weight_layout: str = option("per_slot", choice("per_slot", "tf_reshape"),
                                    help="supernet weight sharing: per_slot (one kernel per input slot) or "
                                         "tf_reshape (the released code's reshape, §1.3)")
        dead_connection: bool = option(True, flag, help="build the released net's unused block connection "
                                                        "after the last DNB (op `unused`, §1.8 #3)")

    def __init__(self, **options: Any):
        o = read_options("space", type(self).Options, options, name="deconas")
        self.N, self.M, self.K = o.N, o.M, G.K
        self.channels, self.scale, self.fusion = o.channels, o.scale, o.fusion
        self.reduction, self.op_variant = o.reduction, o.op_variant
        self.weight_layout, self.dead_connection = o.weight_layout, o.dead_connection
        if self.channels // self.reduction < 1:
            from nasengine.options import OptionError

            raise OptionError("reduction", f"{self.reduction} leaves no channel-attention channels of "
                                           f"channels={self.channels}", "space")
        self.n_masks = G.n_masks(self.M)
        self.n_bits = self.K * self.n_masks + (self.M + self.N if self.fusion else 0)
        self._densest_params: int | None = None

    @property
    def name(self) -> str:
        return "deconas"

    def options(self) -> dict[str, Any]:
        """The options this space was made with (plain data, as a genome file's ``options``)."""
        return {"N": self.N, "M": self.M, "channels": self.channels, "scale": self.scale, "fusion": self.fusion,
                "reduction": self.reduction, "op_variant": self.op_variant, "weight_layout": self.weight_layout,
                "dead_connection": self.dead_connection}

    def __repr__(self) -> str:
        return f"DeconasSpace({', '.join(f'{k}={v!r}' for k, v in self.options().items())})"

    # ---- bits ----------------------------------------------------------------------------------------------
    def to_bits(self, genome: DeconasGenome) -> tuple[int, ...]:
        """The genome's bits in controller order (:func:`~nasengine_deconas.genome.genome_bits`)."""
        self.validate(genome)
        return G.genome_bits(genome)

    def from_bits(self, bits) -> DeconasGenome:
        """Inverse of :meth:`to_bits`."""
        return G.genome_from_bits(bits, self.N, self.M, self.fusion)

    def parse_bit_string(self, text: str) -> DeconasGenome:
        """A genome from the README's flat bit string (``'1 1 1 1 1 0 ...'``, the released ``--child_fixed_arc``)."""
        return G.parse_bit_string(text, self.N, self.M, self.fusion)

    # ---- sampling and variation ------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> DeconasGenome:
        """Uniform over the space: every bit a fair coin."""
        return self.from_bits(rng.integers(0, 2, size=self.n_bits).tolist())

    def mutate(self, genome: DeconasGenome, rng: np.random.Generator) -> DeconasGenome:
        """One bit (uniform over all bits, fusion bits included) flips: the child always differs."""
        bits = list(self.to_bits(genome))
        i = int(rng.integers(len(bits)))
        bits[i] = 1 - bits[i]
        return self.from_bits(bits)

    def crossover(self, a: DeconasGenome, b: DeconasGenome,
                  rng: np.random.Generator) -> tuple[DeconasGenome, DeconasGenome]:
        """Uniform crossover over the bits: each bit of child 1 from ``a`` or ``b`` with probability 1/2, child
        2 takes the other parent's bit (the paper has no crossover; [E] the bits are independent genes)."""
        x, y = self.to_bits(a), self.to_bits(b)
        take = rng.integers(0, 2, size=len(x)).astype(bool)
        c1 = [p if t else q for p, q, t in zip(x, y, take)]
        c2 = [q if t else p for p, q, t in zip(x, y, take)]
        return self.from_bits(c1), self.from_bits(c2)

    def densest(self) -> DeconasGenome:
        """Every bit set (all masks 7, all fusion bits 1): every slot at its widest input width."""
        return self.from_bits([1] * self.n_bits)

    # ---- validity and decoding -----------------------------------------------------------------------------------
    def validate(self, genome: Any) -> None:
        if not isinstance(genome, DeconasGenome):
            raise ValidationError(f"expected a DeconasGenome, got {type(genome).__name__}", field="genome")
        genome.check(self.N, self.M, self.fusion)

    def decode(self, genome: DeconasGenome):
        """The :class:`~nasengine.graph.ArchGraph` of ``genome`` (module docstring)."""
        from nasengine.graph import ArchGraph

        self.validate(genome)
        C = self.channels
        g = ArchGraph()
        x = g.input(channels=3, name="lr_rgb")
        x = g.add("shift", x, values=_values(-v for v in RGB_MEAN), name="sub_mean")
        grl = g.add("conv", x, out_channels=C, kernel=3, name="sfe1")
        f0 = g.add("conv", grl, out_channels=C, kernel=3, name="sfe2")
        feats, inp = [f0], f0
        for d in range(self.N):
            feats.append(self._dnb(g, genome, d, inp))
            bc = g.add("conv", _concat(g, feats), out_channels=C, kernel=1, name=f"bc{d}")
            if d < self.N - 1:
                inp = bc
            elif self.dead_connection:
                # §1.1, §1.8 #3: the code builds this connection after the last DNB and never uses it.
                g.add("unused", bc)
        gff_in = [feats[i] for i in range(self.N) if genome.gff is None or genome.gff[i]] + [feats[-1]]
        x = g.add("conv", _concat(g, gff_in), out_channels=C, kernel=1, name="gff")
        x = g.add("conv", x, out_channels=C, kernel=3, name="gff3x3")
        x = g.add("add", x, grl)
        for i, s in enumerate((2, 2) if self.scale == 4 else (self.scale,)):
            x = g.add("conv", x, out_channels=C * s * s, kernel=3, name=f"up{i}")
            x = g.add("pixel_shuffle", x, factor=s)
        y = g.add("conv", x, out_channels=3, kernel=3, name="out")
        y = g.add("shift", y, values=_values(RGB_MEAN), name="add_mean")
        g.output(y)
        return g

    def _dnb(self, g, genome: DeconasGenome, d: int, u: int) -> int:
        C, fixed = self.channels, self.op_variant == "fixed"
        layers = [u]
        for m in range(self.M):
            outs = []
            inputs: dict[tuple[int, ...], int] = {}  # one concat (+ ReLU) per distinct input set of the node
            for k, suffix in enumerate(("conv", "sep", "dil")):
                sel = tuple(genome.selected(m, k))
                if not sel:
                    continue
                if sel not in inputs:
                    h = _concat(g, [layers[j] for j in sel])
                    inputs[sel] = g.add("relu", h) if fixed else h
                h, name = inputs[sel], f"d{d}.n{m}.{suffix}"
                if k == 0:  # released_supernet: the conv's bias is created but never added (§1.3 #2)
                    outs.append(g.add("conv", h, out_channels=C, kernel=3, bias=fixed, name=name))
                elif k == 1:
                    outs.append(g.add("sep_conv", h, out_channels=C, kernel=3, name=name))
                else:
                    outs.append(g.add("conv", h, out_channels=C, kernel=3, dilation=3, name=name))
            y = (outs[0] if len(outs) == 1 else g.add("mean", outs)) if outs else layers[-1]
            y = g.add("relu", y)  # empty node: ReLU(previous layer), as the code (§1.8 #1)
            layers.append(g.add("channel_attention", y, reduction=self.reduction, name=f"d{d}.n{m}.ca"))
        # Local fusion: with fusion search, layers[i] (u, n0..n_{M-2}) where lff[i] = 1, and always the last node.
        lff_in = [layers[i] for i in range(self.M) if genome.lff is None or genome.lff[i]] + [layers[-1]]
        for i in range(1, self.M):
            # A node that neither a later node nor the fusion reads is still built, as in the code: unused.
            if layers[i] not in lff_in and not g.consumers(layers[i]):
                g.add("unused", layers[i])
        h = g.add("conv", _concat(g, lff_in), out_channels=C, kernel=1, name=f"d{d}.lff")
        return g.add("add", h, u, name=f"d{d}.out")

    # ---- metrics ---------------------------------------------------------------------------------------------
    def cb_code(self, genome: DeconasGenome) -> float:
        """The released code's complexity penalty (§1.5): ``sum(bit * w) / sum(w)`` over the searched bits, with
        per-bit weights conv and dil ``9*C*C``, sep ``9*C + C`` (36,864 / 640 at C = 64); with fusion search
        the block bits weigh ``N`` times that and each lff/gff bit ``C*C``."""
        self.validate(genome)
        w = _cb_bit_weights(self.channels)
        weights = [w[k] * (self.N if self.fusion else 1) for _ in range(self.n_masks) for k in range(self.K)]
        if self.fusion:
            weights += [self.channels * self.channels] * (self.M + self.N)
        bits = G.genome_bits(genome)
        return sum(b * x for b, x in zip(bits, weights)) / sum(weights)

    def cb_paper(self, genome: DeconasGenome) -> float:
        """The paper's complexity penalty (eq. 11): params of the child / params of the densest model."""
        from nasengine.cost import analytic_cost

        if self._densest_params is None:
            self._densest_params = analytic_cost(self.decode(self.densest()), (8, 8)).params
        return analytic_cost(self.decode(genome), (8, 8)).params / self._densest_params

    def genome_metrics(self, genome: DeconasGenome) -> dict[str, float]:
        """``cb_code`` and ``cb_paper`` (§1.5), for the ``deconas-cb`` reward."""
        return {"cb_code": float(self.cb_code(genome)), "cb_paper": float(self.cb_paper(genome))}

    # ---- serialisation ---------------------------------------------------------------------------------------
    def to_json(self, genome: DeconasGenome) -> dict:
        self.validate(genome)
        return genome.to_json()

    def from_json(self, data: Any) -> DeconasGenome:
        """Parse the JSON genome, or the README's flat bit string (a str)."""
        return DeconasGenome.from_json(data, self.N, self.M, self.fusion)

    def describe(self, genome: DeconasGenome) -> str:
        return genome.describe()

    # ---- vector encoding -----------------------------------------------------------------------------------
    def vector_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Every bit in ``[0, 1]``, in controller order (COMMON design §9)."""
        return np.zeros(self.n_bits, dtype=np.int64), np.ones(self.n_bits, dtype=np.int64)

    def vector_encode(self, genome: DeconasGenome) -> np.ndarray:
        return np.array(self.to_bits(genome), dtype=np.int64)

    def vector_decode(self, vector: Any) -> DeconasGenome:
        v = np.asarray(vector)
        if v.ndim != 1 or v.shape[0] != self.n_bits:
            raise ValidationError(f"must be a vector of {self.n_bits} bits, got shape {v.shape}", field="vector")
        if not np.all((v == 0) | (v == 1)):
            raise ValidationError(f"every entry must be 0 or 1, got {v.tolist()!r}", field="vector")
        return self.from_bits([int(b) for b in v])

    def size(self) -> int:
        return 2 ** self.n_bits


def _values(values) -> str:
    return ",".join(repr(float(v)) for v in values)


def _concat(g, nodes: list[int]) -> int:
    """The channel concatenation of ``nodes`` (in the given, ascending order), or the node itself when alone."""
    return nodes[0] if len(nodes) == 1 else g.add("concat", nodes)
