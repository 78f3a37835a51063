"""Benchmark evaluation with the standard SR protocol (``shared/reference/PROTOCOL.md``).

:func:`evaluate` scores an :class:`~nasengine.sr.models.Upscaler` on benchmark sets (names such as
``"Set5"`` or folders, resolved by :func:`nasengine.sr.data.resolve_benchmark`) and returns an
:class:`EvalReport` of per-image and per-set PSNR / SSIM on the Y channel.

Pipelines
---------
``"rgb"`` (default; the protocol and the regression targets of PROTOCOL.md):
    HR = the image as uint8 RGB (a single-channel file replicated to R = G = B), ``modcrop(scale)``;
    LR = MATLAB-exact ``imresize(HR, 1/scale)`` on uint8 (rounded after each pass). An "rgb" upscaler
    gets the LR, a "y" upscaler gets its rounded BT.601 Y (``uint8``, ``HxWx1``). The output is
    clipped and rounded to uint8; for "rgb" upscalers its rounded Y is taken. Y(SR) is compared with
    Y(HR) after cropping ``scale`` pixels at every border.
``"y"`` (the SRCNN/VDSR-era "Y first" pipeline behind the papers' bicubic rows):
    Y_HR = rounded Y of the uint8 HR (a single-channel HR is its own Y), ``modcrop(scale)``;
    LR = ``imresize(Y_HR as float64, 1/scale)``, **kept as float64** (not rounded: that is what
    reproduces the published rows, e.g. Set5 x2 33.6614 / 0.92988; rounding the LR gives 33.6522);
    the upscaler gets it as ``HxWx1`` float64 on the 0..255 scale; its output is clipped and rounded
    to uint8 and compared with Y_HR. Only "y" upscalers (and the channel-agnostic bicubic one).

PSNR and SSIM (:mod:`nasengine.sr.metrics`) are computed per image; a set's figures are the means
of its images' (the mean of per-image PSNR, never the PSNR of the mean MSE).

Caching
-------
The LR image and the HR Y of each ``(file, mtime, size, scale, pipeline)`` are kept in memory (up
to ``MEMORY_CACHE_BYTES``), so repeated evaluations (e.g. of many candidate networks) only run the
models. If the environment variable ``NASENGINE_CACHE`` names a folder, the LR images are also
stored there as ``.npy`` files (written atomically; unreadable entries are recomputed).
"""
from __future__ import annotations

import hashlib
import math
import numbers
import os
import sys
import tempfile
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nasengine.errors import DataError, InputError
from nasengine.sr.color import rgb_to_y
from nasengine.sr.metrics import SSIM_WINDOW, psnr, ssim
from nasengine.sr.models import Upscaler, to_uint8
from nasengine.sr.models import self_ensemble as _self_ensemble
from nasengine.sr.resize import downscale_replicate, imresize, modcrop

__all__ = [
    "PIPELINES",
    "CACHE_ENV",
    "MEMORY_CACHE_BYTES",
    "ImageScore",
    "SetScore",
    "EvalReport",
    "evaluate",
    "prepare_pair",
    "load_hr_y",
    "score_y",
    "clear_cache",
]

PIPELINES = ("rgb", "y")
#: How the LR is made at the image border: MATLAB's ``symmetric`` (the protocol), or ``replicate`` (SelfExSR's
#: LR copies, on which FALSR's repository measured; see :func:`nasengine.sr.resize.downscale_replicate`).
LR_BORDERS = ("symmetric", "replicate")
#: Environment variable naming an on-disk cache folder for LR images (off when unset or empty).
CACHE_ENV = "NASENGINE_CACHE"
#: Bound of the in-memory LR / HR-Y cache.
MEMORY_CACHE_BYTES = 1 << 30
#: Bump when the LR of a (file, scale, pipeline) would change (it keys the on-disk cache).
_CACHE_VERSION = "lr-v1"


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageScore:
    """One image's result."""

    set: str
    image: str
    psnr: float
    ssim: float


@dataclass(frozen=True)
class SetScore:
    """A set's result: the means over its images."""

    set: str
    scale: int
    images: int
    psnr: float
    ssim: float


@dataclass
class EvalReport:
    """Result of :func:`evaluate`: ``rows`` (one :class:`ImageScore` per image, in order) and
    ``sets`` (one :class:`SetScore` per evaluated set, in the order given). PSNR is ``inf`` for an
    exact reconstruction (and then so is its set's mean)."""

    upscaler: str
    scale: int
    pipeline: str
    self_ensemble: bool
    rows: list = field(default_factory=list)
    sets: list = field(default_factory=list)
    lr_border: str = "symmetric"

    def set_score(self, name: str) -> SetScore:
        """The :class:`SetScore` of the set called ``name`` (case-insensitive)."""
        for s in self.sets:
            if s.set.lower() == name.lower():
                return s
        raise KeyError(name)

    def table(self, per_image: bool = False) -> str:
        """A printable text table: set, scale, images, PSNR (4 decimals), SSIM (5 decimals), one
        line per set under a title line. ``per_image=True`` adds, for each set, one line per image
        (its name in the "images" column) above the set's mean."""
        head = ("set", "scale", "images", "PSNR", "SSIM")
        body = []
        for s in self.sets:
            if per_image:
                body += [
                    ("  " + r.set, f"x{s.scale}", r.image, f"{r.psnr:.4f}", f"{r.ssim:.5f}")
                    for r in self.rows
                    if r.set == s.set
                ]
            body.append((s.set, f"x{s.scale}", str(s.images), f"{s.psnr:.4f}", f"{s.ssim:.5f}"))
        widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
        align = ["<", ">", ">", ">", ">"]

        def line(r):
            return "  ".join(f"{v:{a}{w}}" for v, a, w in zip(r, align, widths)).rstrip()

        title = (
            f"{self.upscaler}{' (x8 self-ensemble)' if self.self_ensemble else ''}, "
            f"pipeline {self.pipeline!r}"
            + (f", LR with {self.lr_border} borders" if self.lr_border != "symmetric" else "")
            + f": PSNR (dB) / SSIM on Y, {self.scale} px border cropped"
        )
        rule = "-" * len(line(head))
        return "\n".join([title, line(head), rule] + [line(r) for r in body])

    def to_dict(self) -> dict:
        """Plain data, JSON-ready (an ``inf`` PSNR is written by ``json`` as ``Infinity``)::

            {"upscaler": str, "scale": int, "pipeline": "rgb" | "y", "self_ensemble": bool,
             "sets": {set name: {"scale", "images", "psnr", "ssim"}},   # in evaluation order
             "images": [{"set", "image", "psnr", "ssim"}, ...]}
        """
        return {
            "upscaler": self.upscaler,
            "scale": self.scale,
            "pipeline": self.pipeline,
            "self_ensemble": self.self_ensemble,
            "lr_border": self.lr_border,
            "sets": {
                s.set: {"scale": s.scale, "images": s.images, "psnr": s.psnr, "ssim": s.ssim}
                for s in self.sets
            },
            "images": [asdict(r) for r in self.rows],
        }

    def __str__(self) -> str:
        return self.table()


# --------------------------------------------------------------------------------------------------
# LR preparation and caching
# --------------------------------------------------------------------------------------------------
_memory: "OrderedDict[tuple, tuple[np.ndarray, np.ndarray]]" = OrderedDict()
_memory_bytes = 0
_lock = threading.Lock()


def clear_cache() -> None:
    """Empty the in-memory LR / HR-Y cache (the on-disk cache is left alone)."""
    global _memory_bytes
    with _lock:
        _memory.clear()
        _memory_bytes = 0


def _file_key(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def _disk_path(folder: Path, key: tuple) -> Path:
    digest = hashlib.sha256(repr((_CACHE_VERSION,) + key).encode()).hexdigest()[:20]
    return folder / f"{Path(key[0]).stem}-x{key[3]}-{key[4]}-{digest}.npy"


def _disk_load(folder: Path | None, key: tuple, shape: tuple, dtype) -> np.ndarray | None:
    if folder is None:
        return None
    p = _disk_path(folder, key)
    try:
        a = np.load(p, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if a.shape != shape or a.dtype != dtype:
        return None
    return a


def _disk_store(folder: Path | None, key: tuple, a: np.ndarray) -> None:
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".lr-", suffix=".npy.tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, a, allow_pickle=False)
            os.replace(tmp, _disk_path(folder, key))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError:
        pass  # a cache that cannot be written is no cache; evaluation goes on


def _cache_folder() -> Path | None:
    v = os.environ.get(CACHE_ENV, "").strip()
    return Path(v).expanduser() if v else None


def _load_hr(path: Path, pipeline: str) -> np.ndarray:
    from nasengine.sr.image import load_image, load_rgb

    return load_rgb(path) if pipeline == "rgb" else load_image(path)


def _modcropped_hr(path: Path, scale: int, pipeline: str) -> np.ndarray:
    hr = _load_hr(path, pipeline)
    if min(hr.shape[:2]) >= scale:  # a smaller one is refused below, naming the file
        hr = modcrop(hr, scale)
    h, w = hr.shape[:2]
    if h < 2 * scale + SSIM_WINDOW or w < 2 * scale + SSIM_WINDOW:
        raise DataError(
            f"{path}: {w}x{h} (after modcrop) is too small to evaluate at scale {scale}: SSIM needs "
            f"{SSIM_WINDOW}x{SSIM_WINDOW} pixels after cropping {scale} px at every border"
        )
    return hr


def load_hr_y(path, scale: int, pipeline: str = "rgb") -> np.ndarray:
    """The uint8 ``HxW`` Y of the HR image file ``path`` as :func:`prepare_pair` makes it (``modcrop(scale)``;
    "rgb": a single-channel file replicated to R = G = B, then its rounded Y; "y": a single-channel file is
    its own Y), without making the LR. Not cached."""
    path = Path(path)
    scale = _check_scale(scale)
    return np.ascontiguousarray(rgb_to_y(_modcropped_hr(path, scale, _check_pipeline(pipeline))))


def score_y(sr_y: np.ndarray, hr_y: np.ndarray, scale: int) -> tuple[float, float]:
    """``(psnr, ssim)`` of the uint8 Y of an SR image against the HR's, with ``scale`` pixels cropped at
    every border: the protocol's measurement, shared by :func:`evaluate` and
    :func:`nasengine.sr.score.score_folder`."""
    return psnr(sr_y, hr_y, crop=scale), ssim(sr_y, hr_y, crop=scale)


def prepare_pair(path, scale: int, pipeline: str = "rgb", lr_border: str = "symmetric") -> tuple[np.ndarray, np.ndarray]:
    """``(lr, hr_y)`` of one HR image file under ``pipeline`` (see the module docstring): for
    "rgb", ``lr`` is the uint8 ``HxWx3`` LR; for "y", the float64 ``HxWx1`` LR Y. ``hr_y`` is the
    uint8 ``HxW`` Y of the modcropped HR. Cached (memory, and ``$NASENGINE_CACHE`` on disk); the
    returned arrays are read-only. ``lr_border`` "replicate" makes the LR as SelfExSR's copies are made
    (see :data:`LR_BORDERS`)."""
    global _memory_bytes
    path = Path(path)
    scale = _check_scale(scale)
    pipeline = _check_pipeline(pipeline)
    _check_lr_border(lr_border)
    key = _file_key(path) + (scale, pipeline) + (() if lr_border == "symmetric" else (lr_border,))
    with _lock:
        hit = _memory.get(key)
        if hit is not None:
            _memory.move_to_end(key)
            return hit
    hr = _modcropped_hr(path, scale, pipeline)
    h, w = hr.shape[:2]
    hr_y = np.ascontiguousarray(rgb_to_y(hr))
    if pipeline == "rgb":
        lr_shape, lr_dtype = (h // scale, w // scale, 3), np.dtype(np.uint8)
    else:
        lr_shape, lr_dtype = (h // scale, w // scale, 1), np.dtype(np.float64)
    folder = _cache_folder()
    lr = _disk_load(folder, key, lr_shape, lr_dtype)
    if lr is None:
        down = (lambda a: imresize(a, 1.0 / scale)) if lr_border == "symmetric" else \
            (lambda a: downscale_replicate(a, scale))
        if pipeline == "rgb":
            lr = down(hr)
        else:
            lr = down(hr_y.astype(np.float64))[:, :, None]
        _disk_store(folder, key, lr)
    lr = np.ascontiguousarray(lr)
    for a in (lr, hr_y):
        a.setflags(write=False)
    entry = (lr, hr_y)
    with _lock:
        if key not in _memory:
            _memory[key] = entry
            _memory_bytes += lr.nbytes + hr_y.nbytes
            while _memory_bytes > MEMORY_CACHE_BYTES and len(_memory) > 1:
                _, (a, b) = _memory.popitem(last=False)
                _memory_bytes -= a.nbytes + b.nbytes
    return entry


# --------------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------------
def _check_scale(scale) -> int:
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise InputError(f"scale must be an integer >= 2, got {scale!r}")
    f = float(scale)
    if not math.isfinite(f) or f != int(f) or f < 2:
        raise InputError(f"scale must be an integer >= 2, got {scale!r}")
    return int(f)


def _check_pipeline(pipeline) -> str:
    p = pipeline.lower() if isinstance(pipeline, str) else pipeline
    if p not in PIPELINES:
        raise InputError(f"pipeline must be 'rgb' or 'y', got {pipeline!r}")
    return p


def _check_lr_border(lr_border) -> None:
    if lr_border not in LR_BORDERS:
        raise InputError(f"lr_border must be one of {', '.join(LR_BORDERS)}, got {lr_border!r}")


def _set_list(sets) -> list:
    if isinstance(sets, (str, os.PathLike)):
        return [sets]
    try:
        items = list(sets)
    except TypeError:
        raise InputError(f"sets must be a set name, a folder or a list of them, got {sets!r}") from None
    if not items:
        raise InputError("sets is empty: give at least one benchmark name or folder")
    return items


def _score_one(upscaler: Upscaler, lr: np.ndarray, hr_y: np.ndarray, scale: int, path: Path):
    if upscaler.channels == "rgb" and lr.shape[2] == 3:
        inp = lr
    elif lr.shape[2] == 3:  # "rgb" pipeline, "y" upscaler
        inp = rgb_to_y(lr)[:, :, None]
    else:
        inp = lr
    out = np.asarray(upscaler.upscale(inp))
    want = hr_y.shape + (inp.shape[2],)
    if out.ndim == 2 and inp.shape[2] == 1:
        out = out[:, :, None]
    if out.shape != want:
        raise InputError(
            f"{upscaler.name}: upscaling the LR of {path.name} ({inp.shape}) gave shape {out.shape}, "
            f"expected {want}"
        )
    sr = to_uint8(out)
    sr_y = rgb_to_y(sr) if sr.shape[2] == 3 else sr[:, :, 0]
    return score_y(sr_y, hr_y, scale)


def evaluate(
    upscaler: Upscaler,
    sets,
    *,
    scale: int,
    pipeline: str = "rgb",
    self_ensemble: bool = False,
    progress: bool = False,
    lr_border: str = "symmetric",
) -> EvalReport:
    """Score ``upscaler`` on the benchmark ``sets`` (a name such as ``"Set5"``, a folder, or a list
    of them; resolved by :func:`nasengine.sr.data.resolve_benchmark`) at the integer ``scale``
    (>= 2, equal to ``upscaler.scale``) with ``pipeline`` "rgb" (default) or "y" (see the module
    docstring). ``self_ensemble=True`` evaluates the x8 geometric self-ensemble of the upscaler.
    ``progress=True`` prints one line per image to stderr. The LR arrays handed to the upscaler
    come from the cache and are read-only. ``lr_border="replicate"`` makes the LR with replicate borders
    (SelfExSR's LR copies, which FALSR's published figures were measured on) instead of the protocol's.

    Raises :class:`~nasengine.errors.InputError` for a bad scale, pipeline or upscaler (an "rgb"
    model with pipeline "y", a scale that differs from the model's), and
    :class:`~nasengine.errors.DataError` for a set that cannot be found or an image too small."""
    from nasengine.sr.data import resolve_benchmark

    scale = _check_scale(scale)
    pipeline = _check_pipeline(pipeline)
    if not isinstance(upscaler, Upscaler):
        raise InputError(f"evaluate: expected an Upscaler, got {type(upscaler).__name__}")
    if upscaler.scale != scale:
        raise InputError(
            f"evaluate: scale {scale} does not match the upscaler {upscaler.name!r} (scale {upscaler.scale})"
        )
    if pipeline == "y" and not upscaler.accepts("y"):
        raise InputError(
            f"evaluate: pipeline 'y' feeds the Y channel only, but {upscaler.name!r} is an "
            f"{upscaler.channels!r} model; use pipeline='rgb'"
        )
    model = _self_ensemble(upscaler) if self_ensemble else upscaler
    _check_lr_border(lr_border)
    report = EvalReport(upscaler.name, scale, pipeline, bool(self_ensemble), lr_border=lr_border)
    for item in _set_list(sets):
        name, paths = resolve_benchmark(item)
        ps, ss = [], []
        for i, path in enumerate(paths):
            path = Path(path)
            lr, hr_y = prepare_pair(path, scale, pipeline, lr_border)
            p, s = _score_one(model, lr, hr_y, scale, path)
            ps.append(p)
            ss.append(s)
            report.rows.append(ImageScore(name, path.stem, p, s))
            if progress:
                print(
                    f"{name} x{scale} [{i + 1}/{len(paths)}] {path.stem}: {p:.4f} dB, SSIM {s:.5f}",
                    file=sys.stderr,
                    flush=True,
                )
        report.sets.append(
            SetScore(name, scale, len(paths), float(np.mean(ps)), float(np.mean(ss)))
        )
    return report
