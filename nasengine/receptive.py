"""How far an architecture looks: the receptive radius of an :class:`~nasengine.graph.ArchGraph`, in LR pixels.

An output pixel of the network depends only on LR pixels within ``receptive_radius(graph)`` of the LR
position it comes from (per axis). Tiled inference (:class:`nasengine.sr.models.TorchUpscaler` with
``tile=``) cuts the LR image into tiles that overlap by at least this radius and keeps each tile's centre:
the zero padding at a tile's inner edge then never reaches a kept pixel, so the tiled output is the
whole-image output.

Per node, the radius is the largest radius of its inputs plus what the op itself adds, counted in LR
pixels (an op working at spatial scale ``s`` of the input adds ``halo / s``):

* ``conv`` / ``sep_conv`` (stride 1): ``dilation * (kernel - 1) // 2`` (their 'same' padding; a conv with an
  explicit ``padding`` p: ``max(p, dilation * (kernel - 1) - p)``);
* ``conv_transpose`` (stride ``t``, kernel ``k``, padding ``p``): ``ceil(max(p, k - 1 - p) / t) + 1`` input
  pixels (conservative);
* ``interpolate``: 0 for ``nearest``, else 2 input pixels (bicubic's reach; bilinear/area need less);
* ``pixel_shuffle``, activations, ``scale``, ``identity`` and the element-wise n-ary ops: 0.

Unbounded (``None``): global pooling and ``channel_attention`` (they see the whole image), ``multiply`` by
a pooled gate, strided convs (the tiles would also have to align with the stride), and ops this module does
not know (a plugin's): tiling such a network is an approximation whatever the overlap.

The radius bounds which pixels matter; floating point can still differ in the last bit where an op's
arithmetic depends on the absolute position (``interpolate`` by a factor that is not a power of two).
"""
from __future__ import annotations

import math
from fractions import Fraction

__all__ = ["receptive_radius", "overlap_for", "AUTO_TILE_PIXELS", "DEFAULT_TILE", "DEFAULT_OVERLAP"]

# The defaults of tiled inference (nasengine.sr.models re-exports them; here so that the CLI's help needs no torch).
#: ``tile="auto"`` tiles LR images with more pixels than this (about 2 megapixels).
AUTO_TILE_PIXELS = 1600 * 1200
#: The tile side (LR pixels, before the overlap is added) of ``tile="auto"``.
DEFAULT_TILE = 512
#: The overlap (LR pixels) used when the network's receptive radius is not known.
DEFAULT_OVERLAP = 32

_ZERO = ("relu", "relu6", "prelu", "tanh", "sigmoid", "identity", "scale", "shift", "unused", "add", "concat", "mean",
         "pixel_shuffle", "input", "output")


def _halo(op: str, a: dict) -> int | None:
    """Pixels (at the op's input scale) an op adds to the radius; None: unbounded or unknown."""
    if op in _ZERO:
        return 0
    if op in ("conv", "sep_conv"):
        if a.get("stride", 1) != 1:
            return None
        reach, p = a.get("dilation", 1) * (a["kernel"] - 1), a.get("padding")
        return reach // 2 if p is None else max(p, reach - p)
    if op == "conv_transpose":
        from nasengine.ops import conv_transpose_padding

        k, t = a["kernel"], a["stride"]
        p, _ = conv_transpose_padding(k, t)
        return -(-max(p, k - 1 - p) // t) + 1
    if op == "interpolate":
        return 0 if a.get("mode") == "nearest" else 2
    return None


def receptive_radius(graph) -> Fraction | None:
    """The receptive radius of ``graph`` in LR pixels (a :class:`~fractions.Fraction`), or ``None`` when it
    is unbounded or unknown (see the module docstring). Validates the graph."""
    radius: dict[int, Fraction] = {}
    result: Fraction | None = None
    for node in graph.resolve():
        ins = [radius[u] for u in node.inputs]
        if any(r is None for r in ins):
            radius[node.node] = None
            continue
        op = node.spec.name
        pooled = any(s.scale is None for s in node.in_shapes) or node.shape.scale is None
        halo = None if pooled else _halo(op, node.attrs)
        if halo is None:
            radius[node.node] = None
        else:
            scale = node.in_shapes[0].scale if node.in_shapes else Fraction(1)
            radius[node.node] = max(ins, default=Fraction(0)) + Fraction(halo) / scale
        if op == "output":
            result = radius[node.node]
    return result


def overlap_for(graph) -> int | None:
    """The smallest tile overlap (LR pixels) for exact tiled inference of ``graph``: ``ceil`` of
    :func:`receptive_radius`, or ``None`` when that is unbounded."""
    r = receptive_radius(graph)
    return None if r is None else int(math.ceil(r))
