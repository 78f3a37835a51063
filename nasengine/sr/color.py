"""MATLAB ``rgb2ycbcr`` / ``ycbcr2rgb`` (ITU-R BT.601, studio swing) and the SR protocol's Y channel.

Value conventions (the same for every function here):

* ``uint8`` images hold 0..255. ``rgb2ycbcr`` gives ``uint8`` Y in 16..235 and Cb, Cr in 16..240,
  rounded half away from zero as MATLAB does on ``uint8`` input; ``ycbcr2rgb`` gives ``uint8`` RGB,
  rounded and saturated to 0..255.
* Float images (any float dtype) are on the **same 0..255 scale** (not MATLAB's 0..1) and give
  ``float64`` results on that scale, never rounded: ``rgb2ycbcr(x.astype(float))`` equals MATLAB's
  ``255 * rgb2ycbcr(x / 255)``, and the float ``ycbcr2rgb`` clips to [0, 255] as MATLAB clips to
  [0, 1]. Float values are not range-checked.
* Other dtypes are refused with :class:`~nasengine.errors.InputError`.

The forward transform (PROTOCOL.md section 4)::

    Y  =  16 + ( 65.481 R + 128.553 G +  24.966 B) / 255
    Cb = 128 + (-37.797 R -  74.203 G + 112.000 B) / 255
    Cr = 128 + (112.000 R -  93.786 G -  18.214 B) / 255

For ``uint8`` input it is evaluated *exactly* in integers (the coefficients are whole thousandths) and
then rounded half up. MATLAB evaluates it in double precision; both agree except on the exact
ties (e.g. Y = 125.5 for RGB (0, 204, 68)): 194 of the 16.7 million colours for Y, where double
rounding noise decides MATLAB's result either way. The inverse uses the inverse matrix in double
precision, as MATLAB does.

:func:`rgb_to_y` is the evaluation protocol's luma: the rounded ``uint8`` Y of a ``uint8`` RGB
image (float64 Y, unrounded, for float input); a single-channel image is its own Y.
"""
from __future__ import annotations

import numpy as np

from nasengine.errors import InputError

__all__ = ["rgb2ycbcr", "ycbcr2rgb", "rgb_to_y", "YCBCR_MATRIX", "YCBCR_OFFSET"]

#: BT.601 studio-swing matrix of MATLAB ``rgb2ycbcr``, for R, G, B in [0, 1] -> Y, Cb, Cr in 0..255.
YCBCR_MATRIX = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]
)
#: Offsets added after the matrix (Y, Cb, Cr), on the 0..255 scale.
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])

# The matrix in integer thousandths, for the exact uint8 path. Every row sum of |coefficients| is at
# most 219,000, so numerators stay below 2**31 / 4 even with the offsets.
_MATRIX_MILLI = np.array(
    [[65481, 128553, 24966], [-37797, -74203, 112000], [112000, -93786, -18214]], dtype=np.int64
)
_OFFSET_MILLI_255 = np.array([16, 128, 128], dtype=np.int64) * 255_000  # offsets * 255 * 1000
_DEN = 255_000  # value = numerator / _DEN

# Inverse, as MATLAB ycbcr2rgb: rgb = 255 * inv(T) * (ycbcr - offset) on the 0..255 scale.
_INV255 = 255.0 * np.linalg.inv(YCBCR_MATRIX)
_INV_OFFSET = _INV255 @ YCBCR_OFFSET


def _check(img, what: str, *, channels3: bool) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype == np.bool_ or not (a.dtype == np.uint8 or np.issubdtype(a.dtype, np.floating)):
        raise InputError(f"{what}: expected a uint8 or float image, got dtype {a.dtype}")
    if channels3 and (a.ndim != 3 or a.shape[2] != 3):
        raise InputError(f"{what}: expected an HxWx3 image, got shape {a.shape}")
    return a


def _exact_uint8(a: np.ndarray, rows: slice) -> np.ndarray:
    """Rows ``rows`` of the forward transform of uint8 ``a`` (HxWx3), exactly, rounded half up.
    All numerators are positive (the offsets dominate), so floor division rounds correctly."""
    x = a.astype(np.int32)
    m = _MATRIX_MILLI[rows]
    off = _OFFSET_MILLI_255[rows]
    out = np.empty(a.shape[:2] + (m.shape[0],), dtype=np.uint8)
    for i in range(m.shape[0]):
        num = x[..., 0] * int(m[i, 0])
        num += x[..., 1] * int(m[i, 1])
        num += x[..., 2] * int(m[i, 2])
        num += int(off[i])
        # round half up of num / _DEN: floor((2 num + _DEN) / (2 _DEN)); num >= 4,080,000 > 0
        num *= 2
        num += _DEN
        num //= 2 * _DEN
        out[..., i] = num
    return out


def rgb2ycbcr(img) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` of an HxWx3 RGB image (see the module docstring for the value
    conventions): ``uint8`` in -> ``uint8`` Y in 16..235, Cb / Cr in 16..240, rounded half up
    exactly; float (0..255 scale) in -> ``float64`` on the same scale, not rounded."""
    a = _check(img, "rgb2ycbcr", channels3=True)
    if a.dtype == np.uint8:
        return _exact_uint8(a, slice(0, 3))
    x = a.astype(np.float64, copy=False)
    return x @ (YCBCR_MATRIX.T / 255.0) + YCBCR_OFFSET


def ycbcr2rgb(img) -> np.ndarray:
    """MATLAB ``ycbcr2rgb`` of an HxWx3 Y/Cb/Cr image: ``uint8`` in -> ``uint8`` RGB (rounded half
    away from zero, saturated to 0..255); float (0..255 scale) in -> ``float64`` RGB on the 0..255
    scale, clipped to [0, 255] (as MATLAB clips its 0..1 float output)."""
    a = _check(img, "ycbcr2rgb", channels3=True)
    x = a.astype(np.float64, copy=False)
    rgb = x @ _INV255.T - _INV_OFFSET
    np.clip(rgb, 0.0, 255.0, out=rgb)
    if a.dtype == np.uint8:
        # values are >= 0 after the clip: round half up = floor(v + 0.5 - tiny) exactly
        rgb += 0.49999999999999994
        np.floor(rgb, out=rgb)
        return rgb.astype(np.uint8)
    return rgb


def rgb_to_y(img) -> np.ndarray:
    """The protocol's luma channel (BT.601 studio-swing Y, MATLAB ``rgb2ycbcr``), ``HxW``.

    * ``HxWx3`` ``uint8`` RGB -> ``uint8`` Y in 16..235, rounded half up (exact integer arithmetic);
    * ``HxWx3`` float RGB on the 0..255 scale -> ``float64`` Y on the same scale, not rounded;
    * a single-channel image (``HxW`` or ``HxWx1``) is its own Y and is returned as ``HxW``
      (unchanged values and dtype; a view of the input when possible).

    A model that works on Y gets ``rgb_to_y(x) / 255`` (the FALSR / protocol convention)."""
    a = np.asarray(img)
    if a.ndim == 2:
        _check(a, "rgb_to_y", channels3=False)
        return a
    if a.ndim == 3 and a.shape[2] == 1:
        _check(a, "rgb_to_y", channels3=False)
        return a[:, :, 0]
    a = _check(a, "rgb_to_y", channels3=True)
    if a.dtype == np.uint8:
        return _exact_uint8(a, slice(0, 1))[:, :, 0]
    x = a.astype(np.float64, copy=False)
    return (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0 + 16.0
