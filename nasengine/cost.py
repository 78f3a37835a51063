"""Cost models: learned parameters and Mult-Adds of an architecture graph at a given LR input size.

:func:`analytic_cost` sums each op's own cost formula (:attr:`nasengine.ops.OpSpec.cost`) over the graph;
it needs no torch and takes microseconds, so a search can cost every candidate before training it.
:func:`count_with_hooks` counts the same quantities on a built torch module with forward hooks; the tests
prove both agree exactly, op by op, on random graphs.

The counting convention (``reference/README.md``, the papers' tables):

* **Mult-Adds** = sum over learned convs of ``H_out*W_out*k_h*k_w*(C_in/groups)*C_out``. Bias adds,
  activations, element-wise ops, pixel shuffle and interpolation cost nothing. Convs that run at HR (after an
  upsampler) are counted at HR; a transposed conv is counted as a k x k conv over its (upsampled) output;
  channel attention's 1x1 convs on the pooled vector count once per image.
* **params** = every learned parameter (kernels + biases + PReLU slopes); ``params_without_bias`` leaves the
  biases out; ``kernel_params`` keeps the conv/linear kernels only — the "weights only" figures of the old
  baselines (SRCNN 57,184, VDSR 664,704, FSRCNN 12,464).

A cost always travels with its LR input size and this convention (:class:`Cost`). The Mult-Adds of x2 tables
(FALSR, HNAS) are quoted at LR 480x480 (HR 960x960), the default here.
"""
from __future__ import annotations

import abc
from fractions import Fraction
from typing import Any, Sequence

import attrs

from nasengine.errors import InputError, ValidationError
from nasengine.ops import OpCost, OpRegistry
from nasengine.options import option, read_options, sequence, whole

__all__ = ["Cost", "NodeCost", "CostModel", "AnalyticCostModel", "analytic_cost", "cost_breakdown",
           "count_with_hooks", "CONVENTION", "DEFAULT_LR_SIZE"]

#: LR input size of the x2 tables (FALSR, HNAS): 480x480 LR -> 960x960 HR (230,400 LR pixels).
DEFAULT_LR_SIZE = (480, 480)

#: The counting convention every :class:`Cost` carries.
CONVENTION = (
    "mult_adds: sum over learned convs of H_out*W_out*k_h*k_w*(C_in/groups)*C_out (transposed convs at their "
    "output size, pooled 1x1 convs once per image; biases, activations, element-wise ops, pixel shuffle, "
    "interpolation free); params: kernels+biases+PReLU slopes; params_without_bias: no biases; "
    "kernel_params: kernels only"
)


def _lr_size(lr_size: Any) -> tuple[int, int]:
    try:
        h, w = lr_size
    except (TypeError, ValueError):
        raise InputError(f"lr_size must be (height, width), got {lr_size!r}") from None
    for v in (h, w):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise InputError(f"lr_size must be two positive integers, got {lr_size!r}")
    return h, w


@attrs.frozen
class Cost:
    """Params and Mult-Adds of one architecture at one LR input size (see the module docstring).

    ``lr_size`` is the LR input ``(height, width)``, ``scale`` the upscaling factor, ``convention`` the
    counting rules (:data:`CONVENTION`).
    """

    params: int
    params_without_bias: int
    kernel_params: int
    mult_adds: int
    lr_size: tuple[int, int]
    scale: int
    convention: str = CONVENTION
    #: Without the built-but-unused branches (nodes ending in an ``unused`` node, see
    #: :meth:`ArchGraph.live_nodes`): set only for graphs that have such branches, else None (= ``params``).
    live_params: int | None = None
    live_mult_adds: int | None = None

    @property
    def hr_size(self) -> tuple[int, int]:
        """The output (HR) size ``(height, width)``."""
        return self.lr_size[0] * self.scale, self.lr_size[1] * self.scale

    @property
    def bias_params(self) -> int:
        """The biases among ``params``."""
        return self.params - self.params_without_bias

    def as_metrics(self) -> dict[str, float]:
        """Flat metrics for rewards and the store: params, params_without_bias, kernel_params, mult_adds."""
        return {
            "params": float(self.params),
            "params_without_bias": float(self.params_without_bias),
            "kernel_params": float(self.kernel_params),
            "mult_adds": float(self.mult_adds),
        }

    def __str__(self) -> str:
        h, w = self.lr_size
        text = (f"{self.mult_adds / 1e9:.4f}G Mult-Adds, {self.params:,} params ({self.params_without_bias:,} "
                f"without biases, {self.kernel_params:,} kernel weights) at LR {h}x{w}, x{self.scale}")
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


def _node_costs(graph, lr_size, registry: OpRegistry | None) -> tuple[list[NodeCost], int]:
    h, w = _lr_size(lr_size)
    resolved = graph.resolve(registry)
    live = graph.live_nodes()
    out: list[NodeCost] = []
    scale = 1
    for r in resolved:
        where = f"node {r.node} ({r.spec.name})"
        scale_ = r.shape.scale
        if scale_ is None:
            oh = ow = 1
        elif scale_.denominator == 1:
            oh, ow = h * scale_.numerator, w * scale_.numerator
        else:
            fh, fw = h * scale_, w * scale_
            if fh.denominator != 1 or fw.denominator != 1:
                raise InputError(
                    f"{where}: LR size {h}x{w} gives a non-integer size {fh}x{fw} at scale x{scale_}; "
                    "use an LR size divisible by the graph's downsampling"
                )
            oh, ow = int(fh), int(fw)
        try:
            c = r.spec.cost(r.attrs, r.in_shapes, r.shape)
        except ValidationError as exc:
            raise ValidationError(str(exc), field=where) from None
        if not isinstance(c, OpCost):
            raise ValidationError(f"cost formula of {r.spec.name!r} returned {type(c).__name__}, not an OpCost",
                                  field=where)
        mult = c.mult_adds_per_pixel * oh * ow + c.mult_adds_per_image
        if isinstance(mult, Fraction):
            if mult.denominator != 1:
                raise ValidationError(f"cost formula of {r.spec.name!r} gives {mult} Mult-Adds at {oh}x{ow}, "
                                      "not an integer", field=where)
            mult = int(mult)
        out.append(NodeCost(r.node, r.spec.name, c.params, c.bias_params, c.activation_params, mult, (oh, ow),
                            r.node in live))
        if r.spec.name == "output":
            scale = int(r.shape.scale)
    return out, scale


def cost_breakdown(graph, lr_size: Sequence[int] = DEFAULT_LR_SIZE,
                   registry: OpRegistry | None = None) -> list[NodeCost]:
    """Per-node costs in topological order (to compare with a paper's per-layer list)."""
    return _node_costs(graph, lr_size, registry)[0]


def analytic_cost(graph, lr_size: Sequence[int] = DEFAULT_LR_SIZE, registry: OpRegistry | None = None) -> Cost:
    """The :class:`Cost` of ``graph`` (an :class:`~nasengine.graph.ArchGraph`) for an LR input of
    ``lr_size = (height, width)``, from the ops' cost formulas. Needs no torch. Nodes of built-but-unused
    branches (ending in an ``unused`` node) are counted, as a released network's parameter count includes
    them; ``live_params`` / ``live_mult_adds`` then give the figures without them.

    Raises :class:`~nasengine.errors.ValidationError` for an invalid graph and
    :class:`~nasengine.errors.InputError` for an ``lr_size`` that some node cannot divide.
    """
    nodes, scale = _node_costs(graph, lr_size, registry)
    params = sum(n.params for n in nodes)
    bias = sum(n.bias_params for n in nodes)
    act = sum(n.activation_params for n in nodes)
    live = {}
    if not all(n.live for n in nodes):
        live = {"live_params": sum(n.params for n in nodes if n.live),
                "live_mult_adds": sum(n.mult_adds for n in nodes if n.live)}
    return Cost(params=params, params_without_bias=params - bias, kernel_params=params - bias - act,
                mult_adds=sum(n.mult_adds for n in nodes), lr_size=_lr_size(lr_size), scale=scale, **live)


def count_with_hooks(module, graph, lr_size: Sequence[int] = DEFAULT_LR_SIZE, *, registry: OpRegistry | None = None,
                     meta: bool = False) -> Cost:
    """Count the same quantities as :func:`analytic_cost` on a built torch ``module`` by running one forward
    pass (batch 1, no grad) with forward hooks on ``Conv2d`` / ``ConvTranspose2d`` / ``Linear`` modules.

    Mult-Adds come from each hooked call's actual output size (a module called twice counts twice); params
    from the module's parameters: ``bias`` parameters are biases, ``PReLU`` weights activation parameters,
    every other parameter a kernel. ``graph`` gives the input channels and the expected scale. With
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
            elif isinstance(mod, nn.PReLU):
                act += p.numel()
            else:
                kernel += p.numel()

    mult_adds = 0

    def conv_hook(mod, _inputs, output):
        nonlocal mult_adds
        kh, kw = mod.kernel_size
        pixels = output.shape[0] * output.shape[2] * output.shape[3]
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
    ``registry`` (default: :func:`nasengine.ops.default_registry`)."""

    @attrs.frozen(kw_only=True)
    class Options:
        lr_size: tuple = option(DEFAULT_LR_SIZE, sequence(whole(1), length=2),
                                help="LR input size (height, width) at which Mult-Adds are counted")

    def __init__(self, registry: OpRegistry | None = None, model: str | None = None, **options: Any):
        # ``registry`` is given by code, not config; ``model`` is the config key that selected this class,
        # accepted and ignored.
        declared = read_options("cost", type(self).Options, options, name="analytic")
        super().__init__(declared.lr_size)
        self.registry = registry

    def cost(self, graph) -> Cost:
        return analytic_cost(graph, self.lr_size, self.registry)
