"""Published baselines and a small residual SR net as architecture graphs (test and benchmark helpers).

Counting conventions and reference figures: ``shared/reference/README.md`` (per-layer lists in
``published_architectures.json`` under SRCNN, VDSR, FSRCNN). ``benchmarks/`` imports this module too.
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
