"""The built-in ``simple`` search space: a plain feed-forward SR network of searchable depth.

Genome (:class:`SimpleGenome`)::

    layers    = ((width, kernel, activation), ...)   # body layers, min_depth..max_depth of them
    residual  = True | False                          # global residual from the head to the body output
    upsampler = "pixel_shuffle" | "deconv" | "bicubic_residual"

Decoded network (``C`` = 1 for ``channels="y"``, 3 for ``"rgb"``; ``s`` = ``scale``; ``H`` = ``head_width``)::

    input C --conv3x3--> head H --[conv k_i -> width_i, activation_i] x depth--> body
    residual:  body --(conv1x1 width_last->H, only when width_last != H)--> + head   (features: H channels)
    otherwise: features = body (width_last channels)
    pixel_shuffle:    features --conv3x3 -> C*s^2--> pixel_shuffle(s) --> output       (ESPCN-style)
    bicubic_residual: the same, + interpolate(input, bicubic, s) --> output          (VDSR-style global skip)
    deconv:           features --conv_transpose(k=deconv_kernel, stride s) -> C--> output   (FSRCNN-style)

**Residual width rule.** The width genes stay free: a global residual never constrains them. When the last
body width differs from the head width, a 1x1 projection (with bias) maps the body output to the head width
before the add, so a residual network always hands ``head_width`` channels to the upsampler. The projection
is part of the decoded graph and is costed like any conv; without ``residual`` there is no projection.

Every upsampler writes the C output channels directly, so no conv runs at HR (only the transposed conv's
output is at HR, and it is counted there).
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import attrs
import numpy as np

from nasengine.errors import ValidationError
from nasengine.options import OptionError, choice, option, read_options, sequence, whole
from nasengine.space import SearchSpace, check_fields

__all__ = ["SimpleSpace", "SimpleGenome", "Layer", "ACTIVATIONS", "UPSAMPLERS", "KERNELS", "WIDTHS", "SCALES"]

SCALES = (2, 3, 4)
WIDTHS = (8, 16, 24, 32)
KERNELS = (1, 3, 5)
ACTIVATIONS = ("relu", "prelu", "tanh")
UPSAMPLERS = ("pixel_shuffle", "deconv", "bicubic_residual")
CHANNELS = {"y": 1, "rgb": 3}
_LAYER_FIELDS = ("width", "kernel", "activation")
_GENOME_FIELDS = ("layers", "residual", "upsampler")


class Layer(NamedTuple):
    """One body layer: conv ``kernel`` x ``kernel`` to ``width`` channels, then ``activation``."""

    width: int
    kernel: int
    activation: str


def _to_layers(value: Any) -> Any:
    """Lists of triples become a tuple of :class:`Layer` (hashable); anything else is left for ``validate``."""
    try:
        if isinstance(value, (str, bytes)) or isinstance(value, Mapping):
            return value
        out = []
        for layer in value:
            if isinstance(layer, (str, bytes, Mapping)) or len(layer) != 3:
                return value
            out.append(Layer(*layer))
        return tuple(out)
    except TypeError:
        return value


@attrs.frozen
class SimpleGenome:
    """A genome of the ``simple`` space (immutable, hashable)."""

    layers: tuple = attrs.field(converter=_to_layers)
    residual: bool = True
    upsampler: str = "pixel_shuffle"

    @property
    def depth(self) -> int:
        return len(self.layers)


# ---------------------------------------------------------------------------------------------------------
# the space
# ---------------------------------------------------------------------------------------------------------
_ODD = whole(1).where(lambda v: v % 2 == 1, "a positive odd whole number")


class SimpleSpace(SearchSpace):
    """A small plain SR space: depth, per-layer width/kernel/activation, global residual, upsampler.

    Options (a preset's ``space`` section): ``scale`` (2, 3 or 4), ``channels`` (``"y"`` or ``"rgb"``),
    ``head_width`` (16), ``min_depth`` (2), ``max_depth`` (8), ``widths`` (8, 16, 24, 32), ``kernels``
    (1, 3, 5), ``activations`` (relu, prelu, tanh), ``upsamplers`` (pixel_shuffle, deconv,
    bicubic_residual), ``deconv_kernel`` (9, FSRCNN's). Bad options raise :class:`~nasengine.options.OptionError` naming them.
    """

    genome_schema = "1"

    @attrs.frozen(kw_only=True)
    class Options:
        scale: int = option(2, choice(*SCALES), help="upscaling factor")
        channels: str = option("y", choice(*CHANNELS), help="image channels the network sees: y (luma) or rgb")
        head_width: int = option(16, whole(1), help="channels of the head conv (and of a residual's add)")
        min_depth: int = option(2, whole(1), help="fewest body layers")
        max_depth: int = option(8, whole(1), help="most body layers (>= min_depth)")
        widths: tuple = option(WIDTHS, sequence(whole(1), min_length=1, distinct=True),
                               help="channel widths a body layer may have")
        kernels: tuple = option(KERNELS, sequence(_ODD, min_length=1, distinct=True),
                                help="kernel sizes a body layer may have")
        activations: tuple = option(ACTIVATIONS, sequence(choice(*ACTIVATIONS), min_length=1, distinct=True),
                                    help="activations a body layer may have")
        upsamplers: tuple = option(UPSAMPLERS, sequence(choice(*UPSAMPLERS), min_length=1, distinct=True),
                                   help="upsamplers the network may end with")
        deconv_kernel: int = option(9, whole(1), help="kernel of the deconv upsampler (FSRCNN's 9)")

        def __attrs_post_init__(self):
            if self.max_depth < self.min_depth:
                raise OptionError("max_depth", f"must be >= space.min_depth ({self.min_depth}), got {self.max_depth}")

    def __init__(self, **options: Any):
        declared = read_options("space", type(self).Options, options, name="simple")
        for field in attrs.fields(type(declared)):
            setattr(self, field.name, getattr(declared, field.name))
        self.image_channels = CHANNELS[self.channels]

    def options(self) -> dict[str, Any]:
        """The options this space was made with (plain data)."""
        return {
            "scale": self.scale, "channels": self.channels, "head_width": self.head_width,
            "min_depth": self.min_depth, "max_depth": self.max_depth, "widths": list(self.widths),
            "kernels": list(self.kernels), "activations": list(self.activations),
            "upsamplers": list(self.upsamplers), "deconv_kernel": self.deconv_kernel,
        }

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"SimpleSpace({opts})"

    # ---- sampling and variation -------------------------------------------------------------------------
    def _random_layer(self, rng: np.random.Generator) -> Layer:
        return Layer(
            self.widths[int(rng.integers(len(self.widths)))],
            self.kernels[int(rng.integers(len(self.kernels)))],
            self.activations[int(rng.integers(len(self.activations)))],
        )

    def sample(self, rng: np.random.Generator) -> SimpleGenome:
        """Depth uniform in [min_depth, max_depth], every gene uniform over its choices."""
        depth = int(rng.integers(self.min_depth, self.max_depth + 1))
        layers = tuple(self._random_layer(rng) for _ in range(depth))
        residual = bool(rng.integers(2))
        upsampler = self.upsamplers[int(rng.integers(len(self.upsamplers)))]
        return SimpleGenome(layers, residual, upsampler)

    def mutation_kinds(self, genome: SimpleGenome) -> list[str]:
        """The single-gene changes possible on ``genome`` (each always gives a different genome)."""
        kinds = []
        if len(self.widths) > 1:
            kinds.append("width")
        if len(self.kernels) > 1:
            kinds.append("kernel")
        if len(self.activations) > 1:
            kinds.append("activation")
        if genome.depth < self.max_depth:
            kinds.append("insert")
        if genome.depth > self.min_depth:
            kinds.append("delete")
        kinds.append("residual")
        if len(self.upsamplers) > 1:
            kinds.append("upsampler")
        return kinds

    def mutate(self, genome: SimpleGenome, rng: np.random.Generator) -> SimpleGenome:
        """Change one gene, the kind drawn uniformly from :meth:`mutation_kinds`: a layer's width, kernel or
        activation (to another value), insert a random layer or delete one (within the depth bounds), flip
        the residual, or change the upsampler. The child always differs from ``genome``."""
        kinds = self.mutation_kinds(genome)
        kind = kinds[int(rng.integers(len(kinds)))]
        layers = list(genome.layers)
        if kind in _LAYER_FIELDS:
            i = int(rng.integers(len(layers)))
            choices = {"width": self.widths, "kernel": self.kernels, "activation": self.activations}[kind]
            current = getattr(layers[i], kind)
            others = [c for c in choices if c != current]
            layers[i] = layers[i]._replace(**{kind: others[int(rng.integers(len(others)))]})
            return attrs.evolve(genome, layers=tuple(layers))
        if kind == "insert":
            i = int(rng.integers(len(layers) + 1))
            layers.insert(i, self._random_layer(rng))
            return attrs.evolve(genome, layers=tuple(layers))
        if kind == "delete":
            del layers[int(rng.integers(len(layers)))]
            return attrs.evolve(genome, layers=tuple(layers))
        if kind == "residual":
            return attrs.evolve(genome, residual=not genome.residual)
        others = [u for u in self.upsamplers if u != genome.upsampler]
        return attrs.evolve(genome, upsampler=others[int(rng.integers(len(others)))])

    def crossover(self, a: SimpleGenome, b: SimpleGenome,
                  rng: np.random.Generator) -> tuple[SimpleGenome, SimpleGenome]:
        """One-point crossover of the layer lists (a cut in each parent: ``a[:i] + b[j:]`` and
        ``b[:j] + a[i:]``), each global gene swapped with probability 1/2. A child longer than ``max_depth``
        is cut to it; one shorter than ``min_depth`` is completed with the layers of the parent it starts
        with, from the same positions."""
        i = int(rng.integers(a.depth + 1))
        j = int(rng.integers(b.depth + 1))
        l1 = self._repair(a.layers[:i] + b.layers[j:], a.layers)
        l2 = self._repair(b.layers[:j] + a.layers[i:], b.layers)
        r1, r2 = (b.residual, a.residual) if rng.random() < 0.5 else (a.residual, b.residual)
        u1, u2 = (b.upsampler, a.upsampler) if rng.random() < 0.5 else (a.upsampler, b.upsampler)
        return SimpleGenome(l1, r1, u1), SimpleGenome(l2, r2, u2)

    def _repair(self, layers: tuple, donor: tuple) -> tuple:
        layers = tuple(layers)[: self.max_depth]
        if len(layers) < self.min_depth:
            layers = layers + tuple(donor[len(layers): self.min_depth])
        return layers

    # ---- validity ------------------------------------------------------------------------------------------
    def validate(self, genome: Any) -> None:
        if not isinstance(genome, SimpleGenome):
            raise ValidationError(f"expected a SimpleGenome, got {type(genome).__name__}", field="genome")
        layers = genome.layers
        if not isinstance(layers, tuple):
            raise ValidationError(f"must be a list of layers, got {type(layers).__name__}", field="layers")
        if not self.min_depth <= len(layers) <= self.max_depth:
            raise ValidationError(
                f"depth {len(layers)} is outside [{self.min_depth}, {self.max_depth}]", field="layers")
        for i, layer in enumerate(layers):
            if not isinstance(layer, tuple) or len(layer) != 3:
                raise ValidationError("must be a (width, kernel, activation) triple", field=f"layers[{i}]")
            width, kernel, activation = layer
            self._check_choice(width, self.widths, f"layers[{i}].width", int)
            self._check_choice(kernel, self.kernels, f"layers[{i}].kernel", int)
            self._check_choice(activation, self.activations, f"layers[{i}].activation", str)
        if not isinstance(genome.residual, bool):
            raise ValidationError(f"must be true or false, got {genome.residual!r}", field="residual")
        self._check_choice(genome.upsampler, self.upsamplers, "upsampler", str)

    @staticmethod
    def _check_choice(value: Any, choices: tuple, field: str, kind: type) -> None:
        if kind is int:
            ok_type = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok_type = isinstance(value, str)
        if not ok_type:
            raise ValidationError(f"must be {'a whole number' if kind is int else 'a string'}, got {value!r}",
                                  field=field)
        if value not in choices:
            raise ValidationError(f"{value!r} is not one of {', '.join(map(repr, choices))}", field=field)

    # ---- decoding ------------------------------------------------------------------------------------------
    def decode(self, genome: SimpleGenome):
        """The :class:`~nasengine.graph.ArchGraph` of ``genome`` (see the module docstring)."""
        from nasengine.graph import ArchGraph

        self.validate(genome)
        c, s = self.image_channels, self.scale
        g = ArchGraph()
        x = g.input(channels=c)
        head = g.add("conv", x, out_channels=self.head_width, kernel=3)
        h = head
        for layer in genome.layers:
            h = g.add("conv", h, out_channels=layer.width, kernel=layer.kernel)
            if layer.activation == "prelu":
                h = g.add("prelu", h, num_parameters=layer.width)
            else:
                h = g.add(layer.activation, h)
        width = genome.layers[-1].width
        if genome.residual:
            if width != self.head_width:
                h = g.add("conv", h, out_channels=self.head_width, kernel=1)
            h = g.add("add", h, head)
        if genome.upsampler == "deconv":
            out = g.add("conv_transpose", h, out_channels=c, kernel=self.deconv_kernel, stride=s)
        else:
            h = g.add("conv", h, out_channels=c * s * s, kernel=3)
            out = g.add("pixel_shuffle", h, factor=s)
            if genome.upsampler == "bicubic_residual":
                up = g.add("interpolate", x, mode="bicubic", factor=s)
                out = g.add("add", out, up)
        g.output(out)
        return g

    # ---- serialisation -------------------------------------------------------------------------------------
    def to_json(self, genome: SimpleGenome) -> dict:
        """``{"layers": [{"width", "kernel", "activation"}, ...], "residual": bool, "upsampler": str}``."""
        return {
            "layers": [{"width": int(l.width), "kernel": int(l.kernel), "activation": str(l.activation)}
                       for l in genome.layers],
            "residual": bool(genome.residual),
            "upsampler": str(genome.upsampler),
        }

    def from_json(self, data: Any) -> SimpleGenome:
        """Parse :meth:`to_json` output (a layer may also be written ``[width, kernel, activation]``) and
        validate it; anything malformed raises :class:`ValidationError` naming the field."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"must be an object with {', '.join(_GENOME_FIELDS)}, got "
                                  f"{type(data).__name__}", field="genome")
        check_fields(data, _GENOME_FIELDS)
        raw_layers = data["layers"]
        if not isinstance(raw_layers, (list, tuple)):
            raise ValidationError(f"must be a list of layers, got {type(raw_layers).__name__}", field="layers")
        layers = []
        for i, raw in enumerate(raw_layers):
            field = f"layers[{i}]"
            if isinstance(raw, Mapping):
                check_fields(raw, _LAYER_FIELDS, field)
                values = tuple(raw[k] for k in _LAYER_FIELDS)
            elif isinstance(raw, (list, tuple)) and len(raw) == 3:
                values = tuple(raw)
            else:
                raise ValidationError("must be an object {width, kernel, activation} or a [width, kernel, "
                                      f"activation] list, got {raw!r}", field=field)
            width, kernel, activation = values
            self._check_choice(width, self.widths, f"{field}.width", int)
            self._check_choice(kernel, self.kernels, f"{field}.kernel", int)
            self._check_choice(activation, self.activations, f"{field}.activation", str)
            layers.append(Layer(int(width), int(kernel), str(activation)))
        genome = SimpleGenome(tuple(layers), data["residual"], data["upsampler"])
        self.validate(genome)
        return genome

    def describe(self, genome: SimpleGenome) -> str:
        """``"16k3relu-24k5prelu +res pixel_shuffle"``."""
        body = "-".join(f"{l.width}k{l.kernel}{l.activation}" for l in genome.layers)
        return f"{body} {'+res' if genome.residual else 'nores'} {genome.upsampler}"

    # ---- vector encoding ---------------------------------------------------------------------------------
    def vector_length(self) -> int:
        """``1 + 3 * max_depth + 2``: depth, then (width, kernel, activation) indices per layer slot, then
        residual and upsampler."""
        return 1 + 3 * self.max_depth + 2

    def vector_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive bounds: depth in [min_depth, max_depth]; choice indices in [0, n_choices - 1]."""
        lo = np.zeros(self.vector_length(), dtype=np.int64)
        hi = np.zeros(self.vector_length(), dtype=np.int64)
        lo[0], hi[0] = self.min_depth, self.max_depth
        per = np.array([len(self.widths) - 1, len(self.kernels) - 1, len(self.activations) - 1])
        hi[1: 1 + 3 * self.max_depth] = np.tile(per, self.max_depth)
        hi[-2] = 1
        hi[-1] = len(self.upsamplers) - 1
        return lo, hi

    def vector_encode(self, genome: SimpleGenome) -> np.ndarray:
        """The genome as indices; the slots of absent layers are 0 (so the encoding is unique)."""
        self.validate(genome)
        v = np.zeros(self.vector_length(), dtype=np.int64)
        v[0] = genome.depth
        for i, layer in enumerate(genome.layers):
            v[1 + 3 * i: 4 + 3 * i] = (self.widths.index(layer.width), self.kernels.index(layer.kernel),
                                       self.activations.index(layer.activation))
        v[-2] = int(genome.residual)
        v[-1] = self.upsamplers.index(genome.upsampler)
        return v

    def vector_decode(self, vector: Any) -> SimpleGenome:
        """Inverse of :meth:`vector_encode`. Values are rounded and clipped into :meth:`vector_bounds` (so
        real-valued operators can be used); the slots beyond the depth are ignored. A vector of the wrong
        length or with non-finite values raises :class:`ValidationError`."""
        try:
            v = np.asarray(vector, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise ValidationError(f"must be a numeric vector, got {vector!r}", field="vector") from None
        if v.size != self.vector_length():
            raise ValidationError(f"must have {self.vector_length()} entries, got {v.size}", field="vector")
        if not np.all(np.isfinite(v)):
            raise ValidationError("has non-finite entries", field="vector")
        lo, hi = self.vector_bounds()
        v = np.clip(np.rint(v), lo, hi).astype(np.int64)
        depth = int(v[0])
        layers = tuple(
            Layer(self.widths[v[1 + 3 * i]], self.kernels[v[2 + 3 * i]], self.activations[v[3 + 3 * i]])
            for i in range(depth)
        )
        return SimpleGenome(layers, bool(v[-2]), self.upsamplers[int(v[-1])])

    def size(self) -> int:
        """Exact number of genomes: ``2 * |upsamplers| * sum_d (|widths| * |kernels| * |activations|)^d``."""
        per_layer = len(self.widths) * len(self.kernels) * len(self.activations)
        return 2 * len(self.upsamplers) * sum(per_layer ** d for d in range(self.min_depth, self.max_depth + 1))
