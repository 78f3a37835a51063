"""The weight-sharing supernet of a one-shot search: one bank of weights that every child of a space uses.

A space that supports weight sharing names every parameterised node of its graphs (a **slot**,
``ArchGraph.add(..., name="d0.n2.conv")``) the same way in every genome, and gives a **densest** genome whose
graph holds every slot at its widest input (:meth:`nasengine.space.SearchSpace.densest`; a space where no single
genome holds every slot gives a union graph, :meth:`~nasengine.space.SearchSpace.supernet_graph`). The supernet
allocates one module per slot of that graph, built by the op's ordinary builder at the densest input shapes
(the **bank**), and builds any child graph into an fx module whose named nodes use the bank's modules::

    from nasengine.supernet import Supernet

    sn = Supernet(space)                       # the bank: sn.parameters(), sn.state_dict(), sn.slot_names()
    model = sn.child(genome)                   # an fx GraphModule whose parameters ARE the bank's
    loss = (model(lr) - hr).abs().mean()
    loss.backward()                            # only the slots (and input channels) the child uses get gradients
    opt.step()                                 # opt = torch.optim.Adam(sn.parameters())

**Inputs and slicing.** A slot's input in a child may be a concat of a subset of its densest inputs. The
supernet walks back from the slot through parameter-free element-wise nodes (:data:`PASS_THROUGH`: relu,
identity, ...) to a concat (or a single producer), labels each of its inputs by its producer's slot name (an
unnamed producer by its op and its inputs' labels), and matches them against the densest graph's inputs of the
same slot, which gives each selected input its channel range in the bank's widest input. The space's weight
layout (:mod:`nasengine.layouts`; ``per_slot`` by default) then makes the module the child calls: the bank
module itself at full width, or a thin wrapper holding it that uses the selected part of its weights.

Children are cached by graph (an LRU of ``cache_size``) and are not submodules: ``state_dict()`` and
``parameters()`` are the bank only, in the densest graph's order. Children share the bank's modules, so
``sn.train()`` / ``sn.eval()`` reach them; ``sn.to(device)`` empties the cache (wrappers hold index tensors).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasengine.errors import ValidationError
from nasengine.graph import ArchGraph, module_name
from nasengine.layouts import PerSlotLayout, SlotInput, SlotView, WeightLayout
from nasengine.space import canonical_json

__all__ = ["Supernet", "SharedConv", "SharedSepConv", "PASS_THROUGH", "resolve_layout",
           "WeightLayout", "PerSlotLayout", "SlotInput", "SlotView"]

#: Parameter-free element-wise unary ops a slot's input may pass through after its concat: applying them to
#: the concat and slicing commute, so the supernet walks back through them to find the slot's inputs.
PASS_THROUGH = frozenset({"relu", "relu6", "tanh", "sigmoid", "identity", "scale"})

_LABEL_MAX = 160  # longer structural labels are shortened to op + digest


def resolve_layout(layout: str | WeightLayout | None, space=None) -> WeightLayout:
    """A :class:`WeightLayout` from a registered name, an instance, or ``None`` (the space's
    ``weight_layout``, default ``"per_slot"``)."""
    if isinstance(layout, WeightLayout):
        return layout
    if layout is None:
        layout = getattr(space, "weight_layout", "per_slot")
    if not isinstance(layout, str):
        raise ValidationError(f"expected a layout name or a WeightLayout, got {type(layout).__name__}",
                              field="layout")
    if layout == "per_slot":
        return PerSlotLayout()
    from nasengine.plugins import get_plugins

    return get_plugins().weight_layouts.get(layout)()


# ---------------------------------------------------------------------------------------------------------
# Wrappers: a bank module used on part of its inputs
# ---------------------------------------------------------------------------------------------------------
def _index_or_range(channels) -> tuple[Any, int, int]:
    """``(None, start, length)`` for a contiguous ascending range (sliced by ``narrow``, a view), else
    ``(LongTensor, 0, n)`` for ``index_select``."""
    channels = [int(c) for c in channels]
    start = channels[0]
    if channels == list(range(start, start + len(channels))):
        return None, start, len(channels)
    return torch.tensor(channels, dtype=torch.long), 0, len(channels)


class SharedConv(nn.Module):
    """A bank ``nn.Conv2d`` applied to part of its input channels: ``channels`` (per_slot: the weight's input
    channels ``[:, channels]``) or ``take`` (a LongTensor of the kernel's shape indexing the flattened bank
    weight: any rearrangement a layout needs). The bias, stride, padding and dilation are the bank conv's."""

    def __init__(self, conv: nn.Conv2d, *, channels=None, take: torch.Tensor | None = None):
        super().__init__()
        if (channels is None) == (take is None):
            raise ValueError("give exactly one of channels and take")
        if conv.groups != 1:
            raise ValueError("SharedConv slices ungrouped convs only")
        self.conv = conv
        self._start = self._length = 0
        index = None
        if channels is not None:
            index, self._start, self._length = _index_or_range(channels)
        self._mode = "take" if take is not None else ("narrow" if index is None else "select")
        self.register_buffer("index", take if take is not None else index, persistent=False)

    def weight(self) -> torch.Tensor:
        """The kernel the child uses (OIHW)."""
        w = self.conv.weight
        if self._mode == "narrow":
            return w.narrow(1, self._start, self._length)
        if self._mode == "select":
            return w.index_select(1, self.index)
        return w.take(self.index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return F.conv2d(x, self.weight(), c.bias, c.stride, c.padding, c.dilation, 1)

    def standalone_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict of the ``nn.Conv2d`` the ordinary builder makes for this child's slot."""
        state = {"weight": self.weight().detach().clone()}
        if self.conv.bias is not None:
            state["bias"] = self.conv.bias.detach().clone()
        return state


class SharedSepConv(nn.Module):
    """A bank separable conv (:class:`nasengine._op_modules.SepConv`) applied to part of its input channels:
    the depthwise kernel's channels and the pointwise kernel's input channels sliced together
    (``channels``), or the depthwise kernel rearranged by ``depthwise_take`` (a LongTensor of the kernel's
    shape indexing the flattened bank depthwise weight) with the pointwise sliced by ``channels``."""

    def __init__(self, sep: nn.Module, *, channels, depthwise_take: torch.Tensor | None = None):
        super().__init__()
        self.sep = sep
        index, self._start, self._length = _index_or_range(channels)
        self._mode = "narrow" if index is None else "select"
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("depthwise_take", depthwise_take, persistent=False)

    def _slice(self, w: torch.Tensor, dim: int) -> torch.Tensor:
        if self._mode == "narrow":
            return w.narrow(dim, self._start, self._length)
        return w.index_select(dim, self.index)

    def depthwise_weight(self) -> torch.Tensor:
        w = self.sep.depthwise.weight
        return w.take(self.depthwise_take) if self.depthwise_take is not None else self._slice(w, 0)

    def pointwise_weight(self) -> torch.Tensor:
        return self._slice(self.sep.pointwise.weight, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d, p = self.sep.depthwise, self.sep.pointwise
        h = F.conv2d(x, self.depthwise_weight(), None, d.stride, d.padding, d.dilation, self._length)
        return F.conv2d(h, self.pointwise_weight(), p.bias)

    def standalone_state_dict(self) -> dict[str, torch.Tensor]:
        state = {"depthwise.weight": self.depthwise_weight().detach().clone(),
                 "pointwise.weight": self.pointwise_weight().detach().clone()}
        if self.sep.pointwise.bias is not None:
            state["pointwise.bias"] = self.sep.pointwise.bias.detach().clone()
        return state


# ---------------------------------------------------------------------------------------------------------
# Graph analysis: labels of producers and the inputs of each slot
# ---------------------------------------------------------------------------------------------------------
def _labels(graph: ArchGraph, registry) -> dict[int, str]:
    """Every node's label: its slot name, or for an unnamed node ``op{attrs}(labels of its inputs)`` (sorted
    for a commutative op), so the same producer gets the same label in every graph of a space."""
    labels: dict[int, str] = {}
    reg = registry if registry is not None else graph.registry
    for n in graph.topological_order():
        name = graph.name(n)
        if name is not None:
            labels[n] = name
            continue
        op = graph.op(n)
        ins = [labels[u] for u in graph.inputs(n)]
        if op in reg and reg.get(op).commutative:
            ins.sort()
        attrs = graph.attrs(n)
        label = f"{op}{canonical_json(attrs) if attrs else ''}({','.join(ins)})"
        if len(label) > _LABEL_MAX:
            label = f"{op}#{hashlib.blake2b(label.encode(), digest_size=8).hexdigest()}"
        labels[n] = label
    return labels


def _slot_inputs(graph: ArchGraph, node: int, labels: Mapping[int, str],
                 shapes: Mapping[int, Any]) -> list[tuple[str, int]]:
    """``[(label, channels)]`` of the tensors a one-input slot reads: walk back through :data:`PASS_THROUGH`
    nodes to an unnamed concat (its inputs) or any other producer (itself)."""
    u = graph.inputs(node)[0]
    while graph.op(u) in PASS_THROUGH:
        u = graph.inputs(u)[0]
    items = graph.inputs(u) if graph.op(u) == "concat" and graph.name(u) is None else [u]
    return [(labels[v], shapes[v].channels) for v in items]


class _Slot:
    """The bank's record of one slot: op, attrs, input shapes and inputs in the densest graph."""

    def __init__(self, name: str, key: str, op: str, attrs: dict, in_shapes: tuple, sources):
        self.name, self.key, self.op, self.attrs, self.in_shapes = name, key, op, attrs, in_shapes
        self.sources: tuple[SlotInput, ...] | None = sources
        self.by_label = {s.source: s for s in reversed(sources)} if sources is not None else {}


def _bank_key(name: str) -> str:
    # nn.Module names cannot hold ".", which slot names use as a separator.
    return name.replace(".", "/")


# ---------------------------------------------------------------------------------------------------------
# The supernet
# ---------------------------------------------------------------------------------------------------------
class Supernet(nn.Module):
    """The weight bank of ``space`` and the children that share it (see the module docstring).

    ``registry``: the op registry (default: the graphs'). ``layout``: a registered layout name, a
    :class:`WeightLayout`, or ``None`` for ``space.weight_layout``. ``weight_init``: applied with
    :meth:`torch.nn.Module.apply` to each bank module when it is made. ``cache_size``: how many built children
    are kept (least recently used dropped first).

    The bank's graph is ``space.supernet_graph()`` (default ``decode(densest())``). A child may use one slot
    in several nodes (nodes with the same name): they share its module.

    Errors: the space has no ``densest()`` -> NotImplementedError; two slots of the densest graph with one
    name, an unnamed node with parameters, a child slot whose name, op, attrs or inputs the bank does not
    have -> :class:`ValidationError` naming the slot and what differs.
    """

    def __init__(self, space, *, registry=None, layout: str | WeightLayout | None = None,
                 weight_init: Callable[[nn.Module], None] | None = None, cache_size: int = 128):
        super().__init__()
        if not isinstance(cache_size, int) or cache_size < 1:
            raise ValidationError(f"must be a positive int, got {cache_size!r}", field="cache_size")
        self.space = space
        self.registry = registry
        self.layout = resolve_layout(layout, space)
        self.cache_size = cache_size
        self._children: OrderedDict[str, nn.Module] = OrderedDict()
        self._genome_keys: dict[str, str] = {}
        self.slots = nn.ModuleDict()
        self._slots: dict[str, _Slot] = {}
        graph_of = getattr(space, "supernet_graph", None)
        self._build_bank(graph_of() if graph_of is not None else space.decode(space.densest()), weight_init)
        self._param_ids = {id(p) for p in self.parameters()}

    # ---- the bank -------------------------------------------------------------------------------------
    def _build_bank(self, graph: ArchGraph, weight_init) -> None:
        resolved = graph.resolve(self.registry)
        labels = _labels(graph, self.registry)
        shapes = {r.node: r.shape for r in resolved}
        keys: dict[str, str] = {}
        for r in resolved:
            if r.spec.name in ("input", "output"):
                continue
            where = f"densest graph node {r.node} ({r.spec.name})"
            if r.name is None:
                module = r.spec.build(r.attrs, r.in_shapes)
                if any(True for _ in module.parameters()):
                    raise ValidationError(f"{r.spec.name} has parameters but no slot name; a supernet's space must "
                                          "name every node with parameters (ArchGraph.add(..., name=...))",
                                          field=where)
                continue
            if r.name in self._slots:
                raise ValidationError(f"slot name {r.name!r} is used twice in the densest graph", field=where)
            key = _bank_key(r.name)
            if key in keys:
                raise ValidationError(f"slot names {keys[key]!r} and {r.name!r} clash as module names "
                                      f"({key!r})", field=where)
            keys[key] = r.name
            module = r.spec.build(r.attrs, r.in_shapes)
            if weight_init is not None:
                module.apply(weight_init)
            self.slots[key] = module
            sources = None
            if len(r.inputs) == 1:
                sources, start = [], 0
                for i, (label, width) in enumerate(_slot_inputs(graph, r.node, labels, shapes)):
                    sources.append(SlotInput(label, i, start, start + width))
                    start += width
                sources = tuple(sources)
            self._slots[r.name] = _Slot(r.name, key, r.spec.name, dict(r.attrs), tuple(r.in_shapes), sources)

    def slot_names(self) -> list[str]:
        """Every slot of the bank, in the densest graph's topological order."""
        return list(self._slots)

    def slot_module(self, name: str) -> nn.Module:
        """The bank module of slot ``name``."""
        return self.slots[self._slot(name).key]

    def _slot(self, name: str) -> _Slot:
        try:
            return self._slots[name]
        except KeyError:
            raise ValidationError(f"not in the supernet's bank (slots: {', '.join(self._slots)})",
                                  field=f"slot {name!r}") from None

    # ---- children -------------------------------------------------------------------------------------
    def child(self, genome) -> nn.Module:
        """The module of ``genome``'s graph using the bank's weights (cached)."""
        gkey = self.space.genome_key(genome)
        key = self._genome_keys.get(gkey)
        if key is not None and key in self._children:
            self._children.move_to_end(key)
            return self._children[key]
        graph = self.space.decode(genome)
        model = self.child_of_graph(graph)
        if len(self._genome_keys) >= 8 * self.cache_size:
            self._genome_keys.clear()
        self._genome_keys[gkey] = self._graph_key(graph)
        return model

    def child_of_graph(self, graph: ArchGraph) -> nn.Module:
        """The module of ``graph`` (a graph of the space, slots named as in the densest one) using the bank's
        weights, cached by the graph's canonical form (names included)."""
        key = self._graph_key(graph)
        model = self._children.get(key)
        if model is not None:
            self._children.move_to_end(key)
            return model
        model = self._build_child(graph)
        self._children[key] = model
        while len(self._children) > self.cache_size:
            self._children.popitem(last=False)
        return model

    def forward(self, x: torch.Tensor, genome) -> torch.Tensor:
        """``self.child(genome)(x)``."""
        return self.child(genome)(x)

    def _graph_key(self, graph: ArchGraph) -> str:
        doc = graph.canonical(self.registry).to_json()
        return hashlib.sha256(canonical_json(doc).encode()).hexdigest()

    def _views(self, graph: ArchGraph) -> dict[int, SlotView]:
        """The :class:`SlotView` of every slot of ``graph`` (checked against the bank)."""
        resolved = graph.resolve(self.registry)
        labels = _labels(graph, self.registry)
        shapes = {r.node: r.shape for r in resolved}
        views = {}
        for r in resolved:
            if r.name is None or r.spec.name in ("input", "output"):
                continue
            slot = self._slot(r.name)
            where = f"slot {r.name!r}"
            if r.spec.name != slot.op:
                raise ValidationError(f"is a {r.spec.name} here but a {slot.op} in the supernet's bank", field=where)
            if dict(r.attrs) != slot.attrs:
                diff = ", ".join(f"{k}={r.attrs.get(k)!r} (bank: {slot.attrs.get(k)!r})"
                                 for k in sorted(set(r.attrs) | set(slot.attrs))
                                 if r.attrs.get(k) != slot.attrs.get(k))
                raise ValidationError(f"attributes differ from the supernet's bank: {diff}", field=where)
            if slot.sources is None or len(slot.sources) == 1:
                # One input in the densest graph (or several ports): nothing to slice, whatever feeds it.
                # Channels only: a module does not depend on the resolution it runs at (a cell of the space may
                # run at LR in one child and at HR in another).
                if [s.channels for s in r.in_shapes] != [s.channels for s in slot.in_shapes]:
                    raise ValidationError(f"input shapes {[str(s) for s in r.in_shapes]} differ from the bank's "
                                          f"{[str(s) for s in slot.in_shapes]} (only a slot reading a concat in "
                                          "the densest graph is sliced)", field=where)
                selected = None
            else:
                selected = []
                for label, width in _slot_inputs(graph, r.node, labels, shapes):
                    src = slot.by_label.get(label)
                    if src is None:
                        raise ValidationError(
                            f"input {label!r} is not an input of this slot in the densest graph (there: "
                            f"{', '.join(s.source for s in slot.sources)})", field=where)
                    if width != src.width:
                        raise ValidationError(f"input {label!r} has {width} channels here but {src.width} in the "
                                              "densest graph", field=where)
                    selected.append(src)
                selected = tuple(selected)
            module = self.slots[slot.key]
            views[r.node] = SlotView(r.name, slot.op, slot.attrs, module, slot.sources or (),
                                     selected if selected is not None else (slot.sources or ()))
        return views

    def _build_child(self, graph: ArchGraph) -> nn.Module:
        from nasengine.builder import build

        views = self._views(graph)

        def module_for(r):
            view = views.get(r.node)
            if view is None:
                return None
            module = self.layout.slot_module(view)
            if not isinstance(module, nn.Module):
                raise ValidationError(f"layout {self.layout!r} returned {type(module).__name__}, not an nn.Module",
                                      field=f"slot {view.name!r}")
            return module

        model = build(graph, self.registry, module_for=module_for)
        for name, p in model.named_parameters():
            if id(p) not in self._param_ids:
                raise ValidationError("holds parameters that are not the supernet's (an unnamed node with "
                                      "parameters, or a layout that made its own)", field=f"child module {name}")
        model.train(self.training)
        return model

    def standalone_state_dict(self, graph: ArchGraph) -> dict[str, torch.Tensor]:
        """The state dict of ``nasengine.builder.build(graph)`` holding the weights the child of ``graph``
        uses (sliced / rearranged by the layout), so that the standalone module computes the same function:
        inherit a supernet's weights into a model trained on its own."""
        views = self._views(graph)
        state = {}
        for node, view in views.items():
            module = self.layout.slot_module(view)
            own = getattr(module, "standalone_state_dict", None)
            part = own() if own is not None else {k: v.detach().clone() for k, v in module.state_dict().items()}
            prefix = module_name(node, view.op)
            state.update({f"{prefix}.{k}": v for k, v in part.items()})
        return state

    def clear_cache(self) -> None:
        """Forget the built children (they are rebuilt on demand)."""
        self._children.clear()
        self._genome_keys.clear()

    def _apply(self, fn, *args, **kwargs):
        # Wrappers hold index tensors that would stay where they were: children are rebuilt after a move.
        self.clear_cache()
        out = super()._apply(fn, *args, **kwargs)
        self._param_ids = {id(p) for p in self.parameters()}
        return out

    def train(self, mode: bool = True):
        super().train(mode)
        for model in self._children.values():
            model.train(mode)
        return self

    def extra_repr(self) -> str:
        return f"space={self.space.name}, layout={self.layout!r}, slots={len(self._slots)}"
