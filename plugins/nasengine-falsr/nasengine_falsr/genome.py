"""The FALSR genome ``(M_mic, M_mac)`` of §4.1: one cell choice per cell block, and the connection bits.

Micro genes (§3.1)
------------------
``M_mic = (x_1, ..., x_n)``: cell block ``i`` runs the cell ``x_i`` drawn from the operator set ``S``:

=========  ==================================================================
kind       ``conv``, ``group_conv_g2``, ``group_conv_g4``, ``inverted_bottleneck_e2``
channels   16, 32, 48, 64 (the cell's output width ``f``)
kernel     1, 3
skip       False, True (the in-cell residual connection)
blocks     1, 2, 4 (repeated blocks)
=========  ==================================================================

so ``|S| = 4 * 4 * 2 * 2 * 3 = 192``. A cell's **index** in ``[0, 192)`` is the mixed-radix number of its
choice positions in the table above, kind most significant::

    index = (((kind * 4 + channels) * 2 + kernel) * 2 + skip) * 3 + blocks

(:func:`cell_to_index`, :func:`cell_from_index`). Cells have the paper's names (Fig. 3/4 captions):
``conv_f64_k3_b4_isskip``, ``groupConG4_f16_k3_b4_noskip``, ``invertBotConE2_f32_k3_b4_noskip``
(:func:`cell_name`, :func:`parse_cell_name`).

Macro genes (§3.2) and the bit layout
-------------------------------------
Nodes: node 0 is the head's output, node ``m`` (``1 <= m <= n``) the output of cell block ``m``. The
*consumers* are cell blocks ``1..n`` and the tail (consumer ``n + 1``). Consumer ``m`` always reads node
``m - 1`` (its predecessor: the released models always wire it, and the tail always reads the last cell);
every other earlier node is a searched input. That leaves exactly ``n(n+1)/2`` free bits, the paper's count:

    ``c_i^j`` (``1 <= i <= j <= n``) = 1  iff  node ``i - 1`` (the input of ``CB_i``) is also an input of
    consumer ``j + 1`` (``CB_{j+1}``, or the tail when ``j = n``) — a skip carrying the input of ``CB_i``
    past ``CB_i .. CB_j``.

Row ``i`` (``c_i^{i:n}``, ``n + 1 - i`` bits) thus lists where node ``i - 1`` goes beyond its own next
block. ``M_mac`` is stored flat, rows in order (the paper's output order ``O^mac``), 0-based::

    macro[row_offset(n, s) + t]  <->  source node s (row s+1 = paper's i), consumer s + 2 + t (paper's j = s+1+t)
    row_offset(n, s) = s*n - s*(s-1)/2

For n = 7: bits 0..6 = node 0 -> cells 2..7, tail; bits 7..12 = node 1 -> cells 3..7, tail; ...;
bits 25..26 = node 5 -> cell 7, tail; bit 27 = node 6 -> tail. A consumer's input set is its predecessor plus
every source whose bit is set, concatenated in ascending node order. All bits 0 is a plain chain; all 1 dense.
FALSR-C's released graph has 8 bits set, the "8 connections in total" of §6.2.

JSON
----
``{"micro": [CELL, ...], "macro": [[c_1^1 .. c_1^n], [c_2^2 .. c_2^n], ..., [c_n^n]]}`` — the nested list
of §4.1, with ``CELL = {"kind", "channels", "kernel", "skip", "blocks"}`` (a paper cell name string is
accepted on input too). Malformed data raises :class:`nasengine.errors.ValidationError` naming the field
(``micro[3].channels``, ``macro[2][1]``).

Vector encoding (generic controllers)
-------------------------------------
``[index(x_1), ..., index(x_n), macro bits...]``: ``n`` categorical cell indices (over the allowed cells,
:func:`vector_bounds`) then the ``n(n+1)/2`` bits.
"""
from __future__ import annotations

import numbers
import re
from typing import Any, Iterable, Mapping, Sequence

import attrs
import numpy as np

from nasengine.errors import ValidationError
from nasengine.space import check_fields

__all__ = [
    "KINDS", "CHANNELS", "KERNELS", "SKIPS", "BLOCKS", "HEAD_CHANNELS", "N_CELL_CHOICES", "ALL_CELLS",
    "Cell", "FalsrGenome",
    "cell_name", "parse_cell_name", "cell_to_index", "cell_from_index",
    "macro_length", "row_offset", "bit_index",
    "vector_bounds", "vector_encode", "vector_decode",
]

KINDS = ("conv", "group_conv_g2", "group_conv_g4", "inverted_bottleneck_e2")
CHANNELS = (16, 32, 48, 64)
KERNELS = (1, 3)
SKIPS = (False, True)
BLOCKS = (1, 2, 4)
#: Width of the head conv (node 0) and of the tail conv (§3: "a 2D convolution with 32 3x3 filters").
HEAD_CHANNELS = 32
N_CELL_CHOICES = len(KINDS) * len(CHANNELS) * len(KERNELS) * len(SKIPS) * len(BLOCKS)  # 192

_GROUPS = {"conv": 1, "group_conv_g2": 2, "group_conv_g4": 4, "inverted_bottleneck_e2": 1}
_PAPER_PREFIX = {"conv": "conv", "group_conv_g2": "groupConG2", "group_conv_g4": "groupConG4",
                 "inverted_bottleneck_e2": "invertBotConE2"}
_PREFIX_KIND = {v: k for k, v in _PAPER_PREFIX.items()}
_NAME_RE = re.compile(r"^(conv|groupConG2|groupConG4|invertBotConE2)_f(\d+)_k(\d+)_b(\d+)_(isskip|noskip)$")
_CELL_FIELDS = ("kind", "channels", "kernel", "skip", "blocks")
_GENOME_FIELDS = ("micro", "macro")


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (so that genomes built from arrays hash and serialise alike)."""
    return value.item() if isinstance(value, np.generic) else value


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------------------
# cells
# ---------------------------------------------------------------------------------------------------------
@attrs.frozen
class Cell:
    """One cell choice ``x_i`` (see the module docstring). Immutable and hashable."""

    kind: str = attrs.field(converter=_plain)
    channels: int = attrs.field(converter=_plain)
    kernel: int = attrs.field(converter=_plain)
    skip: bool = attrs.field(converter=_plain)
    blocks: int = attrs.field(converter=_plain)

    @property
    def groups(self) -> int:
        """Groups of every conv of a grouped-conv cell (1 otherwise)."""
        return _GROUPS[self.kind]

    @property
    def is_inverted_bottleneck(self) -> bool:
        return self.kind == "inverted_bottleneck_e2"

    @property
    def expansion(self) -> int:
        """Expansion rate of an inverted-bottleneck cell (2), 1 otherwise."""
        return 2 if self.is_inverted_bottleneck else 1

    @property
    def name(self) -> str:
        """The paper's name, e.g. ``conv_f64_k3_b4_isskip``."""
        return cell_name(self)

    def check(self, field: str = "cell", channels: Sequence[int] = CHANNELS) -> None:
        """Raise :class:`ValidationError` naming ``field.<attr>`` unless every gene is one of its choices."""
        for attr, choices in (("kind", KINDS), ("channels", channels), ("kernel", KERNELS), ("skip", SKIPS),
                              ("blocks", BLOCKS)):
            value = getattr(self, attr)
            ok_type = isinstance(value, bool) if attr == "skip" else (
                isinstance(value, str) if attr == "kind" else _is_int(value))
            if not ok_type or value not in choices:
                raise ValidationError(f"{value!r} is not one of {', '.join(map(repr, choices))}",
                                      field=f"{field}.{attr}")

    def to_json(self) -> dict:
        return {"kind": self.kind, "channels": self.channels, "kernel": self.kernel, "skip": self.skip,
                "blocks": self.blocks}

    @classmethod
    def from_json(cls, data: Any, field: str = "cell", channels: Sequence[int] = CHANNELS) -> "Cell":
        """Parse ``{"kind", "channels", "kernel", "skip", "blocks"}`` or a paper cell name."""
        if isinstance(data, str):
            cell = parse_cell_name(data, field=field)
        elif isinstance(data, Mapping):
            check_fields(data, _CELL_FIELDS, field)
            cell = cls(**{k: data[k] for k in _CELL_FIELDS})
        else:
            raise ValidationError("must be an object {kind, channels, kernel, skip, blocks} or a cell name "
                                  f"like 'conv_f64_k3_b4_isskip', got {data!r}", field=field)
        cell.check(field, channels)
        return cell


def cell_name(cell: Cell) -> str:
    """The paper's cell name: ``{conv|groupConG2|groupConG4|invertBotConE2}_f{channels}_k{kernel}_b{blocks}_
    {isskip|noskip}``."""
    return (f"{_PAPER_PREFIX[cell.kind]}_f{cell.channels}_k{cell.kernel}_b{cell.blocks}_"
            f"{'isskip' if cell.skip else 'noskip'}")


def parse_cell_name(name: str, field: str = "cell") -> Cell:
    """The :class:`Cell` named ``name`` (:func:`cell_name`'s inverse); ValidationError naming ``field``."""
    m = _NAME_RE.match(name) if isinstance(name, str) else None
    if m is None:
        raise ValidationError(f"{name!r} is not a FALSR cell name like 'conv_f64_k3_b4_isskip' or "
                              "'groupConG4_f16_k3_b4_noskip'", field=field)
    prefix, f, k, b, skip = m.groups()
    cell = Cell(_PREFIX_KIND[prefix], int(f), int(k), skip == "isskip", int(b))
    cell.check(field)
    return cell


def cell_to_index(cell: Cell) -> int:
    """The cell's index in ``[0, 192)`` over the paper's operator set ``S`` (see the module docstring)."""
    cell.check()
    return ((((KINDS.index(cell.kind) * len(CHANNELS) + CHANNELS.index(cell.channels)) * len(KERNELS)
              + KERNELS.index(cell.kernel)) * len(SKIPS) + SKIPS.index(cell.skip)) * len(BLOCKS)
            + BLOCKS.index(cell.blocks))


def cell_from_index(index: int) -> Cell:
    """The cell of index ``index`` in ``[0, 192)`` (:func:`cell_to_index`'s inverse)."""
    if not _is_int(_plain(index)) or not 0 <= index < N_CELL_CHOICES:
        raise ValidationError(f"must be an integer in [0, {N_CELL_CHOICES}), got {index!r}", field="cell index")
    index, b = divmod(int(index), len(BLOCKS))
    index, s = divmod(index, len(SKIPS))
    index, k = divmod(index, len(KERNELS))
    kind, c = divmod(index, len(CHANNELS))
    return Cell(KINDS[kind], CHANNELS[c], KERNELS[k], SKIPS[s], BLOCKS[b])


#: The operator set S, in index order.
ALL_CELLS: tuple[Cell, ...] = tuple(cell_from_index(i) for i in range(N_CELL_CHOICES))


# ---------------------------------------------------------------------------------------------------------
# macro bit layout
# ---------------------------------------------------------------------------------------------------------
def macro_length(n: int) -> int:
    """Number of connection bits for ``n`` cells: ``n(n+1)/2``."""
    return n * (n + 1) // 2


def row_offset(n: int, source: int) -> int:
    """Flat index of the first bit of row ``source`` (0-based; the paper's ``c_{source+1}^{source+1:n}``)."""
    return source * n - source * (source - 1) // 2


def bit_index(n: int, source: int, consumer: int) -> int:
    """Flat index of the bit "node ``source`` feeds consumer ``consumer``" (``consumer`` = cell 1..n, or
    ``n + 1`` for the tail); needs ``0 <= source`` and ``source + 2 <= consumer <= n + 1``."""
    if not (0 <= source and source + 2 <= consumer <= n + 1):
        raise ValueError(f"no free bit for node {source} -> consumer {consumer} with n={n} (the predecessor "
                         "is always wired; consumers are 1..n+1)")
    return row_offset(n, source) + consumer - source - 2


# ---------------------------------------------------------------------------------------------------------
# the genome
# ---------------------------------------------------------------------------------------------------------
def _cells(value: Any) -> Any:
    try:
        return tuple(value) if not isinstance(value, (str, bytes, Mapping)) else value
    except TypeError:
        return value


def _bits(value: Any) -> Any:
    try:
        if isinstance(value, (str, bytes, Mapping)):
            return value
        return tuple(int(_plain(b)) if isinstance(_plain(b), bool) else _plain(b) for b in value)
    except TypeError:
        return value


@attrs.frozen
class FalsrGenome:
    """``(M_mic, M_mac)``: ``micro`` = one :class:`Cell` per cell block, ``macro`` = the ``n(n+1)/2``
    connection bits, flat in the paper's row order (see the module docstring). Immutable and hashable;
    :meth:`check` (or the space's ``validate``) tells whether it is well formed."""

    micro: tuple = attrs.field(converter=_cells)
    macro: tuple = attrs.field(converter=_bits)

    # ---- structure --------------------------------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        return len(self.micro)

    @property
    def rows(self) -> tuple[tuple[int, ...], ...]:
        """``M_mac`` as the paper's nested list: row ``s`` = ``c_{s+1}^{s+1:n}`` (``n - s`` bits)."""
        n = self.n_cells
        return tuple(self.macro[row_offset(n, s): row_offset(n, s + 1)] for s in range(n))

    def inputs(self, consumer: int) -> tuple[int, ...]:
        """The nodes consumer ``consumer`` concatenates, ascending (cells 1..n; ``n + 1`` is the tail)."""
        n = self.n_cells
        if not 1 <= consumer <= n + 1:
            raise ValueError(f"consumer must be in 1..{n + 1}, got {consumer}")
        extra = [s for s in range(consumer - 1) if self.macro[bit_index(n, s, consumer)]]
        return tuple(extra) + (consumer - 1,)

    @property
    def cell_inputs(self) -> tuple[tuple[int, ...], ...]:
        """Input nodes of cells 1..n (the reference JSON's per-cell ``inputs``)."""
        return tuple(self.inputs(m) for m in range(1, self.n_cells + 1))

    @property
    def tail_inputs(self) -> tuple[int, ...]:
        """Input nodes of the tail concat (always ends with node n)."""
        return self.inputs(self.n_cells + 1)

    @classmethod
    def from_inputs(cls, micro: Sequence[Cell], cell_inputs: Sequence[Iterable[int]],
                    tail_inputs: Iterable[int]) -> "FalsrGenome":
        """Build from input node lists (as in ``reference/published_architectures.json``): ``cell_inputs[i]``
        for cell ``i + 1`` must contain node ``i`` and only nodes ``< i + 1``; ``tail_inputs`` must contain
        node n. Raises :class:`ValidationError` naming the list."""
        micro = tuple(micro)
        n = len(micro)
        consumers = [(f"cell_inputs[{i}]", i + 1, ins) for i, ins in enumerate(cell_inputs)]
        if len(consumers) != n:
            raise ValidationError(f"needs {n} input lists (one per cell), got {len(consumers)}", field="cell_inputs")
        consumers.append(("tail_inputs", n + 1, tail_inputs))
        bits = [0] * macro_length(n)
        for field, m, ins in consumers:
            ins = list(ins)
            if any(not _is_int(_plain(s)) or not 0 <= s < m for s in ins) or len(set(ins)) != len(ins):
                raise ValidationError(f"must be distinct node indices in 0..{m - 1}, got {ins!r}", field=field)
            if m - 1 not in ins:
                raise ValidationError(f"must contain the previous node {m - 1} (always wired), got {ins!r}",
                                      field=field)
            for s in ins:
                if s != m - 1:
                    bits[bit_index(n, s, m)] = 1
        return cls(micro, tuple(bits))

    # ---- validity ----------------------------------------------------------------------------------------
    def check(self, n_cells: int | None = None, channels: Sequence[int] = CHANNELS) -> None:
        """Raise :class:`ValidationError` naming the field unless the genome is well formed (``n_cells``
        cells when given, cells of the operator set with widths in ``channels``, ``n(n+1)/2`` bits of 0/1).

        Grouped convs need their input channels divisible by the groups; with the paper's widths (head 32,
        cells 16/32/48/64: all multiples of 16) every concat is a multiple of 16, so every cell choice is
        valid after every node set and no repair is ever needed (see ``FalsrSpace``)."""
        micro, macro = self.micro, self.macro
        if not isinstance(micro, tuple) or not micro:
            raise ValidationError(f"must be a non-empty list of cells, got {micro!r}", field="micro")
        if n_cells is not None and len(micro) != n_cells:
            raise ValidationError(f"has {len(micro)} cells, this space has n_cells={n_cells}", field="micro")
        for i, cell in enumerate(micro):
            if not isinstance(cell, Cell):
                raise ValidationError(f"must be a Cell, got {type(cell).__name__}", field=f"micro[{i}]")
            cell.check(f"micro[{i}]", channels)
        n = len(micro)
        if not isinstance(macro, tuple) or len(macro) != macro_length(n):
            got = len(macro) if isinstance(macro, tuple) else repr(macro)
            raise ValidationError(f"needs {macro_length(n)} connection bits for {n} cells, got {got}",
                                  field="macro")
        for k, b in enumerate(macro):
            if not _is_int(b) or b not in (0, 1):
                s = next(s for s in range(n) if row_offset(n, s + 1) > k)
                raise ValidationError(f"must be 0 or 1, got {b!r}", field=f"macro[{s}][{k - row_offset(n, s)}]")

    # ---- JSON -------------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """``{"micro": [cell dicts], "macro": nested rows of 0/1}`` (see the module docstring)."""
        return {"micro": [c.to_json() for c in self.micro], "macro": [list(r) for r in self.rows]}

    @classmethod
    def from_json(cls, data: Any, n_cells: int | None = None, channels: Sequence[int] = CHANNELS) -> "FalsrGenome":
        """Parse :meth:`to_json` output; anything malformed raises :class:`ValidationError` naming the field."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"must be an object with micro and macro, got {type(data).__name__}",
                                  field="genome")
        check_fields(data, _GENOME_FIELDS)
        raw_micro, raw_macro = data["micro"], data["macro"]
        if not isinstance(raw_micro, (list, tuple)) or not raw_micro:
            raise ValidationError(f"must be a non-empty list of cells, got {raw_micro!r}", field="micro")
        if n_cells is not None and len(raw_micro) != n_cells:
            raise ValidationError(f"has {len(raw_micro)} cells, this space has n_cells={n_cells}", field="micro")
        micro = tuple(Cell.from_json(c, f"micro[{i}]", channels) for i, c in enumerate(raw_micro))
        n = len(micro)
        if not isinstance(raw_macro, (list, tuple)) or len(raw_macro) != n:
            raise ValidationError(f"must be a list of {n} rows [c_i^i .. c_i^n] (row i has n+1-i bits), got "
                                  f"{raw_macro!r}", field="macro")
        bits: list[int] = []
        for s, row in enumerate(raw_macro):
            if not isinstance(row, (list, tuple)) or len(row) != n - s:
                raise ValidationError(f"must be a list of {n - s} bits, got {row!r}", field=f"macro[{s}]")
            for t, b in enumerate(row):
                if not (isinstance(b, bool) or (_is_int(b) and b in (0, 1))):
                    raise ValidationError(f"must be 0 or 1, got {b!r}", field=f"macro[{s}][{t}]")
                bits.append(int(b))
        # every condition of check() is enforced above (Cell.from_json checks each cell)
        return cls(micro, tuple(bits))

    def describe(self) -> str:
        """``conv_f64_k3_b4_isskip<0 | ... | tail<0,1,7`` (each cell with its input nodes)."""
        parts = [f"{c.name}<{','.join(map(str, ins))}" for c, ins in zip(self.micro, self.cell_inputs)]
        return " | ".join(parts + [f"tail<{','.join(map(str, self.tail_inputs))}"])


# ---------------------------------------------------------------------------------------------------------
# vector encoding
# ---------------------------------------------------------------------------------------------------------
def vector_bounds(n: int, n_choices: int = N_CELL_CHOICES) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive bounds of the vector of ``n`` cell indices (``n_choices`` each) and ``n(n+1)/2`` bits."""
    lo = np.zeros(n + macro_length(n), dtype=np.int64)
    hi = np.ones(n + macro_length(n), dtype=np.int64)
    hi[:n] = n_choices - 1
    return lo, hi


def vector_encode(genome: FalsrGenome, cells: Sequence[Cell] = ALL_CELLS) -> np.ndarray:
    """``[position of x_i in cells ...] + macro bits`` (``cells``: the allowed cells in index order)."""
    position = {c: i for i, c in enumerate(cells)}
    try:
        indices = [position[c] for c in genome.micro]
    except KeyError as exc:
        raise ValidationError(f"{exc.args[0]!r} is not an allowed cell", field="micro") from None
    return np.array(indices + list(genome.macro), dtype=np.int64)


def vector_decode(vector: Any, n: int, cells: Sequence[Cell] = ALL_CELLS) -> FalsrGenome:
    """Inverse of :func:`vector_encode`. Values are rounded and clipped into :func:`vector_bounds` (so
    real-valued operators may be used); every in-bounds vector is a valid genome. A vector of the wrong
    length or with non-finite entries raises :class:`ValidationError`."""
    try:
        v = np.asarray(vector, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValidationError(f"must be a numeric vector, got {vector!r}", field="vector") from None
    lo, hi = vector_bounds(n, len(cells))
    if v.size != lo.size:
        raise ValidationError(f"must have {lo.size} entries ({n} cells + {macro_length(n)} bits), got {v.size}",
                              field="vector")
    if not np.all(np.isfinite(v)):
        raise ValidationError("has non-finite entries", field="vector")
    v = np.clip(np.rint(v), lo, hi).astype(np.int64)
    return FalsrGenome(tuple(cells[int(i)] for i in v[:n]), tuple(int(b) for b in v[n:]))
