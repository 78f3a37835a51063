"""The HNAS genome (METHODS.md §2.2): a normal cell's genotype, an upsampling cell's genotype and the
position of the upsampling cell among the ``L`` cells.

Each genotype lists two edges ``(op, from, to)`` per intermediate node ``to = 2..nodes+1``, ``from`` in
``0..to-1`` (0, 1 = the cell's two preprocessed inputs); the two inputs of a node may coincide (HNAS-B's
upsampling cell has ``('sub_pixel', 3, 4)`` twice). ``up_pos`` is 0-based (the paper counts 1..L). JSON::

    {"method": "hnas", "L": 12, "nodes": 4, "up_pos": 9,
     "normal": [["skip_connect", 1, 2], ["sep_conv_5x5", 1, 2], ...],          (2 * nodes edges)
     "upsampling": [["deconvolution", 0, 2], ["bilinear", 0, 2], ...]}

The width C is the space's ``channels`` option, not part of the genome, so that one genotype is searched at
C = 8 and retrained at C = 64 (§2.6-2.7); a ``"C"`` field (METHODS §2.2 writes one) is read when it equals the
space's width. The released code's ``Genotype(normal=[...], normal_concat=range(2, 6), upsampling=[...],
upsampling_concat=range(2, 6))`` text (``src/model/genotypes.py``) is read with its position given beside it:
``{"genotype": "Genotype(...)", "up_pos": 9}``.

**Token order** (the controller's, [C] ``utils.convert_lstm_output``; the vector encoding): per cell (normal,
then upsampling), per node ``t = 2..nodes+1``: ``from_1, from_2, op_1, op_2`` (op as its index in the cell's op
list), giving the edges ``(op_1, from_1, t), (op_2, from_2, t)``; then the position.
"""
from __future__ import annotations

import ast
import numbers
from typing import Any, Sequence

import attrs

from nasengine.errors import ValidationError
from nasengine.space import check_fields

__all__ = ["HnasGenome", "NORMAL_OPS", "PAPER_NORMAL_OPS", "UPSAMPLING_OPS", "parse_genotype",
           "genome_tokens", "genome_from_tokens", "token_bounds"]

#: The released code's normal ops, in the controller's index order (``COMPACT_PRIMITIVES``, §2.1).
NORMAL_OPS = ("rcab", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
#: The paper's Table I: the code's six and the up-and-down projection block (commented out in the code, §2.9 #1).
PAPER_NORMAL_OPS = NORMAL_OPS + ("up_and_down",)
#: Upsampling ops in index order (``COMPACT_PRIMITIVES_UPSAMPLING``, §2.1).
UPSAMPLING_OPS = ("sub_pixel", "deconvolution", "bilinear", "nearest", "area")

_FIELDS = ("method", "L", "nodes", "up_pos", "normal", "upsampling")
Edge = tuple  # (op: str, from: int, to: int)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@attrs.frozen
class HnasGenome:
    """An HNAS architecture: ``L`` cells, ``nodes`` intermediate nodes per cell, the upsampling cell's 0-based
    position ``up_pos``, and the two genotypes as tuples of ``(op, from, to)`` edges in token order (two per
    node, nodes ascending). Immutable and hashable."""

    L: int
    nodes: int
    up_pos: int
    normal: tuple[Edge, ...]
    upsampling: tuple[Edge, ...]

    def to_json(self) -> dict:
        return {"method": "hnas", "L": self.L, "nodes": self.nodes, "up_pos": self.up_pos,
                "normal": [list(e) for e in self.normal], "upsampling": [list(e) for e in self.upsampling]}

    def describe(self) -> str:
        def cell(edges):
            return " ".join(f"{op}({f}->{t})" for op, f, t in edges)

        return f"hnas L={self.L} up_pos={self.up_pos} | normal: {cell(self.normal)} | up: {cell(self.upsampling)}"

    def genotype_text(self) -> str:
        """The released code's ``Genotype(...)`` line (without the position)."""
        concat = f"range(2, {self.nodes + 2})"

        def edges(es):
            return "[" + ", ".join(f"({op!r}, {f}, {t})" for op, f, t in es) + "]"

        return (f"Genotype(normal={edges(self.normal)}, normal_concat={concat}, "
                f"upsampling={edges(self.upsampling)}, upsampling_concat={concat})")

    def check(self, L: int, nodes: int, normal_ops: Sequence[str], upsampling_ops: Sequence[str]) -> None:
        """Raise :class:`ValidationError` naming the field unless this is a genome of the space."""
        for field, value, want in (("L", self.L, L), ("nodes", self.nodes, nodes)):
            if not _is_int(value) or value != want:
                raise ValidationError(f"must be {want} (the space's {field}), got {value!r}", field=field)
        if not _is_int(self.up_pos) or not 0 <= self.up_pos < L:
            raise ValidationError(f"must be a 0-based cell index in [0, {L - 1}], got {self.up_pos!r}",
                                  field="up_pos")
        for field, edges, ops in (("normal", self.normal, normal_ops), ("upsampling", self.upsampling,
                                                                          upsampling_ops)):
            _check_edges(field, edges, nodes, ops)


def _check_edges(field: str, edges: Any, nodes: int, ops: Sequence[str]) -> None:
    if not isinstance(edges, tuple) or len(edges) != 2 * nodes:
        raise ValidationError(f"must be {2 * nodes} edges [op, from, to] (two per node), got {edges!r}", field=field)
    for i, edge in enumerate(edges):
        where = f"{field}[{i}]"
        if not isinstance(edge, tuple) or len(edge) != 3:
            raise ValidationError(f"must be an edge [op, from, to], got {edge!r}", field=where)
        op, f, t = edge
        if op not in ops:
            raise ValidationError(f"unknown op {op!r} (this cell's ops: {', '.join(ops)})", field=where)
        want_t = 2 + i // 2
        if not _is_int(t) or t != want_t:
            raise ValidationError(f"target node must be {want_t} (edges 2k, 2k+1 feed node k+2, in order), "
                                  f"got {t!r}", field=where)
        if not _is_int(f) or not 0 <= f < t:
            raise ValidationError(f"input node must be in [0, {t - 1}] (an earlier node of the cell), got {f!r}",
                                  field=where)


def _edges_from_json(field: str, value: Any) -> tuple[Edge, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValidationError(f"must be a list of [op, from, to] edges, got {type(value).__name__} {value!r}",
                              field=field)
    out = []
    for i, edge in enumerate(value):
        if not isinstance(edge, (list, tuple)) or len(edge) != 3:
            raise ValidationError(f"must be an edge [op, from, to], got {edge!r}", field=f"{field}[{i}]")
        out.append(tuple(int(x) if _is_int(x) else x for x in edge))
    return tuple(out)


def parse_genotype(text: str) -> tuple[tuple[Edge, ...], tuple[Edge, ...], int]:
    """``(normal, upsampling, nodes)`` from the released code's ``Genotype(normal=[...], normal_concat=...,
    upsampling=[...], upsampling_concat=...)`` text (a leading ``NAME =`` is allowed). The concats must be
    ``range(2, nodes + 2)`` (or that list): every intermediate node is in the cell output, as in the code."""
    src = text.strip()
    if "=" in src.split("(", 1)[0]:
        src = src.split("=", 1)[1].strip()
    try:
        call = ast.parse(src, mode="eval").body
    except SyntaxError as exc:
        raise ValidationError(f"not a Genotype(...) expression: {exc.msg}", field="genotype") from None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"
            and not call.args):
        raise ValidationError("must be Genotype(normal=[...], normal_concat=..., upsampling=[...], "
                              "upsampling_concat=...) with keyword arguments", field="genotype")
    kw = {k.arg: k.value for k in call.keywords}
    want = {"normal", "normal_concat", "upsampling", "upsampling_concat"}
    if set(kw) != want:
        raise ValidationError(f"needs exactly the keywords {sorted(want)}, got {sorted(k for k in kw if k)}",
                              field="genotype")
    cells = {}
    for cell in ("normal", "upsampling"):
        try:
            cells[cell] = _edges_from_json(f"genotype.{cell}", ast.literal_eval(kw[cell]))
        except ValueError:
            raise ValidationError("must be a literal list of (op, from, to) tuples", field=f"genotype.{cell}") from None
    nodes = len(cells["normal"]) // 2
    for cell in ("normal", "upsampling"):
        concat = _concat_nodes(kw[f"{cell}_concat"], f"genotype.{cell}_concat")
        if concat != list(range(2, nodes + 2)):
            raise ValidationError(f"must be range(2, {nodes + 2}) (every intermediate node; the code's cells "
                                  f"concatenate all of them), got {concat}", field=f"genotype.{cell}_concat")
    return cells["normal"], cells["upsampling"], nodes


def _concat_nodes(node: ast.expr, field: str) -> list[int]:
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and not node.keywords and 1 <= len(node.args) <= 2):
        try:
            return list(range(*(ast.literal_eval(a) for a in node.args)))
        except (ValueError, TypeError):
            pass
    else:
        try:
            value = ast.literal_eval(node)
            if isinstance(value, (list, tuple)) and all(_is_int(v) for v in value):
                return list(value)
        except ValueError:
            pass
    raise ValidationError("must be range(a, b) or a list of node indices", field=field)


def genome_from_json(data: Any, L: int, nodes: int, normal_ops: Sequence[str], upsampling_ops: Sequence[str],
                     channels: int) -> HnasGenome:
    """Parse and validate (module docstring: the JSON genome, optionally with ``"C"``, or ``{"genotype":
    "Genotype(...)", "up_pos": p}``). Errors are :class:`ValidationError` naming the field."""
    if not isinstance(data, dict):
        hint = (" (a Genotype text has no upsampling position: give {\"genotype\": text, \"up_pos\": p})"
                if isinstance(data, str) else "")
        raise ValidationError(f"expected a JSON object, got {type(data).__name__}{hint}", field="genome")
    if "genotype" in data:
        check_fields(data, ("genotype", "up_pos"))
        if not isinstance(data["genotype"], str):
            raise ValidationError(f"must be the Genotype(...) text, got {type(data['genotype']).__name__}",
                                  field="genotype")
        normal, up, n = parse_genotype(data["genotype"])
        genome = HnasGenome(L, n, data["up_pos"], normal, up)
    else:
        data = dict(data)
        if "C" in data:
            c = data.pop("C")
            if not _is_int(c) or c != channels:
                raise ValidationError(f"the genome was written for C={c!r} but the space has channels={channels}; "
                                      "C is a space option: drop the field to use the genotype at another width",
                                      field="C")
        check_fields(data, _FIELDS)
        if data["method"] != "hnas":
            raise ValidationError(f"must be 'hnas', got {data['method']!r}", field="method")
        genome = HnasGenome(data["L"], data["nodes"], data["up_pos"], _edges_from_json("normal", data["normal"]),
                            _edges_from_json("upsampling", data["upsampling"]))
    genome.check(L, nodes, normal_ops, upsampling_ops)
    return genome


# ---- tokens (the controller's order; the vector encoding) ----------------------------------------------------
def token_bounds(L: int, nodes: int, n_normal: int, n_up: int) -> tuple[list[int], list[int]]:
    """Inclusive ``(lower, upper)`` of each token: per cell, per node t: from_1, from_2 in ``[0, t-1]``, op_1,
    op_2 in ``[0, n_ops-1]``; then the position in ``[0, L-1]``."""
    upper: list[int] = []
    for n_ops in (n_normal, n_up):
        for t in range(2, nodes + 2):
            upper += [t - 1, t - 1, n_ops - 1, n_ops - 1]
    upper.append(L - 1)
    return [0] * len(upper), upper


def genome_tokens(genome: HnasGenome, normal_ops: Sequence[str], upsampling_ops: Sequence[str]) -> list[int]:
    """The genome's tokens in the controller's order (module docstring)."""
    out: list[int] = []
    for edges, ops in ((genome.normal, normal_ops), (genome.upsampling, upsampling_ops)):
        for k in range(genome.nodes):
            (op1, f1, _), (op2, f2, _) = edges[2 * k], edges[2 * k + 1]
            out += [f1, f2, ops.index(op1), ops.index(op2)]
    out.append(genome.up_pos)
    return out


def genome_from_tokens(tokens: Sequence[int], L: int, nodes: int, normal_ops: Sequence[str],
                       upsampling_ops: Sequence[str]) -> HnasGenome:
    """Inverse of :func:`genome_tokens`; tokens out of bounds raise :class:`ValidationError` naming the token."""
    lo, hi = token_bounds(L, nodes, len(normal_ops), len(upsampling_ops))
    tokens = list(tokens)
    if len(tokens) != len(hi):
        raise ValidationError(f"must be {len(hi)} tokens (8 per node of each cell + the position), got "
                              f"{len(tokens)}", field="tokens")
    for i, (v, a, b) in enumerate(zip(tokens, lo, hi)):
        if not _is_int(v) or not a <= v <= b:
            raise ValidationError(f"must be an integer in [{a}, {b}], got {v!r}", field=f"tokens[{i}]")
    cells = []
    i = 0
    for ops in (normal_ops, upsampling_ops):
        edges = []
        for t in range(2, nodes + 2):
            f1, f2, o1, o2 = (int(x) for x in tokens[i:i + 4])
            edges += [(ops[o1], f1, t), (ops[o2], f2, t)]
            i += 4
        cells.append(tuple(edges))
    return HnasGenome(L, nodes, int(tokens[i]), cells[0], cells[1])
