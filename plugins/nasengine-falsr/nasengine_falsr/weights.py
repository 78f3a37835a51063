"""The official FALSR weights: read the released frozen TensorFlow graphs and port them onto the torch module
built from a FALSR genome.

The authors (xiaomi-automl/FALSR) released FALSR-A/B/C as frozen ``GraphDef`` files (``FALSR-A.pb``, ...)
holding the kernels and biases as constants. This module

* reads such a file with the maintained protobuf classes of TensorBoard (:func:`read_graphdef`; the
  optional ``weights`` extra: ``pip install 'nasengine-falsr[weights]'``; TensorFlow is not needed);
* maps its convolutions onto the ``n{id}_conv`` modules of :func:`nasengine.builder.build` (the genome's
  ArchGraph) **by structure**, not by name tables (:func:`load_official_weights`, see below);
* runs the released models with the official evaluation pipeline (:class:`FalsrUpscaler`) and registers
  them as ``--model falsr:FALSR-A`` etc. (:func:`register_models`)::

      nasengine upscale photo.png --model falsr:FALSR-A --weights FALSR-A.pb -o out.png
      nasengine evaluate --model falsr:FALSR-A --weights FALSR-A.pb --data Set5
      nasengine evaluate --model falsr:FALSR-A --weights FALSR-A.pb --data Set5 --lr-border replicate
          # the LR (SelfExSR's) on which the published figures were measured: reproduced to 0.0001 dB

How the mapping works
---------------------
1. Every network convolution of the frozen graph becomes one *logical conv*: a ``Conv2D``; a
   ``DepthwiseConv2dNative``; or a grouped conv, which TensorFlow spells as ``Split`` of the input and of
   the kernel into g parts, g ``Conv2D`` and a ``ConcatV2`` (one kernel constant ``[k, k, C_in/g, C_out]``
   and one bias after the concat) -- exactly one torch ``Conv2d(groups=g)``. The ``BiasAdd`` that follows
   gives the bias. Kernels are HWIO and become OIHW (a depthwise ``[k, k, C, m]`` becomes ``[C*m, 1, k, k]``).
   The network is what depends on the Y placeholder and not on the chroma placeholder; the fixed
   YPbPr -> RGB stage after it is read separately (:attr:`LoadReport.colour`).
2. The logical convs of both graphs are put in topological order (in FALSR-space models the convs form a
   chain, so the order is unique) and paired one to one; each pair must agree on groups and kernel shape.
3. Each pair must also agree on *wiring*: the input of every conv (and the network output) is described
   as an expression over the previous convs -- ``relu``, ``add`` (unordered), ``concat`` (ordered: it fixes
   the input-channel layout of the consumer), ``shuffle`` and the input -- and the two descriptions must be
   equal. Any difference is an error naming the TensorFlow node and the graph node.
4. TensorFlow's ``depth_to_space`` puts sub-pixel ``s`` of output channel ``c`` at input channel
   ``s*C + c``; PyTorch's ``pixel_shuffle`` reads it from ``c*r*r + s``. In the released graphs the shuffle
   follows the global residual ``relu(tail conv) + node 0``, so the fix is a channel permutation of that
   sum. It is folded into the weights when possible: the output channels of every conv feeding the sum
   are permuted, and every other consumer of those tensors gets the matching input-channel permutation
   (the model keeps the plain ``build(graph)`` structure and its state dict loads into a fresh build).
   When a grouped or depthwise consumer cannot absorb it (FALSR-C's cell 0 is a 2-group conv on node 0),
   the graph's ``pixel_shuffle`` module is replaced by :class:`DepthToSpace` (TensorFlow order; it keeps the
   permutation as a buffer, so its state dict cannot be loaded silently into a plain build).
5. Every parameter of the module is assigned exactly once, or the loading fails.
"""
from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nasengine.errors import InputError, NasengineError
from nasengine.sr.models import Upscaler
from nasengine_falsr.plugin import RELEASED_MODELS  # the released models (``falsr:<name>``) with official weights

__all__ = [
    "WEIGHTS_EXTRA",
    "RELEASED_MODELS",
    "TFNode",
    "FrozenGraph",
    "read_graphdef",
    "LoadReport",
    "WeightsMismatchError",
    "load_official_weights",
    "DepthToSpace",
    "FalsrUpscaler",
    "falsr_model_factory",
    "register_models",
]

#: How to install what :func:`read_graphdef` needs.
WEIGHTS_EXTRA = "pip install 'nasengine-falsr[weights]'"

# The fixed colour stage of the released graphs (identical in all three): RGB = [255*Y, 255*(Pb+0.5),
# 255*(Pr+0.5)] @ KERNEL + BIAS, float32. The bias uses 128 where the inputs are centred on 127.5: kept as is.
_COLOUR_KERNEL = np.array(
    [[1.0, 1.0, 1.0], [0.0, -0.34413999319076538, 1.7719999551773071], [1.4019994735717773, -0.71413999795913696, 0.0]],
    dtype=np.float32,
)
_COLOUR_BIAS = np.array([-179.45599365234375, 135.4598388671875, -226.8159942626953], dtype=np.float32)
# skimage.color.rgb2ypbpr (the official script's conversion of the LR and of the bicubic x2 image)
_YPBPR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


class WeightsMismatchError(InputError):
    """A frozen graph whose convolutions or wiring do not match the genome's graph."""


# --------------------------------------------------------------------------------------------------
# reading a frozen GraphDef
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TFNode:
    """One node of a GraphDef: name, op, data inputs as ``(node, output index)`` (control inputs dropped),
    and its attributes (the protobuf ``AttrValue`` map)."""

    name: str
    op: str
    inputs: tuple[tuple[str, int], ...]
    attr: Any = field(repr=False, compare=False, default=None)


class FrozenGraph(dict):
    """The constant tensors of a frozen graph, ``{node name: np.ndarray}``, with the graph structure:
    :attr:`nodes` (``{name: TFNode}`` in file order) and :attr:`path`."""

    def __init__(self, path: Path, nodes: dict[str, TFNode], constants: dict[str, np.ndarray]):
        super().__init__(constants)
        self.path = path
        self.nodes = nodes

    def consumers(self) -> dict[str, list[tuple[str, int, int]]]:
        """``{node: [(consumer, input position, output index read), ...]}``."""
        out: dict[str, list[tuple[str, int, int]]] = {n: [] for n in self.nodes}
        for node in self.nodes.values():
            for pos, (src, idx) in enumerate(node.inputs):
                out[src].append((node.name, pos, idx))
        return out


def _import_protos():
    try:
        from tensorboard.compat.proto import graph_pb2
        from tensorboard.util import tensor_util
    except ImportError as exc:
        raise NasengineError(
            f"reading TensorFlow .pb weights needs TensorBoard's protobuf classes, which are not installed "
            f"({exc}): {WEIGHTS_EXTRA}"
        ) from None
    return graph_pb2, tensor_util


def _parse_input(text: str) -> tuple[str, int] | None:
    if text.startswith("^"):
        return None  # control dependency
    name, sep, idx = text.rpartition(":")
    if sep and idx.isdigit():
        return name, int(idx)
    return text, 0


def read_graphdef(path) -> FrozenGraph:
    """Read a frozen TensorFlow ``GraphDef`` (``.pb``): its constants as numpy arrays and its nodes.

    Raises :class:`~nasengine.errors.NasengineError` naming the ``weights`` extra when TensorBoard is not
    installed, and :class:`~nasengine.errors.InputError` naming the file when it cannot be read or is not
    a GraphDef."""
    graph_pb2, tensor_util = _import_protos()
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such weights file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a frozen TensorFlow graph (.pb)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    gd = graph_pb2.GraphDef()
    try:
        gd.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a frozen TensorFlow graph (GraphDef .pb): {exc}") from None
    nodes: dict[str, TFNode] = {}
    for nd in gd.node:
        if not nd.name or not nd.op or nd.name in nodes:
            nodes = {}
            break
        ins = tuple(p for p in (_parse_input(t) for t in nd.input) if p is not None)
        nodes[nd.name] = TFNode(nd.name, nd.op, ins, nd.attr)
    if not nodes or any(src not in nodes for n in nodes.values() for src, _ in n.inputs):
        raise InputError(f"{path}: not a frozen TensorFlow graph (GraphDef .pb): no well-formed nodes")
    constants: dict[str, np.ndarray] = {}
    for nd in gd.node:
        if nd.op != "Const" or "value" not in nd.attr:
            continue
        try:
            constants[nd.name] = tensor_util.make_ndarray(nd.attr["value"].tensor)
        except Exception as exc:  # unsupported dtype, truncated content, ...
            raise InputError(f"{path}: constant {nd.name!r} cannot be decoded: {exc}") from None
    return FrozenGraph(path, nodes, constants)


# --------------------------------------------------------------------------------------------------
# the frozen graph's convolutions and wiring
# --------------------------------------------------------------------------------------------------
@dataclass
class _Conv:
    """A logical convolution (either side): the tensor it reads, groups, OIHW weight."""

    label: str  # for messages
    input: Any  # TF: (node, idx); graph: node id
    groups: int
    weight_shape: tuple[int, ...]
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    has_bias: bool = True
    kernel_const: str = ""  # TF: the kernel constant's node name


def _attr_ints(node: TFNode, key: str) -> list[int]:
    if key not in node.attr:
        return []
    return list(node.attr[key].list.i)


def _attr_str(node: TFNode, key: str, default: str = "") -> str:
    if key not in node.attr:
        return default
    s = node.attr[key].s
    return s.decode() if isinstance(s, bytes) else str(s)


class _TFNet:
    """The SR network inside a frozen FALSR graph, as logical convs and wiring expressions."""

    def __init__(self, fg: FrozenGraph):
        self.fg = fg
        self.nodes = fg.nodes
        self.where = str(fg.path)
        self.consumers = fg.consumers()
        self._find_input()
        self._find_convs()
        self._find_output()

    # -- helpers --
    def _fail(self, msg: str):
        raise WeightsMismatchError(f"{self.where}: {msg}")

    def _skip_identity(self, ref: tuple[str, int]) -> tuple[str, int]:
        seen = 0
        while self.nodes[ref[0]].op in ("Identity", "Snapshot") and self.nodes[ref[0]].inputs:
            ref = self.nodes[ref[0]].inputs[0]
            seen += 1
            if seen > len(self.nodes):
                self._fail("cycle of Identity nodes")
        return ref

    def _const(self, ref: tuple[str, int]) -> np.ndarray | None:
        ref = self._skip_identity(ref)
        return self.fg.get(ref[0]) if self.nodes[ref[0]].op == "Const" else None

    def _descendants(self, start: str) -> set[str]:
        seen = {start}
        stack = [start]
        while stack:
            for c, _, _ in self.consumers[stack.pop()]:
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        return seen

    # -- structure --
    def _find_input(self):
        ph = [n for n in self.nodes.values() if n.op == "Placeholder"]
        reach = {n.name: self._descendants(n.name) for n in ph}
        convs = {n.name for n in self.nodes.values() if n.op in ("Conv2D", "DepthwiseConv2dNative")}
        # the network input: the placeholder some conv reads directly (the LR Y channel)
        direct = [p.name for p in ph if any(self.nodes[c].op in ("Conv2D", "DepthwiseConv2dNative")
                                            and pos == 0 for c, pos, _ in self.consumers[p.name])]
        if len(direct) != 1:
            self._fail(f"expected one input placeholder feeding a convolution, found {direct or 'none'}")
        self.input = direct[0]
        others = set().union(*(reach[p.name] for p in ph if p.name != self.input)) if len(ph) > 1 else set()
        self.net = reach[self.input] - others  # nodes computed from the Y input alone
        if not (self.net & convs):
            self._fail("no convolution depends on the input placeholder")

    def _check_conv_attrs(self, node: TFNode):
        strides = _attr_ints(node, "strides")
        dil = _attr_ints(node, "dilations")
        pad = _attr_str(node, "padding")
        fmt = _attr_str(node, "data_format", "NHWC")
        if strides and any(s != 1 for s in strides):
            self._fail(f"{node.name}: strides {strides} (only stride 1 is supported)")
        if dil and any(d != 1 for d in dil):
            self._fail(f"{node.name}: dilations {dil} (only 1 is supported)")
        if pad != "SAME":
            self._fail(f"{node.name}: padding {pad!r} (only SAME is supported)")
        if fmt != "NHWC":
            self._fail(f"{node.name}: data_format {fmt!r} (only NHWC is supported)")

    def _split_parts(self, ref: tuple[str, int]) -> tuple[TFNode, tuple[str, int], int]:
        """``ref`` is output i of a Split along channels: (split node, its value input, i)."""
        node = self.nodes[ref[0]]
        if node.op != "Split" or len(node.inputs) != 2:
            self._fail(f"{node.name}: expected a channel Split, found {node.op}")
        dim = self._const(node.inputs[0])
        if dim is None or int(np.asarray(dim).reshape(-1)[0]) not in (3, -1):
            self._fail(f"{node.name}: a grouped conv must split along channels (axis 3)")
        return node, node.inputs[1], ref[1]

    def _find_convs(self):
        convs: dict[Any, _Conv] = {}
        groups: dict[str, list[tuple[int, TFNode]]] = {}  # kernel split -> members
        for node in self.nodes.values():
            if node.op not in ("Conv2D", "DepthwiseConv2dNative") or node.name not in self.net:
                continue
            self._check_conv_attrs(node)
            data, filt = node.inputs[0], self._skip_identity(node.inputs[1])
            fnode = self.nodes[filt[0]]
            if fnode.op == "Const":
                k = self.fg[fnode.name].astype(np.float32)
                if k.ndim != 4:
                    self._fail(f"{node.name}: kernel {fnode.name} has shape {k.shape}, expected 4-D HWIO")
                if node.op == "Conv2D":
                    w = np.ascontiguousarray(k.transpose(3, 2, 0, 1))
                    g = 1
                else:  # depthwise [k, k, C, m]: output channel c*m + j
                    kh, kw, c, m = k.shape
                    w = np.ascontiguousarray(k.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None])
                    g = c
                convs[(node.name, 0)] = _Conv(node.name, data, g, w.shape, w, kernel_const=fnode.name)
            elif fnode.op == "Split" and node.op == "Conv2D":
                ksplit, kval, i = self._split_parts(filt)
                groups.setdefault(ksplit.name, []).append((i, node))
            else:
                self._fail(f"{node.name}: unsupported kernel source {fnode.name} ({fnode.op})")
        for kname, members in groups.items():
            ksplit = self.nodes[kname]
            kval = self._skip_identity(ksplit.inputs[1])
            k = self._const(kval)
            g = int(ksplit.attr["num_split"].i) if "num_split" in ksplit.attr else len(members)
            members.sort(key=lambda t: t[0])
            if k is None or k.ndim != 4 or [i for i, _ in members] != list(range(g)):
                self._fail(f"{kname}: a grouped conv needs one 4-D kernel constant split into {g} parts used "
                           f"once each")
            dsplit = None
            for i, node in members:
                dnode, dval, di = self._split_parts(node.inputs[0])
                if di != i or (dsplit is not None and dnode.name != dsplit.name):
                    self._fail(f"{node.name}: group {i} must read part {i} of one input Split")
                dsplit = dnode
            cats = {c for _, node in members for c, _, _ in self.consumers[node.name]}
            if len(cats) != 1:
                self._fail(f"{kname}: the outputs of the {g} group convs must meet in one ConcatV2")
            cat = self.nodes[cats.pop()]
            if cat.op != "ConcatV2" or list(cat.inputs[:-1]) != [(n.name, 0) for _, n in members] \
                    or int(np.asarray(self._const(cat.inputs[-1])).reshape(-1)[0]) not in (3, -1):
                self._fail(f"{cat.name}: expected the channel ConcatV2 of the {g} group convs in order")
            k = k.astype(np.float32)
            w = np.ascontiguousarray(k.transpose(3, 2, 0, 1))  # [k,k,C_in/g,C_out] -> [C_out, C_in/g, k, k]
            label = kval[0]
            convs[(cat.name, 0)] = _Conv(label, dsplit.inputs[1], g, w.shape, w, kernel_const=kval[0])
        # biases: the BiasAdd (or Add of a constant) right after each logical conv
        self.convs: dict[tuple[str, int], _Conv] = {}
        for ref, conv in convs.items():
            users = self.consumers[ref[0]]
            out = ref
            conv.has_bias = False
            if len(users) == 1 and self.nodes[users[0][0]].op in ("BiasAdd", "Add", "AddV2"):
                user = self.nodes[users[0][0]]
                b = self._const(user.inputs[1]) if len(user.inputs) == 2 else None
                if b is not None:
                    b = np.asarray(b, dtype=np.float32).reshape(-1)
                    if b.shape != (conv.weight_shape[0],):
                        self._fail(f"{user.name}: bias of shape {b.shape} for {conv.weight_shape[0]} channels")
                    conv.bias, conv.has_bias = b, True
                    out = (user.name, 0)
            self.convs[out] = conv

    def _find_output(self):
        outs = set()
        for name in self.net:
            if self.nodes[name].op in ("Const", "Identity") and name not in self.convs:
                continue
            for c, _, idx in self.consumers[name]:
                if c not in self.net and self.nodes[c].op != "Shape":
                    outs.add((name, idx))
        outs = {o for o in outs if self.nodes[o[0]].op not in ("Const", "Identity")}
        if len(outs) != 1:
            self._fail(f"expected the network to have one output tensor, found {sorted(outs) or 'none'}")
        out = outs.pop()
        # the colour stage starts by scaling Y_SR (x 255): step back over element-wise ops with a scalar constant
        while out not in self.convs and self.nodes[out[0]].op in ("Mul", "RealDiv", "Add", "AddV2", "Sub"):
            node = self.nodes[out[0]]
            scalars = [r for r in node.inputs if (c := self._const(r)) is not None and np.size(c) == 1]
            rest = [r for r in node.inputs if r not in scalars]
            if len(scalars) != 1 or len(rest) != 1:
                break
            out = rest[0]
        self.output = out
        self._find_colour()

    def _find_colour(self):
        """The fixed YPbPr -> RGB 1x1 conv after the network (kernel [1,1,3,3] and bias [3]), if present."""
        self.colour = None
        for node in self.nodes.values():
            if node.op != "Conv2D" or node.name in self.net:
                continue
            k = self._const(node.inputs[1])
            users = self.consumers[node.name]
            if k is None or k.shape != (1, 1, 3, 3) or len(users) != 1:
                continue
            b = self._const(self.nodes[users[0][0]].inputs[1]) if self.nodes[users[0][0]].op == "BiasAdd" else None
            if b is not None and b.shape == (3,):
                self.colour = (k.reshape(3, 3).astype(np.float32), b.astype(np.float32))

    # -- wiring expressions --
    def expr(self, ref: tuple[str, int], depth: int = 0):
        """Wiring expression of tensor ``ref`` with convs as ``("conv", key)`` leaves."""
        if depth > 200:
            self._fail("wiring too deep")
        if ref in self.convs:
            return ("conv", ref)
        node = self.nodes[ref[0]]
        if node.name == self.input:
            return ("input",)
        if node.op in ("Identity", "Snapshot"):
            return self.expr(node.inputs[0], depth + 1)
        if node.op == "Relu":
            return ("relu", self.expr(node.inputs[0], depth + 1))
        if node.op in ("Add", "AddV2", "AddN") and all(r[0] in self.net and self.nodes[r[0]].op != "Const"
                                                       for r in node.inputs):
            return _sum(self.expr(r, depth + 1) for r in node.inputs)
        if node.op == "ConcatV2":
            axis = self._const(node.inputs[-1])
            if axis is not None and int(np.asarray(axis).reshape(-1)[0]) in (3, -1):
                parts = tuple(self.expr(r, depth + 1) for r in node.inputs[:-1])
                return parts[0] if len(parts) == 1 else ("concat",) + parts
        if node.op == "DepthToSpace" and _attr_str(node, "data_format", "NHWC") == "NHWC":
            return ("shuffle", int(node.attr["block_size"].i), self.expr(node.inputs[0], depth + 1))
        return ("unsupported", f"{node.name} ({node.op})")


def _graph_exprs(graph, resolved):
    """Graph side: logical convs (keyed by node id) and the expression function."""
    by_id = {r.node: r for r in resolved}

    def expr(n: int, depth: int = 0):
        r = by_id[n]
        op = r.spec.name
        if op == "conv":
            return ("conv", n)
        if op == "input":
            return ("input",)
        if op in ("identity",):
            return expr(r.inputs[0], depth + 1)
        if op == "relu":
            return ("relu", expr(r.inputs[0], depth + 1))
        if op == "add":
            return _sum(expr(u, depth + 1) for u in r.inputs)
        if op == "concat":
            parts = tuple(expr(u, depth + 1) for u in r.inputs)
            return parts[0] if len(parts) == 1 else ("concat",) + parts
        if op == "pixel_shuffle":
            return ("shuffle", int(r.attrs["factor"]), expr(r.inputs[0], depth + 1))
        return ("unsupported", f"node {n} ({op})")

    return by_id, expr


def _sum(operands) -> tuple:
    """``("add", ...)`` of ``operands`` with nested sums flattened and the operands sorted (a sum is a sum
    however TensorFlow or the graph associates it)."""
    flat = []
    for e in operands:
        flat.extend(e[1:] if e[0] == "add" else [e])
    return ("add",) + tuple(sorted(flat, key=repr))


def _leaves(e) -> list:
    if e[0] == "conv":
        return [e[1]]
    return [k for part in e[1:] if isinstance(part, tuple) for k in _leaves(part)]


def _relabel(e, mapping):
    """``e`` with conv keys replaced by ``mapping[key]`` (positions), the operands of adds re-sorted."""
    if e[0] == "conv":
        return ("conv", mapping[e[1]])
    out = tuple(_relabel(p, mapping) if isinstance(p, tuple) else p for p in e)
    return _sum(out[1:]) if e[0] == "add" else out


def _topo(keys: list, deps: dict) -> list:
    """Kahn's order of ``keys`` (stable: earliest listed first among the ready ones)."""
    pos = {k: i for i, k in enumerate(keys)}
    indeg = {k: len(set(deps[k])) for k in keys}
    users: dict = {k: [] for k in keys}
    for k in keys:
        for d in set(deps[k]):
            users[d].append(k)
    ready = [pos[k] for k in keys if indeg[k] == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        k = keys[heapq.heappop(ready)]
        out.append(k)
        for u in users[k]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(ready, pos[u])
    return out


def _short(e, limit: int = 160) -> str:
    def fmt(x):
        if x[0] == "conv":
            return f"conv#{x[1]}"
        if x[0] == "input":
            return "input"
        if x[0] == "unsupported":
            return f"<{x[1]}>"
        if x[0] == "shuffle":
            return f"shuffle{x[1]}({fmt(x[2])})"
        return f"{x[0]}(" + ", ".join(fmt(p) for p in x[1:]) + ")"

    s = fmt(e)
    return s if len(s) <= limit else s[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------------
# the depth_to_space channel order
# --------------------------------------------------------------------------------------------------
def _d2s_perm(channels: int, r: int) -> np.ndarray:
    """``perm[t]`` = the TensorFlow channel that PyTorch's pixel_shuffle must find at channel ``t``."""
    c_out = channels // (r * r)
    t = np.arange(channels)
    return (t % (r * r)) * c_out + t // (r * r)


class _NotFoldable(Exception):
    pass


def _fold_permutations(resolved, weights: dict, targets: dict[int, np.ndarray]) -> dict:
    """Permute conv weights so that the tensor read by each pixel_shuffle node ``n`` in ``targets`` holds
    the TensorFlow channels ``targets[n]`` (torch channel t = TF channel perm[t]), everything else
    unchanged. Returns the new ``{node: (W, b)}``; raises :class:`_NotFoldable` when some consumer cannot
    absorb the permutation (a grouped conv whose groups it crosses, an element-wise op mixing permuted and
    plain tensors, the graph output, ...)."""
    by_id = {r.node: r for r in resolved}
    rep: dict[int, np.ndarray] = {}  # node -> representation permutation of its output

    def assign(n: int, p: np.ndarray):
        if n in rep:
            if not np.array_equal(rep[n], p):
                raise _NotFoldable(f"node {n} would need two channel orders")
            return
        r = by_id[n]
        op = r.spec.name
        rep[n] = p
        if op == "conv":
            return
        if op in ("relu", "identity", "add"):
            for u in r.inputs:
                assign(u, p)
            return
        if op == "concat":
            off = 0
            for u, s in zip(r.inputs, r.in_shapes):
                seg = p[off: off + s.channels] - off
                if seg.min() < 0 or seg.max() >= s.channels:
                    raise _NotFoldable(f"the permutation crosses the parts of concat node {n}")
                assign(u, seg)
                off += s.channels
            return
        raise _NotFoldable(f"node {n} ({op}) cannot carry a channel permutation")

    for n, p in targets.items():
        assign(by_id[n].inputs[0], p)

    # forward: every node's effective order, checked against every consumer
    eff: dict[int, np.ndarray | None] = {}
    new = {}

    def same(a, b):
        if a is None or b is None:
            return (a is None or np.array_equal(a, np.arange(a.size))) and \
                   (b is None or np.array_equal(b, np.arange(b.size)))
        return np.array_equal(a, b)

    for r in resolved:
        n, op = r.node, r.spec.name
        ins = [eff[u] for u in r.inputs]
        if op == "input":
            eff[n] = None
        elif op == "conv":
            w, b = weights[n]
            po = rep.get(n)
            pi = ins[0]
            g = r.attrs["groups"]
            c_out, c_in_g = w.shape[0], w.shape[1]
            og, ig = c_out // g, c_in_g
            if po is not None:
                if np.any(po // og != np.arange(c_out) // og):
                    raise _NotFoldable(f"conv node {n} (groups {g}) cannot permute its outputs across groups")
                w = w[po]
                b = b[po] if b is not None else None
            if pi is not None:
                t = np.arange(c_in_g * g)
                if np.any(pi // ig != t // ig):
                    raise _NotFoldable(f"conv node {n} (groups {g}) cannot absorb an input permutation "
                                       "across its groups")
                # torch input t (group t//ig, local t%ig) holds TF channel pi[t] (same group, local pi[t]%ig)
                local = (pi % ig).reshape(g, ig)  # per group: local torch index -> local TF index
                w = np.stack([w[o][local[o // og]] for o in range(c_out)])
            new[n] = (np.ascontiguousarray(w), b)
            eff[n] = po
        elif op in ("relu", "identity"):
            if n in rep and not same(rep[n], ins[0]):
                raise _NotFoldable(f"node {n} ({op})")
            eff[n] = ins[0]
        elif op in ("add", "mean", "multiply"):
            if any(not same(ins[0], x) for x in ins[1:]):
                raise _NotFoldable(f"node {n} ({op}) mixes tensors in different channel orders")
            eff[n] = ins[0]
        elif op == "concat":
            if all(x is None for x in ins):
                eff[n] = None
            else:
                parts, off = [], 0
                for x, s in zip(ins, r.in_shapes):
                    parts.append((np.arange(s.channels) if x is None else x) + off)
                    off += s.channels
                eff[n] = np.concatenate(parts)
        elif op == "pixel_shuffle" and n in targets:
            if not same(ins[0], targets[n]):
                raise _NotFoldable(f"pixel_shuffle node {n} does not get the TensorFlow order")
            eff[n] = None
        else:  # any other op (pixel_shuffle, output, ...) needs its inputs in the plain order
            if any(not same(x, None) for x in ins):
                raise _NotFoldable(f"node {n} ({op}) cannot absorb a channel permutation")
            eff[n] = None
    return new


class DepthToSpace(torch.nn.Module):
    """TensorFlow ``depth_to_space`` (NHWC channel order) on NCHW tensors: sub-pixel ``s`` of output channel
    ``c`` comes from input channel ``s*C + c`` (PyTorch's ``pixel_shuffle`` reads ``c*r*r + s``). The order is
    kept as the buffer ``tf_channel_order``, so a state dict saved from a module using it does not load
    silently into a plain ``pixel_shuffle`` build."""

    def __init__(self, factor: int, channels: int):
        super().__init__()
        self.factor = int(factor)
        self.register_buffer("tf_channel_order", torch.from_numpy(_d2s_perm(channels, self.factor)))

    def forward(self, x):
        return F.pixel_shuffle(x.index_select(1, self.tf_channel_order), self.factor)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, channels={self.tf_channel_order.numel()}"


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    """What :func:`load_official_weights` did."""

    path: str
    #: ``(TF kernel constant, graph node id, torch module name)`` per conv, in topological order
    pairs: list[tuple[str, int, str]]
    #: parameters (tensors) and scalar values assigned
    tensors: int
    values: int
    #: "folded into the weights" or "DepthToSpace module" (how the depth_to_space order was handled)
    shuffle: str
    #: the fixed YPbPr -> RGB stage found after the network: (3x3 kernel [in, out], bias [3]) or None
    colour: tuple[np.ndarray, np.ndarray] | None = None


def _graph_label(graph, n: int) -> str:
    name = graph.name(n)
    return f"graph node {n} ({graph.op(n)}{', ' + repr(name) if name else ''})"


def load_official_weights(module, graph, pb_path, *, fold_shuffle: bool = True) -> LoadReport:
    """Copy the kernels and biases of the frozen FALSR graph ``pb_path`` into ``module``, the
    :func:`nasengine.builder.build` of ``graph`` (see the module docstring for the method).

    Raises :class:`WeightsMismatchError` (an :class:`~nasengine.errors.InputError`) naming the TensorFlow
    node and the graph node when the two networks differ (number of convs, groups, kernel shapes, wiring),
    and the errors of :func:`read_graphdef` for an unreadable file. ``fold_shuffle=False`` always installs
    :class:`DepthToSpace` instead of folding the channel order into the weights (step 4)."""
    from nasengine.graph import module_name

    fg = pb_path if isinstance(pb_path, FrozenGraph) else read_graphdef(pb_path)
    where = str(fg.path)
    tf = _TFNet(fg)

    resolved = graph.resolve()
    by_id, gexpr = _graph_exprs(graph, resolved)
    params_ops = {r.node: r.spec.name for r in resolved}
    g_convs: dict[int, _Conv] = {}
    for r in resolved:
        if r.spec.name == "conv":
            mod = module.get_submodule(module_name(r.node, "conv"))
            g_convs[r.node] = _Conv(_graph_label(graph, r.node), r.inputs[0], int(r.attrs["groups"]),
                                    tuple(mod.weight.shape), has_bias=mod.bias is not None)
    owners: dict[str, int] = {}  # module name -> its graph node (the first, should two share a name)
    for n, op in params_ops.items():
        owners.setdefault(module_name(n, op), n)
    for name, p in module.named_parameters():
        owner = owners.get(name.split(".")[0])
        if owner is None or params_ops[owner] != "conv":
            raise WeightsMismatchError(
                f"{where}: parameter {name!r} belongs to "
                f"{_graph_label(graph, owner) if owner is not None else 'no graph node'}; FALSR weights only "
                "fill conv nodes")

    # expressions and order on both sides
    tf_exprs = {k: tf.expr(c.input) for k, c in tf.convs.items()}
    g_exprs = {k: gexpr(c.input) for k, c in g_convs.items()}
    tf_order = _topo(list(tf.convs), {k: _leaves(e) for k, e in tf_exprs.items()})
    g_order = _topo(list(g_convs), {k: _leaves(e) for k, e in g_exprs.items()})
    if len(tf_order) != len(tf.convs) or len(g_order) != len(g_convs):
        raise WeightsMismatchError(f"{where}: the convolutions do not form a DAG")
    if len(tf_order) != len(g_order):
        raise WeightsMismatchError(
            f"{where}: the frozen graph has {len(tf_order)} convolutions and the architecture graph has "
            f"{len(g_order)}: these weights belong to a different model"
            + _first_shape_difference(tf, tf_order, g_convs, g_order))
    tf_idx = {k: i for i, k in enumerate(tf_order)}
    g_idx = {k: i for i, k in enumerate(g_order)}
    for i, (tk, gk) in enumerate(zip(tf_order, g_order)):
        t, g = tf.convs[tk], g_convs[gk]
        if t.groups != g.groups or tuple(t.weight_shape) != tuple(g.weight_shape) or t.has_bias != g.has_bias:
            raise WeightsMismatchError(
                f"{where}: conv #{i} differs: TF node {t.label!r} has kernel {_shape_text(t)} but "
                f"{g.label} has {_shape_text(g)}: these weights belong to a different model")
        te, ge = _relabel(tf_exprs[tk], tf_idx), _relabel(g_exprs[gk], g_idx)
        if te != ge:
            raise WeightsMismatchError(
                f"{where}: conv #{i} is wired differently: TF node {t.label!r} reads {_short(te)} but "
                f"{g.label} reads {_short(ge)}")
    out_node = graph.output_node
    te, ge = _relabel(tf.expr(tf.output), tf_idx), _relabel(gexpr(graph.inputs(out_node)[0]), g_idx)
    if te != ge:
        raise WeightsMismatchError(
            f"{where}: the network outputs differ: TF tensor {tf.output[0]!r} is {_short(te)} but the graph "
            f"output (node {out_node}) is {_short(ge)}")

    # weights in graph terms, then the depth_to_space order
    weights = {gk: (tf.convs[tk].weight, tf.convs[tk].bias) for tk, gk in zip(tf_order, g_order)}
    targets = {}
    for r in resolved:
        if r.spec.name == "pixel_shuffle" and r.attrs["factor"] > 1:
            targets[r.node] = _d2s_perm(r.in_shapes[0].channels, int(r.attrs["factor"]))
    shuffle = "none"
    if targets:
        try:
            if not fold_shuffle:
                raise _NotFoldable("not asked to fold")
            weights = _fold_permutations(resolved, weights, targets)
            shuffle = "folded into the weights"
        except _NotFoldable:
            for n in targets:
                name = module_name(n, "pixel_shuffle")
                setattr(module, name, DepthToSpace(int(by_id[n].attrs["factor"]), by_id[n].in_shapes[0].channels))
            shuffle = "DepthToSpace module"

    # assign, each parameter exactly once
    assigned: Counter = Counter()
    values = 0
    pairs = []
    with torch.no_grad():
        for tk, gk in zip(tf_order, g_order):
            name = module_name(gk, "conv")
            mod = module.get_submodule(name)
            w, b = weights[gk]
            for pname, arr in (("weight", w), ("bias", b)):
                if arr is None:
                    continue
                p = getattr(mod, pname)
                if tuple(p.shape) != tuple(arr.shape):
                    raise WeightsMismatchError(
                        f"{where}: TF node {tf.convs[tk].label!r} gives {pname} {tuple(arr.shape)} for "
                        f"{_graph_label(graph, gk)} ({name}.{pname} is {tuple(p.shape)})")
                p.copy_(torch.from_numpy(np.ascontiguousarray(arr)).to(p.dtype))
                assigned[f"{name}.{pname}"] += 1
                values += arr.size
            pairs.append((tf.convs[tk].kernel_const, gk, name))
    names = [n for n, _ in module.named_parameters()]
    missing = [n for n in names if assigned[n] == 0]
    twice = [n for n, c in assigned.items() if c > 1]
    if missing or twice or set(assigned) - set(names):
        raise WeightsMismatchError(
            f"{where}: parameters not assigned exactly once: missing {missing[:5]}, twice {twice[:5]}")
    return LoadReport(where, pairs, sum(assigned.values()), values, shuffle, tf.colour)


def _shape_text(c: _Conv) -> str:
    s = "x".join(str(v) for v in c.weight_shape)
    return f"{s} (OIHW, groups {c.groups}{', no bias' if not c.has_bias else ''})"


def _first_shape_difference(tf, tf_order, g_convs, g_order) -> str:
    for i, (tk, gk) in enumerate(zip(tf_order, g_order)):
        t, g = tf.convs[tk], g_convs[gk]
        if t.groups != g.groups or tuple(t.weight_shape) != tuple(g.weight_shape):
            return (f"; the first difference is conv #{i}: TF node {t.label!r} {_shape_text(t)} vs "
                    f"{g.label} {_shape_text(g)}")
    return ""


# --------------------------------------------------------------------------------------------------
# the official pipeline
# --------------------------------------------------------------------------------------------------
def _resolve_device(device):
    from nasengine.device import resolve_device

    return resolve_device(device)


class FalsrUpscaler(Upscaler):
    """A released FALSR network run as the official ``calculate.py`` runs it ("rgb" upscaler, x2).

    ``upscale(lr)``: ``HxWx3`` RGB (uint8; float 0..255 is rounded to uint8 first) ->

    1. the network gets Y of YPbPr (``skimage.color.rgb2ypbpr``: 0.299 R + 0.587 G + 0.114 B, float, in
       [0, 1], not rounded) of the LR and returns Y_SR;
    2. Pb, Pr come from YPbPr of the Pillow-bicubic x2 of the LR RGB (``scipy.misc.imresize``);
    3. the graph's own colour stage: ``[255 Y_SR, 255 (Pb + .5), 255 (Pr + .5)] @ K + b`` (float32), clipped
       to [0, 255], divided by 255 and multiplied back, then **truncated** to uint8 (``astype``).

    Returns uint8 ``(2H)x(2W)x3``. ``module``: the torch network (``build(graph)`` with the weights loaded);
    ``colour``: ``(K, b)`` from :attr:`LoadReport.colour` (default: the released graphs' values)."""

    channels = "rgb"

    def __init__(self, module, *, scale: int = 2, name: str = "FALSR", device=None, colour=None):
        if not isinstance(module, torch.nn.Module):
            raise InputError(f"FalsrUpscaler: expected a torch.nn.Module, got {type(module).__name__}")
        self.scale = int(scale)
        self.name = name
        self.device = _resolve_device(device) if device is not None else next(
            (p.device for p in module.parameters()), torch.device("cpu"))
        # channels_last: 20-30% faster on CPU (oneDNN) for these networks, same results to ~1e-6
        self.module = module.to(self.device, memory_format=torch.channels_last).eval()
        k, b = colour if colour is not None else (_COLOUR_KERNEL, _COLOUR_BIAS)
        self.colour_kernel = np.asarray(k, dtype=np.float32).reshape(3, 3)
        self.colour_bias = np.asarray(b, dtype=np.float32).reshape(3)

    def luma(self, rgb: np.ndarray) -> np.ndarray:
        """Y of YPbPr in [0, 1] (float32), the network input."""
        return ((rgb.astype(np.float64) / 255.0) @ _YPBPR[0]).astype(np.float32)

    def chroma(self, rgb_u8: np.ndarray) -> np.ndarray:
        """Pb, Pr (float32, ``(sH)x(sW)x2``) of the Pillow bicubic upscale of the LR."""
        from PIL import Image

        h, w = rgb_u8.shape[:2]
        up = np.asarray(Image.fromarray(rgb_u8, "RGB").resize((w * self.scale, h * self.scale), Image.BICUBIC))
        return ((up.astype(np.float64) / 255.0) @ _YPBPR[1:].T).astype(np.float32)

    def network(self, y: np.ndarray) -> np.ndarray:
        """The network on Y (``HxW`` float32 in [0, 1]) -> Y_SR (``(sH)x(sW)`` float32)."""
        x = torch.from_numpy(np.ascontiguousarray(y))[None, None].to(self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.module(x)
        want = (1, 1, y.shape[0] * self.scale, y.shape[1] * self.scale)
        if tuple(out.shape) != want:
            raise InputError(f"{self.name}: the network returned {tuple(out.shape)}, expected {want}")
        return out[0, 0].float().cpu().numpy()

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        a = self.check_input(lr)
        if a.dtype != np.uint8:
            a = np.floor(np.clip(np.nan_to_num(a.astype(np.float64)), 0, 255) + 0.5).astype(np.uint8)
        y_sr = self.network(self.luma(a))
        pbpr = self.chroma(a)
        f = np.float32
        ycc = np.stack([f(255) * y_sr, (pbpr[..., 0] + f(0.5)) * f(255), (pbpr[..., 1] + f(0.5)) * f(255)], -1)
        k = self.colour_kernel
        rgb = ycc[..., 0:1] * k[0] + ycc[..., 1:2] * k[1] + ycc[..., 2:3] * k[2] + self.colour_bias
        rgb = np.minimum(np.maximum(rgb, f(0)), f(255)) / f(255)  # the graph's output in [0, 1]
        # truncation (official script: out*255, clip, astype) is what matches; rounding: +0.08 dB on Set5 (A)
        return np.clip(rgb * f(255), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# the models registry
# --------------------------------------------------------------------------------------------------
def falsr_model_factory(model: str):
    """``factory(scale=2, weights=PATH, device="cpu") -> FalsrUpscaler`` for the released ``model``
    (``"FALSR-A"``, ...): builds the genome ``falsr:<model>`` and loads the frozen graph ``weights``."""

    def factory(scale: int = 2, weights=None, device: str = "auto") -> FalsrUpscaler:
        from nasengine.builder import build
        from nasengine.genomefile import load_architecture

        if scale != 2:
            raise InputError(f"falsr:{model} is a x2 model; got scale {scale}")
        if weights is None or str(weights) == "":
            raise InputError(
                f"falsr:{model} needs the official weights: pass --weights {model}.pb (the frozen TensorFlow "
                f"graph released at github.com/xiaomi-automl/FALSR)")
        arch = load_architecture(f"falsr:{model}")
        module = build(arch.graph)
        report = load_official_weights(module, arch.graph, weights)
        return FalsrUpscaler(module, scale=2, name=f"falsr:{model}", device=_resolve_device(device),
                             colour=report.colour)

    factory.__doc__ = f"{model} with the official weights (--weights {model}.pb), the official pipeline"
    factory.__name__ = f"falsr_{model.replace('-', '_').lower()}"
    return factory


def register_models(registry) -> None:
    """Register ``falsr:FALSR-A`` / ``-B`` / ``-C`` in the models registry."""
    for model in RELEASED_MODELS:
        registry.add(f"falsr:{model}", falsr_model_factory(model),
                     description=f"{model} with the official weights (--weights {model}.pb)")
