"""PSNR and SSIM of the SR protocol (PROTOCOL.md sections 5-7)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from nasengine.errors import InputError
from nasengine.sr.metrics import SSIM_C1, SSIM_C2, gaussian_window, psnr, ssim


def naive_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """ssim_index.m written out: a full 11x11 window at every 'valid' position."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    g = np.arange(11) - 5.0
    win = np.exp(-(g[:, None] ** 2 + g[None, :] ** 2) / (2 * 1.5**2))
    win /= win.sum()

    def filt(z):
        return np.einsum("ijkl,kl->ij", sliding_window_view(z, (11, 11)), win)

    mu1, mu2 = filt(x), filt(y)
    s11 = filt(x * x) - mu1 * mu1
    s22 = filt(y * y) - mu2 * mu2
    s12 = filt(x * y) - mu1 * mu2
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    return float(m.mean())


images = st.builds(
    lambda h, w, seed, kind: _image(h, w, seed, kind),
    st.integers(11, 40),
    st.integers(11, 40),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["noise", "smooth", "flat"]),
)


def _image(h, w, seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return rng.integers(0, 256, (h, w)).astype(np.uint8)
    if kind == "flat":
        return np.full((h, w), rng.integers(0, 256), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    return np.clip(128 + 60 * np.sin(xx / 5.0 + seed % 7) * np.cos(yy / 7.0), 0, 255).astype(np.uint8)


def test_constants():
    assert SSIM_C1 == pytest.approx(6.5025) and SSIM_C2 == pytest.approx(58.5225)
    g = gaussian_window()
    assert g.shape == (11,) and g.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_array_equal(g, g[::-1])


@given(images)
def test_identical_images(img):
    assert psnr(img, img) == math.inf
    assert psnr(img, img.copy(), crop=2) == math.inf
    assert ssim(img, img) == 1.0


@given(images, images)
def test_symmetry(a, b):
    if a.shape != b.shape:
        b = np.resize(b, a.shape)
    assert psnr(a, b) == psnr(b, a)
    assert ssim(a, b) == ssim(b, a)


@given(images, st.integers(0, 2**32 - 1))
def test_monotone_in_noise_amplitude(img, seed):
    noise = np.random.default_rng(seed).standard_normal(img.shape)
    base = img.astype(np.float64)
    ps = [psnr(base, base + t * noise) for t in (0.5, 1, 2, 4, 8, 16)]
    ss = [ssim(base, base + t * noise) for t in (0, 0.5, 1, 2, 4, 8, 16)]
    assert all(p > q for p, q in zip(ps, ps[1:]))
    assert all(p >= q for p, q in zip(ss, ss[1:]))
    assert ss[0] == 1.0 and ss[-1] < 1.0


@given(images, images)
def test_ssim_matches_the_naive_formula(a, b):
    if a.shape != b.shape:
        b = np.resize(b, a.shape)
    assert ssim(a, b) == pytest.approx(naive_ssim(a, b), abs=1e-12)


def test_psnr_known_values():
    a = np.zeros((8, 8), np.uint8)
    b = np.ones((8, 8), np.uint8)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255.0**2))
    assert psnr(a.astype(float), b / 255.0, data_range=1.0) == pytest.approx(10 * math.log10(255.0**2))
    c = a.copy()
    c[0, 0] = 16  # MSE = 256 / 64 = 4
    assert psnr(a, c) == pytest.approx(10 * math.log10(255.0**2 / 4))
    assert psnr(a, c, crop=1) == math.inf  # the differing pixel is in the border


def test_psnr_is_not_the_mean_of_uint8_wraparound():
    a = np.full((4, 4), 10, np.uint8)
    b = np.full((4, 4), 20, np.uint8)  # uint8 subtraction would wrap around
    assert psnr(a, b) == pytest.approx(10 * math.log10(255.0**2 / 100))


def test_crop_equals_slicing():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (30, 40)).astype(np.uint8)
    b = rng.integers(0, 256, (30, 40)).astype(np.uint8)
    assert psnr(a, b, crop=3) == psnr(a[3:-3, 3:-3], b[3:-3, 3:-3])
    assert ssim(a, b, crop=3) == ssim(a[3:-3, 3:-3], b[3:-3, 3:-3])


def test_multichannel():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (20, 20, 3)).astype(np.uint8)
    b = rng.integers(0, 256, (20, 20, 3)).astype(np.uint8)
    assert ssim(a, b) == pytest.approx(np.mean([ssim(a[..., c], b[..., c]) for c in range(3)]))
    assert ssim(a[..., :1], b[..., :1]) == ssim(a[..., 0], b[..., 0])
    d = a.astype(float) - b
    assert psnr(a, b) == pytest.approx(10 * math.log10(255.0**2 / np.mean(d * d)))


def test_nan_gives_nan():
    a = np.zeros((12, 12))
    b = a.copy()
    b[5, 5] = np.nan
    assert math.isnan(psnr(a, b))


def test_errors_name_the_shapes():
    with pytest.raises(InputError, match=r"\(12, 12\).*\(12, 13\)"):
        psnr(np.zeros((12, 12)), np.zeros((12, 13)))
    with pytest.raises(InputError, match=r"\(12, 12\).*\(12, 12, 3\)"):
        ssim(np.zeros((12, 12)), np.zeros((12, 12, 3)))
    with pytest.raises(InputError, match="crop"):
        psnr(np.zeros((4, 4)), np.zeros((4, 4)), crop=2)
    with pytest.raises(InputError, match="crop"):
        psnr(np.zeros((4, 4)), np.zeros((4, 4)), crop=-1)
    with pytest.raises(InputError, match="11x11"):
        ssim(np.zeros((14, 14)), np.zeros((14, 14)), crop=2)
    with pytest.raises(InputError, match="data_range"):
        psnr(np.zeros((4, 4)), np.ones((4, 4)), data_range=0)
