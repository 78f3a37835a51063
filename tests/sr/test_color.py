"""MATLAB rgb2ycbcr / ycbcr2rgb (BT.601 studio swing) and the protocol's Y (PROTOCOL.md section 4)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nasengine.errors import InputError
from nasengine.sr.color import rgb2ycbcr, rgb_to_y, ycbcr2rgb

ROWS = {
    0: (65.481, 128.553, 24.966, 16),
    1: (-37.797, -74.203, 112.0, 128),
    2: (112.0, -93.786, -18.214, 128),
}


def exact_half_up(r: int, g: int, b: int, ch: int) -> int:
    """round-half-up of offset + (c_r R + c_g G + c_b B) / 255 in exact rational arithmetic."""
    cr, cg, cb, off = ROWS[ch]
    v = off + (Fraction(str(cr)) * r + Fraction(str(cg)) * g + Fraction(str(cb)) * b) / 255
    return int((v + Fraction(1, 2)) // 1)


uint8_rgb = arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 6), st.just(3)))
float_rgb = arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.integers(1, 6), st.just(3)),
    elements=st.floats(0.0, 255.0, allow_nan=False),
)


def test_matlab_reference_values():
    """MATLAB: rgb2ycbcr(uint8([255 255 255; 0 0 0; 255 0 0; 0 255 0; 0 0 255]))."""
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    ycc = rgb2ycbcr(rgb)
    assert ycc.dtype == np.uint8
    np.testing.assert_array_equal(
        ycc[0], [[235, 128, 128], [16, 128, 128], [81, 90, 240], [145, 54, 34], [41, 240, 110]]
    )
    np.testing.assert_array_equal(ycbcr2rgb(ycc[:, :2]), rgb[:, :2])


@given(uint8_rgb)
def test_uint8_is_exact_rounding(img):
    ycc = rgb2ycbcr(img)
    for (i, j), _ in np.ndenumerate(img[..., 0]):
        r, g, b = (int(v) for v in img[i, j])
        assert [int(v) for v in ycc[i, j]] == [exact_half_up(r, g, b, ch) for ch in range(3)]


def test_ties_round_half_up():
    """(0, 204, 68) has Y = 125.5 exactly; double arithmetic gives 125.49999999999999 there, the
    exact integer evaluation rounds the tie up as MATLAB's round does."""
    img = np.array([[[0, 204, 68], [22, 206, 0]]], np.uint8)
    np.testing.assert_array_equal(rgb_to_y(img), [[126, 126]])


@given(float_rgb)
def test_float_round_trip(img):
    ycc = rgb2ycbcr(img)
    assert ycc.dtype == np.float64
    np.testing.assert_allclose(ycbcr2rgb(ycc), img, rtol=0, atol=1e-9)


@given(float_rgb)
def test_float_is_the_unrounded_formula(img):
    ycc = rgb2ycbcr(img)
    for ch, (cr, cg, cb, off) in ROWS.items():
        want = off + (cr * img[..., 0] + cg * img[..., 1] + cb * img[..., 2]) / 255.0
        np.testing.assert_allclose(ycc[..., ch], want, rtol=0, atol=1e-10)
    np.testing.assert_allclose(rgb_to_y(img), ycc[..., 0], rtol=0, atol=1e-10)


def test_uint8_round_trip_within_two_levels_exhaustively():
    """All 16.7 M colours: uint8 RGB -> YCbCr -> RGB comes back within 2 levels per channel
    (exactly: 15.9 % exact, 83.8 % within 1, 0.35 % off by 2, never more); and rgb_to_y equals
    the Y plane of rgb2ycbcr."""
    v = np.arange(256, dtype=np.uint8)
    g, b = np.meshgrid(v, v, indexing="ij")
    counts = np.zeros(256, np.int64)
    for r in range(256):
        img = np.stack([np.full_like(g, r), g, b], -1)
        ycc = rgb2ycbcr(img)
        back = ycbcr2rgb(ycc)
        d = np.abs(back.astype(np.int16) - img.astype(np.int16)).max(-1)
        counts += np.bincount(d.ravel(), minlength=256)
        if r % 51 == 0:
            np.testing.assert_array_equal(rgb_to_y(img), ycc[..., 0])
    assert counts[3:].sum() == 0
    assert counts[2] == 58372 and counts[1] == 14058320 and counts[0] == 2660524


@given(arrays(np.uint8, st.tuples(st.integers(1, 5), st.integers(1, 5), st.just(3)),
              elements=st.integers(16, 235)))
def test_ycbcr2rgb_uint8_matches_float_rounded(ycc):
    f = ycbcr2rgb(ycc.astype(np.float64))
    u = ycbcr2rgb(ycc)
    assert u.dtype == np.uint8
    assert np.all(np.abs(u.astype(float) - f) <= 0.5 + 1e-9)


def test_float_ycbcr2rgb_clips_like_matlab():
    out = ycbcr2rgb(np.array([[[255.0, 255.0, 255.0], [0.0, 0.0, 0.0]]]))
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_rgb_to_y_shapes_and_types():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert rgb_to_y(grey) is grey or np.shares_memory(rgb_to_y(grey), grey)
    np.testing.assert_array_equal(rgb_to_y(grey[:, :, None]), grey)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    y = rgb_to_y(rgb)
    assert y.shape == (3, 4) and y.dtype == np.uint8
    yf = rgb_to_y(rgb.astype(np.float32))
    assert yf.dtype == np.float64
    # R = G = B: Y = 16 + 219/255 * v
    np.testing.assert_allclose(yf, 16 + 219 / 255 * grey, atol=1e-10)


@pytest.mark.parametrize("fn", [rgb2ycbcr, ycbcr2rgb])
def test_bad_shape_and_dtype(fn):
    with pytest.raises(InputError, match=r"\(4, 4\)"):
        fn(np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match=r"\(4, 4, 4\)"):
        fn(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(InputError, match="int16"):
        fn(np.zeros((4, 4, 3), np.int16))


def test_rgb_to_y_bad_input():
    with pytest.raises(InputError, match=r"\(4, 4, 2\)"):
        rgb_to_y(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(InputError, match="bool"):
        rgb_to_y(np.zeros((4, 4), bool))
