"""Tiled inference: with an overlap at least the receptive radius (nasengine.receptive), the tiled output is
the whole-image output, bit for bit; the CLI's --tile / --tile-overlap; the receptive radius of graphs."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nasengine.builder import build
from nasengine.errors import InputError
from nasengine.graph import ArchGraph
from nasengine.receptive import overlap_for, receptive_radius
from nasengine.sr.models import (AUTO_TILE_PIXELS, BicubicUpscaler, TorchUpscaler, tile_boxes, tiled_upscale,
                                 with_tiling)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@st.composite
def conv_nets(draw):
    """A random conv graph: convs (kernel 1/3/5, dilation 1/2) with ReLUs at LR, optional skip, pixel
    shuffle, optional convs at HR."""
    scale = draw(st.sampled_from([2, 3]))
    g = ArchGraph()
    x = g.input(channels=1)
    h = x
    width = 3
    for _ in range(draw(st.integers(1, 3))):
        h = g.add("relu", g.add("conv", h, out_channels=width, kernel=draw(st.sampled_from([1, 3, 5])),
                                dilation=draw(st.sampled_from([1, 2]))))
    if draw(st.booleans()):
        h = g.add("concat", h, g.add("conv", x, out_channels=2, kernel=3))
    h = g.add("pixel_shuffle", g.add("conv", h, out_channels=scale * scale, kernel=3), factor=scale)
    if draw(st.booleans()):
        h = g.add("conv", h, out_channels=1, kernel=draw(st.sampled_from([3, 5])))
    g.output(h)
    return g


def exact_module(graph, seed):
    """``build(graph)`` in float64 with small integer weights and biases: fed multiples of 1/16, every sum in
    the network is exact whatever order a conv kernel adds in (PyTorch's CPU convs pick their algorithm, and
    so their rounding, by input size), so any difference between tiled and whole is the tiling's."""
    module = build(graph).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randint(-1, 2, p.shape, generator=gen, dtype=torch.float64))
    return module


def sixteenths(h, w, seed):
    return np.random.default_rng(seed).integers(0, 17, (h, w, 1)) * (255 / 16)


@settings(max_examples=30)
@given(graph=conv_nets(), h=st.integers(1, 40), w=st.integers(1, 40), tile=st.integers(1, 24),
       extra=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_tiled_equals_whole_image_when_the_overlap_covers_the_receptive_field(graph, h, w, tile, extra, seed):
    module = exact_module(graph, seed)
    lr = sixteenths(h, w, seed)
    whole = TorchUpscaler(module, scale=graph.scale, tile=0).upscale(lr)
    tiled = TorchUpscaler(module, scale=graph.scale, tile=tile, receptive_radius=overlap_for(graph))
    assert tiled.overlap == overlap_for(graph)
    tiled.tile_overlap = tiled.overlap + extra
    assert np.array_equal(tiled.upscale(lr), whole)


@settings(max_examples=10)
@given(graph=conv_nets(), h=st.integers(20, 60), w=st.integers(20, 60), tile=st.integers(8, 24),
       seed=st.integers(0, 2**16))
def test_float32_tiles_agree_to_rounding(graph, h, w, tile, seed):
    """With ordinary float32 weights the tiles differ from the whole image by the conv kernels' rounding
    order at most."""
    torch.manual_seed(seed)
    module = build(graph)
    lr = np.random.default_rng(seed).uniform(0, 255, (h, w, 1)).astype(np.float32)
    whole = TorchUpscaler(module, scale=graph.scale, tile=0).upscale(lr)
    tiled = TorchUpscaler(module, scale=graph.scale, tile=tile, receptive_radius=overlap_for(graph)).upscale(lr)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-3)


def test_a_too_small_overlap_shows():
    """The exactness test can fail: without enough overlap the tile borders differ."""
    g = ArchGraph()
    h = g.add("relu", g.add("conv", g.input(channels=1), out_channels=4, kernel=5))
    g.output(g.add("pixel_shuffle", g.add("conv", h, out_channels=4, kernel=5), factor=2))
    module = exact_module(g, 0)
    lr = sixteenths(30, 30, 0)
    whole = TorchUpscaler(module, scale=2, tile=0).upscale(lr)
    assert overlap_for(g) == 4
    short = TorchUpscaler(module, scale=2, tile=8, tile_overlap=3).upscale(lr)
    assert not np.array_equal(short, whole)
    assert np.array_equal(TorchUpscaler(module, scale=2, tile=8, tile_overlap=4).upscale(lr), whole)


def test_tiling_without_a_known_receptive_radius_warns(caplog):
    """Tiles that overlap by the default only, because nothing gave the network's radius, approximate the
    whole image: the user is told (and how to get the exact output)."""
    import logging

    g = ArchGraph()
    g.output(g.add("pixel_shuffle", g.add("conv", g.input(channels=1), out_channels=4, kernel=3), factor=2))
    lr = sixteenths(30, 30, 0)
    with caplog.at_level(logging.WARNING, logger="nasengine.sr"):
        TorchUpscaler(exact_module(g, 0), scale=2, tile=8, progress=False).upscale(lr)
    assert any("receptive radius is unknown" in r.getMessage() and "--tile 0" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nasengine.sr"):
        TorchUpscaler(exact_module(g, 0), scale=2, tile=8, receptive_radius=overlap_for(g), progress=False).upscale(lr)
        TorchUpscaler(exact_module(g, 0), scale=2, tile=8, tile_overlap=2, progress=False).upscale(lr)
        TorchUpscaler(exact_module(g, 0), scale=2, tile=0).upscale(lr)
    assert not [r for r in caplog.records if r.name == "nasengine.sr"]


def test_tiles_partition_the_image():
    boxes = tile_boxes(10, 7, 4, 2)
    cover = np.zeros((10, 7), int)
    for (y0, y1, x0, x1), (cy0, cy1, cx0, cx1) in boxes:
        cover[y0:y1, x0:x1] += 1
        assert (cy0, cx0) == (max(0, y0 - 2), max(0, x0 - 2)) and (cy1, cx1) == (min(10, y1 + 2), min(7, x1 + 2))
    assert (cover == 1).all() and len(boxes) == 3 * 2


def test_auto_tiles_only_large_images(monkeypatch):
    calls = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            calls.append(tuple(x.shape[-2:]))
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    up = TorchUpscaler(Spy(), scale=2, receptive_radius=0, progress=False)
    up.upscale(np.zeros((100, 120, 1), np.float32))
    assert calls == [(100, 120)]
    monkeypatch.setattr("nasengine.sr.models.AUTO_TILE_PIXELS", 100 * 120 - 1)
    monkeypatch.setattr("nasengine.sr.models.DEFAULT_TILE", 64)
    calls.clear()
    out = up.upscale(np.full((100, 120, 1), 7, np.float32))
    assert calls == [(64, 64), (64, 56), (36, 64), (36, 56)] and out.shape == (200, 240, 1) and (out == 7).all()
    assert AUTO_TILE_PIXELS >= 1024 * 1024  # benchmark images (at most 1 MP at x2) are never tiled by default


def test_with_tiling_wraps_other_upscalers_exactly():
    bic = BicubicUpscaler(2)
    assert with_tiling(bic, 8) is bic

    class Nearest(BicubicUpscaler):
        def upscale(self, lr):
            return np.repeat(np.repeat(self.check_input(lr), 2, 0), 2, 1)

    lr = np.random.default_rng(1).integers(0, 256, (21, 17, 3), dtype=np.uint8)
    tiled = with_tiling(Nearest(2), 5, 0)
    assert np.array_equal(tiled.upscale(lr), Nearest(2).upscale(lr)) and tiled.scale == 2


@pytest.mark.parametrize("bad", [-1, 2.5, "big", True])
def test_bad_tile_values_are_input_errors(bad):
    with pytest.raises(InputError, match="tile"):
        TorchUpscaler(torch.nn.Identity(), scale=1, tile=bad)
    with pytest.raises(InputError, match="tile_overlap"):
        TorchUpscaler(torch.nn.Identity(), scale=1, tile_overlap=bad if bad != "big" else "x")


def test_tiled_upscale_checks_what_comes_back():
    with pytest.raises(InputError, match="tile came back"):
        tiled_upscale(lambda a: a, np.zeros((8, 8, 1)), 2, 4, 1)


def test_receptive_radius_of_graphs():
    g = ArchGraph()
    x = g.input(channels=1)
    h = g.add("conv", x, out_channels=4, kernel=5, dilation=2)  # 4 LR px
    h = g.add("pixel_shuffle", h, factor=2)
    g.output(g.add("conv", h, out_channels=1, kernel=3))  # 1 HR px = 1/2 LR px
    assert receptive_radius(g) == Fraction(9, 2) and overlap_for(g) == 5
    g = ArchGraph()
    x = g.input(channels=4)
    g.output(g.add("pixel_shuffle", g.add("channel_attention", x, reduction=2), factor=2))
    assert receptive_radius(g) is None and overlap_for(g) is None


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upscale_image_of_a_large_image_is_the_same_in_pieces(scale, monkeypatch):
    """upscale_image works in tiles/strips above AUTO_TILE_PIXELS (the bicubic chroma, the colour
    conversion): the same uint8 result as in one piece."""
    from nasengine.sr.models import upscale_image

    class Y(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest") * 1.01

    rgb = np.random.default_rng(scale).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    up = TorchUpscaler(Y(), scale=scale, tile=0)
    whole = upscale_image(up, rgb)
    monkeypatch.setattr("nasengine.sr.models.AUTO_TILE_PIXELS", 100)
    monkeypatch.setattr("nasengine.sr.models.DEFAULT_TILE", 16)
    assert np.array_equal(upscale_image(up, rgb), whole)


def test_many_tiles_get_a_progress_bar(monkeypatch):
    import tqdm.auto

    bars = []
    real = tqdm.auto.tqdm

    def spy(*args, **kwargs):
        bars.append(kwargs)
        return real(*args, **{**kwargs, "disable": True})

    monkeypatch.setattr(tqdm.auto, "tqdm", spy)
    lr = np.zeros((20, 20, 1))
    tiled_upscale(lambda a: np.repeat(np.repeat(a, 2, 0), 2, 1), lr, 2, 5, 1)  # 16 tiles
    tiled_upscale(lambda a: np.repeat(np.repeat(a, 2, 0), 2, 1), lr, 2, 10, 1)  # 4 tiles: no bar
    tiled_upscale(lambda a: np.repeat(np.repeat(a, 2, 0), 2, 1), lr, 2, 5, 1, progress=False)
    assert [(b["total"], b["disable"]) for b in bars] == [(16, None), (4, True), (16, True)]
