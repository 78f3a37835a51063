"""MATLAB-exact bicubic ``imresize`` (PROTOCOL.md section 2) and ``modcrop``.

The reference here is a deliberately naive per-pixel loop over MATLAB's algorithm (``contributions``
+ one pass per dimension + uint8 rounding after each pass), in plain Python floats, with the same
operation order as the vectorised code: every result must be *bit-for-bit* equal, float or uint8.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from nasengine.errors import InputError
from nasengine.sr.resize import _HALF_DOWN, contributions, imresize, modcrop

# --------------------------------------------------------------------------------------------------
# the slow reference
# --------------------------------------------------------------------------------------------------


def _cubic(x: float) -> float:
    ax = abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (1.0 < ax) and (ax <= 2.0)
    )


def _contrib(in_len: int, out_len: int, scale: float):
    """MATLAB contributions(), one output pixel at a time."""
    width = 4.0 / scale if scale < 1.0 else 4.0
    P = math.ceil(width) + 2
    rows = []
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1.0 - 1.0 / scale)
        left = math.floor(u - width / 2.0)
        taps = []
        for j in range(P):
            idx = left + j
            d = u - idx
            w = scale * _cubic(scale * d) if scale < 1.0 else _cubic(d)
            taps.append([idx, w])
        total = taps[0][1]
        for _, w in taps[1:]:
            total += w
        rows.append([[idx, w / total] for idx, w in taps])
    keep = [j for j in range(P) if any(r[j][1] != 0.0 for r in rows)]
    mirror = list(range(in_len)) + list(range(in_len - 1, -1, -1))
    return [[(mirror[(r[j][0] - 1) % (2 * in_len)], r[j][1]) for j in keep] for r in rows]


def _round_sat(v: float, lo: int, hi: int) -> float:
    v = min(max(v, float(lo)), float(hi))
    f = math.floor(abs(v))
    r = f + 1 if abs(v) - f >= 0.5 else f
    return float(math.copysign(r, v)) if v < 0 else float(r)


def slow_imresize(img: np.ndarray, sh: float, sw: float, oh: int, ow: int) -> np.ndarray:
    a = np.asarray(img)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[:, :, None]
    integer = np.issubdtype(a.dtype, np.integer)
    lo, hi = (np.iinfo(a.dtype).min, np.iinfo(a.dtype).max) if integer else (None, None)
    cur = [[[float(v) for v in px] for px in row] for row in a.tolist()]  # H x W x C floats
    order = [0, 1] if sh <= sw else [1, 0]
    for dim in order:
        H, W, C = len(cur), len(cur[0]), len(cur[0][0])
        if dim == 0:
            table = _contrib(H, oh, sh)
            new = []
            for o in range(oh):
                row = []
                for x in range(W):
                    px = []
                    for c in range(C):
                        (i0, w0), *rest = table[o]
                        acc = cur[i0][x][c] * w0
                        for i, w in rest:
                            acc += cur[i][x][c] * w
                        px.append(_round_sat(acc, lo, hi) if integer else acc)
                    row.append(px)
                new.append(row)
        else:
            table = _contrib(W, ow, sw)
            new = []
            for y in range(H):
                row = []
                for o in range(ow):
                    px = []
                    for c in range(C):
                        (i0, w0), *rest = table[o]
                        acc = cur[y][i0][c] * w0
                        for i, w in rest:
                            acc += cur[y][i][c] * w
                        px.append(_round_sat(acc, lo, hi) if integer else acc)
                    row.append(px)
                new.append(row)
        cur = new
    out = np.array(cur, dtype=a.dtype if integer else np.float64)
    return out[:, :, 0] if squeeze else out


# --------------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------------
NICE_SCALES = [0.25, 1 / 3, 0.5, 2 / 3, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0]
scales = st.one_of(st.sampled_from(NICE_SCALES), st.floats(0.3, 4.0, allow_nan=False))


@st.composite
def small_images(draw, dtype=None, max_side=9):
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    layout = draw(st.sampled_from(["2d", "c1", "c3"]))
    dt = dtype or draw(st.sampled_from(["uint8", "float64"]))
    shape = (h, w) if layout == "2d" else (h, w, 1 if layout == "c1" else 3)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if dt == "uint8":
        kind = draw(st.sampled_from(["random", "binary"]))  # 0/255 patterns overshoot and saturate
        if kind == "binary":
            return (rng.integers(0, 2, shape) * 255).astype(np.uint8)
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.uniform(0.0, 255.0, shape)


def _expected_size(shape, scale):
    return tuple(int(math.ceil(n * scale)) for n in shape[:2])


# --------------------------------------------------------------------------------------------------
# against the slow loop
# --------------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(img=small_images(), sh=scales, sw=scales, same=st.booleans())
@example(img=np.arange(36, dtype=np.uint8).reshape(6, 6) * 7, sh=0.5, sw=0.5, same=True)
@example(img=np.full((5, 7, 3), 200, np.uint8), sh=3.0, sw=1 / 3, same=False)
def test_matches_slow_loop_with_scale(img, sh, sw, same):
    if same:
        sw = sh
    got = imresize(img, sh if same else (sh, sw))
    oh, ow = _expected_size(img.shape, sh)[0], _expected_size(img.shape, sw)[1]
    want = slow_imresize(img, sh, sw, oh, ow)
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(img=small_images(), oh=st.integers(1, 14), ow=st.integers(1, 14))
def test_matches_slow_loop_with_output_shape(img, oh, ow):
    got = imresize(img, output_shape=(oh, ow))
    want = slow_imresize(img, oh / img.shape[0], ow / img.shape[1], oh, ow)
    assert got.shape[:2] == (oh, ow)
    np.testing.assert_array_equal(got, want)


def test_signed_integers_round_half_away_from_zero():
    rng = np.random.default_rng(3)
    img = rng.integers(-300, 300, (6, 5)).astype(np.int16)
    for s in (0.5, 2.0, 0.7):
        got = imresize(img, s)
        assert got.dtype == np.int16
        oh, ow = _expected_size(img.shape, s)
        np.testing.assert_array_equal(got, slow_imresize(img, s, s, oh, ow))


def test_larger_image_matches_slow_loop():
    """A 24x20 RGB image at the protocol's scales, to cover multi-block passes and borders."""
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (24, 18, 3), dtype=np.uint8)
    for s in (0.5, 1 / 3, 0.25, 2.0, 3.0):
        oh, ow = _expected_size(img.shape, s)
        np.testing.assert_array_equal(imresize(img, s), slow_imresize(img, s, s, oh, ow))


def test_wide_image_with_many_column_blocks():
    """Rows longer than one compute block (32767 elements) are split into column blocks."""
    rng = np.random.default_rng(11)
    img = rng.integers(0, 256, (3, 12000, 3), dtype=np.uint8)  # a row of 36000 values
    got = imresize(img, (2.0, 1.0))
    # rows of a pure row-resize are independent per column: compare a few columns with the loop
    cols = [0, 1, 5000, 11999]
    want = slow_imresize(img[:, cols], 2.0, 1.0, 6, len(cols))
    np.testing.assert_array_equal(got[:, cols], want)


# --------------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------------
@given(
    value=st.integers(0, 255),
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    c=st.sampled_from([None, 1, 3]),
    scale=scales,
)
def test_constant_image_stays_constant(value, h, w, c, scale):
    shape = (h, w) if c is None else (h, w, c)
    img = np.full(shape, value, np.uint8)
    out = imresize(img, scale)
    assert out.dtype == np.uint8
    assert np.all(out == value)
    f = imresize(img.astype(np.float64), scale)
    assert f.dtype == np.float64
    np.testing.assert_allclose(f, float(value), rtol=0, atol=1e-12 * max(value, 1))


@given(h=st.integers(1, 40), w=st.integers(1, 40), sh=scales, sw=scales)
def test_output_size_is_ceil(h, w, sh, sw):
    img = np.zeros((h, w), np.uint8)
    assert imresize(img, (sh, sw)).shape == (math.ceil(h * sh), math.ceil(w * sw))
    assert imresize(img, sh).shape == (math.ceil(h * sh), math.ceil(w * sh))


def _overshoot(in_len, out_len, scale):
    """Largest total negative weight of a row: the output of values in [a, b] stays within
    [a - N (b - a), b + N (b - a)]."""
    w, _ = contributions(in_len, out_len, scale)
    return float(np.max(-np.sum(np.minimum(w, 0.0), axis=1)))


@given(img=small_images(max_side=12), sh=scales, sw=scales)
def test_values_stay_within_the_kernel_bound(img, sh, sw):
    """Float results stay within the input range widened by the kernel's negative lobes (pass by
    pass); uint8 results are additionally saturated to 0..255 (and stay uint8)."""
    out = imresize(img, (sh, sw))
    a, b = float(img.min()), float(img.max())
    (oh, ow), (h, w) = out.shape[:2], img.shape[:2]
    order = [(h, oh, sh), (w, ow, sw)] if sh <= sw else [(w, ow, sw), (h, oh, sh)]
    for n_in, n_out, s in order:
        n = _overshoot(n_in, n_out, s)
        a, b = a - n * (b - a), b + n * (b - a)
        if img.dtype == np.uint8:
            a, b = max(0.0, math.floor(a)), min(255.0, math.ceil(b))
    assert out.dtype == (np.uint8 if img.dtype == np.uint8 else np.float64)
    tol = 1e-9 * 255
    assert float(out.min()) >= a - tol and float(out.max()) <= b + tol
    if img.dtype == np.uint8:
        assert int(out.min()) >= 0 and int(out.max()) <= 255


def test_saturation_happens():
    """A 0/255 checkerboard overshoots: the float result leaves [0, 255], the uint8 one is clipped."""
    img = (np.indices((8, 8)).sum(0) % 2 * 255).astype(np.uint8)
    f = imresize(img.astype(np.float64), 1.5)
    assert f.min() < 0 and f.max() > 255
    u = imresize(img, 1.5)
    assert u.min() == 0 and u.max() == 255


@given(img=small_images(dtype="float64", max_side=12), oh=st.integers(1, 20), ow=st.integers(1, 20))
def test_flip_commutes_float(img, oh, ow):
    """With ``output_shape`` (scale = out / in) the coordinate map is mirror-symmetric, so a
    horizontal (and vertical) flip commutes with resizing, up to float rounding."""
    out = imresize(img, output_shape=(oh, ow))
    np.testing.assert_allclose(imresize(img[:, ::-1], output_shape=(oh, ow)), out[:, ::-1], atol=1e-9)
    np.testing.assert_allclose(imresize(img[::-1], output_shape=(oh, ow)), out[::-1], atol=1e-9)


@given(
    img=small_images(dtype="uint8", max_side=6),
    k=st.sampled_from([2, 3, 4]),
    up=st.booleans(),
)
def test_flip_commutes_uint8_exactly(img, k, up):
    """At the protocol's scales the uint8 result is exactly flip-symmetric: at x2 / x4 all the
    arithmetic is exact (dyadic weights), at x3 no value can be a rounding tie."""
    if not up:
        img = np.tile(img, (k, k) + (1,) * (img.ndim - 2))  # sides divisible by k
    s = float(k) if up else 1.0 / k
    out = imresize(img, s)
    np.testing.assert_array_equal(imresize(np.ascontiguousarray(img[:, ::-1]), s), out[:, ::-1])
    np.testing.assert_array_equal(imresize(np.ascontiguousarray(img[::-1]), s), out[::-1])


@given(img=small_images(max_side=8), scale=scales)
def test_channels_are_independent(img, scale):
    """HxWxC resizes each channel as its own HxW image."""
    assume(img.ndim == 3)
    out = imresize(img, scale)
    for c in range(img.shape[2]):
        np.testing.assert_array_equal(out[:, :, c], imresize(img[:, :, c], scale))


def test_float32_input_gives_float64():
    img = np.linspace(0, 255, 30, dtype=np.float32).reshape(5, 6)
    out = imresize(img, 2)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, imresize(img.astype(np.float64), 2))


def test_non_contiguous_and_readonly_input():
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    view = base[::2, ::3, :3]  # strided, not contiguous
    view.setflags(write=False)
    np.testing.assert_array_equal(imresize(view, 0.5), imresize(np.ascontiguousarray(view), 0.5))


def test_scale_one_is_identity():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(imresize(img, 1), img)
    f = rng.uniform(-5, 300, (7, 9))
    np.testing.assert_array_equal(imresize(f, 1.0), f)


def test_results_do_not_alias_work_buffers():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (12, 12), dtype=np.uint8)
    first = imresize(a, 0.5)
    keep = first.copy()
    imresize(rng.integers(0, 256, (12, 12), dtype=np.uint8), 0.5)
    np.testing.assert_array_equal(first, keep)


def test_contributions_match_matlab_example():
    """imresize(1:4 row, 0.5): output u = 2x - 0.5; kernel 0.5*k(0.5*d) over 8 taps."""
    w, idx = contributions(4, 2, 0.5)
    assert w.shape == idx.shape
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    # the first output pixel reads mirrored indices around the left border
    assert list(idx[0]) == [2, 1, 0, 0, 1, 2, 3, 3]
    np.testing.assert_array_equal(
        w[0], np.array([-0.0234375, -0.0703125, 0.2265625, 0.8671875, 0.8671875, 0.2265625,
                        -0.0703125, -0.0234375]) / 2
    )
    assert not w.flags.writeable


# --------------------------------------------------------------------------------------------------
# rounding helper
# --------------------------------------------------------------------------------------------------
@given(st.floats(0.0, 2.0**40, allow_nan=False))
@example(0.49999999999999994)
@example(0.5)
@example(2.5)
@example(254.5)
@example(1.4999999999999998)
@example(float(np.nextafter(254.5, 0)))
def test_floor_plus_half_down_is_exact_half_up(x):
    exact = Fraction(x) + Fraction(1, 2)
    assert math.floor(x + _HALF_DOWN) == math.floor(exact)


# --------------------------------------------------------------------------------------------------
# modcrop and errors
# --------------------------------------------------------------------------------------------------
@given(h=st.integers(1, 30), w=st.integers(1, 30), s=st.integers(1, 5), c=st.sampled_from([None, 3]))
def test_modcrop(h, w, s, c):
    img = np.arange(h * w * (c or 1)).reshape((h, w) if c is None else (h, w, c))
    if h < s or w < s:
        with pytest.raises(InputError):
            modcrop(img, s)
        return
    out = modcrop(img, s)
    assert out.shape[:2] == (h - h % s, w - w % s)
    np.testing.assert_array_equal(out, img[: out.shape[0], : out.shape[1]])  # top-left anchored


@pytest.mark.parametrize("bad", [0, -2, 0.0, float("nan"), float("inf"), -0.5, "2", None, True])
def test_bad_scale_is_refused_naming_it(bad):
    img = np.zeros((4, 4), np.uint8)
    if bad is None:
        with pytest.raises(InputError, match="exactly one"):
            imresize(img)
        return
    with pytest.raises(InputError) as err:
        imresize(img, bad)
    assert repr(bad) in str(err.value) or str(bad) in str(err.value)


@pytest.mark.parametrize("bad", [(0, 0.5), (0.5, float("nan")), (1, 2, 3), ()])
def test_bad_scale_pair(bad):
    with pytest.raises(InputError):
        imresize(np.zeros((4, 4)), bad)


@pytest.mark.parametrize("bad", [(0, 3), (3, -1), (2.5, 3), (3,), "ab", (3, None)])
def test_bad_output_shape(bad):
    with pytest.raises(InputError):
        imresize(np.zeros((4, 4)), output_shape=bad)


def test_both_scale_and_output_shape_refused():
    with pytest.raises(InputError, match="exactly one"):
        imresize(np.zeros((4, 4)), 2, output_shape=(8, 8))


@pytest.mark.parametrize(
    "img", [np.zeros((0, 4)), np.zeros((4, 0, 3)), np.zeros((4, 4, 0)), np.zeros(5), np.zeros((2, 2, 2, 2))]
)
def test_bad_image_refused(img):
    with pytest.raises(InputError) as err:
        imresize(img, 2)
    assert str(img.shape) in str(err.value)


def test_bool_and_complex_refused():
    with pytest.raises(InputError, match="bool"):
        imresize(np.zeros((3, 3), bool), 2)
    with pytest.raises(InputError, match="complex"):
        imresize(np.zeros((3, 3), complex), 2)


def test_tiny_scale_refused():
    with pytest.raises(InputError, match="too small"):
        imresize(np.zeros((4, 4)), 1e-9)


# ---- replicate-border downscaling (SelfExSR's LR copies; shared/data/benchmarks/README.md) ---------------------
def test_downscale_replicate_differs_from_matlab_only_at_the_border():
    from nasengine.sr.resize import downscale_replicate

    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, size=(40, 36, 3), dtype=np.uint8)
    for scale, inner in ((2, 2), (3, 2), (4, 2)):
        h = modcrop(hr, scale)
        a, b = downscale_replicate(h, scale), imresize(h, 1 / scale)
        assert a.shape == b.shape and a.dtype == np.uint8
        np.testing.assert_array_equal(a[inner:-inner, inner:-inner], b[inner:-inner, inner:-inner])
        assert (a != b).any()
    # the same as resizing an image whose outside repeats its edge: a constant image stays constant
    flat = np.full((12, 10), 77.25)
    np.testing.assert_array_equal(downscale_replicate(flat, 2), np.full((6, 5), 77.25))
    with pytest.raises(ValueError, match="dividing the image size"):
        downscale_replicate(hr[:39], 2)
