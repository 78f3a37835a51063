"""The FALSR elastic search space (§3): ``n`` cell blocks from the micro space joined by searched connections.

Decoded network, wired exactly as the released FALSR-A/B/C graphs (``reference/README.md``, FALSR section)::

    LR Y (1 ch) -> conv3x3 1->32 + ReLU                                   = node 0
    for cell m = 1..n:  concat(selected nodes, ascending) -> cell x_m      = node m
    tail: concat(selected nodes incl. node n) -> conv3x3 C->32 + ReLU, + node 0,
          pixel_shuffle(2) -> 8 ch, conv3x3 8->1 at HR                      = SR Y

Every conv has a bias; a cell reads its inputs' concatenation directly (no fusion conv). Cells
(``f`` = channels, ``k`` = kernel, ``b`` = blocks):

* ``conv`` / ``group_conv_g{2,4}``: ``b`` x [conv kxk (first C_in->f, then f->f, ``groups`` groups, no
  channel shuffle) + ReLU]; with skip and b > 1 the output is block 0's output + the last block's output.
  The TF graphs' split/conv/concat + one bias vector is exactly a grouped ``conv`` with a bias (same params
  and Mult-Adds: k*k*(C_in/g)*f weights + f biases).
* ``inverted_bottleneck_e2``: linear conv1x1 C_in->f (x0), then ``b`` x [conv kxk f->2f + ReLU; depthwise
  conv3x3 2f + ReLU; conv kxk 2f->f (linear); + block input]; with skip and b > 1, + x0 at the end.

Group-conv divisibility: every width here (head 32, cells 16/32/48/64) is a multiple of 16, so every
concatenation is too and grouped convs (g = 2, 4) always divide their input — every genome of the space
decodes, nothing is repaired or rejected for it. ``channels`` options outside the paper's set are refused.

Nodes carry the reference's layer names (``head``, ``cell3/conv0``, ``cell1/b0/dw3x3``, ``tail/yout``, ...).
"""
from __future__ import annotations

import numbers
from typing import Any, Sequence

import attrs
import numpy as np

from nasengine.errors import ValidationError
from nasengine.options import choice, option, read_options, sequence, whole
from nasengine.space import SearchSpace
from nasengine_falsr import genome as G
from nasengine_falsr.genome import Cell, FalsrGenome

__all__ = ["FalsrSpace"]


class FalsrSpace(SearchSpace):
    """FALSR's space of ``n_cells`` cell blocks (default 7, the released models') at ``scale`` 2.

    Options (a preset's ``space`` section): ``n_cells`` (>= 1), ``scale`` (2: FALSR is defined and released
    for x2 only), ``channels`` (a subset of the paper's 16, 32, 48, 64 — e.g. a cheaper CPU preset).
    Genomes: :class:`~nasengine_falsr.genome.FalsrGenome`; ``size() = |cells|**n * 2**(n(n+1)/2)``, i.e.
    ``192**n * 2**(n(n+1)/2)`` with the default options.
    """

    genome_schema = "1"

    @attrs.frozen(kw_only=True)
    class Options:
        n_cells: int = option(7, whole(1), help="cell blocks (7 in the released models)")
        scale: int = option(2, choice(2), help="FALSR is defined for x2 only (a x2 pixel shuffle of 32 channels)")
        channels: tuple = option(G.CHANNELS, sequence(choice(*G.CHANNELS), min_length=1, distinct=True),
                                 help="cell channel counts allowed, a subset of the paper's 16, 32, 48, 64 "
                                      "(multiples of 16, so that grouped convs always divide)")

    def __init__(self, **options: Any):
        declared = read_options("space", type(self).Options, options, name="falsr")
        n_cells, chosen = declared.n_cells, declared.channels
        self.n_cells = int(n_cells)
        self.scale = 2
        self.channels = tuple(c for c in G.CHANNELS if c in chosen)
        #: The allowed cells in index order; a cell's position here is its categorical index in this space.
        self.cell_choices: tuple[Cell, ...] = tuple(c for c in G.ALL_CELLS if c.channels in self.channels)
        self._position = {c: i for i, c in enumerate(self.cell_choices)}

    @property
    def name(self) -> str:
        return "falsr"

    def options(self) -> dict[str, Any]:
        """The options this space was made with (plain data, as a genome file's ``options``)."""
        out: dict[str, Any] = {"n_cells": self.n_cells, "scale": self.scale}
        if self.channels != G.CHANNELS:
            out["channels"] = list(self.channels)
        return out

    def __repr__(self) -> str:
        return f"FalsrSpace({', '.join(f'{k}={v!r}' for k, v in self.options().items())})"

    # ---- cell indices (per-cell categorical choices, e.g. for an RL controller) ---------------------------
    @property
    def n_cell_choices(self) -> int:
        """Number of cell choices per cell block (192 with the paper's channels)."""
        return len(self.cell_choices)

    @property
    def n_macro_bits(self) -> int:
        """Number of connection bits, ``n(n+1)/2``."""
        return G.macro_length(self.n_cells)

    def cell_index(self, cell: Cell) -> int:
        """``cell``'s index in ``[0, n_cell_choices)`` (equals :func:`~nasengine_falsr.genome.cell_to_index`
        with the paper's channels)."""
        try:
            return self._position[cell]
        except (KeyError, TypeError):
            raise ValidationError(f"{cell!r} is not a cell of this space", field="cell") from None

    def cell_from_index(self, index: int) -> Cell:
        """The cell of index ``index`` in ``[0, n_cell_choices)``."""
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < self.n_cell_choices:
            raise ValidationError(f"must be an integer in [0, {self.n_cell_choices}), got {index!r}",
                                  field="cell index")
        return self.cell_choices[int(index)]

    # ---- sampling and variation -----------------------------------------------------------------------------
    def _random_cell(self, rng: np.random.Generator) -> Cell:
        return self.cell_choices[int(rng.integers(self.n_cell_choices))]

    def sample(self, rng: np.random.Generator) -> FalsrGenome:
        """Uniform over the space: every cell uniform over the cell choices, every bit a fair coin. (The
        paper's initialisation — one repeated cell, random/dense/no connections — is the controller's.)"""
        micro = tuple(self._random_cell(rng) for _ in range(self.n_cells))
        macro = tuple(int(b) for b in rng.integers(0, 2, size=self.n_macro_bits))
        return FalsrGenome(micro, macro)

    def mutate(self, genome: FalsrGenome, rng: np.random.Generator) -> FalsrGenome:
        """One random gene changes: with probability 1/2 a cell ``x_i`` (uniform ``i``) becomes another cell
        choice (uniform among the others), else one connection bit ``c_i^j`` (uniform) flips. The child
        always differs from ``genome``."""
        self.validate(genome)
        if rng.random() < 0.5:
            i = int(rng.integers(self.n_cells))
            j = int(rng.integers(self.n_cell_choices - 1))
            j += j >= self.cell_index(genome.micro[i])  # skip the current choice
            micro = list(genome.micro)
            micro[i] = self.cell_choices[j]
            return FalsrGenome(tuple(micro), genome.macro)
        k = int(rng.integers(self.n_macro_bits))
        macro = list(genome.macro)
        macro[k] = 1 - macro[k]
        return FalsrGenome(genome.micro, tuple(macro))

    def crossover(self, a: FalsrGenome, b: FalsrGenome,
                  rng: np.random.Generator) -> tuple[FalsrGenome, FalsrGenome]:
        """§4.4, Eq. (4), at once in the micro and the macro genes: a position ``i`` (a cell ``x_i``) and a
        position ``j`` (a row ``c_j^{j:n}`` of connections) are drawn uniformly; child 1 is ``a`` with
        ``b``'s ``x_i`` and row ``j``, child 2 is ``b`` with ``a``'s. (Eq. (4) takes only position i/j from
        the other parent — ``(x_1A, ..., x_iB, ..., x_nA)`` — not a prefix/suffix cut.)"""
        self.validate(a)
        self.validate(b)
        n = self.n_cells
        i = int(rng.integers(n))
        j = int(rng.integers(n))
        lo, hi = G.row_offset(n, j), G.row_offset(n, j + 1)

        def child(x: FalsrGenome, y: FalsrGenome) -> FalsrGenome:
            micro = x.micro[:i] + (y.micro[i],) + x.micro[i + 1:]
            macro = x.macro[:lo] + y.macro[lo:hi] + x.macro[hi:]
            return FalsrGenome(micro, macro)

        return child(a, b), child(b, a)

    # ---- validity and decoding ----------------------------------------------------------------------------
    def validate(self, genome: Any) -> None:
        """Raise :class:`ValidationError` naming the field unless ``genome`` is a well-formed genome of this
        space (``n_cells`` cells of the allowed choices, ``n(n+1)/2`` bits of 0/1). Grouped convs always
        divide their input here (see the module docstring), so there is no further condition."""
        if not isinstance(genome, FalsrGenome):
            raise ValidationError(f"expected a FalsrGenome, got {type(genome).__name__}", field="genome")
        genome.check(self.n_cells, self.channels)

    def decode(self, genome: FalsrGenome):
        """The :class:`~nasengine.graph.ArchGraph` of ``genome``, wired as the released models (module
        docstring)."""
        from nasengine.graph import ArchGraph

        self.validate(genome)
        g = ArchGraph()
        x = g.input(channels=1, name="lr_y")  # the LR Y channel (paper silent; the released graphs' input)
        # Head ReLU, bias on every conv: paper silent, as the released graphs.
        nodes = [g.add("relu", g.add("conv", x, out_channels=G.HEAD_CHANNELS, kernel=3, name="head"))]
        for i, cell in enumerate(genome.micro):
            # Cells are named cell0..cell{n-1} as in the reference's layer list; cell i outputs node i+1.
            nodes.append(_decode_cell(g, cell, _concat(g, nodes, genome.inputs(i + 1), f"cell{i}/in"),
                                      f"cell{i}"))
        t = _concat(g, nodes, genome.tail_inputs, "tail/in")
        t = g.add("relu", g.add("conv", t, out_channels=G.HEAD_CHANNELS, kernel=3, name="tail/conv3x3"))
        # Paper silent on the global residual: the released graphs add node 0 before the shuffle.
        t = g.add("add", t, nodes[0], name="tail/global_residual")
        t = g.add("pixel_shuffle", t, factor=self.scale, name="tail/shuffle")
        t = g.add("conv", t, out_channels=1, kernel=3, name="tail/yout")  # at HR, no activation
        g.output(t)
        return g

    # ---- serialisation -----------------------------------------------------------------------------------------
    def to_json(self, genome: FalsrGenome) -> dict:
        """``{"micro": [cells], "macro": [[c_1^1..c_1^n], ..., [c_n^n]]}`` (see :mod:`nasengine_falsr.genome`)."""
        return genome.to_json()

    def from_json(self, data: Any) -> FalsrGenome:
        return FalsrGenome.from_json(data, self.n_cells, self.channels)

    def describe(self, genome: FalsrGenome) -> str:
        return genome.describe()

    # ---- vector encoding -----------------------------------------------------------------------------------------
    def vector_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``n`` cell indices in ``[0, n_cell_choices)`` then ``n(n+1)/2`` bits."""
        return G.vector_bounds(self.n_cells, self.n_cell_choices)

    def vector_encode(self, genome: FalsrGenome) -> np.ndarray:
        self.validate(genome)
        return G.vector_encode(genome, self.cell_choices)

    def vector_decode(self, vector: Any) -> FalsrGenome:
        return G.vector_decode(vector, self.n_cells, self.cell_choices)

    def size(self) -> int:
        return self.n_cell_choices ** self.n_cells * 2 ** self.n_macro_bits


# ---- decoding helpers --------------------------------------------------------------------------------------------
def _concat(g, nodes: list[int], selected: Sequence[int], name: str) -> int:
    """The channel concatenation (ascending node index) of ``selected``, or the node itself when alone."""
    # Paper silent on how connections merge: the released graphs concatenate, with no fusion conv.
    ins = [nodes[s] for s in selected]
    return ins[0] if len(ins) == 1 else g.add("concat", ins, name=name)


def _decode_cell(g, cell: Cell, x: int, prefix: str) -> int:
    f, k = cell.channels, cell.kernel
    if cell.is_inverted_bottleneck:
        # Paper silent on the cell internals: linear 1x1 projection first, as the released graphs.
        x0 = g.add("conv", x, out_channels=f, kernel=1, name=f"{prefix}/proj1x1")
        h = x0
        for b in range(cell.blocks):
            e = g.add("relu", g.add("conv", h, out_channels=2 * f, kernel=k, name=f"{prefix}/b{b}/expand"))
            # The depthwise conv is 3x3 whatever the cell's kernel (reference README).
            d = g.add("relu", g.add("conv", e, out_channels=2 * f, kernel=3, groups=2 * f,
                                    name=f"{prefix}/b{b}/dw3x3"))
            p = g.add("conv", d, out_channels=f, kernel=k, name=f"{prefix}/b{b}/project")
            h = g.add("add", p, h, name=f"{prefix}/b{b}/residual")  # present whatever `skip` says (reference)
        return g.add("add", x0, h, name=f"{prefix}/skip") if cell.skip and cell.blocks > 1 else h
    # Grouped cells: TF split/conv/concat + one bias = a grouped conv with a bias; no channel shuffle (reference).
    conv = "gconv" if cell.groups > 1 else "conv"
    outs = []
    h = x
    for b in range(cell.blocks):
        h = g.add("relu", g.add("conv", h, out_channels=f, kernel=k, groups=cell.groups, name=f"{prefix}/{conv}{b}"))
        outs.append(h)
    # Skip = block 0's output + the last block's (reference); with one block there is nothing to add.
    return g.add("add", outs[0], h, name=f"{prefix}/skip") if cell.skip and cell.blocks > 1 else h
