"""PSNR and SSIM as the SR evaluation protocol computes them (PROTOCOL.md sections 5-7).

* :func:`psnr` -- ``10 * log10(data_range**2 / MSE)`` over the whole (cropped) image, in float64.
  Identical images give ``inf`` (the MSE is 0); this is deliberate, so that an exact reconstruction
  is visible as such (a mean over a set that includes one is ``inf`` too). An image holding NaN
  gives NaN.
* :func:`ssim` -- Wang et al.'s reference ``ssim_index.m``: an 11x11 Gaussian window with
  sigma 1.5, normalised to sum 1; ``C1 = (0.01 * 255)**2``, ``C2 = (0.03 * 255)**2``; 'valid'
  filtering (no padding); the mean of the SSIM map; no automatic downsampling (unlike the later
  ``ssim.m``). Computed in float64 with the separable window.

Both take ``crop``: the number of pixels removed from *every* border of both images before
measuring (the protocol uses ``crop = scale``). The images are expected on the 0..255 scale (uint8 or
float; the SSIM constants assume it). The protocol measures on the rounded uint8 Y channel
(:func:`nasengine.sr.color.rgb_to_y`); averaging over a set is the caller's business (mean of the
per-image PSNR values, never of the MSE).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from nasengine.errors import InputError

__all__ = ["psnr", "ssim", "gaussian_window", "SSIM_WINDOW", "SSIM_SIGMA", "SSIM_C1", "SSIM_C2"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The 1-D factor ``g`` of MATLAB ``fspecial('gaussian', size, sigma)``: ``outer(g, g)`` is the
    normalised 2-D window (``g`` sums to 1)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


_G = gaussian_window()


def _pair(a, b, crop, what: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        raise InputError(f"{what}: the images differ in shape: {x.shape} vs {y.shape}")
    if x.ndim not in (2, 3):
        raise InputError(f"{what}: expected HxW or HxWxC images, got shape {x.shape}")
    for arr in (x, y):
        if arr.dtype == np.bool_ or not (
            np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
        ):
            raise InputError(f"{what}: expected numeric images, got dtype {arr.dtype}")
    if isinstance(crop, bool) or not isinstance(crop, numbers.Integral) or crop < 0:
        raise InputError(f"{what}: crop must be an integer >= 0, got {crop!r}")
    c = int(crop)
    h, w = x.shape[:2]
    if h - 2 * c <= 0 or w - 2 * c <= 0:
        raise InputError(f"{what}: crop={c} leaves nothing of an image of shape {x.shape}")
    if c:
        x, y = x[c : h - c, c : w - c], y[c : h - c, c : w - c]
    return x, y


def psnr(a, b, *, crop: int = 0, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB between two images of the same shape (HxW or HxWxC),
    after removing ``crop`` pixels at every border: ``10 * log10(data_range**2 / MSE)``, MSE over
    all remaining pixels and channels in float64. Identical images give ``float('inf')``.
    Raises :class:`~nasengine.errors.InputError` naming both shapes when they differ."""
    x, y = _pair(a, b, crop, "psnr")
    if isinstance(data_range, bool) or not isinstance(data_range, numbers.Real) or not (
        math.isfinite(float(data_range)) and float(data_range) > 0
    ):
        raise InputError(f"psnr: data_range must be a positive number, got {data_range!r}")
    d = x.astype(np.float64) - y.astype(np.float64)
    mse = float(np.mean(d * d))
    if mse == 0.0:
        return math.inf
    if math.isnan(mse):
        return math.nan
    return 10.0 * math.log10(float(data_range) ** 2 / mse)


def _filter_valid(img: np.ndarray) -> np.ndarray:
    """'valid' 2-D filtering of the float64 stack ``img`` (..., H, W) with ``outer(_G, _G)``,
    separably (rows, then columns). The window is symmetric (so correlation = convolution), which
    halves the multiplications: ``g[i] * (x[i] + x[k-1-i])``."""
    k = _G.size
    half = k // 2
    h, w = img.shape[-2:]
    oh, ow = h - k + 1, w - k + 1
    tmp = img[..., :, half : half + ow] * _G[half]
    pair = np.empty_like(tmp)
    for i in range(half):
        np.add(img[..., :, i : i + ow], img[..., :, k - 1 - i : k - 1 - i + ow], out=pair)
        pair *= _G[i]
        tmp += pair
    out = tmp[..., half : half + oh, :] * _G[half]
    pair = pair[..., :oh, :]
    for i in range(half):
        np.add(tmp[..., i : i + oh, :], tmp[..., k - 1 - i : k - 1 - i + oh, :], out=pair)
        pair *= _G[i]
        out += pair
    return out


def _ssim_2d(x: np.ndarray, y: np.ndarray) -> float:
    stack = np.empty((5,) + x.shape)
    stack[0] = x
    stack[1] = y
    np.multiply(stack[0], stack[0], out=stack[2])
    np.multiply(stack[1], stack[1], out=stack[3])
    np.multiply(stack[0], stack[1], out=stack[4])
    mu1, mu2, e11, e22, e12 = _filter_valid(stack)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = e11 - mu1_sq
    sigma2_sq = e22 - mu2_sq
    sigma12 = e12 - mu1_mu2
    num = (2.0 * mu1_mu2 + SSIM_C1) * (2.0 * sigma12 + SSIM_C2)
    den = (mu1_sq + mu2_sq + SSIM_C1) * (sigma1_sq + sigma2_sq + SSIM_C2)
    return float(np.mean(num / den))


def ssim(a, b, *, crop: int = 0) -> float:
    """Mean structural similarity (Wang et al. 2004, ``ssim_index.m``) of two images of the same
    shape, after removing ``crop`` pixels at every border. 11x11 Gaussian window (sigma 1.5,
    normalised), C1 = (0.01*255)^2, C2 = (0.03*255)^2, 'valid' filtering, mean of the map, no
    downsampling. For HxWxC images (C > 1) the SSIM of each channel is averaged; HxWx1 is HxW.
    The cropped images must be at least 11x11. Identical images give 1.0 (up to rounding).
    Raises :class:`~nasengine.errors.InputError` naming both shapes when they differ."""
    x, y = _pair(a, b, crop, "ssim")
    if x.shape[0] < SSIM_WINDOW or x.shape[1] < SSIM_WINDOW:
        raise InputError(
            f"ssim: the images must be at least {SSIM_WINDOW}x{SSIM_WINDOW} after cropping "
            f"{crop} px, got {x.shape[:2]} (from {np.shape(a)})"
        )
    if x.ndim == 2:
        return _ssim_2d(x, y)
    return float(np.mean([_ssim_2d(x[:, :, c], y[:, :, c]) for c in range(x.shape[2])]))
