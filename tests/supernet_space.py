"""A tiny dense search space for the weight-sharing tests (``tiny-dense``), loadable as an extra plugin.

A miniature of a densely connected cell space (the DeCoNAS DNB, METHODS.md §1.2), small enough for fast tests
and nothing DeCoNAS-specific in the engine. Genome: ``M(M+1)/2`` masks in order (m = 0..M-1, j = 0..m), each
the 3-bit integer ``4*conv + 2*sep + dil`` saying which ops of mix node ``m`` read input ``j``::

    x --conv3x3 "sfe"--> f0;  layers = [f0]
    for m in 0..M-1:
        for op in (conv3x3 "n{m}.conv", sep_conv3x3 "n{m}.sep", conv3x3 dilation 2 "n{m}.dil"):
            sel = [layers[j] for j in 0..m if bit(m, j, op)]
            if sel: outs += [op(relu(concat(sel)))]          # pre-activation ReLU; no concat for one input
        y = relu(mean(outs)) if outs else relu(layers[-1])
        layers += [channel_attention(y) "n{m}.ca"]            # reduction 4
    h = conv1x1(concat(layers)) "lff" + f0                     # local fusion + residual
    out = pixel_shuffle(conv3x3(h) "up", scale)

Every node with parameters is named the same way in every genome; :meth:`TinyDenseSpace.densest` (all bits
set) holds every slot at its widest input. The vector encoding is the bits (MSB = conv), bounds ``[0, 1]``.

Load it with ``NASENGINE_PLUGINS_EXTRA=tests.supernet_space`` (run from the repository root) or
``Plugins(extra=(tests.supernet_space,))``; or use :class:`TinyDenseSpace` directly.
"""
from __future__ import annotations

from typing import Any

import attrs
import numpy as np

import nasengine
from nasengine.errors import ValidationError
from nasengine.graph import ArchGraph
from nasengine.space import SearchSpace, check_fields

__all__ = ["TinyDenseSpace", "TinyDenseGenome", "OPS"]

#: The ops of a mix node, in bit order (MSB first): (slot suffix, op, attrs).
OPS = (
    ("conv", "conv", {"kernel": 3}),
    ("sep", "sep_conv", {"kernel": 3}),
    ("dil", "conv", {"kernel": 3, "dilation": 2}),
)
K = len(OPS)


@attrs.frozen
class TinyDenseGenome:
    """The masks of a ``tiny-dense`` genome, in controller order (m = 0..M-1, j = 0..m)."""

    masks: tuple = attrs.field(converter=tuple)


class TinyDenseSpace(SearchSpace):
    """See the module docstring. Options: ``M`` mix nodes, ``channels`` (C), ``scale``, ``colors`` (input
    and output image channels)."""

    def __init__(self, M: int = 2, channels: int = 8, scale: int = 2, colors: int = 1):
        for name, value in (("M", M), ("channels", channels), ("scale", scale), ("colors", colors)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValidationError(f"must be a positive int, got {value!r}", field=name)
        if channels % 4:
            raise ValidationError(f"must be a multiple of 4 (channel attention reduction), got {channels}",
                                  field="channels")
        self.M, self.C, self.scale, self.colors = M, channels, scale, colors
        self.n_masks = M * (M + 1) // 2

    # ---- sampling and variation ---------------------------------------------------------------------
    def sample(self, rng):
        return TinyDenseGenome(int(v) for v in rng.integers(0, 2 ** K, size=self.n_masks))

    def mutate(self, genome, rng):
        bits = self.vector_encode(genome)
        i = int(rng.integers(len(bits)))
        bits[i] = 1 - bits[i]
        return self.vector_decode(bits)

    def crossover(self, a, b, rng):
        va, vb = self.vector_encode(a), self.vector_encode(b)
        mask = rng.integers(0, 2, size=len(va)).astype(bool)
        return self.vector_decode(np.where(mask, vb, va)), self.vector_decode(np.where(mask, va, vb))

    def densest(self):
        return TinyDenseGenome((2 ** K - 1,) * self.n_masks)

    # ---- validity and decoding ------------------------------------------------------------------------
    def validate(self, genome):
        if not isinstance(genome, TinyDenseGenome):
            raise ValidationError(f"expected a TinyDenseGenome, got {type(genome).__name__}", field="genome")
        if len(genome.masks) != self.n_masks:
            raise ValidationError(f"needs {self.n_masks} masks (M={self.M}), got {len(genome.masks)}",
                                  field="masks")
        for i, v in enumerate(genome.masks):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2 ** K:
                raise ValidationError(f"must be an int in [0, {2 ** K - 1}], got {v!r}", field=f"masks[{i}]")

    def decode(self, genome):
        self.validate(genome)
        C = self.C
        g = ArchGraph()
        x = g.input(channels=self.colors)
        f0 = g.add("conv", x, out_channels=C, kernel=3, name="sfe")
        layers = [f0]
        i = 0
        for m in range(self.M):
            masks = genome.masks[i:i + m + 1]
            i += m + 1
            outs = []
            for k, (suffix, op, attrs_) in enumerate(OPS):
                bit = 1 << (K - 1 - k)
                sel = [layers[j] for j in range(m + 1) if masks[j] & bit]
                if sel:
                    h = sel[0] if len(sel) == 1 else g.add("concat", sel)
                    h = g.add("relu", h)
                    outs.append(g.add(op, h, out_channels=C, name=f"n{m}.{suffix}", **attrs_))
            y = (outs[0] if len(outs) == 1 else g.add("mean", outs)) if outs else layers[-1]
            y = g.add("relu", y)
            layers.append(g.add("channel_attention", y, reduction=4, name=f"n{m}.ca"))
        h = g.add("conv", g.add("concat", layers), out_channels=C, kernel=1, name="lff")
        h = g.add("add", h, f0)
        u = g.add("conv", h, out_channels=self.colors * self.scale ** 2, kernel=3, name="up")
        g.output(g.add("pixel_shuffle", u, factor=self.scale))
        return g

    # ---- serialisation --------------------------------------------------------------------------------
    def to_json(self, genome):
        return {"masks": list(genome.masks)}

    def from_json(self, data: Any):
        if not isinstance(data, dict):
            raise ValidationError(f"expected an object, got {type(data).__name__}", field="genome")
        check_fields(data, ("masks",))
        if not isinstance(data["masks"], list):
            raise ValidationError(f"must be a list, got {type(data['masks']).__name__}", field="masks")
        genome = TinyDenseGenome(data["masks"])
        self.validate(genome)
        return genome

    # ---- vector encoding: the bits, MSB (conv) first ------------------------------------------------
    def vector_bounds(self):
        n = self.n_masks * K
        return np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)

    def vector_encode(self, genome):
        return np.array([(v >> (K - 1 - k)) & 1 for v in genome.masks for k in range(K)], dtype=np.int64)

    def vector_decode(self, vector):
        bits = [int(b) for b in np.asarray(vector).reshape(-1)]
        return TinyDenseGenome(sum(b << (K - 1 - k) for k, b in enumerate(bits[i:i + K]))
                               for i in range(0, len(bits), K))

    def size(self):
        return 2 ** (K * self.n_masks)


@nasengine.hookimpl
def nasengine_register_search_spaces(registry):
    registry.add("tiny-dense", TinyDenseSpace, description="tiny dense cell space for the supernet tests")
