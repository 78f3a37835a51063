"""Image files in and out (Pillow), as ``uint8`` numpy arrays.

* :func:`load_image` -- ``HxW`` for single-channel files, ``HxWx3`` for everything else.
* :func:`load_rgb` -- always ``HxWx3`` (a single-channel image is replicated to R = G = B, as the
  FALSR / EDSR loaders and the evaluation protocol do).
* :func:`save_image` -- ``HxW``, ``HxWx1`` or ``HxWx3`` ``uint8``; the format follows the suffix.
* :func:`list_images` -- the image files of a folder, sorted.
* :func:`image_size` -- ``(height, width)`` from the file header, without decoding the pixels.

How each Pillow mode is turned into 8-bit pixels (everything else is refused with an
:class:`~nasengine.errors.ImageError` that names the mode):

=====================  =====================================================================
``L``                  as is, ``HxW``
``1`` (1-bit)          0 -> 0, 1 -> 255, ``HxW``
``I;16`` / ``I;16B``   16-bit grey: ``round(v * 255 / 65535)`` (no ties are possible), ``HxW``.
``I;16L`` / ``I;16N``
``I`` (32-bit int)     read as 16-bit grey (same formula); values outside 0..65535 are refused
``LA``                 alpha dropped, grey kept, ``HxW``
``RGB``                as is
``RGBA`` / ``PA``      alpha **dropped**: the stored colour values are kept, nothing is
                       composited (what imageio/OpenCV-based SR loaders do, and the identity
                       for the usual fully opaque files). An :class:`ImageWarning` is issued
                       when some pixel is not fully opaque.
``P`` (palette)        palette looked up -> RGB (a transparent palette entry: its colour is
                       kept, with the same warning), ``HxWx3`` even for a grey palette
``RGBX``               padding byte dropped
``CMYK``               Pillow's CMYK -> RGB conversion
=====================  =====================================================================

The pixels are returned as stored: EXIF orientation is *not* applied (like MATLAB ``imread``), and
for a multi-frame file (GIF, multi-page TIFF) the first frame is used. 16-bit *colour* PNGs are
reduced to 8 bits by Pillow itself (it keeps the high byte) before this module sees them.

Every file is fully decoded (``Image.load``) so that a truncated or corrupt file fails here with an
``ImageError`` naming it, not later with a cryptic error. (This relies on Pillow's default
``ImageFile.LOAD_TRUNCATED_IMAGES = False``.)
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from nasengine.errors import DataError, ImageError, InputError
from nasengine.fileio import default_file_mode, os_error_text

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageWarning",
    "load_image",
    "load_rgb",
    "save_image",
    "list_images",
    "image_size",
]

#: Suffixes (lower case) that :func:`list_images` treats as images.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


class ImageWarning(UserWarning):
    """Something was dropped while reading an image (e.g. a non-opaque alpha channel)."""


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageError(path, "no such file")
    if path.is_dir():
        raise ImageError(path, "is a directory, not an image file")


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except Image.UnidentifiedImageError:
        raise ImageError(path, "not an image file, or an image format Pillow cannot read") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"refused as too large: {exc}") from exc
    except Exception as exc:  # OSError (permissions, ...), SyntaxError from some plugins, ...
        raise ImageError(path, f"cannot open: {exc}") from exc


def _sixteen_to_eight(a: np.ndarray) -> np.ndarray:
    """round(v * 255 / 65535) = round(v / 257) exactly, in integers; v / 257 is never a half."""
    v = a.astype(np.int64)
    return ((2 * v + 257) // 514).astype(np.uint8)


def _drop_alpha(path: Path, a: np.ndarray, keep: int) -> np.ndarray:
    alpha = a[..., -1]
    if alpha.size and int(alpha.min()) < 255:
        warnings.warn(
            f"{path}: alpha channel dropped (the stored colours are used, not composited)",
            ImageWarning,
            stacklevel=3,
        )
    return a[..., :keep]


def _to_uint8(path: Path, img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
        mode = img.mode
    if mode == "L":
        out = np.asarray(img, dtype=np.uint8)
    elif mode == "1":
        out = np.asarray(img.convert("L"), dtype=np.uint8)
    elif mode in _SIXTEEN_BIT:
        out = _sixteen_to_eight(np.asarray(img))
    elif mode == "I":
        a = np.asarray(img)
        if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
            raise ImageError(
                path,
                f"32-bit integer image (mode 'I') with values {int(a.min())}..{int(a.max())}; "
                "only 0..65535 (16-bit data) is supported",
            )
        out = _sixteen_to_eight(a)
    elif mode == "LA":
        out = _drop_alpha(path, np.asarray(img, dtype=np.uint8), 1)[..., 0]
    elif mode == "RGB":
        out = np.asarray(img, dtype=np.uint8)
    elif mode == "RGBA":
        out = _drop_alpha(path, np.asarray(img, dtype=np.uint8), 3)
    elif mode == "RGBX":
        out = np.asarray(img, dtype=np.uint8)[..., :3]
    elif mode == "CMYK":
        out = np.asarray(img.convert("RGB"), dtype=np.uint8)
    else:
        raise ImageError(
            path,
            f"unsupported image mode {mode!r} (supported: L, 1, I;16, I;16B, I, LA, RGB, RGBA, "
            "RGBX, P, PA, CMYK)",
        )
    return np.ascontiguousarray(out)


def load_image(path) -> np.ndarray:
    """Read an image file into a ``uint8`` array: ``HxW`` for single-channel files (grey, 1-bit,
    16-bit grey, grey + alpha), ``HxWx3`` for everything else. See the module docstring for the
    per-mode rules. Raises :class:`~nasengine.errors.ImageError` naming the file if it is missing,
    not an image, truncated/corrupt or of an unsupported mode."""
    path = Path(path)
    _check_file(path)
    img = _open(path)
    try:
        with img:
            try:
                img.load()
            except Exception as exc:
                raise ImageError(path, f"corrupt or truncated image data ({exc})") from exc
            return _to_uint8(path, img)
    except ImageError:
        raise
    except Exception as exc:  # a conversion that fails on a malformed file
        raise ImageError(path, f"cannot decode: {exc}") from exc


def load_rgb(path) -> np.ndarray:
    """:func:`load_image` as ``HxWx3 uint8``; a single-channel image is replicated to R = G = B."""
    a = load_image(path)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return a


def image_size(path) -> tuple[int, int]:
    """``(height, width)`` read from the file header (the pixels are not decoded)."""
    path = Path(path)
    _check_file(path)
    img = _open(path)
    with img:
        w, h = img.size
    return int(h), int(w)


def save_image(path, array) -> Path:
    """Write a ``uint8`` ``HxW``, ``HxWx1`` or ``HxWx3`` array; the format follows the suffix
    (PNG recommended: lossless; JPEG is written with quality 95 and no chroma subsampling).
    Parent folders are created; the file is written to a temporary name and then renamed, so a
    crash never leaves a half-written image. Returns the path."""
    path = Path(path)
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise InputError(f"save_image({path}): expected a uint8 array, got dtype {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) or a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(
            f"save_image({path}): expected a non-empty HxW, HxWx1 or HxWx3 array, got shape {a.shape}"
        )
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ImageError(path, f"unknown image file suffix {path.suffix!r}; use e.g. .png")
    img = Image.fromarray(np.ascontiguousarray(a))
    options = {"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                img.save(fh, format=fmt, **options)
            os.chmod(tmp, default_file_mode())  # mkstemp made it 0600: give it the mode the umask asks for
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise ImageError(path, f"cannot write ({os_error_text(exc)})") from None
    except (KeyError, ValueError) as exc:
        raise ImageError(path, f"cannot write as {fmt}: {exc}") from exc
    return path


def list_images(folder) -> list[Path]:
    """The image files (``IMAGE_EXTENSIONS``, any case) directly inside ``folder``, sorted by name.
    Hidden files (``.name``) are ignored. Raises :class:`~nasengine.errors.DataError` naming the
    folder if it does not exist, is not a folder, or holds no image file."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )
    if not files:
        raise DataError(
            f"{folder}: no image files (looked for {', '.join(IMAGE_EXTENSIONS)}, any case)"
        )
    return files
