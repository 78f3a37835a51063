"""Graph operations: each one a shape rule, a torch builder and a cost formula, registered together.

An :class:`OpSpec` describes one node type of an architecture graph (:class:`nasengine.graph.ArchGraph`):

* ``name`` and ``arity`` (an exact number of inputs, or ``(min, max)`` with ``max=None`` for "any number");
* ``attrs``: the schema of its attributes, ``name -> Attr(type, default, check, doc)``
  (a plain tuple ``(type, default[, check[, doc]])`` is accepted too; ``REQUIRED`` marks a mandatory attr);
* ``infer(attrs, in_shapes) -> Shape``: the output shape from the input shapes, raising
  :class:`~nasengine.errors.ValidationError` (message only; the graph adds which node) when they do not fit;
* ``build(attrs, in_shapes) -> torch.nn.Module``: a module whose ``forward`` takes the inputs in port order
  (``forward(x)``, ``forward(a, b)``); **variadic ops** (a tuple ``arity``) take one ``List[Tensor]``
  instead, so that the module stays TorchScript-able;
* ``cost(attrs, in_shapes, out_shape) -> OpCost``: learned parameters and Mult-Adds (see below);
* ``commutative``: whether the input order is irrelevant (used by the canonical key);
* ``recount(attrs, in_channels, out_channels, old_in_channels) -> attrs`` (optional): the op's attributes
  when its input channel counts change from ``old_in_channels`` to ``in_channels`` and its output count
  becomes ``out_channels`` (None: not set), for ops that hold a channel count in an attribute (conv's
  ``out_channels``; a depthwise conv's ``groups``). :meth:`ArchGraph.with_counts
  <nasengine.graph.ArchGraph.with_counts>` prunes a graph with it and the differentiable cost
  (:class:`nasengine.cost.DifferentiableCost`) feeds it soft counts.

A :class:`Shape` is ``(channels, scale)``: ``scale`` is the spatial size relative to the graph input as a
:class:`fractions.Fraction` (``2`` after a x2 upsampler, ``1/2`` after a stride-2 conv), or ``None`` for a
globally pooled (1x1) tensor.

Cost convention (``reference/README.md``): Mult-Adds = sum over learned convs of
``H_out*W_out*k_h*k_w*(C_in/groups)*C_out``; bias adds, activations, element-wise ops, pixel shuffle and
interpolation cost nothing; a transposed conv costs ``k_h*k_w*C_in*C_out`` per *input* pixel (true Mult-Adds;
other counting conventions are named rules of the cost model, :data:`nasengine.cost.CONVENTIONS`). An op reports
``mult_adds_per_pixel`` (per *output* pixel at the op's own resolution: the cost model multiplies it by
``lr_h*scale * lr_w*scale``, or by 1 for a pooled output) plus ``mult_adds_per_image`` for work that does not
grow with the image (channel attention's 1x1 convs on the pooled vector).

A plugin adds an op with one call, usually in its ``nasengine_register_ops`` hook::

    from nasengine.ops import OpSpec, OpCost, Attr, Shape, REQUIRED, positive

    def _infer(a, ins):
        return Shape(a["out_channels"], ins[0].scale)

    def _build(a, ins):
        import torch.nn as nn
        return nn.Conv2d(ins[0].channels, a["out_channels"], 1)

    def _cost(a, ins, out):
        w = ins[0].channels * a["out_channels"]
        return OpCost(params=w + a["out_channels"], bias_params=a["out_channels"], mult_adds_per_pixel=w)

    registry.add(OpSpec("my_pointwise", 1, {"out_channels": Attr(int, REQUIRED, positive)},
                        _infer, _build, _cost))

The differentiable face of the cost model runs the same formulas and shape rules on :class:`SoftCount`
channel counts (torch tensors that behave like numbers), so a formula written with ``+ - * //`` and an
op's ``recount`` rule are all it takes for an op to be costed softly.

This module imports no torch at import time (the analytic cost model must run without it); builders import
it when they are called.
"""
from __future__ import annotations

import math
import numbers
import re
from fractions import Fraction
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import attrs

from nasengine.errors import ValidationError
from nasengine.registry import Accepts, Registry, RegistrationError

__all__ = [
    "Shape",
    "Attr",
    "REQUIRED",
    "OpCost",
    "OpSpec",
    "SoftCount",
    "OpRegistry",
    "BUILTIN_OPS",
    "default_registry",
    "builtin_registry",
    "positive",
    "non_negative",
    "odd_positive",
    "one_of",
    "conv_padding",
    "conv_module_padding",
    "conv_output_padding_problem",
    "conv_transpose_padding",
    "shift_values",
]


# ---------------------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------------------
class Shape(NamedTuple):
    """The shape of a tensor in an architecture graph, without batch and absolute size.

    ``channels``: number of channels. ``scale``: spatial size relative to the graph input
    (``Fraction``; ``H = lr_h * scale``), or ``None`` for a globally pooled 1x1 tensor.
    """

    channels: int
    scale: Fraction | None

    @property
    def pooled(self) -> bool:
        """True for a globally pooled (1x1 spatial) tensor."""
        return self.scale is None

    def __str__(self) -> str:
        where = "1x1 pooled" if self.scale is None else f"x{self.scale}"
        return f"{self.channels}ch@{where}"


# ---------------------------------------------------------------------------------------------------------
# Attribute schema
# ---------------------------------------------------------------------------------------------------------
class _Required:
    """Sentinel: the attribute has no default and must be given."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self):
        return (_Required, ())


#: Marks an attribute without a default value.
REQUIRED: Any = _Required()

#: Attribute value types an op schema may use (all JSON scalars).
_ATTR_TYPES = (int, float, bool, str)


@attrs.frozen
class Attr:
    """Schema of one op attribute.

    ``type``: ``int``, ``float``, ``bool`` or ``str`` (numpy scalars are converted to the Python type; an
    ``int`` is accepted for a ``float`` attr and stored as float; ``bool`` is never accepted as an ``int``). ``default``: the value used when the attribute is
    omitted, or :data:`REQUIRED`. ``check``: optional ``check(value) -> str | None`` returning a
    description of what is wrong ("must be >= 1") or None when the value is fine. ``doc``: one line.
    """

    type: type
    default: Any = REQUIRED
    check: Callable[[Any], str | None] | None = None
    doc: str = ""

    def __attrs_post_init__(self):
        if self.type not in _ATTR_TYPES:
            raise TypeError(f"attr type must be one of int, float, bool, str; got {self.type!r}")

    def coerce(self, value: Any) -> Any:
        """``value`` converted to this attr's type, or a :class:`ValueError` describing the problem."""
        t = self.type
        if t is bool:
            ok = isinstance(value, bool)
            if not ok and getattr(getattr(value, "dtype", None), "kind", None) == "b":  # numpy bool
                value, ok = bool(value), True
        elif t is int:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            if ok:
                value = int(value)
        elif t is float:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if ok:
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(f"must be a finite number, got {value!r}")
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ValueError(f"must be {t.__name__}, got {type(value).__name__} {value!r}")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ValueError(f"{problem}, got {value!r}")
        return value


def _to_attr(value: Any) -> Attr:
    if isinstance(value, Attr):
        return value
    if isinstance(value, tuple) and 1 <= len(value) <= 4:
        return Attr(*value)
    raise TypeError(f"an attr schema entry must be an Attr or a (type, default[, check[, doc]]) tuple, got {value!r}")


def _to_schema(value: Mapping[str, Any]) -> dict[str, Attr]:
    return {str(k): _to_attr(v) for k, v in dict(value).items()}


# Ready-made checks -----------------------------------------------------------------------------------------
def positive(value) -> str | None:
    """Check: ``value >= 1`` (ints) or ``> 0`` (floats)."""
    if isinstance(value, int):
        return None if value >= 1 else "must be >= 1"
    return None if value > 0 else "must be > 0"


def non_negative(value) -> str | None:
    """Check: ``value >= 0``."""
    return None if value >= 0 else "must be >= 0"


def odd_positive(value) -> str | None:
    """Check: a positive odd integer (kernel sizes with symmetric 'same' padding)."""
    return None if value >= 1 and value % 2 == 1 else "must be a positive odd integer"


def one_of(*choices) -> Callable[[Any], str | None]:
    """Check factory: the value must be one of ``choices``."""

    def check(value):
        return None if value in choices else "must be one of " + ", ".join(repr(c) for c in choices)

    check.__doc__ = f"Check: one of {choices!r}."
    return check


# ---------------------------------------------------------------------------------------------------------
# Soft channel counts
# ---------------------------------------------------------------------------------------------------------
def _soft_operand(value: Any) -> Any:
    """The tensor or plain number ``value`` contributes to a SoftCount operation (None: not a number)."""
    if isinstance(value, SoftCount):
        return value.tensor
    if isinstance(value, Fraction):
        return value if value.denominator != 1 else value.numerator
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def _plain(value):
    return value.numerator / value.denominator if isinstance(value, Fraction) else value


def _times(t, value):
    # ``t * Fraction`` as (t * numerator) / denominator: exact at whole values wherever the result is whole.
    if isinstance(value, Fraction):
        return t * value.numerator / value.denominator
    return t * value


class SoftCount:
    """A channel count that may be soft: a torch tensor (float64, one element) that cost formulas and shape
    rules use like an ``int`` (the differentiable cost model, :class:`nasengine.cost.DifferentiableCost`).

    ``+``, ``-``, ``*`` with ints, Fractions and other SoftCounts, and ``/`` by a number, give SoftCounts
    with gradients. ``x // n`` (``n`` a positive int or a SoftCount) is a straight-through floor: forward
    ``floor(x/n)``, backward that of ``x/n`` (``x // 1`` is ``x``, ``x // x`` is 1). ``x % n``, comparisons,
    ``int()``, ``float()`` and ``bool()`` read the forward value and give plain numbers (``x % 1`` and
    ``x % x`` are 0 for any value). Whole forward values make every
    formula exact; formulas that divide or take remainders by more than 1 need them (straight-through counts).
    Reading the forward value synchronises with the tensor's device.
    """

    __slots__ = ("tensor",)

    def __init__(self, tensor: Any):
        self.tensor = tensor

    @property
    def value(self) -> float:
        """The forward value as a Python float."""
        return float(self.tensor.detach())

    def _num(self, other: Any) -> Any:
        return other.value if isinstance(other, SoftCount) else other

    # arithmetic with gradients
    def __add__(self, other):
        o = _soft_operand(other)
        return NotImplemented if o is None else SoftCount(self.tensor + _plain(o))

    __radd__ = __add__

    def __sub__(self, other):
        o = _soft_operand(other)
        return NotImplemented if o is None else SoftCount(self.tensor - _plain(o))

    def __rsub__(self, other):
        o = _soft_operand(other)
        return NotImplemented if o is None else SoftCount(_plain(o) - self.tensor)

    def __mul__(self, other):
        o = _soft_operand(other)
        return NotImplemented if o is None else SoftCount(_times(self.tensor, o))

    __rmul__ = __mul__

    def __truediv__(self, other):
        o = _soft_operand(other)
        if o is None or isinstance(other, SoftCount):
            return NotImplemented
        if isinstance(o, Fraction):
            return SoftCount(self.tensor * o.denominator / o.numerator)
        return SoftCount(self.tensor / o)

    def __floordiv__(self, other):
        if other is self:
            return 1
        if type(other) is SoftCount:
            q = self.tensor / other.tensor
        elif type(other) is int and other >= 1:
            if other == 1:
                return self
            q = self.tensor / other
        else:
            return NotImplemented
        return SoftCount(q.detach().floor() + (q - q.detach()))

    def __pow__(self, other):
        if type(other) is not int or other < 0:
            return NotImplemented
        return SoftCount(self.tensor ** other)

    def __neg__(self):
        return SoftCount(-self.tensor)

    def __pos__(self):
        return self

    # forward-value reads (plain numbers)
    def __mod__(self, other):
        if other is self or (type(other) is int and other == 1):
            return 0
        if type(other) is SoftCount:
            other = other.value
        elif type(other) is not int or other < 1:
            return NotImplemented
        v = self.value
        r = v % other
        return int(r) if v.is_integer() else r

    def __float__(self) -> float:
        return self.value

    def __int__(self) -> int:
        return int(self.value)

    def __index__(self) -> int:
        v = self.value
        if not v.is_integer():
            raise TypeError(f"soft channel count {v} is not a whole number")
        return int(v)

    def __round__(self, ndigits=None):
        return round(self.value, ndigits)

    def __bool__(self) -> bool:
        return self.value != 0

    def __eq__(self, other):
        if other is self:
            return True
        o = self._num(other)
        return self.value == o if isinstance(o, (int, float, Fraction)) and not isinstance(o, bool) else NotImplemented

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __lt__(self, other):
        return self.value < self._num(other)

    def __le__(self, other):
        return other is self or self.value <= self._num(other)

    def __gt__(self, other):
        return self.value > self._num(other)

    def __ge__(self, other):
        return other is self or self.value >= self._num(other)

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        try:
            return f"SoftCount({self.value:g})"
        except Exception:  # a tensor with more than one element: reported by the cost model
            return f"SoftCount({self.tensor!r})"

    def __str__(self) -> str:
        return f"{self.value:g}"


# ---------------------------------------------------------------------------------------------------------
# Costs
# ---------------------------------------------------------------------------------------------------------
@attrs.frozen
class OpCost:
    """The cost of one op instance.

    ``params``: every learned parameter (kernels + biases + e.g. PReLU slopes). ``bias_params``: the biases
    among them. ``mult_adds_per_pixel``: Mult-Adds per *output* pixel at the op's own resolution (an int, or a
    ``Fraction`` when part of the op runs at a lower resolution than its output). ``mult_adds_per_image``:
    Mult-Adds that do not scale with the image size (1x1 convs on a pooled vector). ``activation_params``:
    learned parameters that are neither kernels nor biases (PReLU slopes); the old baselines' "weights
    only" figures exclude them.
    """

    params: int = 0
    bias_params: int = 0
    mult_adds_per_pixel: int | Fraction = 0
    mult_adds_per_image: int = 0
    activation_params: int = 0

    def __attrs_post_init__(self):
        soft = False
        for name in ("params", "bias_params", "mult_adds_per_image", "activation_params"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                if type(value) is not SoftCount:
                    raise ValueError(f"OpCost.{name} must be a non-negative int, got {value!r}")
                soft = True
        rate = self.mult_adds_per_pixel
        if (type(rate) is not int and type(rate) is not Fraction) or rate < 0:
            if type(rate) is not SoftCount:
                raise ValueError(f"OpCost.mult_adds_per_pixel must be a non-negative int or Fraction, got {rate!r}")
            soft = True
        if soft:
            return  # soft counts are checked by the cost model that made them (no device synchronisation here)
        if self.bias_params + self.activation_params > self.params:
            raise ValueError(
                f"OpCost: bias_params ({self.bias_params}) + activation_params ({self.activation_params}) "
                f"exceed params ({self.params})"
            )

    @property
    def kernel_params(self) -> int:
        """Learned kernel weights only (no biases, no activation parameters)."""
        return self.params - self.bias_params - self.activation_params


#: An op without learned parameters and without Mult-Adds.
FREE = OpCost()


# ---------------------------------------------------------------------------------------------------------
# OpSpec
# ---------------------------------------------------------------------------------------------------------
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


def _arity(_inst, _attribute, value):
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"OpSpec.arity must be >= 0, got {value}")
        return
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], int)
        and value[0] >= 0
        and (value[1] is None or (isinstance(value[1], int) and value[1] >= value[0]))
    ):
        return
    raise ValueError(f"OpSpec.arity must be an int or (min, max|None), got {value!r}")


def _op_name(_inst, _attribute, value):
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(f"OpSpec.name must be an identifier-like string (letters, digits, _ . : -), got {value!r}")


@attrs.frozen(eq=False)
class OpSpec:
    """One registered operation: its shape rule, torch builder and cost formula (see the module docstring).

    ``doc`` is a one-paragraph description shown to users (``nasengine ops``). ``recount`` (optional):
    ``recount(attrs, in_channels, out_channels, old_in_channels) -> attrs``, the attributes once the input
    channel counts are ``in_channels`` (they were ``old_in_channels``, the ints the graph has) and the output
    count ``out_channels`` (None: not set), for an op that stores a channel count in an attribute; the new
    counts may be :class:`SoftCount` values. It is not part of :meth:`fingerprint`. ``check_attrs`` (optional):
    ``check_attrs(attrs) -> (attr name, problem) | None``, a check across the complete attributes (after each
    one's own check), reported as that attribute's error ("must be a positive odd integer").

    An attribute whose default is ``None`` is optional: while unset (or given as ``None``) it is absent from the
    node's attributes, so that adding one to an existing op changes no existing graph's key or JSON.
    """

    name: str = attrs.field(validator=_op_name)
    arity: int | tuple[int, int | None] = attrs.field(validator=_arity)
    attrs: Mapping[str, Attr] = attrs.field(converter=_to_schema)
    infer: Callable[[Mapping[str, Any], Sequence[Shape]], Shape]
    build: Callable[[Mapping[str, Any], Sequence[Shape]], Any]
    cost: Callable[[Mapping[str, Any], Sequence[Shape], Shape], OpCost]
    commutative: bool = False
    doc: str = ""
    recount: Callable[[Mapping[str, Any], Sequence[Any], Any, Sequence[int]], Mapping[str, Any]] | None = None
    check_attrs: Callable[[Mapping[str, Any]], tuple[str, str] | None] | None = None

    @property
    def variadic(self) -> bool:
        """True when the op takes a variable number of inputs (its module's forward takes one list)."""
        return isinstance(self.arity, tuple)

    def arity_problem(self, n_inputs: int) -> str | None:
        """None when ``n_inputs`` inputs are allowed, else a description ("takes 1 input, got 2")."""
        if isinstance(self.arity, int):
            if n_inputs == self.arity:
                return None
            return f"takes {self.arity} input{'s' if self.arity != 1 else ''}, got {n_inputs}"
        lo, hi = self.arity
        if n_inputs >= lo and (hi is None or n_inputs <= hi):
            return None
        want = f"at least {lo}" if hi is None else f"{lo} to {hi}"
        return f"takes {want} inputs, got {n_inputs}"

    def normalize_attrs(self, given: Any, where: str | Callable[[], str] = "") -> dict[str, Any]:
        """The complete, type-checked attrs (defaults filled in, ints converted for float attrs).

        Raises :class:`ValidationError` whose ``field`` is ``"{where}attrs.NAME"`` for an unknown, missing,
        ill-typed or out-of-range attribute (``where`` may be a callable returning the prefix, evaluated
        only on error).
        """
        if callable(where):
            try:
                return self.normalize_attrs(given)
            except ValidationError:
                where = where()
        if type(given) is not dict and not isinstance(given, Mapping):
            raise ValidationError(f"must be an object of attributes, got {type(given).__name__}", field=f"{where}attrs")
        for key in given:
            if not isinstance(key, str) or key not in self.attrs:
                known = ", ".join(self.attrs) or "none"
                raise ValidationError(
                    f"unknown attribute {key!r} for op {self.name!r} (known: {known})", field=f"{where}attrs.{key}"
                )
        out: dict[str, Any] = {}
        for key, schema in self.attrs.items():
            if schema.default is None and given.get(key) is None:
                continue  # an optional attribute left unset: absent (see the class docstring)
            if key in given:
                try:
                    out[key] = schema.coerce(given[key])
                except ValueError as exc:
                    raise ValidationError(str(exc), field=f"{where}attrs.{key}") from None
            elif schema.default is REQUIRED:
                raise ValidationError(f"missing required attribute of op {self.name!r}", field=f"{where}attrs.{key}")
            else:
                out[key] = schema.default
        if self.check_attrs is not None:
            found = self.check_attrs(out)
            if found:
                key, problem = found
                raise ValidationError(f"{problem}, got {out.get(key)!r}", field=f"{where}attrs.{key}")
        return out

    def fingerprint(self) -> str:
        """A short digest of what a graph's node relies on: name, arity, commutativity and the attribute
        schema (names, types, defaults). Two processes whose specs agree on it read a graph the same way."""
        import hashlib

        schema = [(k, a.type.__name__, repr(a.default)) for k, a in self.attrs.items()]
        text = repr((self.name, self.arity, self.commutative, schema))
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()

    def describe(self) -> str:
        """A short human-readable signature: ``conv(out_channels, kernel, stride=1, ...)``."""
        parts = [k if a.default is REQUIRED else f"{k}={a.default!r}" for k, a in self.attrs.items()]
        return f"{self.name}({', '.join(parts)})"


# ---------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------
class OpRegistry(Registry[OpSpec]):
    """Registered operations by name: the plugins' :class:`~nasengine.registry.Registry` of role "operation".

    ``OpRegistry()`` is empty; :func:`builtin_registry` returns one holding :data:`BUILTIN_OPS`. The plugin
    manager sets ``current_plugin`` while it calls a plugin's ``nasengine_register_ops(registry)`` hook, so
    ``registry.add(spec)`` records the right plugin without the plugin naming itself.
    """

    def __init__(self, specs: Sequence[OpSpec] = (), plugin: str = "builtin"):
        super().__init__("operation", accepts=Accepts.instance(OpSpec))
        self.current_plugin = plugin
        for spec in specs:
            self.add(spec, plugin=plugin)

    def add(self, spec: OpSpec, plugin: str | None = None, *, description: str = "") -> OpSpec:  # type: ignore[override]
        """Register ``spec`` under its name (from ``plugin``, default: ``current_plugin``); returns ``spec``.

        Anything but an :class:`OpSpec` raises :class:`~nasengine.registry.RegistrationError` naming the
        plugin; a name registered twice raises :class:`~nasengine.registry.DuplicateNameError` naming both.
        """
        plugin = plugin or self.current_plugin
        if not isinstance(spec, OpSpec):
            raise RegistrationError(f"plugin {plugin!r} registered {type(spec).__name__} {spec!r:.60} as an "
                                    "operation; expected a nasengine.ops.OpSpec (registry.add(spec))")
        doc = description or (spec.doc.strip().splitlines()[0] if spec.doc.strip() else "")
        return super().add(spec.name, spec, description=doc, plugin=plugin)

    def _unknown(self, name: Any) -> str:
        return f"unknown operation {name!r}; registered: {', '.join(self.names()) or 'none'}"

    def __repr__(self) -> str:
        return f"OpRegistry({self.names()})"


# ---------------------------------------------------------------------------------------------------------
# Helpers shared by the built-in ops
# ---------------------------------------------------------------------------------------------------------
def _fail(message: str):
    raise ValidationError(message)


def _spatial(op: str, shape: Shape) -> Fraction:
    if shape.scale is None:
        _fail(f"{op} needs a spatial input, got a globally pooled (1x1) tensor {shape}")
    return shape.scale


def _div(scale: Fraction | None, by: int) -> Fraction | None:
    return None if scale is None else scale / by


def _same_shapes(op: str, ins: Sequence[Shape]) -> Shape:
    first = ins[0]
    for s in ins[1:]:
        if s.channels != first.channels:
            _fail(f"inputs have {first.channels} and {s.channels} channels ({op} needs equal shapes)")
        if s.scale != first.scale:
            _fail(f"inputs have shapes {first} and {s} ({op} needs equal spatial sizes)")
    return first


def conv_padding(kernel: int, dilation: int = 1) -> int:
    """'Same' padding of a stride-1 conv with an odd (dilated) kernel: ``dilation*(kernel-1)//2``."""
    return dilation * (kernel - 1) // 2


def conv_transpose_padding(kernel: int, stride: int) -> tuple[int, int]:
    """``(padding, output_padding)`` making a transposed conv's output exactly ``stride`` x its input.

    ``out = (in-1)*s - 2p + k + op`` equals ``in*s`` for ``p = max(0, ceil((k-s)/2))`` and ``op = s + 2p - k``
    (0 or 1; ``s - k`` when ``k < s``), which torch accepts whenever ``op < s``, i.e. unless ``s == 1`` with
    an even kernel.
    """
    p = max(0, -(-(kernel - stride) // 2))
    return p, stride + 2 * p - kernel


def _conv_checks(op: str, c_in: int, out: int, groups: int):
    if c_in % groups:
        _fail(f"{op}: input channels {c_in} are not divisible by groups={groups}")
    if out % groups:
        _fail(f"{op}: out_channels {out} is not divisible by groups={groups}")


def _recount_attr(attr: str):
    """A ``recount`` rule for an op whose output channel count is the attribute ``attr``."""

    def recount(a, in_channels, out_channels, old_in_channels):
        return a if out_channels is None else {**a, attr: out_channels}

    recount.__doc__ = f"The output channel count sets the attribute {attr!r}."
    return recount


def _lazy(name: str):
    from nasengine import _op_modules

    return getattr(_op_modules, name)


# ---------------------------------------------------------------------------------------------------------
# Built-in ops (each: infer, build, cost side by side)
# ---------------------------------------------------------------------------------------------------------
def _identity_module():
    import torch.nn as nn

    return nn.Identity()


# input / output -----------------------------------------------------------------------------------------
def _input_infer(a, ins):
    return Shape(a["channels"], Fraction(1))


def _output_infer(a, ins):
    return ins[0]


INPUT = OpSpec(
    "input", 0, {"channels": Attr(int, REQUIRED, positive, "image channels (1 for Y, 3 for RGB)")},
    _input_infer, lambda a, ins: _identity_module(), lambda a, ins, out: FREE, recount=_recount_attr("channels"),
    doc="The graph input (an LR image). Exactly one per graph; the builder makes it the forward argument.",
)
OUTPUT = OpSpec(
    "output", 1, {}, _output_infer, lambda a, ins: _identity_module(), lambda a, ins, out: FREE,
    doc="The graph output (the SR image). Exactly one per graph; its scale is the graph's upscaling factor.",
)


# conv -------------------------------------------------------------------------------------------------------
def conv_output_padding_problem(kernel: int, stride: int, dilation: int, padding: int) -> str | None:
    """None when a conv with explicit symmetric ``padding`` maps a size ``n*stride`` to exactly ``n`` (every
    ``n``), else what is wrong. Its output is ``(n*s + 2p - d(k-1) - 1) // s + 1``, which is ``n`` iff
    ``d(k-1) + 1 - s <= 2p <= d(k-1)``."""
    reach = dilation * (kernel - 1)
    lo, hi = -(-max(0, reach + 1 - stride) // 2), reach // 2
    if lo <= padding <= hi:
        return None
    want = f"{lo}" if lo == hi else f"{lo} to {hi}" if lo <= hi else "none (no padding does)"
    return (f"must give an output of exactly input / stride (kernel {kernel}, stride {stride}, dilation {dilation}"
            f" need padding {want})")


def _conv_check_attrs(a):
    if a.get("padding") is None:
        if a["kernel"] % 2 == 0:
            return "kernel", "must be a positive odd integer"  # unchanged message: 'same' padding needs an odd kernel
        return None
    problem = conv_output_padding_problem(a["kernel"], a["stride"], a["dilation"], a["padding"])
    return ("padding", problem) if problem else None


def conv_module_padding(a: Mapping[str, Any]) -> int:
    """The padding a ``conv`` node's module uses: its explicit ``padding``, else 'same' (:func:`conv_padding`)."""
    p = a.get("padding")
    return conv_padding(a["kernel"], a["dilation"]) if p is None else p


def _conv_infer(a, ins):
    _conv_checks("conv", ins[0].channels, a["out_channels"], a["groups"])
    return Shape(a["out_channels"], _div(ins[0].scale, a["stride"]))


def _conv_build(a, ins):
    import torch.nn as nn

    return nn.Conv2d(ins[0].channels, a["out_channels"], a["kernel"], stride=a["stride"],
                     padding=conv_module_padding(a), dilation=a["dilation"],
                     groups=a["groups"], bias=a["bias"])


def _conv_cost(a, ins, out):
    k, c_in, c_out, g = a["kernel"], ins[0].channels, a["out_channels"], a["groups"]
    weights = k * k * (c_in // g) * c_out
    bias = c_out if a["bias"] else 0
    return OpCost(params=weights + bias, bias_params=bias, mult_adds_per_pixel=weights)


def _conv_recount(a, in_channels, out_channels, old_in_channels):
    g = a["groups"]
    if g > 1 and g == a["out_channels"] == old_in_channels[0]:
        # Depthwise (one input and one output channel per group): its width follows its input's.
        c = in_channels[0] if out_channels is None else out_channels
        return {**a, "groups": c, "out_channels": c}
    return a if out_channels is None else {**a, "out_channels": out_channels}


CONV = OpSpec(
    "conv", 1,
    {
        "out_channels": Attr(int, REQUIRED, positive, "output channels"),
        "kernel": Attr(int, REQUIRED, positive, "square kernel size (odd unless `padding` is given)"),
        "stride": Attr(int, 1, positive, "stride (divides the spatial scale)"),
        "groups": Attr(int, 1, positive, "channel groups (must divide input and output channels)"),
        "dilation": Attr(int, 1, positive, "dilation rate; 'same' padding = dilation*(kernel-1)//2"),
        "bias": Attr(bool, True, None, "learned bias"),
        "padding": Attr(int, None, non_negative, "explicit symmetric padding (unset: 'same' padding, odd kernels "
                                                 "only); must keep output = input / stride (e.g. kernel 6, "
                                                 "stride 2: padding 2)"),
    },
    _conv_infer, _conv_build, _conv_cost, recount=_conv_recount, check_attrs=_conv_check_attrs,
    doc="2-D convolution with 'same' padding, or an explicit symmetric `padding` (which allows even kernels: "
        "DBPN's 6x6 stride 2, padding 2). Mult-Adds per output pixel k*k*(C_in/groups)*C_out.",
)


# sep_conv ---------------------------------------------------------------------------------------------------
def _sep_infer(a, ins):
    return Shape(a["out_channels"], _div(ins[0].scale, a["stride"]))


def _sep_build(a, ins):
    return _lazy("SepConv")(ins[0].channels, a["out_channels"], a["kernel"], a["stride"], a["dilation"], a["bias"])


def _sep_cost(a, ins, out):
    c_in, c_out, k = ins[0].channels, a["out_channels"], a["kernel"]
    depthwise, pointwise = k * k * c_in, c_in * c_out
    bias = c_out if a["bias"] else 0
    return OpCost(params=depthwise + pointwise + bias, bias_params=bias, mult_adds_per_pixel=depthwise + pointwise)


SEP_CONV = OpSpec(
    "sep_conv", 1,
    {
        "out_channels": Attr(int, REQUIRED, positive, "output channels of the pointwise conv"),
        "kernel": Attr(int, REQUIRED, odd_positive, "depthwise kernel size (odd)"),
        "stride": Attr(int, 1, positive, "stride of the depthwise conv"),
        "dilation": Attr(int, 1, positive, "dilation of the depthwise conv"),
        "bias": Attr(bool, True, None, "bias of the pointwise conv (the depthwise conv has none)"),
    },
    _sep_infer, _sep_build, _sep_cost, recount=_recount_attr("out_channels"),
    doc="Depthwise-separable conv: depthwise kxk (no bias) then pointwise 1x1 C_in->out_channels (+ bias).",
)


# conv_transpose ---------------------------------------------------------------------------------------------
def _deconv_infer(a, ins):
    scale = _spatial("conv_transpose", ins[0])
    if a["stride"] == 1 and a["kernel"] % 2 == 0:
        _fail("conv_transpose with stride 1 needs an odd kernel to keep the size, got kernel "
              f"{a['kernel']}")
    return Shape(a["out_channels"], scale * a["stride"])


def _deconv_build(a, ins):
    import torch.nn as nn

    p, op = conv_transpose_padding(a["kernel"], a["stride"])
    return nn.ConvTranspose2d(ins[0].channels, a["out_channels"], a["kernel"], stride=a["stride"], padding=p,
                              output_padding=op, bias=a["bias"])


def _deconv_cost(a, ins, out):
    weights = a["kernel"] ** 2 * ins[0].channels * a["out_channels"]
    bias = a["out_channels"] if a["bias"] else 0
    # True Mult-Adds: each INPUT pixel scatters a k x k x C_out patch per input channel, i.e. k*k*C_in*C_out
    # per input pixel = that / stride^2 per output pixel. (FSRCNN's table counts it over the output instead:
    # the cost model's "deconv_output" convention, nasengine.cost.CONVENTIONS.)
    s2 = a["stride"] ** 2
    rate = weights if s2 == 1 else Fraction(weights, s2) if type(weights) is int else weights / s2
    return OpCost(params=weights + bias, bias_params=bias, mult_adds_per_pixel=rate)


CONV_TRANSPOSE = OpSpec(
    "conv_transpose", 1,
    {
        "out_channels": Attr(int, REQUIRED, positive, "output channels"),
        "kernel": Attr(int, REQUIRED, positive, "square kernel size"),
        "stride": Attr(int, REQUIRED, positive, "upsampling factor (output = stride x input)"),
        "bias": Attr(bool, True, None, "learned bias"),
    },
    _deconv_infer, _deconv_build, _deconv_cost, recount=_recount_attr("out_channels"),
    doc="Transposed conv (deconvolution) upsampling by `stride`; padding/output_padding chosen so that "
        "out = in*stride (k3 s2: padding 1, output_padding 1; k3 s1: padding 1, a real 3x3 transposed conv). "
        "True Mult-Adds k*k*C_in*C_out per INPUT pixel (the `deconv_output` cost convention counts it per "
        "output pixel, as FSRCNN's table does).",
)


# element-wise unary -----------------------------------------------------------------------------------------
def _same_infer(a, ins):
    return ins[0]


def _simple_unary(name: str, module: str, doc: str) -> OpSpec:
    def build(a, ins):
        import torch.nn as nn

        return getattr(nn, module)()

    return OpSpec(name, 1, {}, _same_infer, build, lambda a, ins, out: FREE, doc=doc)


RELU = _simple_unary("relu", "ReLU", "ReLU activation (free).")
RELU6 = _simple_unary("relu6", "ReLU6", "ReLU6 activation, min(max(x, 0), 6) (free).")
TANH = _simple_unary("tanh", "Tanh", "tanh activation (free).")
SIGMOID = _simple_unary("sigmoid", "Sigmoid", "Logistic sigmoid (free).")
IDENTITY = _simple_unary("identity", "Identity", "Passes its input through (free).")


def _prelu_infer(a, ins):
    n = a["num_parameters"]
    if n != 1 and n != ins[0].channels:
        _fail(f"prelu num_parameters must be 1 or the input channels ({ins[0].channels}), got {n}")
    return ins[0]


def _prelu_recount(a, in_channels, out_channels, old_in_channels):
    # Per-channel slopes follow the channel count: the output's when it is set, else the input's.
    if a["num_parameters"] == 1:
        return a
    return {**a, "num_parameters": in_channels[0] if out_channels is None else out_channels}


def _prelu_build(a, ins):
    import torch.nn as nn

    return nn.PReLU(a["num_parameters"], init=a["init"])


PRELU = OpSpec(
    "prelu", 1,
    {
        "num_parameters": Attr(int, 1, positive, "1 (shared slope) or the number of channels"),
        "init": Attr(float, 0.25, None, "initial slope"),
    },
    _prelu_infer, _prelu_build,
    lambda a, ins, out: OpCost(params=a["num_parameters"], activation_params=a["num_parameters"]),
    recount=_prelu_recount,
    doc="PReLU activation with learned slopes (counted in params as activation_params; no Mult-Adds).",
)


def _bn_build(a, ins):
    import torch.nn as nn

    return nn.BatchNorm2d(ins[0].channels, eps=a["eps"], momentum=a["momentum"], affine=a["affine"])


def _bn_cost(a, ins, out):
    c = ins[0].channels
    if not a["affine"]:
        return FREE
    # gamma is neither a kernel nor a bias (counted with the activation parameters, as PReLU slopes); beta is a bias.
    return OpCost(params=2 * c, bias_params=c, activation_params=c)


BATCH_NORM = OpSpec(
    "batch_norm", 1,
    {
        "affine": Attr(bool, True, None, "learned per-channel scale (gamma) and shift (beta)"),
        "eps": Attr(float, 1e-5, positive, "added to the variance"),
        "momentum": Attr(float, 0.1, non_negative, "running-statistics momentum"),
    },
    _same_infer, _bn_build, _bn_cost,
    doc="Batch normalisation (torch BatchNorm2d over the input's channels; batch statistics in training, running "
        "statistics in eval). Free in Mult-Adds (a per-channel affine map); params 2*C when affine (gamma as "
        "activation_params, beta as bias_params), none otherwise. E.g. a search supernet's BatchNorm(affine=False) "
        "after its convs.",
)


def _scale_build(a, ins):
    return _lazy("Scale")(a["value"])


SCALE = OpSpec(
    "scale", 1, {"value": Attr(float, REQUIRED, None, "fixed multiplier")},
    _same_infer, _scale_build, lambda a, ins, out: FREE,
    doc="Multiplies by a fixed constant `value` (no parameters, free), e.g. FGNAS's x1/3 or residual scaling.",
)


def shift_values(text: str) -> tuple[float, ...]:
    """The constants of a ``shift`` node's ``values`` attribute (comma-separated finite numbers), or a
    :class:`ValueError` describing what is wrong."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"must be comma-separated numbers, e.g. '0.45,0.44,0.40', got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"must be finite numbers, got {text!r}")
    return values


def _check_shift_values(text: str) -> str | None:
    try:
        shift_values(text)
    except ValueError as exc:
        return str(exc).split(", got")[0]
    return None


def _shift_infer(a, ins):
    n = len(shift_values(a["values"]))
    if n != 1 and n != ins[0].channels:
        _fail(f"shift has {n} values for {ins[0].channels} channels (give one value or one per channel)")
    return ins[0]


def _shift_build(a, ins):
    return _lazy("Shift")(shift_values(a["values"]))


SHIFT = OpSpec(
    "shift", 1,
    {"values": Attr(str, REQUIRED, _check_shift_values,
                    "constants added per channel, comma-separated (one value for all channels, or one per channel)")},
    _shift_infer, _shift_build, lambda a, ins, out: FREE,
    doc="Adds a fixed constant per channel (no parameters, free), e.g. subtracting a data set's mean colour "
        "from the input (values '-0.45,-0.44,-0.40') and adding it back to the output.",
)


def _unused_build(a, ins):
    return _identity_module()


UNUSED = OpSpec(
    "unused", 1, {}, _same_infer, _unused_build, lambda a, ins, out: FREE,
    doc="Marks its input as built but unused: a terminal node (it feeds nothing) that lets a graph keep a "
        "branch that never reaches the output, as a released network may (a layer whose parameters exist but "
        "whose result is discarded). Validation accepts nodes that reach the output or an `unused` node; the "
        "builder builds such a branch's modules but does not compute them; the cost model counts them and "
        "also reports the live figures (Cost.live_params, Cost.live_mult_adds). Free.",
)


# n-ary element-wise ----------------------------------------------------------------------------------------
def _add_infer(a, ins):
    return _same_shapes("add", ins)


def _mean_infer(a, ins):
    return _same_shapes("mean", ins)


def _concat_infer(a, ins):
    scales = {s.scale for s in ins}
    if len(scales) > 1:
        _fail("inputs have shapes " + " and ".join(str(s) for s in ins) + " (concat needs equal spatial sizes)")
    return Shape(sum(s.channels for s in ins), ins[0].scale)


def _multiply_infer(a, ins):
    channels = {s.channels for s in ins}
    if len(channels) > 1:
        _fail("inputs have " + " and ".join(str(s.channels) for s in ins) + " channels (multiply needs equal "
              "channels)")
    spatial = {s.scale for s in ins if s.scale is not None}
    if len(spatial) > 1:
        _fail("inputs have shapes " + " and ".join(str(s) for s in ins) + " (multiply needs equal sizes, "
              "or a globally pooled gate)")
    return Shape(ins[0].channels, spatial.pop() if spatial else None)


def _nary(name: str, module: str, infer, commutative: bool, lo: int, doc: str) -> OpSpec:
    return OpSpec(name, (lo, None), {}, infer, lambda a, ins: _lazy(module)(), lambda a, ins, out: FREE,
                  commutative=commutative, doc=doc)


ADD = _nary("add", "Sum", _add_infer, True, 1,
            "Element-wise sum of 1+ inputs of equal shape (free). Its module takes a list.")
MEAN = _nary("mean", "Mean", _mean_infer, True, 1,
             "Element-wise mean of 1+ inputs of equal shape (free). Its module takes a list.")
CONCAT = _nary("concat", "Concat", _concat_infer, False, 1,
               "Channel concatenation in port order of 1+ inputs of equal spatial size (free).")
MULTIPLY = _nary("multiply", "Multiply", _multiply_infer, True, 2,
                 "Element-wise product of 2+ inputs with equal channels; inputs are at the same spatial scale "
                 "or globally pooled (C x 1x1 gates broadcast over the image). Free.")


# pooling and attention -----------------------------------------------------------------------------------
GLOBAL_AVG_POOL = OpSpec(
    "global_avg_pool", 1, {}, lambda a, ins: Shape(ins[0].channels, None),
    lambda a, ins: _lazy("GlobalAvgPool")(), lambda a, ins, out: FREE,
    doc="Global average pooling to C x 1x1 (a 'pooled' shape; free).",
)


def _ca_infer(a, ins):
    if ins[0].channels // a["reduction"] < 1:
        _fail(f"channel_attention reduction {a['reduction']} leaves no channels of {ins[0].channels}")
    return ins[0]


def _ca_build(a, ins):
    return _lazy("ChannelAttention")(ins[0].channels, a["reduction"], a["bias"])


def _ca_cost(a, ins, out):
    c = ins[0].channels
    mid = c // a["reduction"]
    weights = 2 * c * mid
    bias = (mid + c) if a["bias"] else 0
    # The two 1x1 convs run once per image on the pooled C x 1x1 vector.
    return OpCost(params=weights + bias, bias_params=bias, mult_adds_per_image=weights)


CHANNEL_ATTENTION = OpSpec(
    "channel_attention", 1,
    {
        "reduction": Attr(int, REQUIRED, positive, "r: the hidden width is channels // r"),
        "bias": Attr(bool, True, None, "biases on both 1x1 convs"),
    },
    _ca_infer, _ca_build, _ca_cost,
    doc="Squeeze-and-excitation channel attention: GAP -> 1x1 C->C//r -> ReLU -> 1x1 C//r->C -> sigmoid -> "
        "x * gate. Mult-Adds 2*C*(C//r) once per image.",
)


# upsampling ---------------------------------------------------------------------------------------------------
def _shuffle_infer(a, ins):
    scale = _spatial("pixel_shuffle", ins[0])
    r2 = a["factor"] ** 2
    if ins[0].channels % r2:
        _fail(f"pixel_shuffle factor {a['factor']} needs channels divisible by {r2}, got {ins[0].channels}")
    return Shape(ins[0].channels // r2, scale * a["factor"])


def _shuffle_build(a, ins):
    import torch.nn as nn

    return nn.PixelShuffle(a["factor"])


PIXEL_SHUFFLE = OpSpec(
    "pixel_shuffle", 1, {"factor": Attr(int, REQUIRED, positive, "upscaling factor r")},
    _shuffle_infer, _shuffle_build, lambda a, ins, out: FREE,
    doc="Sub-pixel rearrangement C*r^2 x H x W -> C x rH x rW (PyTorch channel order; free).",
)


def _interp_infer(a, ins):
    return Shape(ins[0].channels, _spatial("interpolate", ins[0]) * a["factor"])


def _interp_build(a, ins):
    return _lazy("Interpolate")(a["mode"], a["factor"])


INTERPOLATE = OpSpec(
    "interpolate", 1,
    {
        "factor": Attr(int, REQUIRED, positive, "integer upscaling factor"),
        "mode": Attr(str, "bicubic", one_of("bilinear", "nearest", "area", "bicubic"), "interpolation kernel"),
    },
    _interp_infer, _interp_build, lambda a, ins, out: FREE,
    doc="Fixed interpolation by an integer factor (torch.nn.functional.interpolate, align_corners=False; "
        "free). Note: torch's bicubic is not MATLAB's imresize.",
)


#: The engine's operations, in registration order (the built-in plugin registers exactly these).
BUILTIN_OPS: list[OpSpec] = [
    INPUT, OUTPUT, CONV, SEP_CONV, CONV_TRANSPOSE, RELU, RELU6, PRELU, TANH, SIGMOID, IDENTITY, SCALE, SHIFT,
    UNUSED, ADD, CONCAT, MEAN, MULTIPLY, GLOBAL_AVG_POOL, CHANNEL_ATTENTION, PIXEL_SHUFFLE, INTERPOLATE, BATCH_NORM,
]


def builtin_registry() -> OpRegistry:
    """A new registry holding exactly :data:`BUILTIN_OPS` (registered by plugin ``"builtin"``)."""
    return OpRegistry(BUILTIN_OPS, plugin="builtin")


def default_registry() -> OpRegistry:
    """The registry used wherever ``registry=None`` is passed (graph validation, cost model, builder): the op
    registry of the process's plugin facade (:func:`nasengine.plugins.get_plugins`: built-in + plugin ops).
    Code that was handed a registry passes it on instead."""
    from nasengine.plugins import get_plugins

    return get_plugins().ops
