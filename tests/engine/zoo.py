"""Published baselines and a small residual SR net as architecture graphs (test and benchmark helpers).

Counting conventions and reference figures: ``shared/reference/README.md`` (per-layer lists in
``published_architectures.json`` under SRCNN, VDSR, FSRCNN, HNAS-A/B/C). ``benchmarks/`` imports this module too.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from nasengine.graph import ArchGraph


def srcnn(channels: int = 1, scale: int = 2) -> ArchGraph:
    """SRCNN 9-5-5 (64/32) on the bicubic-upscaled image: every conv runs at HR."""
    g = ArchGraph()
    x = g.input(channels=channels)
    h = g.add("interpolate", x, factor=scale, mode="bicubic", name="bicubic")
    h = g.add("relu", g.add("conv", h, out_channels=64, kernel=9))
    h = g.add("relu", g.add("conv", h, out_channels=32, kernel=5))
    g.output(g.add("conv", h, out_channels=channels, kernel=5))
    return g


def vdsr(channels: int = 1, scale: int = 2, depth: int = 20, width: int = 64) -> ArchGraph:
    """VDSR: 20 3x3 convs (64 wide) with ReLUs on the bicubic-upscaled image, plus a global residual."""
    g = ArchGraph()
    x = g.input(channels=channels)
    up = g.add("interpolate", x, factor=scale, mode="bicubic", name="bicubic")
    h = up
    for _ in range(depth - 1):
        h = g.add("relu", g.add("conv", h, out_channels=width, kernel=3))
    h = g.add("conv", h, out_channels=channels, kernel=3)
    g.output(g.add("add", h, up, name="residual"))
    return g


def fsrcnn(d: int = 56, s: int = 12, m: int = 4, channels: int = 1, scale: int = 2) -> ArchGraph:
    """FSRCNN(d, s, m): 5x5 feature conv, 1x1 shrink, m 3x3 maps, 1x1 expand (PReLU after each, one slope
    per channel), 9x9 transposed conv upsampling by ``scale``."""
    g = ArchGraph()
    h = g.input(channels=channels)
    h = g.add("prelu", g.add("conv", h, out_channels=d, kernel=5), num_parameters=d)
    h = g.add("prelu", g.add("conv", h, out_channels=s, kernel=1), num_parameters=s)
    for _ in range(m):
        h = g.add("prelu", g.add("conv", h, out_channels=s, kernel=3), num_parameters=s)
    h = g.add("prelu", g.add("conv", h, out_channels=d, kernel=1), num_parameters=d)
    g.output(g.add("conv_transpose", h, out_channels=channels, kernel=9, stride=scale))
    return g


#: HNAS's published genotypes (``(op, from, to)`` edges; METHODS.md 2.8, verbatim from the released genotypes.py).
HNAS_GENOTYPES = {
    "HNAS-A": {"normal": [("skip_connect", 1, 2), ("sep_conv_5x5", 1, 2), ("dil_conv_3x3", 0, 3), ("dil_conv_5x5", 1, 3),
                          ("skip_connect", 1, 4), ("dil_conv_3x3", 1, 4), ("dil_conv_5x5", 1, 5), ("sep_conv_3x3", 4, 5)],
               "upsampling": [("deconvolution", 0, 2), ("bilinear", 0, 2), ("area", 1, 3), ("deconvolution", 0, 3),
                              ("area", 3, 4), ("bilinear", 0, 4), ("bilinear", 1, 5), ("deconvolution", 3, 5)]},
    "HNAS-B": {"normal": [("dil_conv_3x3", 0, 2), ("rcab", 1, 2), ("dil_conv_5x5", 0, 3), ("sep_conv_5x5", 1, 3),
                          ("sep_conv_3x3", 1, 4), ("dil_conv_3x3", 0, 4), ("sep_conv_3x3", 2, 5), ("dil_conv_5x5", 3, 5)],
               "upsampling": [("sub_pixel", 1, 2), ("bilinear", 1, 2), ("bilinear", 1, 3), ("sub_pixel", 0, 3),
                              ("sub_pixel", 3, 4), ("sub_pixel", 3, 4), ("deconvolution", 0, 5), ("nearest", 1, 5)]},
    "HNAS-C": {"normal": [("rcab", 1, 2), ("skip_connect", 1, 2), ("dil_conv_3x3", 1, 3), ("skip_connect", 0, 3),
                          ("dil_conv_5x5", 0, 4), ("rcab", 3, 4), ("dil_conv_5x5", 4, 5), ("dil_conv_3x3", 0, 5)],
               "upsampling": [("sub_pixel", 0, 2), ("nearest", 1, 2), ("deconvolution", 2, 3), ("nearest", 0, 3),
                              ("deconvolution", 3, 4), ("sub_pixel", 2, 4), ("bilinear", 0, 5), ("area", 0, 5)]},
}
_HNAS_MEAN = (0.4488, 0.4371, 0.4040)


def _hnas_edge(g: ArchGraph, op: str, x: int, c: int, stride: int) -> int:
    if op == "skip_connect" or (stride == 1 and op in ("sub_pixel", "bilinear", "nearest", "area")):
        return x  # identities (stride-1 sub-pixel and interpolations too)
    if op.startswith(("sep_conv", "dil_conv")):
        k, sep = int(op[-1]), op.startswith("sep")
        for _ in range(2 if sep else 1):
            x = g.add("conv", g.add("relu", x), out_channels=c, kernel=k, groups=c, dilation=1 if sep else 2,
                      bias=False)
            x = g.add("conv", x, out_channels=c, kernel=1, bias=False)
        return x
    if op == "rcab":
        h = g.add("conv", g.add("relu", g.add("conv", x, out_channels=c, kernel=3)), out_channels=c, kernel=3)
        return g.add("add", g.add("channel_attention", h, reduction=3), x)
    if op == "sub_pixel":
        return g.add("pixel_shuffle", g.add("conv", x, out_channels=4 * c, kernel=3), factor=2)
    if op == "deconvolution":
        return g.add("conv_transpose", x, out_channels=c, kernel=3, stride=stride)
    return g.add("interpolate", x, factor=2, mode=op)


def hnas(model: str = "HNAS-A", position: int = 9, c: int = 64, layers: int = 12) -> ArchGraph:
    """The released HNAS x2 network (METHODS.md 2.1, derived net: no batch norm) of a published genotype with
    its upsampling cell at ``position`` (0-based), built from engine ops only, to check the cost conventions
    against the reference figures. The upsampling cell's nodes are marked as run twice (the code runs it
    twice with identical results)."""
    geno = HNAS_GENOTYPES[model]
    g = ArchGraph()
    x = g.add("shift", g.input(channels=3), values=",".join(str(-255 * m) for m in _HNAS_MEAN))
    s0 = s1 = g.add("conv", x, out_channels=4 * c, kernel=3, bias=False)
    for i in range(layers):
        up = i == position
        first = len(g)
        h = [g.add("conv", g.add("relu", s), out_channels=c, kernel=1, bias=False) for s in (s0, s1)]
        for t in range(2, 6):
            h.append(g.add("add", [_hnas_edge(g, op, h[f], c, 2 if up and f < 2 else 1)
                                   for op, f, to in geno["upsampling" if up else "normal"] if to == t]))
        out = g.add("concat", h[2:])
        if up:
            g.set_runs(range(first, len(g)), 2)
            s0 = s1 = out
        else:
            s0, s1 = s1, out
    y = g.add("conv", s1, out_channels=3, kernel=3)
    g.output(g.add("shift", y, values=",".join(str(255 * m) for m in _HNAS_MEAN)))
    return g


ZOO = {"SRCNN": srcnn, "VDSR": vdsr, "FSRCNN": fsrcnn}


# ---- a small residual SR net, as a graph and hand-written --------------------------------------------------
def residual_sr(channels: int = 3, width: int = 32, blocks: int = 4, scale: int = 2) -> ArchGraph:
    """Head conv, ``blocks`` residual blocks (conv-ReLU-conv + skip), global skip, conv to C*s^2, pixel
    shuffle: 2 + 2*blocks convs (10 for the defaults)."""
    g = ArchGraph()
    x = g.input(channels=channels)
    head = g.add("conv", x, out_channels=width, kernel=3)
    h = head
    for _ in range(blocks):
        r = g.add("relu", g.add("conv", h, out_channels=width, kernel=3))
        h = g.add("add", g.add("conv", r, out_channels=width, kernel=3), h)
    h = g.add("add", h, head)
    g.output(g.add("pixel_shuffle", g.add("conv", h, out_channels=channels * scale * scale, kernel=3), factor=scale))
    return g


class ResidualSR(nn.Module):
    """The hand-written twin of :func:`residual_sr` (same layers, same parameter order)."""

    def __init__(self, channels: int = 3, width: int = 32, blocks: int = 4, scale: int = 2):
        super().__init__()
        self.head = nn.Conv2d(channels, width, 3, padding=1)
        self.body = nn.ModuleList(
            nn.ModuleList([nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)])
            for _ in range(blocks)
        )
        self.tail = nn.Conv2d(width, channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(x)
        h = head
        for block in self.body:
            h = block[1](self.relu(block[0](h))) + h
        return self.shuffle(self.tail(h + head))


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters from ``src`` to ``dst`` in registration order (shapes must match one to one)."""
    src_params, dst_params = list(src.parameters()), list(dst.parameters())
    assert len(src_params) == len(dst_params), (len(src_params), len(dst_params))
    with torch.no_grad():
        for a, b in zip(src_params, dst_params):
            assert a.shape == b.shape, (a.shape, b.shape)
            b.copy_(a)
