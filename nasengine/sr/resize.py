"""MATLAB-exact ``imresize(A, scale, 'bicubic')`` and ``modcrop``.

This is the resize of the SR evaluation protocol (``shared/reference/PROTOCOL.md`` section 2). Every
detail below changes benchmark numbers, so it follows MATLAB's ``imresize.m`` to the letter:

* Keys cubic kernel, a = -0.5::

      k(x) = 1.5|x|^3 - 2.5|x|^2 + 1            for |x| <= 1
             -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2    for 1 < |x| <= 2
             0                                 otherwise

* antialiasing when downscaling (scale s < 1): the kernel is stretched to ``s * k(s * x)`` and its
  width (4) becomes ``4 / s``;
* output pixel ``x`` (1-based) maps to input coordinate ``u = x / s + 0.5 * (1 - 1 / s)``; its taps
  are ``floor(u - width / 2) + 0 ... ceil(width) + 1``; the weights are normalised to sum to 1;
  tap columns whose weight is zero for *every* output pixel are dropped (MATLAB's "kill" step);
* indices outside ``1..n`` mirror symmetrically, the edge pixel repeated (``[1..n, n..1]`` cyclic);
* one 1-D pass per dimension, the dimension with the smaller scale first (ties: rows first);
* integer input (``uint8``, ...): each pass's result is rounded half away from zero and saturated to
  the input type before the next pass, and the output has the input type. Float input (any float
  dtype) is computed and returned as ``float64``, never rounded.

Scales: ``imresize(img, 0.5)``, ``imresize(img, (sh, sw))`` or ``imresize(img, output_shape=(h, w))``.
With a scale the output size is ``ceil(in * scale)`` (as MATLAB); with an output shape the scale of each
dimension is ``out / in`` (as MATLAB).

Implementation and exactness. The weight and index tables of a dimension are cached by
``(in_len, out_len, scale)``. A pass is a weighted sum of ``P`` shifted copies of the input: for
the usual rational scales the taps of the output rows ``r, r + T, r + 2T, ...`` advance by a constant
step, so every tap is a strided *view* of the mirror-extended input and no gather is needed; other
scales fall back to one gather per tap. The taps are accumulated strictly in order, each product
rounded before it is added (separate multiply and add, no fused multiply-add, no BLAS): the result
is bit-for-bit the straightforward per-pixel loop ``acc = w0*x0; acc += w1*x1; ...`` of MATLAB's
algorithm, which makes the uint8 rounding reproducible. For the protocol's scales (2, 3, 4 and their
inverses) the uint8 output does not even depend on the summation order: at x2 / x4 every weight is
a short dyadic fraction, so all the arithmetic is exact, and at x3 no exact value is a tie (their
denominators are odd) while the rounding noise is ~1e-13.

The arithmetic runs in torch (float64) on cache-sized blocks of fewer than 32768 elements. Below
that size ATen runs an operation on the calling thread, so a resize never starts OpenMP parallel
regions: thousands of tiny parallel regions are slower than one thread, and catastrophically so
(tens of times) when the other cores are busy. (``floor_`` / ``trunc_`` / ``round_`` go parallel
even on small tensors, hence the rounding via ``frac``.) Each thread keeps its scratch buffers
(up to 32 MB each) between calls; :func:`clear_cache` drops them. On B100 this runs at about
2-2.5x the time of Pillow's (non-MATLAB) ``resize(BICUBIC)``; see ``benchmarks/resize.py``.
"""
from __future__ import annotations

import math
import numbers
import threading
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

from nasengine.errors import InputError

__all__ = ["imresize", "downscale_replicate", "modcrop", "cubic", "contributions", "clear_cache"]

#: Largest number of phases (output rows sharing one tap stride) handled with strided views; beyond
#: that a pass gathers its taps.
_MAX_PERIOD = 32
#: Refuse a pass whose weight table would exceed this many entries (a scale like 1e-6 would need
#: millions of taps per output pixel).
_MAX_TABLE = 50_000_000
#: Work buffers up to this many float64 elements (32 MB) are kept per thread between calls (fresh
#: multi-megabyte allocations page-fault on every call and cost as much as the arithmetic).
_MAX_CACHED_BUFFER = 4 * 1024 * 1024
#: Elements per torch operation: below ATen's parallel grain size (32768), so every operation runs
#: serially on the calling thread.
_BLOCK = 32767
#: round-half-up for x >= 0 in float64: floor(x + C), C the largest double below 0.5, is exact
#: for every double (floor(x + 0.5) would round 0.49999999999999994 up to 1).
_HALF_DOWN = 0.49999999999999994


# --------------------------------------------------------------------------------------------------
# kernel and weight tables
# --------------------------------------------------------------------------------------------------
def cubic(x) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB ``imresize``'s ``cubic``), element-wise,
    evaluated with MATLAB's expression (``|x|^3`` as ``|x|*|x|*|x|``)."""
    ax = np.abs(np.asarray(x, dtype=np.float64))
    ax2 = ax * ax
    ax3 = ax2 * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0) + (
        -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    ) * ((1.0 < ax) & (ax <= 2.0))


class _Phase(NamedTuple):
    row: int  # first output row of the phase
    start: int  # row of the extended input read by the first tap of that output row
    step: int  # extended-input rows between consecutive output rows of the phase
    count: int  # output rows in the phase
    weights: tuple  # per tap: float64 (count, 1) torch column


class _Plan(NamedTuple):
    weights: np.ndarray  # (out_len, P) normalised weights, zero columns dropped
    indices: np.ndarray  # (out_len, P) 0-based input indices, mirrored
    ext: np.ndarray  # input row of each row of the mirror-extended input
    inner: tuple  # (i0, i1): ext[i0:i1] are the consecutive (unmirrored) input rows ext[i0]...
    rel: np.ndarray  # (out_len, P) indices into the extended input
    offsets: tuple  # the P tap offsets relative to the first tap (the same for every output row)
    period: int  # T: the output rows r, r+T, r+2T, ... form a phase; 0: no such structure (gather)
    phases: tuple  # T _Phase entries
    weights_t: torch.Tensor  # torch copy of ``weights`` (for the gather path)
    rel_t: torch.Tensor  # torch copy of ``rel``


def contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's ``contributions`` for the bicubic kernel with antialiasing: ``(weights, indices)``,
    both ``(out_len, P)`` (``P`` after dropping the all-zero tap columns); ``indices`` are 0-based
    and already mirrored into ``0..in_len-1``. Cached; the arrays are read-only."""
    p = _plan(int(in_len), int(out_len), float(scale))
    return p.weights, p.indices


@lru_cache(maxsize=256)
def _plan(in_len: int, out_len: int, scale: float) -> _Plan:
    """Weight / index tables of one dimension (MATLAB ``contributions``) and the pass layout."""
    width = 4.0
    if scale < 1.0:
        width = width / scale
    P = int(math.ceil(width)) + 2
    if out_len * P > _MAX_TABLE:
        raise InputError(
            f"imresize: scale {scale!r} from {in_len} to {out_len} pixels needs {P} taps per output "
            "pixel; that is too small a scale"
        )
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    raw = left[:, None] + np.arange(P, dtype=np.float64)[None, :]  # 1-based, unmirrored
    dist = u[:, None] - raw
    if scale < 1.0:
        w = scale * cubic(scale * dist)
    else:
        w = cubic(dist)
    total = w[:, 0].copy()  # the taps summed in order
    for k in range(1, P):
        total += w[:, k]
    w = w / total[:, None]
    keep = np.flatnonzero(np.any(w != 0.0, axis=0))  # MATLAB's "kill" of all-zero columns
    w = np.ascontiguousarray(w[:, keep])
    raw0 = raw[:, keep].astype(np.int64) - 1  # 0-based, unmirrored
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = mirror[np.mod(raw0, 2 * in_len)]
    lo, hi = int(raw0.min()), int(raw0.max())
    span = np.arange(lo, hi + 1)
    ext = mirror[np.mod(span, 2 * in_len)]
    inside = np.flatnonzero((span >= 0) & (span < in_len))
    inner = (int(inside[0]), int(inside[-1]) + 1) if inside.size else (0, 0)
    rel = raw0 - lo
    offsets = tuple(int(o) for o in rel[0] - rel[0, 0])
    start = rel[:, 0]
    period, phases = 0, ()
    for T in range(1, min(out_len, _MAX_PERIOD) + 1):
        d = start[T:] - start[:-T]
        if d.size == 0:
            step = 1
        elif d[0] >= 1 and np.all(d == d[0]):
            step = int(d[0])
        else:
            continue
        period = T
        phases = tuple(
            _Phase(
                r,
                int(start[r]),
                step,
                len(range(r, out_len, T)),
                tuple(torch.tensor(w[r::T, k, None]) for k in range(w.shape[1])),
            )
            for r in range(T)
        )
        break
    w_t, rel_t = torch.tensor(w), torch.tensor(rel)
    for arr in (w, indices, ext, rel):
        arr.setflags(write=False)
    return _Plan(w, indices, ext, inner, rel, offsets, period, phases, w_t, rel_t)


def clear_cache() -> None:
    """Drop the cached weight tables and this thread's work buffers."""
    _plan.cache_clear()
    _local.__dict__.clear()


# --------------------------------------------------------------------------------------------------
# work buffers
# --------------------------------------------------------------------------------------------------
_local = threading.local()


def _buffer(name: str, shape: tuple, dtype=np.float64) -> np.ndarray:
    """A scratch array of ``shape`` (contents undefined), kept between calls in this thread when
    small enough. Never handed to the caller."""
    n = 1
    for d in shape:
        n *= int(d)
    if n > _MAX_CACHED_BUFFER:
        return np.empty(shape, dtype)
    buf = _local.__dict__.get(name)
    if buf is None or buf.size < n or buf.dtype != dtype:
        buf = np.empty(max(n, 1), dtype)
        _local.__dict__[name] = buf
    return buf[:n].reshape(shape)


# --------------------------------------------------------------------------------------------------
# one pass
# --------------------------------------------------------------------------------------------------
def _blocks(n_rows: int, n_cols: int):
    """``(r0, r1, c0, c1)`` tiles of an ``n_rows x n_cols`` array, each under ``_BLOCK`` elements
    (whole rows where a row fits)."""
    cw = min(n_cols, _BLOCK)
    rh = max(1, _BLOCK // cw)
    for c0 in range(0, n_cols, cw):
        c1 = min(n_cols, c0 + cw)
        for r0 in range(0, n_rows, rh):
            yield r0, min(n_rows, r0 + rh), c0, c1


def _copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    """``dst[...] = src`` for 3-D tensors of one shape (any strides, with a dtype cast), in serial
    blocks."""
    n0, n1, n2 = dst.shape
    cols = max(1, min(n1, _BLOCK // max(n2, 1)))
    rows = max(1, _BLOCK // (cols * max(n2, 1)))
    for c0 in range(0, n1, cols):
        for r0 in range(0, n0, rows):
            dst[r0 : r0 + rows, c0 : c0 + cols].copy_(src[r0 : r0 + rows, c0 : c0 + cols])


def _extend(src, plan: _Plan, name: str) -> torch.Tensor:
    """The mirror-extended float64 copy of ``src`` (a numpy array or a tensor, ``len x M x C``;
    axis 0 is the axis being resized; any dtype and strides): row ``i`` is ``src[plan.ext[i]]``.
    The unmirrored block is copied in one go, with the dtype cast or transposition that is needed
    anyway; the mirrored border rows one by one."""
    ext = plan.ext
    buf = _buffer(name, (ext.size,) + tuple(src.shape[1:]))
    i0, i1 = plan.inner
    j0 = int(ext[i0]) if i1 > i0 else 0
    if isinstance(src, np.ndarray):  # the caller's array: numpy copies (single-threaded)
        if i1 > i0:
            np.copyto(buf[i0:i1], src[j0 : j0 + i1 - i0], casting="unsafe")
        for i in list(range(0, i0)) + list(range(i1, ext.size)):
            np.copyto(buf[i], src[ext[i]], casting="unsafe")
        return torch.from_numpy(buf)
    out = torch.from_numpy(buf)
    if i1 > i0:
        _copy(out[i0:i1], src[j0 : j0 + i1 - i0])
    for i in list(range(0, i0)) + list(range(i1, ext.size)):
        _copy(out[i : i + 1], src[int(ext[i]) : int(ext[i]) + 1])
    return out


def _pass(xe: torch.Tensor, plan: _Plan, out: torch.Tensor, saturate=None) -> torch.Tensor:
    """Resize along axis 0 of the 2-D float64 mirror-extended tensor ``xe`` (see :func:`_extend`)
    into ``out`` (``out_len x N``): ``out[o] = sum_k w[o, k] * xe[rel[o, k]]``, the taps summed in
    order, each product rounded before it is added (separate multiply and add kernels, so no fused
    multiply-add: the result is bit-for-bit that of the obvious scalar loop). ``saturate``:
    ``(lo, hi, signed)`` to round and saturate each block once it is complete (integer images)."""
    n_cols = xe.shape[1]
    n_taps = plan.weights.shape[1]
    tmp_buf = torch.from_numpy(_buffer("tmp", (_BLOCK,)))
    if plan.period:
        T = plan.period
        offsets = plan.offsets
        for ph in plan.phases:
            step = ph.step
            for j0, j1, c0, c1 in _blocks(ph.count, n_cols):
                n = j1 - j0
                acc = out[ph.row + j0 * T : ph.row + (j1 - 1) * T + 1 : T, c0:c1]
                tmp = tmp_buf[: n * (c1 - c0)].view(n, c1 - c0)
                base = ph.start + j0 * step
                span = step * (n - 1) + 1
                for k in range(n_taps):
                    s = base + offsets[k]
                    src = xe[s : s + span : step, c0:c1]
                    wk = ph.weights[k][j0:j1]
                    if k == 0:
                        torch.mul(src, wk, out=acc)
                    else:
                        torch.mul(src, wk, out=tmp)
                        acc.add_(tmp)
                if saturate is not None:
                    _round_saturate(acc, tmp, *saturate)
    else:
        w, rel = plan.weights_t, plan.rel_t
        for j0, j1, c0, c1 in _blocks(out.shape[0], n_cols):
            n = j1 - j0
            acc = out[j0:j1, c0:c1]
            tmp = tmp_buf[: n * (c1 - c0)].view(n, c1 - c0)
            src = xe[:, c0:c1]
            for k in range(n_taps):
                torch.index_select(src, 0, rel[j0:j1, k], out=tmp)
                if k == 0:
                    torch.mul(tmp, w[j0:j1, k : k + 1], out=acc)
                else:
                    tmp.mul_(w[j0:j1, k : k + 1])
                    acc.add_(tmp)
            if saturate is not None:
                _round_saturate(acc, tmp, *saturate)
    return out


def _round_saturate(a: torch.Tensor, tmp: torch.Tensor, lo: float, hi: float, signed: bool) -> None:
    """In place: round half away from zero, then saturate to ``[lo, hi]`` (integers). ``tmp`` is
    scratch of ``a``'s shape. ``floor(v)`` is computed as ``v - frac(v)`` (exact) because ATen runs
    ``floor_`` / ``trunc_`` / ``round_`` multi-threaded even on small tensors."""
    a.clamp_(lo, hi)  # lo, hi are integers: clipping first is equivalent
    if signed:
        torch.sign(a, out=tmp)
        a.abs_()
    a.add_(_HALF_DOWN)
    if signed:
        a.mul_(tmp)  # exact; now round half away from zero = trunc
    torch.frac(a, out=tmp)
    a.sub_(tmp)


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------
def _check_scale_value(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise InputError(f"imresize: {what} must be a positive number, got {v!r}")
    f = float(v)
    if not math.isfinite(f) or f <= 0.0:
        raise InputError(f"imresize: {what} must be a positive finite number, got {v!r}")
    return f


def _check_size_value(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise InputError(f"imresize: {what} must be a positive integer, got {v!r}")
    if isinstance(v, numbers.Integral):
        i = int(v)
    else:
        f = float(v)
        if not math.isfinite(f) or f != int(f):
            raise InputError(f"imresize: {what} must be a positive integer, got {v!r}")
        i = int(f)
    if i < 1:
        raise InputError(f"imresize: {what} must be a positive integer, got {v!r}")
    return i


def _parse_size(shape, scale, output_shape) -> tuple[tuple[float, float], tuple[int, int]]:
    if (scale is None) == (output_shape is None):
        raise InputError(
            "imresize: give exactly one of scale and output_shape, got "
            f"scale={scale!r}, output_shape={output_shape!r}"
        )
    in_h, in_w = shape
    if scale is not None:
        if isinstance(scale, (str, bytes)):
            raise InputError(f"imresize: scale must be a number or a pair (sh, sw), got {scale!r}")
        if isinstance(scale, numbers.Real) or (isinstance(scale, np.ndarray) and scale.ndim == 0):
            sh = sw = _check_scale_value(scale if not isinstance(scale, np.ndarray) else scale.item(), "scale")
        else:
            try:
                pair = list(scale)
            except TypeError:
                raise InputError(f"imresize: scale must be a number or a pair (sh, sw), got {scale!r}") from None
            if len(pair) != 2:
                raise InputError(f"imresize: scale must be a number or a pair (sh, sw), got {scale!r}")
            sh = _check_scale_value(pair[0], "scale[0]")
            sw = _check_scale_value(pair[1], "scale[1]")
        oh, ow = math.ceil(in_h * sh), math.ceil(in_w * sw)
        if oh > 2**31 or ow > 2**31:
            raise InputError(f"imresize: scale {scale!r} gives an output of {oh}x{ow} pixels")
        return (sh, sw), (int(oh), int(ow))
    if isinstance(output_shape, (str, bytes)):
        raise InputError(f"imresize: output_shape must be a pair (height, width), got {output_shape!r}")
    try:
        pair = list(output_shape)
    except TypeError:
        raise InputError(f"imresize: output_shape must be a pair (height, width), got {output_shape!r}") from None
    if len(pair) != 2:
        raise InputError(f"imresize: output_shape must be a pair (height, width), got {output_shape!r}")
    oh = _check_size_value(pair[0], "output_shape[0]")
    ow = _check_size_value(pair[1], "output_shape[1]")
    return (oh / in_h, ow / in_w), (oh, ow)


def imresize(img, scale=None, *, output_shape=None) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` (antialiasing on), exactly.

    ``img``: ``HxW`` or ``HxWxC`` array. Integer input (``uint8`` in practice) gives the same
    integer type, rounded half away from zero and saturated after each 1-D pass as MATLAB does;
    float input gives ``float64`` (no rounding, no clipping). Bool input is refused.

    ``scale``: a positive number or a pair ``(scale_h, scale_w)``; the output is
    ``ceil(H * scale_h) x ceil(W * scale_w)``. Or ``output_shape=(out_h, out_w)``, in which case the
    scale of each dimension is ``out / in``. Exactly one of the two must be given.

    Raises :class:`~nasengine.errors.InputError` (naming the value) for a non-positive, NaN or
    infinite scale, a bad output shape, both or neither of them, an empty image or a bad array.
    See the module docstring for the algorithm."""
    a = np.asarray(img)
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise InputError(f"imresize: expected an integer or float image, got dtype {a.dtype}")
    if a.ndim not in (2, 3):
        raise InputError(f"imresize: expected an HxW or HxWxC image, got shape {a.shape}")
    if a.size == 0:
        raise InputError(f"imresize: empty image of shape {a.shape}")
    (sh, sw), (oh, ow) = _parse_size(a.shape[:2], scale, output_shape)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[:, :, None]
    H, W, C = a.shape
    integer = np.issubdtype(a.dtype, np.integer)
    if integer:
        info = np.iinfo(a.dtype)
        lo, hi, signed = float(info.min), float(info.max), info.min < 0
    out_dtype = a.dtype if integer else np.dtype(np.float64)

    plans = (_plan(H, oh, sh), _plan(W, ow, sw))
    first, second = (0, 1) if sh <= sw else (1, 0)  # the smaller scale first; ties: rows first
    saturate = (lo, hi, signed) if integer else None
    # Each pass works on a (len, rest) array whose leading axis is the one being resized, so that
    # every tap is a block of whole rows: (H, W, C) for rows, (W, H, C) for columns.
    src = a if first == 0 else a.transpose(1, 0, 2)
    p1, p2 = plans[first], plans[second]
    xe = _extend(src, p1, "ext1")
    mid = torch.from_numpy(_buffer("pass1", (p1.weights.shape[0],) + tuple(xe.shape[1:])))
    _pass(xe.view(xe.shape[0], -1), p1, mid.view(mid.shape[0], -1), saturate)
    xe = _extend(mid.permute(1, 0, 2), p2, "ext2")
    res = torch.from_numpy(_buffer("pass2", (p2.weights.shape[0],) + tuple(xe.shape[1:])))
    _pass(xe.view(xe.shape[0], -1), p2, res.view(res.shape[0], -1), saturate)
    result = np.empty((oh, ow, C), dtype=out_dtype)
    _copy(torch.from_numpy(result), res.permute(1, 0, 2) if first == 0 else res)
    return result[:, :, 0] if squeeze else result


def modcrop(img, scale) -> np.ndarray:
    """Crop ``img`` (``HxW`` or ``HxWxC``) at the bottom and right to ``H - H % scale`` by
    ``W - W % scale`` (top-left anchored, as the SR protocol's MATLAB ``modcrop``). Returns a view
    (a slice) of the input. ``scale`` must be an integer >= 1 (``InputError`` naming it otherwise);
    an image smaller than ``scale`` in either dimension is refused (it would become empty)."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise InputError(f"modcrop: scale must be a positive integer, got {scale!r}")
    s = float(scale)
    if not math.isfinite(s) or s != int(s) or s < 1:
        raise InputError(f"modcrop: scale must be a positive integer, got {scale!r}")
    s = int(s)
    a = np.asarray(img)
    if a.ndim not in (2, 3):
        raise InputError(f"modcrop: expected an HxW or HxWxC image, got shape {a.shape}")
    h, w = a.shape[0] - a.shape[0] % s, a.shape[1] - a.shape[1] % s
    if h == 0 or w == 0:
        raise InputError(f"modcrop: image of shape {a.shape} is smaller than scale {s}")
    return a[:h, :w]


def downscale_replicate(img, scale: int) -> np.ndarray:
    """``imresize(img, 1/scale)`` with *replicate* borders instead of MATLAB's symmetric ones: the LR of
    SelfExSR's Set5/Set14/B100 copies, on which FALSR's repository (and papers that took their LR from
    SelfExSR) measured. Exact: ``img`` is padded with ``4*scale`` repeated edge pixels (further than the
    antialiased kernel reaches) and the LR cropped back; only the outermost LR rows and columns differ from
    :func:`imresize`. ``img``'s height and width must be multiples of ``scale`` (modcrop first)."""
    a = np.asarray(img)
    scale = int(scale)
    if scale < 2 or a.shape[0] % scale or a.shape[1] % scale:
        raise ValueError(f"downscale_replicate: need an integer scale >= 2 dividing the image size, got scale "
                         f"{scale} for {a.shape[1]}x{a.shape[0]}")
    pad = 4 * scale
    width = ((pad, pad), (pad, pad)) + ((0, 0),) * (a.ndim - 2)
    lr = imresize(np.pad(a, width, mode="edge"), 1.0 / scale)
    return np.ascontiguousarray(lr[4:-4, 4:-4])
