"""The upscaler interface used by evaluation and by the user-facing ``upscale`` command.

An :class:`Upscaler` maps a low-resolution image to a ``scale`` times larger one:

* ``upscale(lr)`` takes ``lr`` as an ``HxWxC`` array, ``uint8`` or float, with values on the
  **0..255 scale**, where ``C`` is 1 for a ``"y"`` upscaler (the BT.601 studio-swing Y channel of
  :func:`nasengine.sr.color.rgb_to_y`) and 3 for an ``"rgb"`` one. It returns
  ``(H*scale)x(W*scale)xC`` on the 0..255 scale, ``uint8`` or float; it need not clip or round:
  callers do (see :func:`upscale_image` and :func:`nasengine.sr.evaluate.evaluate`).
* Networks see float32 ``NCHW`` tensors holding ``value / 255`` (so a Y network gets
  ``rgb_to_y(rgb) / 255``, the FALSR convention) and return the same scale.

Implementations: :class:`BicubicUpscaler` (the MATLAB-exact bicubic baseline), :class:`TorchUpscaler`
(any ``torch.nn.Module``), and :func:`self_ensemble` (the x8 geometric self-ensemble of another
upscaler).

Large images are upscaled in overlapping tiles (:func:`tiled_upscale`; :class:`TorchUpscaler`'s ``tile``
and ``tile_overlap``, :func:`with_tiling` for any upscaler): by default an LR image of more than
:data:`AUTO_TILE_PIXELS` pixels is cut into :data:`DEFAULT_TILE`-pixel tiles, each extended by the overlap
on every side, and only each tile's centre is kept. With an overlap at least the network's receptive radius
(:func:`nasengine.receptive.overlap_for`, what a trained model's file gives), the result is the whole-image
result; smaller images are never tiled by default.
"""
from __future__ import annotations

import logging
import numbers

import numpy as np
import torch

from nasengine.device import resolve_device
from nasengine.errors import InputError, ValidationError
from nasengine.receptive import AUTO_TILE_PIXELS, DEFAULT_OVERLAP, DEFAULT_TILE
from nasengine.sr.color import rgb2ycbcr, ycbcr2rgb
from nasengine.sr.resize import imresize

log = logging.getLogger("nasengine.sr")

__all__ = [
    "CHANNELS",
    "channels_of",
    "Upscaler",
    "BicubicUpscaler",
    "TorchUpscaler",
    "self_ensemble",
    "upscale_image",
    "to_uint8",
    "AUTO_TILE_PIXELS",
    "DEFAULT_TILE",
    "DEFAULT_OVERLAP",
    "tile_boxes",
    "tiled_upscale",
    "with_tiling",
]



#: Allowed values of :attr:`Upscaler.channels`.
CHANNELS = ("y", "rgb")


def channels_of(in_channels: int) -> str:
    """The image kind a network with ``in_channels`` input channels works on: 1 -> ``"y"``, 3 -> ``"rgb"``;
    anything else is a :class:`~nasengine.errors.ValidationError` (field ``input.channels``)."""
    kind = {1: "y", 3: "rgb"}.get(in_channels)
    if kind is None:
        raise ValidationError(f"SR networks take 1 (Y) or 3 (RGB) input channels, got {in_channels}",
                              field="input.channels")
    return kind


def _check_scale(scale) -> int:
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise InputError(f"scale must be an integer >= 1, got {scale!r}")
    f = float(scale)
    if not np.isfinite(f) or f != int(f) or f < 1:
        raise InputError(f"scale must be an integer >= 1, got {scale!r}")
    return int(f)


def _check_channels(channels) -> str:
    c = channels.lower() if isinstance(channels, str) else channels
    if c not in CHANNELS:
        raise InputError(f"channels must be 'y' or 'rgb', got {channels!r}")
    return c


def to_uint8(img) -> np.ndarray:
    """Clip to [0, 255] and round half up to ``uint8`` (the protocol's treatment of an SR output).
    ``uint8`` input is returned unchanged; NaN becomes 0."""
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a
    x = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(x, 0.0, 255.0, out=x)
    x += 0.49999999999999994  # floor(x + this) is exact round-half-up for x >= 0
    np.floor(x, out=x)
    return x.astype(np.uint8)



def _check_tile(tile):
    if tile is None or tile == "auto":
        return tile
    if isinstance(tile, bool) or not isinstance(tile, numbers.Integral) or tile < 0:
        raise InputError(f"tile: must be 'auto', 0 (no tiling) or a tile side in LR pixels, got {tile!r}")
    return int(tile)


def _check_overlap(overlap):
    if overlap is None:
        return None
    if isinstance(overlap, bool) or not isinstance(overlap, numbers.Integral) or overlap < 0:
        raise InputError(f"tile_overlap: must be a whole number of LR pixels >= 0, got {overlap!r}")
    return int(overlap)


def _tile_side(tile, h: int, w: int) -> int:
    """The tile side to use for an ``h x w`` LR image, 0 for none."""
    if tile == "auto":
        return DEFAULT_TILE if h * w > AUTO_TILE_PIXELS else 0
    return int(tile or 0)


def tile_boxes(h: int, w: int, tile: int, overlap: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """The tiles of an ``h x w`` LR image: ``[(core, crop), ...]`` with ``core = (y0, y1, x0, x1)`` the
    part of the image a tile is responsible for (cores partition the image, ``tile x tile`` except at the
    right and bottom edges) and ``crop`` the core grown by ``overlap`` on each side, clipped to the image:
    what the network sees."""
    if tile < 1:
        raise InputError(f"tile: must be at least 1 LR pixel, got {tile}")
    boxes = []
    for y0 in range(0, h, tile):
        y1 = min(y0 + tile, h)
        for x0 in range(0, w, tile):
            x1 = min(x0 + tile, w)
            crop = (max(0, y0 - overlap), min(h, y1 + overlap), max(0, x0 - overlap), min(w, x1 + overlap))
            boxes.append(((y0, y1, x0, x1), crop))
    return boxes


def tiled_upscale(upscale, lr: np.ndarray, scale: int, tile: int, overlap: int, *, progress: bool = True,
                  desc: str = "tiles") -> np.ndarray:
    """Upscale ``lr`` (``HxWxC``) tile by tile with ``upscale`` (``hxwxC`` -> ``(h*scale)x(w*scale)xC``):
    each tile of :func:`tile_boxes` is upscaled with its overlap and its core's part of the result is copied
    into the output (allocated once, of the first tile's dtype). Equal to ``upscale(lr)`` when ``overlap``
    is at least the receptive radius of ``upscale`` (see :mod:`nasengine.receptive`). ``progress``: a tqdm
    bar over the tiles (shown on a terminal only, and only for more than 4 tiles)."""
    from tqdm.auto import tqdm

    h, w = lr.shape[:2]
    boxes = tile_boxes(h, w, tile, overlap)
    out = None
    with tqdm(total=len(boxes), desc=desc, unit="tile", dynamic_ncols=True, leave=False,
              disable=True if not progress or len(boxes) <= 4 else None) as bar:
        for (y0, y1, x0, x1), (cy0, cy1, cx0, cx1) in boxes:
            part = np.asarray(upscale(np.ascontiguousarray(lr[cy0:cy1, cx0:cx1])))
            want = ((cy1 - cy0) * scale, (cx1 - cx0) * scale)
            if part.shape[:2] != want:
                raise InputError(f"tiled upscale: a {cy1 - cy0}x{cx1 - cx0} tile came back {part.shape[:2]}, "
                                 f"expected {want}")
            if out is None:
                out = np.empty((h * scale, w * scale) + part.shape[2:], dtype=part.dtype)
            out[y0 * scale:y1 * scale, x0 * scale:x1 * scale] = part[
                (y0 - cy0) * scale:(y1 - cy0) * scale, (x0 - cx0) * scale:(x1 - cx0) * scale]
            bar.update(1)
    return out


class Upscaler:
    """Abstract upscaler. Subclasses set :attr:`scale`, :attr:`channels`, :attr:`name` and
    implement :meth:`upscale`.

    ``channel_agnostic`` is True for upscalers that work on any number of channels (the bicubic
    baseline): they may be fed a Y channel even when ``channels == "rgb"``."""

    scale: int
    channels: str
    name: str
    channel_agnostic: bool = False

    def upscale(self, lr: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """``HxWxC`` (0..255, uint8 or float) -> ``(H*scale)x(W*scale)xC`` (0..255)."""
        raise NotImplementedError

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        return self.upscale(lr)

    def accepts(self, channels: str) -> bool:
        """Whether this upscaler can be fed images of kind ``channels`` ("y" or "rgb")."""
        return self.channel_agnostic or channels == self.channels

    def check_input(self, lr) -> np.ndarray:
        """``lr`` as an array, validated: ``HxWxC`` with C = 1 ("y") or 3 ("rgb"), uint8 or float,
        non-empty. Raises :class:`~nasengine.errors.InputError` naming the shape or dtype."""
        a = np.asarray(lr)
        if a.dtype == np.bool_ or not (a.dtype == np.uint8 or np.issubdtype(a.dtype, np.floating)):
            raise InputError(f"{self.name}: expected a uint8 or float LR image, got dtype {a.dtype}")
        if a.ndim != 3 or a.shape[0] == 0 or a.shape[1] == 0:
            raise InputError(f"{self.name}: expected a non-empty HxWxC LR image, got shape {a.shape}")
        if not self.channel_agnostic:
            want = 1 if self.channels == "y" else 3
            if a.shape[2] != want:
                raise InputError(
                    f"{self.name}: a {self.channels!r} upscaler takes HxWx{want} images, got shape {a.shape}"
                )
        return a

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, scale={self.scale}, channels={self.channels!r})"


class BicubicUpscaler(Upscaler):
    """The bicubic baseline: MATLAB-exact ``imresize(lr, scale, 'bicubic')`` per channel.

    dtype-preserving: ``uint8`` in -> ``uint8`` out (MATLAB's per-pass rounding), float in ->
    ``float64`` out (not rounded, not clipped). Works on any number of channels, so it serves both
    the "rgb" pipeline (``channels="rgb"``, the default) and Y-only use."""

    channel_agnostic = True

    def __init__(self, scale: int, channels: str = "rgb", name: str | None = None):
        self.scale = _check_scale(scale)
        self.channels = _check_channels(channels)
        self.name = name or "bicubic"

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        a = self.check_input(lr)
        return imresize(a, self.scale)


def _module_device_dtype(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


class TorchUpscaler(Upscaler):
    """Wrap any ``torch.nn.Module`` mapping ``(1, C, H, W)`` to ``(1, C, H*scale, W*scale)`` on the
    ``value / 255`` scale.

    ``upscale(lr)``: ``uint8`` / float 0..255 ``HxWxC`` -> ``(1, C, H, W)`` tensor of the module's
    dtype (float32 for a float32 module) on ``device``, divided by 255 -> module (eval mode,
    ``torch.no_grad``; the module's previous train/eval mode is restored afterwards) -> ``* 255``
    -> numpy ``HxWxC``, ``float32`` (``float64`` for a float64 module), not clipped or rounded.

    ``device``: where to run (``"auto"``, ``"cpu"``, ``"cuda:N"``, ...: :func:`nasengine.device.resolve_device`);
    when given the module is moved there (``module.to(device)``), else the device of the module's
    parameters (CPU for a parameter-free module) is used.

    Tiling (see :func:`tiled_upscale`): ``tile="auto"`` (default) tiles images of more than
    :data:`AUTO_TILE_PIXELS` LR pixels with :data:`DEFAULT_TILE`-pixel tiles, an int tiles every image larger
    than one tile with tiles of that side, 0 or None never tiles. ``tile_overlap``: LR pixels added on each
    side of a tile (default: ``receptive_radius`` if given, else :data:`DEFAULT_OVERLAP`).
    ``receptive_radius``: the module's receptive radius in whole LR pixels if known
    (:func:`nasengine.receptive.overlap_for` of its graph): with an overlap at least that, tiled output is
    the whole-image output. ``progress``: a bar over the tiles of a large image (on a terminal only)."""

    def __init__(
        self,
        module: torch.nn.Module,
        scale: int,
        channels: str = "y",
        *,
        name: str | None = None,
        device=None,
        tile="auto",
        tile_overlap: int | None = None,
        receptive_radius: int | None = None,
        progress: bool = True,
    ):
        if not isinstance(module, torch.nn.Module):
            raise InputError(f"TorchUpscaler: expected a torch.nn.Module, got {type(module).__name__}")
        self.scale = _check_scale(scale)
        self.channels = _check_channels(channels)
        self.name = name or type(module).__name__
        if device is not None:
            device = resolve_device(device)
            module = module.to(device)
        self.module = module
        self.device, self.dtype = _module_device_dtype(module)
        if device is not None:
            self.device = device
        self.tile = _check_tile(tile)
        self.tile_overlap = _check_overlap(tile_overlap)
        self.receptive_radius = _check_overlap(receptive_radius)
        self.progress = progress

    @property
    def overlap(self) -> int:
        """The overlap tiles get: ``tile_overlap``, else ``receptive_radius``, else :data:`DEFAULT_OVERLAP`."""
        if self.tile_overlap is not None:
            return self.tile_overlap
        return self.receptive_radius if self.receptive_radius is not None else DEFAULT_OVERLAP

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        a = self.check_input(lr)
        h, w = a.shape[:2]
        tile = _tile_side(self.tile, h, w)
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                if tile and (h > tile or w > tile):
                    if self.tile_overlap is None and self.receptive_radius is None:
                        log.warning("%s: tiling with a %d-pixel overlap, but the network's receptive radius is "
                                    "unknown (unbounded ops, or no architecture given): the tiled output "
                                    "approximates the whole-image one; --tile 0 gives the exact one",
                                    self.name, DEFAULT_OVERLAP)
                    return tiled_upscale(self._run, a, self.scale, tile, self.overlap, progress=self.progress,
                                         desc=self.name)
                return self._run(a)
        finally:
            self.module.train(was_training)

    def _run(self, a: np.ndarray) -> np.ndarray:
        h, w, c = a.shape
        x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
        x = (x.to(device=self.device, dtype=self.dtype) / 255.0)[None]
        y = self.module(x)
        want = (1, c, h * self.scale, w * self.scale)
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != want:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise InputError(
                f"{self.name}: the module maps an input of shape {tuple(x.shape)} to {got}, expected "
                f"{want} (scale {self.scale}, channels {self.channels!r})"
            )
        del x
        out_dtype = torch.float64 if y.dtype == torch.float64 else torch.float32
        out = (y[0].detach().to("cpu", out_dtype) * 255.0).permute(1, 2, 0)
        return np.ascontiguousarray(out.numpy())


class _Tiled(Upscaler):
    def __init__(self, inner: Upscaler, tile, overlap: int | None, progress: bool):
        self.inner = inner
        self.scale, self.channels, self.name = inner.scale, inner.channels, inner.name
        self.channel_agnostic = inner.channel_agnostic
        self.tile, self.overlap, self.progress = tile, overlap, progress

    def check_input(self, lr) -> np.ndarray:
        return self.inner.check_input(lr)

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        a = self.check_input(lr)
        h, w = a.shape[:2]
        tile = _tile_side(self.tile, h, w)
        if tile and (h > tile or w > tile):
            return tiled_upscale(self.inner.upscale, a, self.scale, tile, self.overlap, progress=self.progress,
                                 desc=self.name)
        return self.inner.upscale(a)


def with_tiling(upscaler: Upscaler, tile="auto", overlap: int | None = None, *, progress: bool = True) -> Upscaler:
    """``upscaler`` set to upscale large images in tiles (the ``--tile`` / ``--tile-overlap`` options).

    A :class:`TorchUpscaler` gets ``tile`` and ``tile_overlap`` set (its own ``receptive_radius`` gives the
    default overlap) and is returned; the bicubic baseline is returned unchanged (it needs no tiling);
    any other upscaler (a plugin's) is wrapped so that its ``upscale`` runs tile by tile, with ``overlap``
    (default :data:`DEFAULT_OVERLAP`) LR pixels of overlap. ``tile``: see :class:`TorchUpscaler`."""
    tile = _check_tile(tile)
    overlap = _check_overlap(overlap)
    if isinstance(upscaler, TorchUpscaler):
        upscaler.tile, upscaler.tile_overlap, upscaler.progress = tile, overlap, progress
        return upscaler
    if isinstance(upscaler, BicubicUpscaler) or not tile:
        return upscaler
    return _Tiled(upscaler, tile, DEFAULT_OVERLAP if overlap is None else overlap, progress)


# the 8 dihedral transforms: (k quarter turns, horizontal flip first)
_DIHEDRAL = tuple((k, f) for f in (False, True) for k in range(4))


def _forward(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    if flip:
        a = a[:, ::-1]
    return np.ascontiguousarray(np.rot90(a, k, axes=(0, 1)))


def _inverse(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, -k, axes=(0, 1))
    if flip:
        a = a[:, ::-1]
    return a


class _SelfEnsemble(Upscaler):
    def __init__(self, inner: Upscaler):
        self.inner = inner
        self.scale = inner.scale
        self.channels = inner.channels
        self.channel_agnostic = inner.channel_agnostic
        self.name = f"{inner.name}+x8"

    def check_input(self, lr) -> np.ndarray:
        return self.inner.check_input(lr)

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        a = self.check_input(lr)
        acc = None
        for k, flip in _DIHEDRAL:
            out = np.asarray(self.inner.upscale(_forward(a, k, flip)), dtype=np.float64)
            back = _inverse(out, k, flip)
            acc = back.copy() if acc is None else acc + back
        return acc / len(_DIHEDRAL)


def self_ensemble(upscaler: Upscaler) -> Upscaler:
    """The x8 geometric self-ensemble of ``upscaler`` (EDSR's "+"): the LR is transformed by each
    of the 8 combinations of a horizontal flip and 0-3 quarter turns, upscaled, transformed back,
    and the 8 results averaged. Returns a float64 :class:`Upscaler` named ``"<name>+x8"`` with the
    same scale and channels."""
    if not isinstance(upscaler, Upscaler):
        raise InputError(f"self_ensemble: expected an Upscaler, got {type(upscaler).__name__}")
    return _SelfEnsemble(upscaler)


def upscale_image(upscaler: Upscaler, rgb_uint8) -> np.ndarray:
    """Upscale a ``uint8`` RGB image (``HxWx3``; ``HxW`` / ``HxWx1`` grey is replicated to RGB) and
    return ``uint8`` RGB of ``(H*scale)x(W*scale)x3``.

    * "rgb" upscalers: the image goes in directly; the output is clipped and rounded.
    * "y" upscalers: the model gets the rounded BT.601 Y (``rgb2ycbcr``, ``HxWx1`` uint8) and
      returns Y; the chroma (Cb, Cr) comes from the MATLAB-bicubic upscale of the LR RGB image
      (FALSR's convention); Y (clipped, rounded), Cb and Cr are converted back with
      ``ycbcr2rgb``. Above :data:`AUTO_TILE_PIXELS` LR pixels the chroma and colour steps run in tiles
      and strips (same result, a fraction of the memory)."""
    a = np.asarray(rgb_uint8)
    if a.dtype != np.uint8:
        raise InputError(f"upscale_image: expected a uint8 image, got dtype {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"upscale_image: expected a non-empty HxWx3 image, got shape {a.shape}")
    s = upscaler.scale
    want = (a.shape[0] * s, a.shape[1] * s)
    if upscaler.channels == "rgb":
        out = np.asarray(upscaler.upscale(a))
        if out.dtype != np.uint8 and out.ndim == 3 and out.shape[0] > 256:  # rounded in strips: no float64 copy
            out = np.concatenate([to_uint8(out[r:r + 256]) for r in range(0, out.shape[0], 256)], axis=0)
        out = to_uint8(out)
        if out.shape != want + (3,):
            raise InputError(f"{upscaler.name}: returned shape {out.shape}, expected {want + (3,)}")
        return out
    ycc = rgb2ycbcr(a)
    y = upscaler.upscale(np.ascontiguousarray(ycc[:, :, :1]))
    del ycc
    if y.ndim == 2:
        y = y[:, :, None]
    if y.shape != want + (1,):
        raise InputError(f"{upscaler.name}: returned shape {y.shape}, expected {want + (1,)}")
    if a.shape[0] * a.shape[1] <= AUTO_TILE_PIXELS:
        chroma = rgb2ycbcr(imresize(a, s))[:, :, 1:]
        return ycbcr2rgb(np.concatenate([to_uint8(y), chroma], axis=2))
    # A large image: the same arithmetic in pieces, so that no full-size float64 copy is ever made. The
    # bicubic chroma in overlapping tiles (MATLAB's x{s} bicubic reaches 2 LR pixels; 4 of overlap), the
    # per-pixel steps (rounding, colour conversion) in strips of rows.
    chroma = tiled_upscale(lambda t: rgb2ycbcr(imresize(t, s))[:, :, 1:], a, s, DEFAULT_TILE, 4, progress=False)
    out = np.empty(want + (3,), dtype=np.uint8)
    step = 256
    for r in range(0, want[0], step):
        rows = slice(r, min(r + step, want[0]))
        out[rows] = ycbcr2rgb(np.concatenate([to_uint8(y[rows]), chroma[rows]], axis=2))
    return out
