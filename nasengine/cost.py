"""Cost models: learned parameters and Mult-Adds of an architecture graph at a given LR input size.

:func:`analytic_cost` sums each op's own cost formula (:attr:`nasengine.ops.OpSpec.cost`) over the graph;
it needs no torch and takes microseconds, so a search can cost every candidate before training it.
:func:`count_with_hooks` counts the same quantities on a built torch module with forward hooks; the tests
prove both agree exactly, op by op, on random graphs.

The counting convention (``reference/README.md``, the papers' tables):

* **Mult-Adds** (the default convention, ``"true"``) = sum over learned convs of
  ``H_out*W_out*k_h*k_w*(C_in/groups)*C_out``. Bias adds, activations, element-wise ops, batch norm, pixel
  shuffle, interpolation and fixed shifts cost nothing. Convs that run at HR (after an upsampler) are counted at
  HR; a transposed conv costs ``k*k*C_in*C_out`` per *input* pixel (what it computes); channel attention's 1x1
  convs on the pooled vector count once per image. Each node is counted once.
* **params** = every learned parameter (kernels + biases + PReLU slopes); ``params_without_bias`` leaves the
  biases out; ``kernel_params`` keeps the conv/linear kernels only — the "weights only" figures of the old
  baselines (SRCNN 57,184, VDSR 664,704, FSRCNN 12,464).

**The differentiable face.** :class:`DifferentiableCost` evaluates the same formulas on soft channel counts
(torch tensors, e.g. sums of straight-through gates: :func:`st_gate`, :func:`st_union`) and returns params
and Mult-Adds as torch scalars with gradients (:class:`SoftCost`): the cost term of a differentiable search
or a cost penalty of any method. At whole counts it equals :func:`analytic_cost` of the graph pruned to
those counts (:meth:`ArchGraph.with_counts <nasengine.graph.ArchGraph.with_counts>`) exactly.

**Other conventions.** Some papers count differently; each such way is a named :class:`CostConvention`
(:data:`CONVENTIONS`, extensible with :func:`register_convention`), and a :class:`Cost` can carry the
figures of several (``analytic_cost(graph, convention=..., also=(...))``):

* ``"executed"``: as ``"true"``, but a node the implementation runs several times (a space marks it with
  :meth:`ArchGraph.set_runs <nasengine.graph.ArchGraph.set_runs>`) is counted that many times;
* ``"deconv_output"``: as ``"true"``, but a transposed conv counted as a k x k conv over its *output*
  (FSRCNN's table: 6.0070G);
* ``"conv2d_48px_x10"``: what a counter of torch ``nn.Conv2d`` modules run at a 48x48 LR input gives, x 1e-8,
  read as G (the HNAS code's ``compute_flops``): transposed convs NOT counted, fixed ``shift`` nodes counted as
  the C x C 1x1 conv that EDSR-style ``MeanShift`` modules are, each node once, always at 48x48 and x10 whatever
  ``lr_size`` is asked (at 480x480: the per-pixel Mult-Adds / 10, but per-image ones such as channel
  attention's x10).

A cost always travels with its LR input size and its convention's name (:class:`Cost`). The Mult-Adds of x2
tables (FALSR, HNAS) are quoted at LR 480x480 (HR 960x960), the default here.
"""
from __future__ import annotations

import abc
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs

from nasengine.errors import InputError, ValidationError
from nasengine.ops import OpCost, OpRegistry, Shape, SoftCount
from nasengine.options import OptionError, option, read_options, sequence, string, whole

__all__ = ["Cost", "NodeCost", "CostModel", "AnalyticCostModel", "analytic_cost", "cost_breakdown",
           "count_with_hooks", "CONVENTION", "CONVENTIONS", "CostConvention", "cost_convention",
           "register_convention", "DEFAULT_LR_SIZE", "SoftCost", "DifferentiableCost", "soft_cost",
           "straight_through", "st_gate", "st_union", "SOFT_METRICS"]

#: LR input size of the x2 tables (FALSR, HNAS): 480x480 LR -> 960x960 HR (230,400 LR pixels).
DEFAULT_LR_SIZE = (480, 480)

#: The name of the default counting convention (true Mult-Adds, each node once; :data:`CONVENTIONS`).
CONVENTION = "true"


def _lr_size(lr_size: Any) -> tuple[int, int]:
    try:
        h, w = lr_size
    except (TypeError, ValueError):
        raise InputError(f"lr_size must be (height, width), got {lr_size!r}") from None
    for v in (h, w):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise InputError(f"lr_size must be two positive integers, got {lr_size!r}")
    return h, w


@attrs.frozen(eq=False)
class CostConvention:
    """A named way of counting Mult-Adds (params never depend on it).

    ``description``: one line saying what is counted (``nasengine cost`` prints it). ``executed``: count each
    node as many times as the implementation runs it (:meth:`ArchGraph.runs
    <nasengine.graph.ArchGraph.runs>`). ``lr_size``: a fixed LR input ``(height, width)`` at which this
    convention always counts (None: the cost's own ``lr_size``), as a tool that measures at one input size
    does. ``multiplier``: the figure is the count times it (an int or :class:`~fractions.Fraction`; the figure
    is an int when whole). ``rules``: ``{op name: rule}`` with ``rule(attrs, in_shapes,
    out_shape, op_cost) -> OpCost`` giving that op's Mult-Adds under this convention in place of its own
    formula's (``op_cost``; only the returned ``mult_adds_per_pixel`` / ``mult_adds_per_image`` are read).
    Rules see the same channel counts as cost formulas (ints, or :class:`~nasengine.ops.SoftCount` in the
    differentiable face).
    """

    name: str
    description: str
    executed: bool = False
    rules: Mapping[str, Callable[..., OpCost]] = attrs.field(factory=dict, converter=dict)
    lr_size: tuple[int, int] | None = None
    multiplier: int | Fraction = 1

    def __attrs_post_init__(self):
        if not isinstance(self.name, str) or not self.name.replace("_", "").isalnum():
            raise InputError(f"a cost convention's name must be letters, digits and '_', got {self.name!r}")
        if type(self.multiplier) not in (int, Fraction) or self.multiplier <= 0:
            raise InputError(f"cost convention {self.name!r}: multiplier must be a positive int or Fraction, got "
                             f"{self.multiplier!r}")
        if self.lr_size is not None:
            object.__setattr__(self, "lr_size", _lr_size(self.lr_size))

    def size(self, lr_size: tuple[int, int]) -> tuple[int, int]:
        """The LR size this convention counts at when a cost is asked at ``lr_size``."""
        return self.lr_size if self.lr_size is not None else lr_size

    def node_mult_adds(self, spec_name: str, attrs_: Mapping[str, Any], in_shapes, out_shape, cost: OpCost,
                       out_size: tuple[Any, Any], runs: int = 1):
        """One node's Mult-Adds under this convention, before the multiplier: the op's rate (or its rule's) times
        the output pixels plus the per-image part, times ``runs`` when ``executed``."""
        rule = self.rules.get(spec_name)
        if rule is not None:
            cost = rule(attrs_, in_shapes, out_shape, cost)
            if not isinstance(cost, OpCost):
                raise ValidationError(f"cost convention {self.name!r}: the rule for op {spec_name!r} returned "
                                      f"{type(cost).__name__}, not an OpCost")
        oh, ow = out_size
        mult = cost.mult_adds_per_pixel * oh * ow + cost.mult_adds_per_image
        return mult * runs if self.executed and runs != 1 else mult

    def figure(self, total):
        """The convention's figure of a total count (``total * multiplier``: an int when whole)."""
        if self.multiplier == 1:
            return total
        if isinstance(total, (int, Fraction)):
            f = total * Fraction(self.multiplier)
            return f.numerator if f.denominator == 1 else f
        m = self.multiplier
        return total * m if type(m) is int else total * m.numerator / m.denominator


def _deconv_at_output(a, ins, out, cost):
    # k x k conv over the (upsampled) output: k*k*C_in*C_out per output pixel.
    return OpCost(mult_adds_per_pixel=a["kernel"] ** 2 * ins[0].channels * a["out_channels"])


def _not_counted(a, ins, out, cost):
    return OpCost()


def _shift_as_1x1_conv(a, ins, out, cost):
    # EDSR-style MeanShift: a fixed nn.Conv2d(C, C, 1) (what a counter of Conv2d modules sees).
    c = ins[0].channels
    return OpCost(mult_adds_per_pixel=c * c)


#: The registered conventions by name (:func:`register_convention` adds one).
CONVENTIONS: dict[str, CostConvention] = {}


def register_convention(convention: CostConvention) -> CostConvention:
    """Add ``convention`` to :data:`CONVENTIONS` (a name registered twice raises
    :class:`~nasengine.errors.InputError`); returns it."""
    if not isinstance(convention, CostConvention):
        raise InputError(f"expected a CostConvention, got {type(convention).__name__} {convention!r:.60}")
    if convention.name in CONVENTIONS and CONVENTIONS[convention.name] is not convention:
        raise InputError(f"cost convention {convention.name!r} is registered twice")
    CONVENTIONS[convention.name] = convention
    return convention


def cost_convention(convention: str | CostConvention | None) -> CostConvention:
    """The :class:`CostConvention` named ``convention`` (None: the default ``"true"``); a CostConvention passes
    through. An unknown name raises :class:`~nasengine.errors.InputError` listing the known ones."""
    if convention is None:
        convention = CONVENTION
    if isinstance(convention, CostConvention):
        return convention
    found = CONVENTIONS.get(convention) if isinstance(convention, str) else None
    if found is None:
        raise InputError(f"unknown cost convention {convention!r}; known: {', '.join(CONVENTIONS)}")
    return found


register_convention(CostConvention(
    "true", "true Mult-Adds: every learned conv per output pixel, a transposed conv per input pixel "
    "(k*k*C_in*C_out*H_in*W_in), pooled 1x1 convs once per image; each node once; biases, activations, "
    "element-wise ops, batch norm, pixel shuffle, interpolation, fixed shifts free"))
register_convention(CostConvention(
    "executed", "true Mult-Adds as executed: a node the implementation runs n times (graph runs) counted n times",
    executed=True))
register_convention(CostConvention(
    "deconv_output", "true Mult-Adds, but a transposed conv counted as a k x k conv over its output "
    "(k*k*C_in*C_out*H_out*W_out; FSRCNN's convention)", rules={"conv_transpose": _deconv_at_output}))
register_convention(CostConvention(
    "conv2d_48px_x10", "a torch nn.Conv2d-module counter run at a 48x48 LR input, x10 (its x1e-8 figure read "
    "as G, e.g. HNAS's compute_flops; whatever lr_size is asked): transposed convs NOT counted, fixed shifts "
    "counted as C x C 1x1 convs (EDSR MeanShift), each node once; at 480x480 = per-pixel Mult-Adds / 10 but "
    "per-image ones (channel attention) x 10",
    rules={"conv_transpose": _not_counted, "shift": _shift_as_1x1_conv}, lr_size=(48, 48), multiplier=10))


@attrs.frozen
class Cost:
    """Params and Mult-Adds of one architecture at one LR input size (see the module docstring).

    ``lr_size`` is the LR input ``(height, width)``, ``scale`` the upscaling factor, ``convention`` the name
    of the :class:`CostConvention` of ``mult_adds`` (:data:`CONVENTIONS`; default ``"true"``). ``other`` holds
    the Mult-Adds under further conventions asked for (``analytic_cost(..., also=...)``); :attr:`figures` has
    them all.
    """

    params: int
    params_without_bias: int
    kernel_params: int
    mult_adds: int | Fraction
    lr_size: tuple[int, int]
    scale: int
    convention: str = CONVENTION
    #: Without the built-but-unused branches (nodes ending in an ``unused`` node, see
    #: :meth:`ArchGraph.live_nodes`): set only for graphs that have such branches, else None (= ``params``).
    live_params: int | None = None
    live_mult_adds: int | Fraction | None = None
    #: ``{convention name: Mult-Adds}`` under the other conventions asked for (not ``convention``).
    other: Mapping[str, int | Fraction] = attrs.field(factory=dict, converter=dict, hash=False)

    @property
    def figures(self) -> dict[str, int | Fraction]:
        """``{convention name: Mult-Adds}``: ``convention``'s first, then the others asked for."""
        return {self.convention: self.mult_adds, **self.other}

    def mult_adds_as(self, convention: str) -> int | Fraction:
        """The Mult-Adds under ``convention`` (one of :attr:`figures`, else
        :class:`~nasengine.errors.InputError`)."""
        figures = self.figures
        if convention not in figures:
            raise InputError(f"this cost has no figure under convention {convention!r} (it has "
                             f"{', '.join(figures)}); ask analytic_cost(..., also=[{convention!r}])")
        return figures[convention]

    @property
    def hr_size(self) -> tuple[int, int]:
        """The output (HR) size ``(height, width)``."""
        return self.lr_size[0] * self.scale, self.lr_size[1] * self.scale

    @property
    def bias_params(self) -> int:
        """The biases among ``params``."""
        return self.params - self.params_without_bias

    def as_metrics(self) -> dict[str, float]:
        """Flat metrics for rewards and the store: params, params_without_bias, kernel_params, mult_adds (under
        ``convention``), and ``mult_adds_NAME`` for each other convention asked for."""
        out = {
            "params": float(self.params),
            "params_without_bias": float(self.params_without_bias),
            "kernel_params": float(self.kernel_params),
            "mult_adds": float(self.mult_adds),
        }
        out.update({f"mult_adds_{name}": float(v) for name, v in self.other.items()})
        return out

    def __str__(self) -> str:
        h, w = self.lr_size
        conv = "" if self.convention == CONVENTION else f" ({self.convention})"
        text = (f"{self.mult_adds / 1e9:.4f}G Mult-Adds{conv}, {self.params:,} params ({self.params_without_bias:,} "
                f"without biases, {self.kernel_params:,} kernel weights) at LR {h}x{w}, x{self.scale}")
        for name, v in self.other.items():
            text += f"; {v / 1e9:.4f}G Mult-Adds ({name})"
        if self.live_params is not None:
            text += (f"; live (without unused nodes): {self.live_mult_adds / 1e9:.4f}G Mult-Adds, "
                     f"{self.live_params:,} params")
        return text


@attrs.frozen
class NodeCost:
    """The cost of one node at one LR size (:func:`cost_breakdown`)."""

    node: int
    op: str
    params: int
    bias_params: int
    activation_params: int
    mult_adds: int
    out_size: tuple[int, int]
    #: False for a node of a built-but-unused branch (counted, never computed).
    live: bool = True
    #: How many times the implementation runs the node (:meth:`ArchGraph.set_runs
    #: <nasengine.graph.ArchGraph.set_runs>`); ``mult_adds`` includes it only under an ``executed`` convention.
    runs: int = 1


def _out_size(r, h: int, w: int, where: str) -> tuple[int, int]:
    """The output size of resolved node ``r`` for an LR input ``h x w`` (1x1 for a pooled tensor)."""
    scale_ = r.shape.scale
    if scale_ is None:
        return 1, 1
    if scale_.denominator == 1:
        return h * scale_.numerator, w * scale_.numerator
    fh, fw = h * scale_, w * scale_
    if fh.denominator != 1 or fw.denominator != 1:
        raise InputError(
            f"{where}: LR size {h}x{w} gives a non-integer size {fh}x{fw} at scale x{scale_}; "
            "use an LR size divisible by the graph's downsampling"
        )
    return int(fh), int(fw)


def _op_costs(graph, lr_size, registry: OpRegistry | None) -> tuple[list[tuple[Any, OpCost, tuple[int, int]]], int]:
    """``[(resolved node, its OpCost, its output size)]`` in topological order, and the graph's scale."""
    h, w = _lr_size(lr_size)
    out = []
    scale = 1
    for r in graph.resolve(registry):
        where = f"node {r.node} ({r.spec.name})"
        size = _out_size(r, h, w, where)
        try:
            c = r.spec.cost(r.attrs, r.in_shapes, r.shape)
        except ValidationError as exc:
            raise ValidationError(str(exc), field=where) from None
        if not isinstance(c, OpCost):
            raise ValidationError(f"cost formula of {r.spec.name!r} returned {type(c).__name__}, not an OpCost",
                                  field=where)
        out.append((r, c, size))
        if r.spec.name == "output":
            scale = int(r.shape.scale)
    return out, scale


def _whole_mult(convention: CostConvention, r, c: OpCost, size) -> int:
    where = f"node {r.node} ({r.spec.name})"
    if convention.lr_size is not None:
        size = _out_size(r, *convention.lr_size, where)
    try:
        mult = convention.node_mult_adds(r.spec.name, r.attrs, r.in_shapes, r.shape, c, size, r.runs)
    except ValidationError as exc:
        raise ValidationError(str(exc), field=where) from None
    if isinstance(mult, Fraction):
        if mult.denominator != 1:
            how = "cost formula" if convention.rules.get(r.spec.name) is None else f"{convention.name} rule"
            raise ValidationError(f"{how} of {r.spec.name!r} gives {mult} Mult-Adds at {size[0]}x{size[1]}, "
                                  "not an integer", field=where)
        mult = int(mult)
    return mult


def _node_costs(graph, lr_size, registry: OpRegistry | None,
                convention: str | CostConvention | None = None) -> tuple[list[NodeCost], int]:
    conv = cost_convention(convention)
    costs, scale = _op_costs(graph, lr_size, registry)
    live = graph.live_nodes()
    if conv.lr_size is not None:
        costs = [(r, c, _out_size(r, *conv.lr_size, f"node {r.node} ({r.spec.name})")) for r, c, _ in costs]
    out = [NodeCost(r.node, r.spec.name, c.params, c.bias_params, c.activation_params, _whole_mult(conv, r, c, size),
                    size, r.node in live, r.runs) for r, c, size in costs]
    return out, scale


def cost_breakdown(graph, lr_size: Sequence[int] = DEFAULT_LR_SIZE, registry: OpRegistry | None = None, *,
                   convention: str | CostConvention | None = None) -> list[NodeCost]:
    """Per-node costs in topological order (to compare with a paper's per-layer list), Mult-Adds under
    ``convention`` (default ``"true"``; its rules, execution counts and LR size apply per node, its
    multiplier only to totals)."""
    return _node_costs(graph, lr_size, registry, convention)[0]


def analytic_cost(graph, lr_size: Sequence[int] = DEFAULT_LR_SIZE, registry: OpRegistry | None = None, *,
                  convention: str | CostConvention | None = None,
                  also: Iterable[str | CostConvention] = ()) -> Cost:
    """The :class:`Cost` of ``graph`` (an :class:`~nasengine.graph.ArchGraph`) for an LR input of
    ``lr_size = (height, width)``, from the ops' cost formulas. Needs no torch. Nodes of built-but-unused
    branches (ending in an ``unused`` node) are counted, as a released network's parameter count includes
    them; ``live_params`` / ``live_mult_adds`` then give the figures without them.

    ``mult_adds`` follows ``convention`` (a name in :data:`CONVENTIONS` or a :class:`CostConvention`;
    default ``"true"``: true Mult-Adds, each node once); the Mult-Adds under each convention of ``also`` go
    to :attr:`Cost.other` (and :meth:`Cost.as_metrics` as ``mult_adds_NAME``).

    Raises :class:`~nasengine.errors.ValidationError` for an invalid graph and
    :class:`~nasengine.errors.InputError` for an ``lr_size`` that some node cannot divide or an unknown
    convention.
    """
    main = cost_convention(convention)
    extra = [cost_convention(c) for c in (also if not isinstance(also, (str, CostConvention)) else [also])]
    costs, scale = _op_costs(graph, lr_size, registry)
    live_nodes = graph.live_nodes()
    params = sum(c.params for _, c, _ in costs)
    bias = sum(c.bias_params for _, c, _ in costs)
    act = sum(c.activation_params for _, c, _ in costs)
    mults = [_whole_mult(main, r, c, size) for r, c, size in costs]
    live = {}
    if any(r.node not in live_nodes for r, _, _ in costs):
        live = {"live_params": sum(c.params for r, c, _ in costs if r.node in live_nodes),
                "live_mult_adds": main.figure(sum(m for (r, _, _), m in zip(costs, mults) if r.node in live_nodes))}
    other = {conv.name: conv.figure(sum(_whole_mult(conv, r, c, size) for r, c, size in costs))
             for conv in extra if conv.name != main.name}
    return Cost(params=params, params_without_bias=params - bias, kernel_params=params - bias - act,
                mult_adds=main.figure(sum(mults)), lr_size=_lr_size(lr_size), scale=scale, convention=main.name,
                other=other, **live)


def count_with_hooks(module, graph, lr_size: Sequence[int] = DEFAULT_LR_SIZE, *, registry: OpRegistry | None = None,
                     meta: bool = False) -> Cost:
    """Count the same quantities as :func:`analytic_cost` on a built torch ``module`` by running one forward
    pass (batch 1, no grad) with forward hooks on ``Conv2d`` / ``ConvTranspose2d`` / ``Linear`` modules.

    Mult-Adds come from each hooked call's actual size (a module called twice counts twice): a conv's output
    pixels, a transposed conv's *input* pixels (the ``"true"`` convention); params from the module's
    parameters: ``bias`` parameters are biases, ``PReLU`` and batch-norm weights activation parameters, every
    other parameter a kernel. ``graph`` gives the input channels and the expected scale. With
    ``meta=True`` the pass runs on the ``meta`` device (shapes only: no compute, no memory, weights untouched).
    The pass runs in eval mode (the module's train/eval flags are restored afterwards). A built-but-unused
    branch's modules hold parameters but never run: params count them, Mult-Adds are the live figure
    (:func:`analytic_cost`'s ``live_mult_adds``).
    """
    import torch
    import torch.nn as nn

    h, w = _lr_size(lr_size)
    resolved = graph.resolve(registry)
    channels = next(r.attrs["channels"] for r in resolved if r.spec.name == "input")
    scale = next(int(r.shape.scale) for r in resolved if r.spec.name == "output")

    kernel = bias = act = 0
    seen: set[int] = set()
    for mod in module.modules():
        for pname, p in mod.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if pname == "bias":
                bias += p.numel()
            elif isinstance(mod, (nn.PReLU, nn.modules.batchnorm._BatchNorm)):
                act += p.numel()
            else:
                kernel += p.numel()

    mult_adds = 0

    def conv_hook(mod, inputs, output):
        nonlocal mult_adds
        kh, kw = mod.kernel_size
        # A transposed conv scatters a k x k patch per INPUT pixel; a conv gathers one per output pixel.
        at = inputs[0] if isinstance(mod, nn.ConvTranspose2d) else output
        pixels = at.shape[0] * at.shape[2] * at.shape[3]
        mult_adds += pixels * kh * kw * (mod.in_channels // mod.groups) * mod.out_channels

    def linear_hook(mod, _inputs, output):
        nonlocal mult_adds
        mult_adds += (output.numel() // mod.out_features) * mod.in_features * mod.out_features

    handles = []
    training = [(mod, mod.training) for mod in module.modules()]
    module.eval()  # no batch-norm statistics updates, no dropout; restored below
    try:
        for mod in module.modules():
            if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                handles.append(mod.register_forward_hook(conv_hook))
            elif isinstance(mod, nn.Linear):
                handles.append(mod.register_forward_hook(linear_hook))
        first = next(iter(module.parameters()), None)
        device = torch.device("meta") if meta else (first.device if first is not None else torch.device("cpu"))
        x = torch.zeros(1, channels, h, w, device=device)
        with torch.no_grad():
            if meta:
                state = {n: torch.empty_like(t, device="meta") for n, t in module.named_parameters()}
                state.update({n: torch.empty_like(t, device="meta") for n, t in module.named_buffers()})
                y = torch.func.functional_call(module, state, (x,))
            else:
                y = module(x)
    finally:
        for handle in handles:
            handle.remove()
        for mod, flag in training:
            mod.training = flag
    if tuple(y.shape[2:]) != (h * scale, w * scale):
        raise ValidationError(f"the module's output is {tuple(y.shape)} for an LR input {h}x{w}; the graph "
                              f"promises x{scale}", field="module")
    return Cost(params=kernel + bias + act, params_without_bias=kernel + act, kernel_params=kernel,
                mult_adds=mult_adds, lr_size=(h, w), scale=scale)


# ---- the CostModel role ---------------------------------------------------------------------------------------
class CostModel(abc.ABC):
    """The CostModel role: the cost of an architecture graph, before any training.

    Constructed from a method config's ``cost`` section (``lr_size`` and the model's own options).
    ``metrics`` must return at least ``params``, ``params_without_bias`` and ``mult_adds`` (floats);
    a measuring model may add ``latency_ms``.
    """

    def __init__(self, lr_size: Sequence[int] = DEFAULT_LR_SIZE, **options: Any):
        self.lr_size = _lr_size(tuple(lr_size) if isinstance(lr_size, list) else lr_size)
        self.options = options

    @abc.abstractmethod
    def cost(self, graph) -> Cost:
        """The :class:`Cost` of ``graph`` at ``self.lr_size``."""

    def metrics(self, graph) -> dict[str, float]:
        """The cost as flat float metrics (see :meth:`Cost.as_metrics`)."""
        return self.cost(graph).as_metrics()


class AnalyticCostModel(CostModel):
    """The default cost model: :func:`analytic_cost` at ``lr_size`` (default 480x480), with the ops of
    ``registry`` (default: :func:`nasengine.ops.default_registry`). ``convention`` names the counting
    convention of the ``mult_adds`` metric (:data:`CONVENTIONS`, default ``"true"``); each name in ``also``
    adds a metric ``mult_adds_NAME`` with the Mult-Adds under that convention."""

    @attrs.frozen(kw_only=True)
    class Options:
        lr_size: tuple = option(DEFAULT_LR_SIZE, sequence(whole(1), length=2),
                                help="LR input size (height, width) at which Mult-Adds are counted")
        convention: str = option(CONVENTION, string(),
                                 help="counting convention of the mult_adds metric (true, executed, deconv_output, "
                                      "conv2d_48px_x10, or one a plugin registered)")
        also: tuple = option((), sequence(string(), distinct=True),
                             help="further conventions, each reported as a metric mult_adds_NAME")

    def __init__(self, registry: OpRegistry | None = None, model: str | None = None, **options: Any):
        # ``registry`` is given by code, not config; ``model`` is the config key that selected this class,
        # accepted and ignored.
        declared = read_options("cost", type(self).Options, options, name="analytic")
        super().__init__(declared.lr_size)
        self.registry = registry
        self.convention = self._convention("convention", declared.convention)
        self.also = tuple(self._convention("also", name) for name in declared.also)

    @staticmethod
    def _convention(option_name: str, name: str) -> CostConvention:
        try:
            return cost_convention(name)
        except InputError as exc:
            raise OptionError(option_name, str(exc), "cost") from None

    def cost(self, graph) -> Cost:
        return analytic_cost(graph, self.lr_size, self.registry, convention=self.convention, also=self.also)


# ---- the differentiable face ----------------------------------------------------------------------------------
#: The quantities a :class:`SoftCost` holds (the keys of :meth:`Cost.as_metrics`).
SOFT_METRICS = ("params", "params_without_bias", "kernel_params", "mult_adds")


@attrs.frozen
class SoftCost:
    """Params and Mult-Adds of an architecture at soft channel counts (:class:`DifferentiableCost`): 0-dim
    float64 torch tensors carrying the counts' gradients, at ``lr_size``; ``mult_adds`` under the named
    ``convention`` (:data:`CONVENTIONS`)."""

    params: Any
    params_without_bias: Any
    kernel_params: Any
    mult_adds: Any
    lr_size: tuple[int, int]
    scale: int
    convention: str = CONVENTION

    def as_metrics(self) -> dict[str, float]:
        """The forward values as flat float metrics (the keys of :meth:`Cost.as_metrics`)."""
        return {name: float(getattr(self, name).detach()) for name in SOFT_METRICS}

    def penalty(self, metric: str = "mult_adds", weight: float = 1.0, budget: float | None = None):
        """A differentiable penalty for a loss or reward: ``weight * metric``, or with a ``budget``
        ``weight * max(0, metric - budget)`` (zero, with zero gradient, within the budget)."""
        if metric not in SOFT_METRICS:
            raise InputError(f"penalty metric must be one of {', '.join(SOFT_METRICS)}, got {metric!r}")
        value = getattr(self, metric)
        if budget is not None:
            value = (value - float(budget)).clamp(min=0)
        return float(weight) * value

    def __str__(self) -> str:
        m = self.as_metrics()
        h, w = self.lr_size
        return (f"{m['mult_adds'] / 1e9:.4f}G Mult-Adds, {m['params']:,.6g} params (soft counts) at LR {h}x{w}, "
                f"x{self.scale}")


def straight_through(hard, soft):
    """``hard`` in the forward pass, ``soft``'s gradient in the backward pass (forward exactly ``hard``)."""
    return hard.detach() + (soft - soft.detach())


def st_gate(psi, threshold: float = 0.5):
    """Straight-through gates of logits ``psi``: forward ``1[psi > threshold]``, backward ``sigmoid'(psi)``.
    ``st_gate(psi).sum()`` is then a channel count for :class:`DifferentiableCost`."""
    import torch

    soft = torch.sigmoid(psi)
    return straight_through((psi > threshold).to(soft.dtype), soft)


def st_union(*gates):
    """Straight-through union of 0/1 gate tensors (same shape): forward ``1[sum >= 1]`` (a channel alive in
    any of them), backward the sum (each gate gets the union's gradient)."""
    if not gates:
        raise InputError("st_union needs at least one gate tensor")
    total = gates[0]
    for g in gates[1:]:
        total = total + g
    return straight_through((total >= 1).to(total.dtype), total)


class DifferentiableCost:
    """The analytic cost model's differentiable face: the params and Mult-Adds of ``graph`` at ``lr_size``
    when some nodes output soft channel counts.

    ``DifferentiableCost(graph, lr_size, registry)`` validates the graph once (later edits of the graph are
    not seen); calling it with ``counts`` returns a :class:`SoftCost`. ``counts`` maps node ids or node names
    to a torch tensor of one element (any float dtype and device; e.g. ``st_gate(psi).sum()``), an int or a
    float: "this node outputs this many channels".

    * A node whose op has a ``recount`` rule (:class:`~nasengine.ops.OpSpec`: conv, sep_conv,
      conv_transpose, the input) takes the count into its own cost formula (its ``out_channels``).
    * For other ops (relu, add, mean, scale, channel_attention...) the count masks the node's output: only
      its consumers see it. An op that stores its width in an attribute without a ``recount`` rule cannot
      take a count (:class:`~nasengine.errors.ValidationError`).
    * A node without a count gets its count from its inputs through its op's own shape rule (concat sums;
      unary ops pass it through; per-channel PReLU slopes follow it). A count on a channel-wise op with a
      ``recount`` rule whose output follows its input (per-channel PReLU) gates it: its attrs follow the count
      (one slope per kept channel) and its consumers see it. A multi-input op whose inputs carry
      different counts (an add of a gated and an ungated tensor) needs a count from the caller — their
      union, e.g. ``st_union(g1, g2).sum()`` — else a ValidationError naming the node says so.

    Every op's own cost formula runs on :class:`~nasengine.ops.SoftCount` counts (float64), so the totals
    follow the analytic model's convention; at whole counts they equal ``analytic_cost(graph.with_counts(
    counts), lr_size)`` exactly, and d(mult_adds)/d(count) is the formulas' derivative (a straight-through
    ``1/n`` through ``// n``).
    """

    def __init__(self, graph, lr_size: Sequence[int] = DEFAULT_LR_SIZE, registry: OpRegistry | None = None, *,
                 convention: str | CostConvention | None = None):
        self.graph = graph
        self.lr_size = _lr_size(tuple(lr_size) if isinstance(lr_size, list) else lr_size)
        self.registry = registry
        self.convention = cost_convention(convention)
        h, w = self.lr_size
        self._resolved = graph.resolve(registry)
        nodes, self.scale = _node_costs(graph, self.lr_size, registry, self.convention)
        self._exact = {n.node: n for n in nodes}
        h, w = self.convention.size(self.lr_size)
        self._sizes = {r.node: _out_size(r, h, w, "") for r in self._resolved}
        self._where = {r.node: f"node {r.node} ({r.spec.name}{', ' + repr(r.name) if r.name else ''})"
                       for r in self._resolved}
        self._keys: dict[Any, int] = {}
        self._maskable: dict[int, bool] = {}
        self._fraction: dict[int, bool] = {}

    def __call__(self, counts: Mapping[Any, Any] | None = None) -> SoftCost:
        """The :class:`SoftCost` at ``counts`` (see the class docstring; None or ``{}``: the graph as is)."""
        import torch

        given: dict[int, Any] = {}
        device = None
        for key, value in (counts or {}).items():
            node = self._node(key)
            if node in given:
                raise ValidationError(f"node {node} is given twice", field=f"counts[{key!r}]")
            given[node] = count = self._count(key, value)
            if device is None and type(count) is SoftCount:
                device = count.tensor.device
        params = bias = act = mult = 0
        shapes: dict[int, Shape] = {}
        changed: set[int] = set()  # nodes whose output count differs from the graph's (or may: soft)
        for r in self._resolved:
            ins = tuple(shapes[u] for u in r.inputs)
            count = given.get(r.node)
            if count is None and not any(u in changed for u in r.inputs):
                shapes[r.node] = r.shape
                e = self._exact[r.node]
                params += e.params
                bias += e.bias_params
                act += e.activation_params
                mult += e.mult_adds
                continue
            where = self._where[r.node]
            a, shape = self._soft_shape(r, ins, count, where)
            shapes[r.node] = shape
            if type(shape[0]) is SoftCount or shape[0] != r.shape.channels:
                changed.add(r.node)
            try:
                c = r.spec.cost(a, ins, shape)
            except (ValidationError, TypeError, ValueError, ArithmeticError) as exc:
                raise ValidationError(f"the cost formula of {r.spec.name!r} cannot run on these channel counts "
                                      f"({type(exc).__name__}: {exc})", field=where) from None
            if not isinstance(c, OpCost):
                raise ValidationError(f"cost formula of {r.spec.name!r} returned {type(c).__name__}, not an "
                                      "OpCost", field=where)
            try:
                m = self.convention.node_mult_adds(r.spec.name, a, ins, shape, c, self._sizes[r.node], r.runs)
            except (ValidationError, TypeError, ValueError, ArithmeticError) as exc:
                raise ValidationError(f"the {self.convention.name} rule of {r.spec.name!r} cannot run on these "
                                      f"channel counts ({type(exc).__name__}: {exc})", field=where) from None
            if type(m) is SoftCount and self._fractional(r):
                # A fractional rate times the pixels is whole at whole counts: round off float64's last bit.
                m = SoftCount(straight_through(m.tensor.round(), m.tensor))
            params += c.params
            bias += c.bias_params
            act += c.activation_params
            mult += m

        def tensor(x):
            if type(x) is SoftCount:
                return x.tensor
            if isinstance(x, Fraction) and x.denominator == 1:
                x = x.numerator
            if isinstance(x, Fraction):
                raise ValidationError(f"the graph's Mult-Adds at {self.lr_size} are not whole ({x})", field="graph")
            return torch.tensor(float(x), dtype=torch.float64, device=device)

        mult = tensor(mult)
        mult = self.convention.figure(mult)
        return SoftCost(params=tensor(params), params_without_bias=tensor(params - bias),
                        kernel_params=tensor(params - bias - act), mult_adds=mult, lr_size=self.lr_size,
                        scale=self.scale, convention=self.convention.name)

    # ---- helpers ----------------------------------------------------------------------------------------------
    def _node(self, key: Any) -> int:
        node = self._keys.get(key) if isinstance(key, (int, str)) and not isinstance(key, bool) else None
        if node is None:
            node = next(iter(self.graph.nodes_of({key: None})))
            if node not in self._exact:
                raise ValidationError(f"node {node} was added after this cost model was made", field=f"counts[{key!r}]")
            self._keys[key] = node
        return node

    def _count(self, key: Any, value: Any):
        """``value`` as a count: an int stays exact; a tensor or float becomes a float64 SoftCount."""
        import torch

        if isinstance(value, SoftCount):
            value = value.tensor
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValidationError(f"a channel count must be a tensor of one element, got shape "
                                      f"{tuple(value.shape)}", field=f"counts[{key!r}]")
            if value.is_complex():
                raise ValidationError(f"a channel count must be real, got dtype {value.dtype}", field=f"counts[{key!r}]")
            return SoftCount(value.reshape(()).to(torch.float64))
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError(f"a channel count must be a torch tensor, an int or a float, got "
                                  f"{type(value).__name__} {value!r}", field=f"counts[{key!r}]")
        if not value >= 0 or value == float("inf"):
            raise ValidationError(f"a channel count must be a finite number >= 0, got {value!r}",
                                  field=f"counts[{key!r}]")
        return value if isinstance(value, int) else SoftCount(torch.tensor(value, dtype=torch.float64))

    def _fractional(self, r) -> bool:
        """Whether node ``r``'s Mult-Adds rate (at the graph's own counts) is a Fraction."""
        known = self._fraction.get(r.node)
        if known is None:
            c = r.spec.cost(r.attrs, r.in_shapes, r.shape)
            known = self._fraction[r.node] = type(c.mult_adds_per_pixel) is Fraction
        return known

    def _soft_shape(self, r, ins, count, where):
        """(attrs, output Shape) of resolved node ``r`` at input shapes ``ins`` and its own ``count``."""
        spec = r.spec
        if spec.recount is not None:
            a = spec.recount(dict(r.attrs), [s[0] for s in ins], count, [s.channels for s in r.in_shapes])
            if count is not None and len(ins) == 1 and self._masks(r) and not self._sets_count(spec, a, ins, count):
                # A channel-wise op (its output count follows its input: per-channel PReLU...) whose output is
                # gated to ``count`` channels acts on those channels only: its attrs follow the gated count
                # (PReLU: one slope per kept channel), as if the gate stood before it.
                ins = (Shape(count, ins[0].scale),)
                a = spec.recount(dict(r.attrs), [count], None, [s.channels for s in r.in_shapes])
        else:
            a = r.attrs
            if count is not None:
                if not self._masks(r):
                    raise ValidationError(
                        f"op {spec.name!r} sets its own output width but has no recount rule, so its cost cannot "
                        "follow a channel count (register it with OpSpec(..., recount=...))", field=where)
                return a, Shape(count, r.shape.scale)
        channels = [s[0] for s in ins]
        mixed = (len(ins) > 1 and any(type(c) is SoftCount for c in channels)
                 and any(c is not channels[0] for c in channels[1:]))
        hint = ("; its inputs carry different channel counts "
                f"({', '.join(str(c) for c in channels)}): give this node a count (their union)")
        try:
            shape = spec.infer(a, ins)
        except (ValidationError, TypeError, ValueError, ArithmeticError) as exc:
            raise ValidationError(f"the shape rule of {spec.name!r} fails at these channel counts: {exc}"
                                  + (hint if mixed else ""), field=where) from None
        out = shape[0]
        if count is None and mixed and spec.recount is None and (type(out) is not SoftCount
                                                                 or any(out is c for c in channels)):
            raise ValidationError(f"{spec.name} cannot tell its output count" + hint, field=where)
        if count is not None and out is not count and out != count:
            raise ValidationError(f"the recount rule of {spec.name!r} does not set its output count", field=where)
        return a, Shape(out, r.shape.scale)

    @staticmethod
    def _sets_count(spec, a, ins, count) -> bool:
        """Whether ``spec``'s shape rule at attrs ``a`` and inputs ``ins`` gives the output count ``count``."""
        try:
            out = spec.infer(a, ins)[0]
        except (ValidationError, TypeError, ValueError, ArithmeticError):
            return False
        return out is count or out == count

    def _masks(self, r) -> bool:
        """Whether a count on node ``r`` (op without recount) can mask its output: a free op, or one whose
        output count follows its inputs."""
        known = self._maskable.get(r.node)
        if known is None:
            import torch

            e = self._exact[r.node]
            known = e.params == 0 and e.mult_adds == 0
            if not known and r.in_shapes:
                probe = tuple(Shape(SoftCount(torch.tensor(float(s.channels), dtype=torch.float64)), s.scale)
                              for s in r.in_shapes)
                try:
                    known = type(r.spec.infer(r.attrs, probe)[0]) is SoftCount
                except Exception:
                    known = False
            self._maskable[r.node] = known
        return known


def soft_cost(graph, counts: Mapping[Any, Any] | None = None, lr_size: Sequence[int] = DEFAULT_LR_SIZE,
              registry: OpRegistry | None = None, *, convention: str | CostConvention | None = None) -> SoftCost:
    """:class:`DifferentiableCost` ``(graph, lr_size, registry, convention=...)(counts)`` in one call (make the
    model once and call it every step when the graph stays the same)."""
    return DifferentiableCost(graph, lr_size, registry, convention=convention)(counts)
