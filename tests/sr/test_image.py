"""nasengine.sr.image: every supported Pillow mode, the refused ones, and broken files."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from nasengine.errors import DataError, ImageError, InputError
from nasengine.sr.image import (
    ImageWarning,
    image_size,
    list_images,
    load_image,
    load_rgb,
    save_image,
)

RNG = np.random.default_rng(1234)


def rgb(h=12, w=17):
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def grey(h=12, w=17):
    return RNG.integers(0, 256, size=(h, w), dtype=np.uint8)


def expected_8bit(v: np.ndarray) -> np.ndarray:
    """round(v * 255 / 65535) in floating point (v / 257 is never exactly a half)."""
    return np.round(v.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)


def assert_names(exc_info, path):
    assert str(path) in str(exc_info.value)
    assert exc_info.value.path == str(path)


# ---- supported modes ---------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["png", "bmp", "tif", "tiff", "webp"])
def test_rgb_lossless_formats_round_trip(tmp_path, ext):
    a = rgb()
    path = tmp_path / f"x.{ext}"
    if ext == "webp":
        Image.fromarray(a).save(path, lossless=True)
    else:
        Image.fromarray(a).save(path)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == a.shape
    np.testing.assert_array_equal(out, a)


def test_jpeg_reads_as_rgb(tmp_path):
    yy, xx = np.mgrid[0:32, 0:40]
    a = np.dstack([yy * 7, xx * 6, (yy + xx) * 3]).astype(np.uint8)  # smooth: JPEG keeps it close
    Image.fromarray(a).save(tmp_path / "x.JPG", quality=95)
    out = load_image(tmp_path / "x.JPG")
    assert out.shape == (32, 40, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - a.astype(int)).mean() < 3


def test_grey_l_is_hxw(tmp_path):
    a = grey()
    Image.fromarray(a).save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == a.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, a)
    both = load_rgb(tmp_path / "g.png")
    assert both.shape == a.shape + (3,)
    for c in range(3):
        np.testing.assert_array_equal(both[..., c], a)


def test_one_bit(tmp_path):
    bits = RNG.integers(0, 2, size=(9, 13)).astype(bool)
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    out = load_image(tmp_path / "b.png")
    np.testing.assert_array_equal(out, np.where(bits, 255, 0).astype(np.uint8))


SIXTEEN = np.array([[0, 1, 128, 129, 255, 256], [32767, 32768, 65279, 65406, 65407, 65535]], np.uint16)


def test_sixteen_bit_png_i16(tmp_path):
    Image.fromarray(SIXTEEN).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    out = load_image(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out.shape == SIXTEEN.shape
    np.testing.assert_array_equal(out, expected_8bit(SIXTEEN))
    assert out[0].tolist() == [0, 0, 0, 1, 1, 1] and out[1, -1] == 255


def test_sixteen_bit_big_endian_tiff(tmp_path):
    img = Image.frombytes("I;16B", SIXTEEN.shape[::-1], SIXTEEN.astype(">u2").tobytes())
    img.save(tmp_path / "g16b.tif")
    assert Image.open(tmp_path / "g16b.tif").mode == "I;16B"
    np.testing.assert_array_equal(load_image(tmp_path / "g16b.tif"), expected_8bit(SIXTEEN))


def test_32bit_int_mode_i_read_as_16bit(tmp_path):
    Image.fromarray(SIXTEEN.astype(np.int32)).save(tmp_path / "gi.tif")
    assert Image.open(tmp_path / "gi.tif").mode == "I"
    np.testing.assert_array_equal(load_image(tmp_path / "gi.tif"), expected_8bit(SIXTEEN))


def test_mode_i_out_of_16bit_range_refused(tmp_path):
    a = np.array([[-5, 70000]], np.int32)
    path = tmp_path / "neg.tif"
    Image.fromarray(a).save(path)
    with pytest.raises(ImageError, match="0..65535") as exc:
        load_image(path)
    assert_names(exc, path)


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.uint16, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8)))
def test_sixteen_bit_rounding_property(tmp_path_factory, a):
    path = tmp_path_factory.mktemp("h16") / "x.png"
    Image.fromarray(np.ascontiguousarray(a)).save(path)
    np.testing.assert_array_equal(load_image(path), expected_8bit(a))


def test_rgba_opaque_is_rgb_without_warning(tmp_path):
    a = rgb()
    rgba = np.dstack([a, np.full(a.shape[:2], 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "o.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = load_image(tmp_path / "o.png")
    np.testing.assert_array_equal(out, a)


def test_rgba_alpha_dropped_with_warning(tmp_path):
    a = rgb()
    alpha = RNG.integers(0, 256, size=a.shape[:2], dtype=np.uint8)
    alpha[0, 0] = 0
    Image.fromarray(np.dstack([a, alpha])).save(tmp_path / "t.png")
    with pytest.warns(ImageWarning, match="alpha"):
        out = load_image(tmp_path / "t.png")
    np.testing.assert_array_equal(out, a)  # colours kept, not composited


def test_la_alpha_dropped(tmp_path):
    g = grey()
    alpha = np.full(g.shape, 255, np.uint8)
    alpha[1, 2] = 3
    Image.fromarray(np.dstack([g, alpha])).save(tmp_path / "la.png")
    assert Image.open(tmp_path / "la.png").mode == "LA"
    with pytest.warns(ImageWarning):
        out = load_image(tmp_path / "la.png")
    np.testing.assert_array_equal(out, g)


def test_palette_is_rgb(tmp_path):
    palette = RNG.integers(0, 256, size=(256, 3), dtype=np.uint8)
    idx = RNG.integers(0, 256, size=(10, 14), dtype=np.uint8)
    img = Image.frombytes("P", (14, 10), idx.tobytes())
    img.putpalette(palette.tobytes())
    img.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = load_image(tmp_path / "p.png")
    assert out.shape == (10, 14, 3)
    np.testing.assert_array_equal(out, palette[idx])


def test_palette_with_transparency(tmp_path):
    palette = RNG.integers(0, 256, size=(4, 3), dtype=np.uint8)
    idx = RNG.integers(0, 4, size=(6, 7), dtype=np.uint8)
    idx[0, 0] = 2
    img = Image.frombytes("P", (7, 6), idx.tobytes())
    img.putpalette(palette.tobytes())
    img.save(tmp_path / "pt.png", transparency=2)
    with pytest.warns(ImageWarning):
        out = load_image(tmp_path / "pt.png")
    np.testing.assert_array_equal(out, palette[idx])


def test_gif_palette(tmp_path):
    a = rgb(8, 8)
    Image.fromarray(a).quantize(16).save(tmp_path / "q.gif")
    out = load_image(tmp_path / "q.gif")
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8


def test_cmyk_to_rgb(tmp_path):
    cmyk = RNG.integers(0, 256, size=(7, 9, 4), dtype=np.uint8)
    img = Image.frombytes("CMYK", (9, 7), cmyk.tobytes())
    img.save(tmp_path / "c.tif")
    out = load_image(tmp_path / "c.tif")
    np.testing.assert_array_equal(out, np.asarray(img.convert("RGB")))
    white = Image.frombytes("CMYK", (1, 1), bytes(4))
    white.save(tmp_path / "w.tif")
    assert load_image(tmp_path / "w.tif").tolist() == [[[255, 255, 255]]]


@pytest.mark.parametrize("mode,maker", [
    ("F", lambda: Image.fromarray(np.ones((4, 5), np.float32))),
    ("YCbCr", lambda: Image.new("YCbCr", (5, 4))),
])
def test_unsupported_mode_refused(tmp_path, mode, maker):
    path = tmp_path / f"u_{mode}.tif"
    maker().save(path)
    if Image.open(path).mode != mode:  # pragma: no cover - depends on Pillow's TIFF writer
        pytest.skip(f"Pillow wrote {Image.open(path).mode}, not {mode}")
    with pytest.raises(ImageError, match="unsupported image mode") as exc:
        load_image(path)
    assert_names(exc, path)
    assert repr(mode) in str(exc.value)


# ---- broken input ------------------------------------------------------------------------------
def test_truncated_png(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    bad = tmp_path / "truncated.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as exc:
        load_image(bad)
    assert_names(exc, bad)
    assert "truncated" in str(exc.value) or "corrupt" in str(exc.value)


def test_truncated_jpeg(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(good.read_bytes()[:400])
    with pytest.raises(ImageError) as exc:
        load_image(bad)
    assert_names(exc, bad)


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageError, match="not an image") as exc:
        load_image(path)
    assert_names(exc, path)
    with pytest.raises(ImageError):
        image_size(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError, match="no such file") as exc:
        load_rgb(path)
    assert_names(exc, path)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="directory") as exc:
        load_image(tmp_path)
    assert_names(exc, tmp_path)


def test_image_error_is_an_input_error(tmp_path):
    with pytest.raises(InputError):
        load_image(tmp_path / "missing.png")


# ---- saving ------------------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(
    hnp.arrays(
        np.uint8,
        st.tuples(st.integers(1, 9), st.integers(1, 9)).flatmap(
            lambda hw: st.sampled_from([hw, hw + (1,), hw + (3,)])
        ),
    )
)
def test_save_load_round_trip(tmp_path_factory, a):
    path = tmp_path_factory.mktemp("rt") / "sub" / "dir" / "x.png"
    save_image(path, a)
    out = load_image(path)
    np.testing.assert_array_equal(out, a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a)


def test_save_creates_parents_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a" / "b" / "c.bmp"
    assert save_image(path, rgb()) == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.bmp"]


def test_save_rejects_bad_arrays(tmp_path):
    with pytest.raises(InputError, match="uint8"):
        save_image(tmp_path / "f.png", np.zeros((4, 4), np.float32))
    with pytest.raises(InputError, match=r"\(4, 4, 2\)"):
        save_image(tmp_path / "f.png", np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match="suffix") as exc:
        save_image(tmp_path / "f.xyz", np.zeros((4, 4), np.uint8))
    assert_names(exc, tmp_path / "f.xyz")


def test_image_size_reads_header(tmp_path):
    save_image(tmp_path / "s.png", np.zeros((5, 7, 3), np.uint8))
    assert image_size(tmp_path / "s.png") == (5, 7)


# ---- listing -----------------------------------------------------------------------------------
def test_list_images_sorted_case_insensitive(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.JpEg", "d.bmp", "e.TIF", "f.tiff", "g.webp"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "readme.txt").write_text("no")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["a.jpg", "b.PNG", "c.JpEg", "d.bmp", "e.TIF", "f.tiff", "g.webp"]


def test_list_images_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="no such folder") as exc:
        list_images(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(exc.value)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DataError, match="not a folder"):
        list_images(tmp_path / "file.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no image files") as exc:
        list_images(empty)
    assert str(empty) in str(exc.value)
