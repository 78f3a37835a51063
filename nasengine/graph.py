"""ArchGraph: the architecture graph every genome decodes to (the engine's lingua franca).

A graph is a thin wrapper around a ``networkx`` DAG (:attr:`ArchGraph.nx`): each node is one registered
operation (:mod:`nasengine.ops`) with its attributes, each edge a tensor flowing into input ``port`` of its
target. A search space builds one with a few calls::

    from nasengine.graph import ArchGraph

    g = ArchGraph()
    x = g.input(channels=1)                                  # LR Y channel
    h = g.add("conv", x, out_channels=32, kernel=3)
    h = g.add("relu", h)
    h = g.add("conv", h, out_channels=1, kernel=3)
    s = g.add("add", h, x)                                   # one or several inputs, in port order
    u = g.add("conv", s, out_channels=4, kernel=3)
    u = g.add("pixel_shuffle", u, factor=2, name="upsampler")
    g.output(u)
    g.validate()        # {node: Shape}; raises ValidationError naming the node on any problem
    g.scale             # 2
    g.key()             # sha256 of the canonical form: same for every relabelling / insertion order

Everything else is derived from the graph: :func:`nasengine.cost.analytic_cost` (params, Mult-Adds),
:func:`nasengine.builder.build` (a torch module) and :meth:`ArchGraph.key` (dedupe, store, cache).

Nodes store ``{"op": str, "attrs": dict, "name": str | None}`` (and ``"runs": int`` when a space marked the node
as executed more than once: :meth:`ArchGraph.set_runs`); edges ``{"port": int}``. The wrapped graph is
a :class:`networkx.MultiDiGraph` (a ``DiGraph`` subclass) because one tensor may feed the same node twice
(``x + x``); edge keys equal their ports. :meth:`ArchGraph.inputs` gives a node's inputs in port order.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import numbers
import re
from fractions import Fraction
from typing import Any, Iterable, Iterator, Mapping

import attrs
import networkx as nx

from nasengine.errors import NasengineError, ValidationError
from nasengine.ops import OpRegistry, OpSpec, Shape, default_registry

__all__ = ["ArchGraph", "ResolvedNode", "SCHEMA", "module_name", "check_ops", "OpMismatchError"]

#: Schema tag of :meth:`ArchGraph.to_json` documents.
SCHEMA = "nasengine.graph/1"

_NODE_KEYS = {"id", "op", "attrs", "name", "runs"}
_EDGE_KEYS = {"src", "dst", "port"}


class OpMismatchError(NasengineError):
    """An unpickled graph uses an op that this process lacks, or has from another plugin or with another
    attribute schema."""


def check_ops(ops: Mapping[str, tuple[str, str]], registry: OpRegistry) -> None:
    """Check ``{op name: (plugin, fingerprint)}`` (what a pickled graph carries) against ``registry``:
    :class:`OpMismatchError` naming the first op that is missing or differs."""
    for name, (plugin, fingerprint) in sorted(ops.items()):
        if name not in registry:
            raise OpMismatchError(
                f"the graph uses op {name!r} of plugin {plugin!r}, which this process does not have (load that "
                f"plugin here: its entry point or NASENGINE_PLUGINS_EXTRA); registered ops: "
                f"{', '.join(registry.names())}")
        here, spec = registry.plugin_of(name), registry.get(name)
        if here != plugin or spec.fingerprint() != fingerprint:
            raise OpMismatchError(
                f"the graph's op {name!r} (plugin {plugin!r}, schema {fingerprint}) differs from this "
                f"process's (plugin {here!r}, schema {spec.fingerprint()}: {spec.describe()}): the two "
                "processes run different plugins or versions")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dumps(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _closure(start: int, adjacency) -> set[int]:
    """``start`` and every node reachable from it through ``adjacency`` ({node: {neighbour: ...}})."""
    seen = {start}
    stack = [start]
    while stack:
        for m in adjacency[stack.pop()]:
            if m not in seen:
                seen.add(m)
                stack.append(m)
    return seen


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@attrs.frozen
class ResolvedNode:
    """One validated node (see :meth:`ArchGraph.resolve`): its id, op spec, complete attrs, input node ids in
    port order, their shapes, its output shape and its optional name."""

    node: int
    spec: OpSpec
    attrs: Mapping[str, Any]
    inputs: tuple[int, ...]
    in_shapes: tuple[Shape, ...]
    shape: Shape
    name: str | None = None
    #: How many times the reference implementation executes the node (:meth:`ArchGraph.set_runs`; default 1).
    runs: int = 1

    @property
    def op(self) -> str:
        return self.spec.name


class ArchGraph:
    """An SR architecture as a DAG of registered operations (see the module docstring).

    ``registry`` is the :class:`~nasengine.ops.OpRegistry` the graph's ops come from (default:
    :func:`nasengine.ops.default_registry`, which the plugin manager fills with plugin ops). Node ids are
    ints handed out by :meth:`input` / :meth:`add` / :meth:`output`.

    ``==`` compares graphs exactly (same ids, ops, attrs, names and edges); use :meth:`key` for
    "the same architecture".
    """

    __hash__ = None  # mutable

    def __init__(self, registry: OpRegistry | None = None):
        self._g = nx.MultiDiGraph()
        self._registry = registry
        self._next_id = 0

    def __getstate__(self) -> dict:
        # A graph's meaning is its ops: it travels with the name, plugin and schema fingerprint of each op it
        # uses (not the specs: they hold functions), and the receiving process checks them against its own
        # default registry (its plugin facade) on unpickling.
        reg = self.registry
        ops = {}
        for _, data in self._g.nodes(data=True):
            name = data.get("op")
            if name not in ops and isinstance(name, str) and name in reg:
                ops[name] = (reg.plugin_of(name), reg.get(name).fingerprint())
        return {"g": self._g, "next_id": self._next_id, "ops": ops}

    def __setstate__(self, state: dict) -> None:
        self._g = state["g"]
        self._next_id = state["next_id"]
        self._registry = None
        check_ops(state.get("ops", {}), self.registry)

    def __copy__(self) -> "ArchGraph":
        return self.copy()

    def __deepcopy__(self, memo) -> "ArchGraph":
        return self.copy()  # a copy keeps the registry (pickling would drop it)

    # ---- access -----------------------------------------------------------------------------------------
    @property
    def nx(self) -> nx.MultiDiGraph:
        """The underlying networkx graph (node data: op, attrs, name; edge data: port)."""
        return self._g

    @property
    def registry(self) -> OpRegistry:
        """The op registry used when a method is not given one."""
        return self._registry if self._registry is not None else default_registry()

    def __len__(self) -> int:
        return self._g.number_of_nodes()

    def __iter__(self) -> Iterator[int]:
        return iter(self._g.nodes)

    def __contains__(self, node: object) -> bool:
        try:
            return node in self._g
        except TypeError:
            return False

    def op(self, node: int) -> str:
        """The op name of ``node``."""
        return self._g.nodes[node]["op"]

    def attrs(self, node: int) -> dict[str, Any]:
        """A copy of ``node``'s attributes."""
        return dict(self._g.nodes[node].get("attrs", {}))

    def name(self, node: int) -> str | None:
        """The optional human-readable name given to ``node``."""
        return self._g.nodes[node].get("name")

    def runs(self, node: int) -> int:
        """How many times ``node`` is executed by the implementation the graph describes (default 1; see
        :meth:`set_runs`)."""
        return self._g.nodes[node].get("runs", 1)

    def inputs(self, node: int) -> list[int]:
        """The nodes feeding ``node``, in port order (a node may appear twice)."""
        return [u for _, u in sorted((d.get("port", 0), u) for u, _, d in self._g.in_edges(node, data=True))]

    def consumers(self, node: int) -> list[tuple[int, int]]:
        """``(consumer, port)`` pairs reading ``node``'s output, sorted."""
        return sorted((v, d.get("port", 0)) for _, v, d in self._g.out_edges(node, data=True))

    def _nodes_with_op(self, op: str) -> list[int]:
        return [n for n, d in self._g.nodes(data=True) if d.get("op") == op]

    @property
    def input_node(self) -> int | None:
        """The id of the input node (None before :meth:`input` is called)."""
        found = self._nodes_with_op("input")
        return found[0] if len(found) == 1 else None

    @property
    def output_node(self) -> int | None:
        """The id of the output node (None before :meth:`output` is called)."""
        found = self._nodes_with_op("output")
        return found[0] if len(found) == 1 else None

    @property
    def input_channels(self) -> int:
        """Channels of the graph input (the ``channels`` attr of the input node)."""
        node = self.input_node
        if node is None:
            raise ValidationError("the graph has no input node (or more than one)", field="graph")
        channels = self._g.nodes[node].get("attrs", {}).get("channels")
        if not _is_int(channels):
            raise ValidationError(f"the input's channels are {channels!r}", field=self._where(node))
        return channels

    @property
    def output_channels(self) -> int:
        """Channels of the graph output (validates the graph)."""
        return next(r.shape.channels for r in self.resolve() if r.spec.name == "output")

    def topological_order(self) -> list[int]:
        """Node ids in a deterministic topological order (smallest id first among the ready nodes)."""
        order = self._kahn({n: self.inputs(n) for n in self._g})
        if len(order) != len(self._g):
            raise ValidationError("the graph has a cycle", field="graph")
        return order

    # ---- building ---------------------------------------------------------------------------------------
    def input(self, channels: int, *, name: str | None = None) -> int:
        """Add the graph input (an LR image with ``channels`` channels); returns its node id."""
        return self.add("input", channels=channels, name=name)

    def output(self, node: int, *, name: str | None = None) -> int:
        """Mark ``node``'s tensor as the graph output; returns the output node's id."""
        return self.add("output", node, name=name)

    def add(self, op: str, *inputs: int | Iterable[int], name: str | None = None, **attrs: Any) -> int:
        """Add a node running ``op`` on ``inputs`` (node ids, in port order; a list of ids works too) with
        the op's attributes as keyword arguments; returns the new node's id.

        Op name, attributes (defaults are filled in) and number of inputs are checked at once; shapes are
        checked by :meth:`validate`. Raises :class:`~nasengine.errors.ValidationError`.
        """
        nid = self._next_id
        where = f"node {nid} ({op})"
        spec = self._spec(op, where)
        srcs: list[int] = []
        for item in inputs:
            for src in item if isinstance(item, (list, tuple)) else (item,):
                if not isinstance(src, numbers.Integral) or isinstance(src, bool):
                    raise ValidationError(f"inputs must be node ids, got {src!r}", field=where)
                srcs.append(int(src))  # numpy ints would leak into the JSON
        for src in srcs:
            if src not in self:
                raise ValidationError(f"input {src!r} is not a node of this graph", field=where)
            if self._g.nodes[src].get("op") == "output":
                raise ValidationError(f"node {src} is the graph output and cannot feed another node", field=where)
        problem = spec.arity_problem(len(srcs))
        if problem:
            raise ValidationError(f"{op} {problem}", field=where)
        if op in ("input", "output") and self._nodes_with_op(op):
            raise ValidationError(f"the graph already has an {op} node ({self._nodes_with_op(op)[0]})", field=where)
        if name is not None and not isinstance(name, str):
            raise ValidationError(f"name must be a string, got {type(name).__name__}", field=where)
        norm = spec.normalize_attrs(attrs, where=where + " ")
        self._g.add_node(nid, op=op, attrs=norm, name=name)
        for port, src in enumerate(srcs):
            self._g.add_edge(src, nid, key=port, port=port)
        self._next_id = nid + 1
        return nid

    def _spec(self, op: Any, where: str, registry: OpRegistry | None = None) -> OpSpec:
        reg = registry if registry is not None else self.registry
        if isinstance(op, str) and op in reg:
            return reg.get(op)
        raise ValidationError(f"unknown operation {op!r}; registered: {', '.join(reg.names())}", field=where)

    def set_attrs(self, node: int, **attrs: Any) -> dict[str, Any]:
        """Change some attributes of ``node`` (the others keep their values); returns its complete attrs.

        The merged attributes are checked against the op's schema at once, as :meth:`add` does, and nothing
        changes when they fail (:class:`~nasengine.errors.ValidationError` naming the node and the attribute);
        shapes are checked by :meth:`validate`.
        """
        if node not in self:
            raise ValidationError(f"{node!r} is not a node of this graph", field="graph")
        data = self._g.nodes[node]
        where = self._where(node)
        spec = self._spec(data.get("op"), where)
        merged = spec.normalize_attrs({**data.get("attrs", {}), **attrs}, where=f"{where} ")
        data["attrs"] = merged
        return dict(merged)

    def set_runs(self, nodes: int | str | Iterable[int | str], runs: int) -> None:
        """Mark ``nodes`` (a node id, a node name, or an iterable of ids and names) as executed ``runs`` times by
        the implementation this graph describes — e.g. a released network that runs one cell twice per forward
        pass with the same weights and identical results.

        A cost annotation only: the builder still computes each node once, and the architecture's
        :meth:`key` / :meth:`canonical_json` ignore it (the function is the same). The cost model's
        ``executed`` convention (:data:`nasengine.cost.CONVENTIONS`) multiplies a node's Mult-Adds by it.
        It travels with :meth:`copy`, :meth:`canonical`, :meth:`with_counts`, pickling and :meth:`to_json`
        (``"runs"``, written only when not 1). ``runs=1`` clears the mark. Raises
        :class:`~nasengine.errors.ValidationError` naming the node or value for an unknown node or a ``runs``
        that is not an integer >= 1; nothing changes then.
        """
        if not _is_int(runs) or runs < 1:
            raise ValidationError(f"must be an integer >= 1, got {runs!r}", field="runs")
        items = [nodes] if isinstance(nodes, (int, str)) else list(nodes)
        found = []
        for item in items:
            if isinstance(item, str):
                named = [n for n, d in self._g.nodes(data=True) if d.get("name") == item]
                if len(named) != 1:
                    what = "no node" if not named else f"{len(named)} nodes ({', '.join(map(str, named))})"
                    raise ValidationError(f"{what} of this graph is named {item!r}", field=f"runs of {item!r}")
                found.append(named[0])
            elif _is_int(item) and item in self._g:
                found.append(item)
            else:
                raise ValidationError(f"{item!r} is not a node id or name of this graph", field=f"runs of {item!r}")
        for node in found:
            if runs == 1:
                self._g.nodes[node].pop("runs", None)
            else:
                self._g.nodes[node]["runs"] = int(runs)

    def with_counts(self, counts: Mapping[int | str, int], registry: OpRegistry | None = None) -> "ArchGraph":
        """A validated copy in which the given nodes output the given whole numbers of channels.

        ``counts`` maps node ids or node names to channel counts. Each node's attributes follow from its op's
        ``recount`` rule (:class:`~nasengine.ops.OpSpec`) applied to its new input counts and its count (conv:
        ``out_channels``, a depthwise conv's ``groups`` too; per-channel PReLU: ``num_parameters``), through
        :meth:`set_attrs`. A count on a node
        whose op has no ``recount`` rule must equal the count its shape rule gives. Raises
        :class:`~nasengine.errors.ValidationError` naming the node for anything that does not fit.
        """
        reg = registry if registry is not None else self.registry
        wanted = self.nodes_of(counts)
        for node, count in wanted.items():
            if not _is_int(count) or count < 1:
                raise ValidationError(f"a channel count must be a positive integer, got {count!r}",
                                      field=f"counts[{self._where(node)}]")
        new = self.copy()
        shapes: dict[int, Shape] = {}
        for r in self.resolve(reg):
            in_shapes = tuple(shapes[u] for u in r.inputs)
            out = wanted.get(r.node)
            a = r.attrs
            if r.spec.recount is not None:
                a = r.spec.recount(dict(a), [s.channels for s in in_shapes], out, [s.channels for s in r.in_shapes])
                if a != r.attrs:
                    a = new.set_attrs(r.node, **a)
            try:
                shape = r.spec.infer(a, in_shapes)
            except ValidationError as exc:
                raise ValidationError(f"at the new channel counts: {exc}", field=self._where(r.node)) from None
            if out is not None and shape[0] != out:
                how = ("its op has no recount rule" if r.spec.recount is None
                       else "its op's recount rule does not set it")
                raise ValidationError(f"cannot output {out} channels: its shape rule gives {shape[0]} "
                                      f"({how})", field=self._where(r.node))
            shapes[r.node] = Shape(*shape)
        new.validate(reg)
        return new

    def nodes_of(self, keyed: Mapping[int | str, Any]) -> dict[int, Any]:
        """``keyed`` with node names replaced by node ids (ids pass through): ``{"d0.conv": v} -> {7: v}``.

        Raises :class:`~nasengine.errors.ValidationError` for a key that is neither a node id nor the name of
        exactly one node, or for a node given twice (by id and by name)."""
        by_name: dict[str, list[int]] = {}
        for n, d in self._g.nodes(data=True):
            if d.get("name") is not None:
                by_name.setdefault(d["name"], []).append(n)
        out: dict[int, Any] = {}
        for key, value in keyed.items():
            if isinstance(key, str):
                found = by_name.get(key, [])
                if len(found) != 1:
                    what = "no node" if not found else f"{len(found)} nodes ({', '.join(map(str, found))})"
                    raise ValidationError(f"{what} of this graph is named {key!r}", field=f"counts[{key!r}]")
                node = found[0]
            elif _is_int(key) and key in self._g:
                node = key
            else:
                raise ValidationError(f"{key!r} is not a node id or name of this graph", field=f"counts[{key!r}]")
            if node in out:
                raise ValidationError(f"node {node} is given twice", field=f"counts[{key!r}]")
            out[node] = value
        return out

    def prune(self) -> list[int]:
        """Remove the nodes whose output never reaches the graph output; returns their ids (sorted)."""
        out = self.output_node
        if out is None:
            raise ValidationError("the graph has no output node to prune towards", field="graph")
        keep = nx.ancestors(self._g, out) | {out}
        dead = sorted(n for n in self._g if n not in keep)
        self._g.remove_nodes_from(dead)
        return dead

    def live_nodes(self) -> set[int]:
        """The nodes whose output reaches the graph output (the output included): every node but those of
        built-but-unused branches (which end in an ``unused`` node). Their complement is built and costed but
        never computed."""
        out = self.output_node
        if out is None:
            raise ValidationError("the graph has no output node", field="graph")
        return _closure(out, self._g._pred)

    def copy(self) -> "ArchGraph":
        """An independent copy (same ids)."""
        new = ArchGraph(self._registry)
        new._g = nx.MultiDiGraph()
        for n, d in self._g.nodes(data=True):
            new._g.add_node(n, **{**d, "attrs": dict(d.get("attrs", {}))})
        for u, v, k, d in self._g.edges(keys=True, data=True):
            new._g.add_edge(u, v, key=k, **d)
        new._next_id = self._next_id
        return new

    # ---- validation ---------------------------------------------------------------------------------------
    def _where(self, n: int) -> str:
        d = self._g.nodes[n]
        label = f"{d.get('op')}, {d['name']!r}" if d.get("name") else f"{d.get('op')}"
        return f"node {n} ({label})"

    def _checked(self, reg: OpRegistry) -> tuple[dict[int, OpSpec], dict[int, dict], dict[int, list[int]], list[int]]:
        """Ops, attrs, ports, arity, single input/output, acyclicity and reachability; returns
        (specs, normalised attrs, inputs in port order, deterministic topological order)."""
        g = self._g
        if g.number_of_nodes() == 0:
            raise ValidationError("the graph is empty", field="graph")
        specs: dict[int, OpSpec] = {}
        attrs: dict[int, dict] = {}
        for n, d in g.nodes(data=True):
            op = d.get("op")
            if type(op) is str and op in reg:
                specs[n] = reg.get(op)
            else:
                specs[n] = self._spec(op, self._where(n), reg)
            attrs[n] = specs[n].normalize_attrs(d.get("attrs", {}), where=lambda n=n: self._where(n) + " ")
        for op in ("input", "output"):
            found = sorted(n for n in g if specs[n].name == op)
            if len(found) != 1:
                listed = ", ".join(str(n) for n in found)
                raise ValidationError(
                    f"the graph needs exactly one {op} node, found {len(found)}" + (f" ({listed})" if found else ""),
                    field="graph",
                )
        ins: dict[int, list[int]] = {}
        pred = g._pred  # {node: {src: {key: data}}}: read directly, the algorithm wrappers cost more than the work
        for n in g:
            ports = []
            for u, keyed in pred[n].items():
                for data in keyed.values():
                    port = data.get("port")
                    if not _is_int(port) or port < 0:
                        raise ValidationError(f"edge from node {u} has no valid port ({port!r})", field=self._where(n))
                    ports.append((port, u))
            ports.sort()
            if any(p != i for i, (p, _) in enumerate(ports)):
                raise ValidationError(
                    f"input ports are {[p for p, _ in ports]}; expected 0..{len(ports) - 1} without gaps or repeats",
                    field=self._where(n),
                )
            problem = specs[n].arity_problem(len(ports))
            if problem:
                raise ValidationError(f"{specs[n].name} {problem}", field=self._where(n))
            ins[n] = [u for _, u in ports]
        src = next(n for n in g if specs[n].name == "input")
        dst = next(n for n in g if specs[n].name == "output")
        succ = g._succ
        if succ[dst]:
            feeds = ", ".join(str(v) for v in sorted(succ[dst]))
            raise ValidationError(f"the output feeds node(s) {feeds}", field=self._where(dst))
        order = self._kahn(ins)
        if len(order) != len(ins):
            cycle = [u for u, *_ in nx.find_cycle(g)]
            path = " -> ".join(str(n) for n in cycle + cycle[:1])
            raise ValidationError(f"the graph has a cycle through nodes {path}", field="graph")
        reached = _closure(src, succ)
        unreached = sorted(n for n in g if n not in reached)
        if unreached:
            raise ValidationError(
                "not reachable from the input (node {}): {}".format(src, ", ".join(self._where(n) for n in unreached)),
                field="graph",
            )
        useful = _closure(dst, pred)
        for n in g:  # a built-but-unused branch ends in an `unused` node (nasengine.ops.UNUSED)
            if specs[n].name == "unused":
                if succ[n]:
                    feeds = ", ".join(str(v) for v in sorted(succ[n]))
                    raise ValidationError(f"an unused node is terminal but feeds node(s) {feeds}", field=self._where(n))
                useful |= _closure(n, pred)
        dangling = sorted(n for n in g if n not in useful)
        if dangling:
            raise ValidationError(
                "dangling (never reach the output node {} or an unused node): {}".format(
                    dst, ", ".join(self._where(n) for n in dangling)),
                field="graph",
            )
        return specs, attrs, ins, order

    def _kahn(self, ins: dict[int, list[int]]) -> list[int]:
        """Topological order, smallest id first among ready nodes (shorter than ``ins`` if there is a cycle)."""
        indeg = {n: len(v) for n, v in ins.items()}
        heap = [n for n, d in indeg.items() if d == 0]
        heapq.heapify(heap)
        succ = self._g._succ
        order = []
        while heap:
            n = heapq.heappop(heap)
            order.append(n)
            for v, keyed in succ[n].items():
                indeg[v] -= len(keyed)
                if indeg[v] == 0:
                    heapq.heappush(heap, v)
        return order

    def validate(self, registry: OpRegistry | None = None) -> dict[int, Shape]:
        """Check the graph and infer every node's :class:`~nasengine.ops.Shape`; returns ``{node: Shape}``.

        Checks: known ops; attributes against each op's schema; exactly one input and one output node;
        contiguous input ports and each op's arity; no cycle; every node reachable from the input and
        reaching the output or an ``unused`` node (a built-but-unused branch, see :meth:`live_nodes`; other
        dangling nodes are errors: see :meth:`prune`); an ``unused`` node feeds nothing; channel and spatial-scale
        compatibility (e.g. ``node 7 (add): inputs have 32 and 64 channels``); an output scale that is an
        integer >= 1. Every failure is a :class:`~nasengine.errors.ValidationError` naming the node.
        """
        return {r.node: r.shape for r in self.resolve(registry)}

    def resolve(self, registry: OpRegistry | None = None) -> list["ResolvedNode"]:
        """Validate (see :meth:`validate`) and return every node resolved — op spec, complete attrs, inputs
        in port order, input and output shapes — in a deterministic topological order (smallest id first
        among ready nodes). This is what cost models and builders iterate over."""
        reg = registry if registry is not None else self.registry
        specs, attrs, ins, order = self._checked(reg)
        shapes: dict[int, Shape] = {}
        resolved: list[ResolvedNode] = []
        for n in order:
            spec = specs[n]
            in_shapes = tuple(shapes[u] for u in ins[n])
            try:
                shape = spec.infer(attrs[n], in_shapes)
            except ValidationError as exc:
                raise ValidationError(str(exc), field=self._where(n)) from None
            except Exception as exc:  # a plugin's shape rule failing must still name the node
                raise ValidationError(f"shape rule of {spec.name!r} failed: {type(exc).__name__}: {exc}",
                                      field=self._where(n)) from None
            if not (type(shape) is Shape and type(shape[0]) is int and shape[0] >= 1
                    and (shape[1] is None or (type(shape[1]) is Fraction and shape[1].numerator > 0))):
                if (
                    not isinstance(shape, tuple)
                    or len(shape) != 2
                    or not _is_int(shape[0])
                    or shape[0] < 1
                    or not (shape[1] is None or (isinstance(shape[1], (int, Fraction)) and shape[1] > 0))
                ):
                    raise ValidationError(f"shape rule of {spec.name!r} returned {shape!r}, not a Shape",
                                          field=self._where(n))
                shape = Shape(shape[0], None if shape[1] is None else Fraction(shape[1]))
            shapes[n] = shape
            data = self._g.nodes[n]
            resolved.append(ResolvedNode(n, spec, attrs[n], tuple(ins[n]), in_shapes, shape, data.get("name"),
                                         data.get("runs", 1)))
        out = resolved[-1]
        if out.spec.name != "output":  # the output is the only sink, hence last
            out = next(r for r in resolved if r.spec.name == "output")
        scale = out.shape.scale
        if scale is None or scale.denominator != 1 or scale < 1:
            what = "a globally pooled tensor" if scale is None else f"scale x{scale}"
            raise ValidationError(f"the output is {what}; an SR graph must upscale by an integer >= 1",
                                  field=self._where(out.node))
        return resolved

    def shapes(self, registry: OpRegistry | None = None) -> dict[int, Shape]:
        """Same as :meth:`validate` (the name reads better where the shapes are the point)."""
        return self.validate(registry)

    @property
    def scale(self) -> int:
        """The upscaling factor: the output's spatial scale (validates the graph)."""
        out = next(r for r in self.resolve() if r.spec.name == "output")
        return int(out.shape.scale)

    # ---- canonical form and key ----------------------------------------------------------------------------
    def _canonical(self, reg: OpRegistry) -> tuple[list[int], dict[int, int], dict[str, Any]]:
        """(canonical order of node ids, id -> canonical id, canonical document without names)."""
        resolved = self.resolve(reg)
        specs = {r.node: r.spec for r in resolved}
        attrs = {r.node: r.attrs for r in resolved}
        ins = {r.node: list(r.inputs) for r in resolved}
        g = self._g
        comm = {n: specs[n].commutative for n in g}
        label = {n: _dumps([specs[n].name, attrs[n]]) for n in g}
        outs: dict[int, list[tuple[int, int]]] = {n: [] for n in g}
        for n in g:
            for port, u in enumerate(ins[n]):
                outs[u].append((n, -1 if comm[n] else port))
        topo = [r.node for r in resolved]

        # Merkle hashes from the input (what computes a node) and from the output (what a node feeds).
        up: dict[int, str] = {}
        for n in topo:
            parts = [up[u] for u in ins[n]]
            if comm[n]:
                parts.sort()
            up[n] = _digest(label[n] + "<" + ",".join(parts))
        down: dict[int, str] = {}
        for n in reversed(topo):
            parts = sorted(f"{down[v]}:{p}" for v, p in outs[n])
            down[n] = _digest(label[n] + ">" + ",".join(parts))
        colour = {n: _digest(up[n] + down[n]) for n in g}

        # Colour refinement until the partition is stable.
        classes = len(set(colour.values()))
        for _ in range(len(topo)):
            new = {}
            for n in g:
                parts_in = [colour[u] for u in ins[n]]
                if comm[n]:
                    parts_in.sort()
                parts_out = sorted(f"{colour[v]}:{p}" for v, p in outs[n])
                new[n] = _digest(colour[n] + "<" + ",".join(parts_in) + ">" + ",".join(parts_out))
            new_classes = len(set(new.values()))
            colour = new
            if new_classes == classes:
                break
            classes = new_classes

        # Topological order, the ready node with the smallest (colour, canonical ids of its inputs) first.
        # Nodes still tied are structurally interchangeable; the node id only settles which goes first.
        indeg = {n: len(ins[n]) for n in g}
        cid: dict[int, int] = {}
        order: list[int] = []
        heap: list[tuple[str, tuple[int, ...], int]] = []

        def ready_key(n: int) -> tuple[str, tuple[int, ...], int]:
            ids = [cid[u] for u in ins[n]]
            if comm[n]:
                ids.sort()
            return (colour[n], tuple(ids), n)

        for n in g:
            if indeg[n] == 0:
                heapq.heappush(heap, ready_key(n))
        while heap:
            *_, n = heapq.heappop(heap)
            cid[n] = len(order)
            order.append(n)
            for v in sorted({v for v, _ in outs[n]}):
                indeg[v] -= sum(1 for u in ins[v] if u == n)
                if indeg[v] == 0:
                    heapq.heappush(heap, ready_key(v))

        nodes = [{"id": cid[n], "op": specs[n].name, "attrs": attrs[n]} for n in order]
        edges = []
        for n in order:
            srcs = [cid[u] for u in ins[n]]
            if comm[n]:
                srcs.sort()
            edges.extend({"src": s, "dst": cid[n], "port": p} for p, s in enumerate(srcs))
        return order, cid, {"schema": SCHEMA, "nodes": nodes, "edges": edges}

    def canonical(self, registry: OpRegistry | None = None) -> "ArchGraph":
        """An equivalent graph relabelled canonically: ids ``0..n-1`` in canonical topological order, inputs
        of commutative ops in ascending id order, all attributes explicit. Isomorphic graphs (any node ids,
        any insertion order, any input order of commutative ops) give equal canonical graphs. Names and
        execution counts (:meth:`set_runs`) are kept.
        """
        reg = registry if registry is not None else self.registry
        order, cid, doc = self._canonical(reg)
        for n, node in zip(order, doc["nodes"]):
            if self._g.nodes[n].get("name") is not None:
                node["name"] = self._g.nodes[n]["name"]
            if self._g.nodes[n].get("runs", 1) != 1:
                node["runs"] = self._g.nodes[n]["runs"]
        return ArchGraph.from_json(doc, registry=self._registry, validate=False)

    def canonical_json(self, registry: OpRegistry | None = None) -> str:
        """The canonical form as compact JSON text (sorted keys, names left out): what :meth:`key` hashes."""
        reg = registry if registry is not None else self.registry
        return _dumps(self._canonical(reg)[2])

    def key(self, registry: OpRegistry | None = None) -> str:
        """The architecture's key: sha256 hex of :meth:`canonical_json`.

        Stable across processes and Python versions, independent of node ids, insertion order and the input
        order of commutative ops; any change of op, attribute or wiring changes it. (Graphs whose non-
        interchangeable nodes colour refinement cannot tell apart — highly regular, unlike SR networks — may
        get two keys for one architecture; two different architectures never share one, short of a sha256
        collision.)
        """
        return hashlib.sha256(self.canonical_json(registry).encode()).hexdigest()

    # ---- JSON ---------------------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict: ``{"schema": "nasengine.graph/1", "nodes": [{"id", "op", "attrs"[, "name"][, "runs"]}],
        "edges": [{"src", "dst", "port"}]}`` (nodes by id, edges by target and port; ``runs`` only when not 1)."""
        nodes = []
        for n in sorted(self._g.nodes):
            d = self._g.nodes[n]
            node = {"id": n, "op": d.get("op"), "attrs": dict(d.get("attrs", {}))}
            if d.get("name") is not None:
                node["name"] = d["name"]
            if d.get("runs", 1) != 1:
                node["runs"] = d["runs"]
            nodes.append(node)
        edges = sorted(
            ({"src": u, "dst": v, "port": d.get("port")} for u, v, d in self._g.edges(data=True)),
            key=lambda e: (e["dst"], e["port"] if _is_int(e["port"]) else -1, e["src"]),
        )
        return {"schema": SCHEMA, "nodes": nodes, "edges": edges}

    @classmethod
    def from_json(cls, data: Any, registry: OpRegistry | None = None, *, validate: bool = True) -> "ArchGraph":
        """Parse :meth:`to_json` output. Malformed data raises :class:`~nasengine.errors.ValidationError` whose
        ``field`` names the offending part (``nodes[3].attrs.kernel``, ``edges[0].src``) — never KeyError or
        TypeError. With ``validate`` (default) the graph is also :meth:`validate`-d."""
        graph = cls(registry)
        reg = graph.registry
        if not isinstance(data, Mapping):
            raise ValidationError(f"expected a JSON object, got {type(data).__name__}", field="(root)")
        for key in data:
            if key not in ("schema", "nodes", "edges"):
                raise ValidationError("unknown field (expected schema, nodes, edges)", field=str(key))
        if data.get("schema") != SCHEMA:
            raise ValidationError(f"expected {SCHEMA!r}, got {data.get('schema')!r}", field="schema")
        nodes, edges = data.get("nodes"), data.get("edges")
        if not isinstance(nodes, list):
            raise ValidationError(f"must be a list, got {type(nodes).__name__}", field="nodes")
        if not isinstance(edges, list):
            raise ValidationError(f"must be a list, got {type(edges).__name__}", field="edges")
        g = graph._g
        for i, node in enumerate(nodes):
            where = f"nodes[{i}]"
            if not isinstance(node, Mapping):
                raise ValidationError(f"must be an object, got {type(node).__name__}", field=where)
            for key in node:
                if key not in _NODE_KEYS:
                    raise ValidationError("unknown field (expected id, op, attrs, name, runs)", field=f"{where}.{key}")
            nid = node.get("id")
            if not _is_int(nid) or nid < 0:
                raise ValidationError(f"must be a non-negative integer, got {nid!r}", field=f"{where}.id")
            if nid in g:
                raise ValidationError(f"duplicate node id {nid}", field=f"{where}.id")
            op = node.get("op")
            if not isinstance(op, str) or op not in reg:
                raise ValidationError(f"unknown operation {op!r}; registered: {', '.join(reg.names())}",
                                      field=f"{where}.op")
            attrs = reg.get(op).normalize_attrs(node.get("attrs", {}), where=f"{where}.")
            name = node.get("name")
            if name is not None and not isinstance(name, str):
                raise ValidationError(f"must be a string, got {type(name).__name__}", field=f"{where}.name")
            g.add_node(nid, op=op, attrs=attrs, name=name)
            if "runs" in node:
                runs = node["runs"]
                if not _is_int(runs) or runs < 1:
                    raise ValidationError(f"must be an integer >= 1, got {runs!r}", field=f"{where}.runs")
                if runs != 1:
                    g.nodes[nid]["runs"] = int(runs)
        taken: set[tuple[int, int]] = set()
        for j, edge in enumerate(edges):
            where = f"edges[{j}]"
            if not isinstance(edge, Mapping):
                raise ValidationError(f"must be an object, got {type(edge).__name__}", field=where)
            for key in edge:
                if key not in _EDGE_KEYS:
                    raise ValidationError("unknown field (expected src, dst, port)", field=f"{where}.{key}")
            for key in ("src", "dst"):
                if not _is_int(edge.get(key)) or edge.get(key) not in g:
                    raise ValidationError(f"must be the id of a node, got {edge.get(key)!r}", field=f"{where}.{key}")
            port = edge.get("port")
            if not _is_int(port) or port < 0:
                raise ValidationError(f"must be a non-negative integer, got {port!r}", field=f"{where}.port")
            if (edge["dst"], port) in taken:
                raise ValidationError(f"node {edge['dst']} already has an input on port {port}", field=f"{where}.port")
            taken.add((edge["dst"], port))
            g.add_edge(edge["src"], edge["dst"], key=port, port=port)
        graph._next_id = max(g.nodes, default=-1) + 1
        if validate:
            graph.validate(reg)
        return graph

    # ---- display / comparison ---------------------------------------------------------------------------------
    def summary(self) -> str:
        """One line per node in topological order: ``n3 conv(out_channels=32, kernel=3, ...) <- n1``."""
        lines = []
        for n in self.topological_order():
            d = self._g.nodes[n]
            args = ", ".join(f"{k}={v!r}" for k, v in d.get("attrs", {}).items())
            src = ", ".join(f"n{u}" for u in self.inputs(n))
            name = f"  # {d['name']}" if d.get("name") else ""
            if d.get("runs", 1) != 1:
                name += f"  (runs x{d['runs']})"
            lines.append(f"n{n} {d.get('op')}({args})" + (f" <- {src}" if src else "") + name)
        return "\n".join(lines)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArchGraph):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __repr__(self) -> str:
        ops: dict[str, int] = {}
        for _, d in self._g.nodes(data=True):
            ops[str(d.get("op"))] = ops.get(str(d.get("op")), 0) + 1
        top = ", ".join(f"{k}x{v}" for k, v in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))[:6])
        return f"<ArchGraph {len(self)} nodes: {top}>"


_IDENT = re.compile(r"[^0-9A-Za-z_]")


def module_name(node: int, op: str) -> str:
    """The attribute name the builder gives a node's module, ``n{id}_{op}`` (e.g. ``n3_conv``), reduced to a
    Python identifier; parameters then read ``n3_conv.weight``."""
    return _IDENT.sub("_", f"n{node}_{op}")
