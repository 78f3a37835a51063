"""Score a folder of SR images made elsewhere against their HR images, with the protocol of
:mod:`nasengine.sr.evaluate` (``nasengine score``).

Measurement (the same as :func:`nasengine.sr.evaluate.evaluate`'s "rgb" pipeline): the HR is read as
uint8 RGB (a single-channel file replicated to R = G = B), ``modcrop(scale)``, and its rounded Y taken.
The SR file is read as uint8; an RGB SR is reduced to its rounded Y, a single-channel SR *is* its Y.
The SR is ``modcrop(scale)``-ed too (a no-op for an SR made from the modcropped HR's LR; it makes an SR of the
full HR size comparable), and must then have the HR's size. PSNR / SSIM on Y with ``scale`` pixels cropped
at every border; a set's figures are the means over its images.

Pairing SR files with HR files (:func:`pair_key`, :func:`pair_files`)
--------------------------------------------------------------------
An SR file whose stem equals an HR file's stem pairs with it. Otherwise both stems are reduced to a *key*:
the stem is split at ``_`` and cut before the first part (after the first) that is a marker: ``SR``,
``HR``, ``LR``, ``SRF`` (as in ``img_001_SRF_2_SR``) or ``x`` followed by digits (``_x2``, ``_X4``);
markers are case-insensitive. So ``baby_SR.png``, ``baby_x2_bicubic.png`` (``nasengine upscale``'s
default name) and ``baby.png`` have the key ``baby``; ``img_001_SRF_2_SR.png`` and
``img_001_SRF_2_HR.png`` have ``img_001``. Keys compare case-insensitively. Two SR files with the same
HR, an SR file without an HR, and an HR image without an SR file are errors that list the files.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from nasengine.errors import DataError
from nasengine.sr.color import rgb_to_y
from nasengine.sr.evaluate import EvalReport, ImageScore, SetScore, _check_scale, load_hr_y, score_y
from nasengine.sr.resize import modcrop

__all__ = ["pair_key", "pair_files", "score_folder"]

_MARKER = re.compile(r"(?i)^(sr|hr|lr|srf|x\d+)$")


def pair_key(stem: str) -> str:
    """The pairing key of a file stem (see the module docstring): lower-cased, cut before the first
    ``_``-separated part after the first that is ``SR``, ``HR``, ``LR``, ``SRF`` or ``x<digits>``."""
    parts = stem.split("_")
    for i in range(1, len(parts)):
        if _MARKER.match(parts[i]):
            parts = parts[:i]
            break
    return "_".join(parts).lower()


def _listing(paths) -> str:
    names = sorted(Path(p).name for p in paths)
    shown = ", ".join(names[:10])
    return shown + (f" (and {len(names) - 10} more)" if len(names) > 10 else "")


def pair_files(sr_files, hr_files) -> list[tuple[Path, Path]]:
    """``[(sr, hr), ...]`` in the order of ``hr_files``: each SR file paired with one HR file by
    stem, else by :func:`pair_key`. Raises :class:`~nasengine.errors.DataError` listing the files
    when an SR file matches no HR file, two SR files (or two HR files) share a key, or an HR file has
    no SR file."""
    sr_files = [Path(p) for p in sr_files]
    hr_files = [Path(p) for p in hr_files]
    by_stem = {p.stem: p for p in hr_files}
    by_key: dict[str, list[Path]] = {}
    for p in hr_files:
        by_key.setdefault(pair_key(p.stem), []).append(p)
    chosen: dict[Path, list[Path]] = {}
    unmatched = []
    for sr in sr_files:
        hr = by_stem.get(sr.stem)
        if hr is None:
            candidates = by_key.get(pair_key(sr.stem), [])
            if len(candidates) > 1:
                raise DataError(f"{sr.name}: matches several HR images ({_listing(candidates)}); rename it "
                                f"to the HR file's stem")
            hr = candidates[0] if candidates else None
        if hr is None:
            unmatched.append(sr)
        else:
            chosen.setdefault(hr, []).append(sr)
    if unmatched:
        raise DataError(f"SR files without an HR image (key {pair_key(unmatched[0].stem)!r} ...): "
                        f"{_listing(unmatched)}; HR images: {_listing(hr_files)}")
    for hr, srs in chosen.items():
        if len(srs) > 1:
            raise DataError(f"several SR files for HR image {hr.name}: {_listing(srs)}")
    missing = [hr for hr in hr_files if hr not in chosen]
    if missing:
        raise DataError(f"HR images without an SR file: {_listing(missing)}")
    return [(chosen[hr][0], hr) for hr in hr_files]


def _sr_y(path: Path, scale: int) -> np.ndarray:
    from nasengine.sr.image import load_image

    return np.ascontiguousarray(rgb_to_y(modcrop(load_image(path), scale)))


def score_folder(sr, hr, *, scale: int, label: str | None = None) -> EvalReport:
    """Score the SR images in the folder ``sr`` against the benchmark ``hr`` (a set name such as
    ``"Set5"`` or a folder, resolved by :func:`nasengine.sr.data.resolve_benchmark`) at ``scale``.
    Returns an :class:`~nasengine.sr.evaluate.EvalReport` (pipeline "rgb") named ``label`` (default:
    the SR folder). Raises :class:`~nasengine.errors.DataError` for a missing folder, unpaired files
    (see :func:`pair_files`) or an SR image whose size differs from its HR's (naming both)."""
    from nasengine.sr.data import resolve_benchmark
    from nasengine.sr.image import list_images

    scale = _check_scale(scale)
    sr_dir = Path(sr)
    if not sr_dir.is_dir():
        raise DataError(f"{sr_dir}: no such folder of SR images")
    sr_files = list_images(sr_dir)
    name, hr_files = resolve_benchmark(hr)
    pairs = pair_files(sr_files, hr_files)
    report = EvalReport(label or str(sr_dir), scale, "rgb", False)
    ps, ss = [], []
    for sr_path, hr_path in pairs:
        hr_y = load_hr_y(hr_path, scale)
        sr_y = _sr_y(sr_path, scale)
        if sr_y.shape != hr_y.shape:
            h, w = hr_y.shape
            raise DataError(
                f"{sr_path}: {sr_y.shape[1]}x{sr_y.shape[0]} (after modcrop by {scale}) does not match its HR "
                f"{hr_path.name} ({w}x{h} after modcrop); is the scale right?"
            )
        p, s = score_y(sr_y, hr_y, scale)
        ps.append(p)
        ss.append(s)
        report.rows.append(ImageScore(name, hr_path.stem, p, s))
    report.sets.append(SetScore(name, scale, len(pairs), float(np.mean(ps)), float(np.mean(ss))))
    return report
