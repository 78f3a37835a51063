"""The HNAS search space (METHODS.md §2.1-2.3): L cells of a searched normal cell, one of which, at the searched
position ``up_pos``, is the searched upsampling cell.

Decoded network (C = ``channels``; METHODS §2.1, the released ``src/model/arch.py``)::

    x  = LR RGB - mean                                   "sub_mean" (the code's MeanShift, fixed)
    s0 = s1 = conv3x3(3 -> 4C, no bias)                  "stem"     (+ BatchNorm(4C) "stem.bn" with search_bn;
                                                                    nodes x C when nodes != 4)
    for i in 0..L-1:
        if i == up_pos: s0 = s1 = U_i(s0, s1)            upsampling cell (the code runs it twice: same result)
        else:           s0, s1 = s1, N_i(s0, s1)         normal cell
    y  = conv3x3(4C -> 3) + b  (at HR)                   "tail"
    y  = y + mean                                        "add_mean"

    cell_i(s0, s1) (kind = normal | up):
      h0 = conv1x1(relu(s0), 4C -> C, no bias)           "c{i}.{kind}.pre0"  (+ BN(affine=False) ".bn")
      h1 = conv1x1(relu(s1), 4C -> C, no bias)           "c{i}.{kind}.pre1"
      node t (t = 2..nodes+1) = sum over the genotype's two edges (op, f, t) of op(h_f)
      return concat(node 2..nodes+1)                     "c{i}.{kind}.out" (4C channels at 4 nodes)

Edge ops (slot prefix ``c{i}.{kind}.e{f}_{t}.{op}``; no BatchNorm unless ``search_bn``: the search supernet's
``BatchNorm(affine=False)`` after each conv group, §2.1/§2.3):

* ``skip_connect``: identity;
* ``sep_conv_kxk``: relu, dw kxk + pw 1x1 (no bias) ``.1``, relu, dw kxk + pw 1x1 ``.2`` (engine ``sep_conv``);
* ``dil_conv_kxk``: relu, dw kxk dilation 2 + pw 1x1 (no bias) (engine ``sep_conv`` with ``dilation=2``);
* ``rcab``: conv3x3 + b ``.conv1``, relu, conv3x3 + b ``.conv2``, channel attention reduction 3 ``.ca``, + input;
* upsampling cell, edges leaving nodes 0/1 (input LR, output HR, stride = scale): ``sub_pixel`` = conv3x3
  C -> s*s*C + b, pixel shuffle; ``deconvolution`` = transposed conv k3, stride s, + b; ``bilinear``, ``nearest``,
  ``area`` = interpolation by s; edges leaving nodes >= 2 (at HR, stride 1): ``deconvolution`` is a real 3x3
  transposed conv, the others are identities (§2.11 #3).

**Weight sharing** (§2.3): one weight per (cell position, cell type, edge (f, t), op), so the slot names above
hold the position, the type, the edge and the op. No single genome holds every slot (one cell type per position,
two edges per node), so the supernet's bank comes from :meth:`HnasSpace.supernet_graph`, a union graph with a
normal and an upsampling cell at every position, each with every edge and every op. Two edges of a genome with
the same (f, t) and op decode to two nodes with the **same** slot names: one module in the supernet (its output
added twice), two modules in the network built on its own (§2.3, §2.11 #5).
"""
from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from nasengine.errors import ValidationError
from nasengine.options import choice, flag, option, read_options, whole
from nasengine.space import SearchSpace
from nasengine_hnas import genome as G
from nasengine_hnas.genome import HnasGenome

__all__ = ["HnasSpace", "RGB_MEAN"]

#: The released code's MeanShift mean (``rgb_mean``, §2.1), on the engine's [0, 1] image range.
RGB_MEAN = (0.4488, 0.4371, 0.4040)
#: RCAB's channel-attention reduction in the code (``RCAB(C, 3, 3)``, §2.11 #10).
RCAB_REDUCTION = 3


class HnasSpace(SearchSpace):
    """HNAS's hierarchical space (module docstring): a normal cell (``nodes`` intermediate nodes, two edges
    each, 6 ops; 7 with ``paper_ops``), an upsampling cell (5 ops) and the upsampling cell's position among ``L``
    cells. ``size() = prod_{k<nodes} ((k+2) n_normal)^2 * prod_{k<nodes} ((k+2) n_up)^2 * L`` (ordered edge
    choices, as the controller samples them): 1.63e21 with 6 ops, 5.60e21 with 7 (§2.2).

    Options (a preset's ``space`` section; §2.1, §2.10): ``L`` (12), ``channels`` (C per op, 64; 8 in the
    search), ``nodes`` (4), ``scale`` (2), ``paper_ops`` (add the paper's up-and-down projection op; not in the
    code, §2.9 #1), ``search_bn`` (the search supernet's BatchNorms, §2.3), ``weight_layout`` (``per_slot``).

    Attributes a controller may read: ``L``, ``nodes``, ``normal_ops``, ``upsampling_ops``.
    """

    genome_schema = "1"

    @attrs.frozen(kw_only=True)
    class Options:
        L: int = option(12, whole(1), help="cells (12 in the paper); the upsampling cell is one of them")
        channels: int = option(64, whole(RCAB_REDUCTION),
                               help="C, channels per op (cell output 4C at 4 nodes): 8 in the search, 64 final")
        nodes: int = option(4, whole(1), help="intermediate nodes per cell (4)")
        scale: int = option(2, choice(2, 3, 4), help="upscaling factor: the stride of the upsampling cell's edges "
                                                     "leaving its inputs (the paper searches x2)")
        paper_ops: bool = option(False, flag, help="normal ops as the paper's Table I (adds up_and_down, which the "
                                                   "released code comments out; METHODS §2.9 #1)")
        search_bn: bool = option(False, flag, help="BatchNorm as the search supernet (affine on the stem, "
                                                   "affine=False after the op convs; METHODS §2.3); off for the "
                                                   "derived network")
        weight_layout: str = option("per_slot", choice("per_slot"),
                                    help="supernet weight sharing (every HNAS slot reads one input: per_slot)")

    def __init__(self, **options: Any):
        o = read_options("space", type(self).Options, options, name="hnas")
        self.L, self.channels, self.nodes, self.scale = o.L, o.channels, o.nodes, o.scale
        self.paper_ops, self.search_bn, self.weight_layout = o.paper_ops, o.search_bn, o.weight_layout
        self.normal_ops = G.PAPER_NORMAL_OPS if self.paper_ops else G.NORMAL_OPS
        self.upsampling_ops = G.UPSAMPLING_OPS
        lo, hi = G.token_bounds(self.L, self.nodes, len(self.normal_ops), len(self.upsampling_ops))
        self._lower, self._upper = np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64)

    @property
    def name(self) -> str:
        return "hnas"

    def options(self) -> dict[str, Any]:
        """The options this space was made with (plain data, as a genome file's ``options``)."""
        return {"L": self.L, "channels": self.channels, "nodes": self.nodes, "scale": self.scale,
                "paper_ops": self.paper_ops, "search_bn": self.search_bn, "weight_layout": self.weight_layout}

    def __repr__(self) -> str:
        return f"HnasSpace({', '.join(f'{k}={v!r}' for k, v in self.options().items())})"

    # ---- tokens --------------------------------------------------------------------------------------------
    def to_tokens(self, genome: HnasGenome) -> list[int]:
        """The genome's tokens in the controller's order (:mod:`nasengine_hnas.genome`)."""
        self.validate(genome)
        return G.genome_tokens(genome, self.normal_ops, self.upsampling_ops)

    def from_tokens(self, tokens) -> HnasGenome:
        """Inverse of :meth:`to_tokens`."""
        return G.genome_from_tokens(tokens, self.L, self.nodes, self.normal_ops, self.upsampling_ops)

    # ---- sampling and variation ------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> HnasGenome:
        """Uniform over the space: every token uniform in its range (the controller's choices at zero logits)."""
        return self.from_tokens([int(v) for v in rng.integers(self._lower, self._upper + 1)])

    def mutate(self, genome: HnasGenome, rng: np.random.Generator) -> HnasGenome:
        """One token (uniform over the tokens with a choice) changes to another value of its range: the child's
        genome always differs."""
        tokens = self.to_tokens(genome)
        free = [i for i in range(len(tokens)) if self._upper[i] > self._lower[i]]
        i = free[int(rng.integers(len(free)))]
        other = int(rng.integers(self._lower[i], self._upper[i]))  # one of the range's other values
        tokens[i] = other if other < tokens[i] else other + 1
        return self.from_tokens(tokens)

    def crossover(self, a: HnasGenome, b: HnasGenome, rng: np.random.Generator) -> tuple[HnasGenome, HnasGenome]:
        """Uniform crossover over the tokens (each token's range does not depend on the others, so every mix is a
        genome); child 2 takes the other parent's token. [E] the paper has no crossover."""
        x, y = self.to_tokens(a), self.to_tokens(b)
        take = rng.integers(0, 2, size=len(x)).astype(bool)
        return (self.from_tokens([p if t else q for p, q, t in zip(x, y, take)]),
                self.from_tokens([q if t else p for p, q, t in zip(x, y, take)]))

    # ---- validity and decoding -----------------------------------------------------------------------------------
    def validate(self, genome: Any) -> None:
        if not isinstance(genome, HnasGenome):
            raise ValidationError(f"expected an HnasGenome, got {type(genome).__name__}", field="genome")
        genome.check(self.L, self.nodes, self.normal_ops, self.upsampling_ops)

    def decode(self, genome: HnasGenome):
        """The :class:`~nasengine.graph.ArchGraph` of ``genome`` (module docstring)."""
        self.validate(genome)
        g, s0 = self._stem()
        s1 = s0
        for i in range(self.L):
            if i == genome.up_pos:
                # The code runs the upsampling cell twice on the same inputs (identical results, §2.11 #2): computed
                # once here, each of its nodes marked as run twice (the "executed" cost convention counts it so).
                before = set(g)
                s0 = s1 = self._cell(g, i, "up", s0, s1, genome.upsampling)
                g.set_runs(set(g) - before, 2)
            else:
                s0, s1 = s1, self._cell(g, i, "normal", s0, s1, genome.normal)
        self._tail(g, s1)
        return g

    def supernet_graph(self):
        """The weight-sharing supernet's bank graph (§2.3): a normal and an upsampling cell at every position,
        each with every edge (f, t) and every op (a node sums them all), so that it holds every slot of the
        space. Cells 0..L-2 chain through their normal cells at LR; the last position's upsampling cell feeds
        the tail; the other cells end in ``unused`` (built, never run). A supernet reads only its slots'
        modules, whose shapes do not depend on the resolution a cell runs at."""
        g, s0 = self._stem()
        s1 = s0
        for i in range(self.L):
            normal = self._cell(g, i, "normal", s0, s1, None)
            up = self._cell(g, i, "up", s0, s1, None)
            if i < self.L - 1:
                g.add("unused", up)
                s0, s1 = s1, normal
            else:
                g.add("unused", normal)
                s1 = up
        self._tail(g, s1)
        return g

    def densest(self) -> HnasGenome:
        """No single HNAS genome holds every slot (one cell type per position, two edges per node): the
        supernet's bank comes from :meth:`supernet_graph`. This is the genome of that graph's live path's
        shape: upsampling cell last, every edge from the cell's input 1 running the op with most parameters
        (rcab; deconvolution) -- for code that only needs a genome of the space's kind (scale, channels)."""
        def edges(op):
            return tuple((op, 1, t) for t in range(2, self.nodes + 2) for _ in range(2))

        return HnasGenome(self.L, self.nodes, self.L - 1, edges("rcab"), edges("deconvolution"))

    # ---- graph pieces ----------------------------------------------------------------------------------------
    def _bn(self, g, x: int, name: str, affine: bool = False) -> int:
        return g.add("batch_norm", x, affine=affine, name=f"{name}.bn") if self.search_bn else x

    def _stem(self):
        from nasengine.graph import ArchGraph

        g = ArchGraph()
        x = g.input(channels=3, name="lr_rgb")
        x = g.add("shift", x, values=_values(-v for v in RGB_MEAN), name="sub_mean")
        # the code's stem is multiplier x C with multiplier = 4 = its node count: nodes x C, so that every cell's
        # inputs are nodes x C wide whatever the position (a supernet's pre0/pre1 then have one width)
        stem = g.add("conv", x, out_channels=self.nodes * self.channels, kernel=3, bias=False, name="stem")
        return g, self._bn(g, stem, "stem", affine=True)  # §2.1: the search supernet's stem BN is affine

    def _tail(self, g, s: int) -> None:
        y = g.add("conv", s, out_channels=3, kernel=3, name="tail")
        y = g.add("shift", y, values=_values(RGB_MEAN), name="add_mean")
        g.output(y)

    def _cell(self, g, i: int, kind: str, s0: int, s1: int, edges) -> int:
        """Cell ``i`` of ``kind`` on ``s0, s1``: with ``edges`` (the genotype), its nodes; with ``None``, every
        edge with every op (the supernet graph)."""
        C, prefix = self.channels, f"c{i}.{kind}"
        h = []
        for j, s in enumerate((s0, s1)):
            pre = g.add("conv", g.add("relu", s), out_channels=C, kernel=1, bias=False, name=f"{prefix}.pre{j}")
            h.append(self._bn(g, pre, f"{prefix}.pre{j}"))
        ops = self.normal_ops if kind == "normal" else self.upsampling_ops
        for t in range(2, self.nodes + 2):
            if edges is None:
                chosen = [(op, f) for f in range(t) for op in ops]
            else:
                chosen = [(op, f) for op, f, tt in edges if tt == t]
            outs = [self._edge(g, kind, f"{prefix}.e{f}_{t}.{op}", op, h[f], f) for op, f in chosen]
            h.append(g.add("add", outs))
        for j in (0, 1):
            if not g.consumers(h[j]):
                # The code computes both preprocessings whatever the genotype reads (its params exist): built, unused.
                g.add("unused", h[j])
        # Named (a parameter-free slot), so that a supernet sees the next cells' preprocess convs read one tensor.
        return g.add("concat", h[2:], name=f"{prefix}.out")

    def _edge(self, g, kind: str, name: str, op: str, x: int, f: int) -> int:
        C = self.channels
        if kind == "up":
            s = self.scale if f < 2 else 1  # edges leaving the cell's inputs upsample (§2.1)
            if op == "deconvolution":
                return g.add("conv_transpose", x, out_channels=C, kernel=3, stride=s, name=name)
            if s == 1:
                return x  # stride-1 sub_pixel and interpolations are identities (§2.11 #3)
            if op == "sub_pixel":
                y = g.add("conv", x, out_channels=C * s * s, kernel=3, name=name)
                return g.add("pixel_shuffle", y, factor=s)
            return g.add("interpolate", x, factor=s, mode=op)
        if op == "skip_connect":
            return x
        if op == "rcab":
            y = self._bn(g, g.add("conv", x, out_channels=C, kernel=3, name=f"{name}.conv1"), f"{name}.conv1")
            y = self._bn(g, g.add("conv", g.add("relu", y), out_channels=C, kernel=3, name=f"{name}.conv2"),
                         f"{name}.conv2")
            y = g.add("channel_attention", y, reduction=RCAB_REDUCTION, name=f"{name}.ca")
            return g.add("add", y, x)
        if op == "up_and_down":
            return self._udpb(g, name, x)
        k = int(op[-1])
        if op.startswith("sep_conv"):
            y = x
            for part in (1, 2):
                y = g.add("sep_conv", g.add("relu", y), out_channels=C, kernel=k, bias=False, name=f"{name}.{part}")
                y = self._bn(g, y, f"{name}.{part}")
            return y
        # dil_conv_kxk: relu, depthwise kxk dilation 2 + pointwise 1x1 (no bias)
        y = g.add("sep_conv", g.add("relu", x), out_channels=C, kernel=k, dilation=2, bias=False, name=name)
        return self._bn(g, y, name)

    def _udpb(self, g, name: str, x: int) -> int:
        """The paper's up-and-down projection block (Table I; commented out in the released code, so [E] our
        reading of DBPN's blocks, METHODS §2.1): an up-projection then a down-projection, each conv / transposed
        conv 6x6 stride 2 (padding 2) + bias + PReLU; no BatchNorm."""
        C = self.channels

        def block(op, h, part):
            # DBPN's kernel 6, stride 2, padding 2 (the transposed conv's padding 2 is the engine's automatic one).
            pad = {"padding": 2} if op == "conv" else {}
            y = g.add(op, h, out_channels=C, kernel=6, stride=2, name=f"{name}.{part}", **pad)
            return g.add("prelu", y, name=f"{name}.{part}.act")

        def minus(a, b):
            return g.add("add", a, g.add("scale", b, value=-1.0))

        h0 = block("conv_transpose", x, "up.deconv1")  # up-projection: LR -> HR
        l0 = block("conv", h0, "up.conv")
        up = g.add("add", block("conv_transpose", minus(l0, x), "up.deconv2"), h0)
        l0 = block("conv", up, "down.conv1")  # down-projection: HR -> LR
        h0 = block("conv_transpose", l0, "down.deconv")
        return g.add("add", block("conv", minus(h0, up), "down.conv2"), l0)

    # ---- serialisation ---------------------------------------------------------------------------------------
    def to_json(self, genome: HnasGenome) -> dict:
        self.validate(genome)
        return genome.to_json()

    def from_json(self, data: Any) -> HnasGenome:
        """Parse the JSON genome (an optional ``"C"`` must equal ``channels``), or ``{"genotype": "Genotype(...)",
        "up_pos": p}`` (the released code's text)."""
        return G.genome_from_json(data, self.L, self.nodes, self.normal_ops, self.upsampling_ops, self.channels)

    def describe(self, genome: HnasGenome) -> str:
        return genome.describe()

    # ---- vector encoding -----------------------------------------------------------------------------------
    def vector_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The tokens in the controller's order (:mod:`nasengine_hnas.genome`): per node from_1, from_2 in
        ``[0, t-1]``, op_1, op_2 in ``[0, n_ops-1]``, normal cell then upsampling cell, then the position."""
        return self._lower.copy(), self._upper.copy()

    def vector_encode(self, genome: HnasGenome) -> np.ndarray:
        return np.array(self.to_tokens(genome), dtype=np.int64)

    def vector_decode(self, vector: Any) -> HnasGenome:
        v = np.asarray(vector)
        if v.ndim != 1 or v.shape[0] != len(self._upper):
            raise ValidationError(f"must be a vector of {len(self._upper)} tokens, got shape {v.shape}", field="vector")
        if not np.issubdtype(v.dtype, np.integer) and not np.all(np.mod(v, 1) == 0):
            raise ValidationError(f"entries must be whole numbers, got {v.tolist()!r}", field="vector")
        return self.from_tokens([int(x) for x in v])

    def size(self) -> int:
        n = 1
        for n_ops in (len(self.normal_ops), len(self.upsampling_ops)):
            for k in range(self.nodes):
                n *= ((k + 2) * n_ops) ** 2
        return n * self.L


def _values(values) -> str:
    return ",".join(repr(float(v)) for v in values)
