"""SR training and validation data: dataset names, random HR/LR patches, a cheap validation set.

Names
-----
:func:`resolve_benchmark`, :func:`resolve_training` and :func:`resolve_dataset` turn a name or a path
into image files. The lookup order is

1. an existing path (a folder of images; a folder with no image but an ``HR/`` sub-folder means that
   sub-folder; :func:`resolve_benchmark` / :func:`resolve_training` also accept one image file);
2. a set embedded in the package (``default``: 30 T91 training images, ``Set5``), case-insensitive;
3. each root listed in the environment variable ``NASENGINE_DATA`` (``os.pathsep``-separated), trying
   ``<root>/<name>/HR``, ``<root>/<name>``, ``<root>/benchmarks/<name>/HR``, ``<root>/benchmarks/<name>``
   and ``<root>/train/<name>`` (for ``kind="training"`` the ``train/`` folder is tried before the
   ``benchmarks/`` ones); a folder only counts if it holds images, and a name is matched
   case-insensitively when no folder has its exact spelling;
4. the same under the source checkout's ``shared/data`` (``Path(nasengine.__file__).parents[2] /
   "shared/data"``), if that folder exists.

Patches
-------
:class:`PatchDataset` draws random HR patches and makes their LR on the fly. Sample ``k`` is a pure
function of ``(seed, k)``: image, position and augmentation all come from
``np.random.default_rng([seed, k])``, so any batch can be rebuilt without RNG state (this is what makes
a resumed training run exact). :func:`make_loader` yields the batch of step ``t`` as the samples
``t * batch_size + j``.

Validation
----------
:func:`validation_set` builds a few fixed LR/HR crops with the protocol's MATLAB LR, and
:func:`validation_psnr` scores a model on them with the protocol's Y PSNR / SSIM.
"""
from __future__ import annotations

import math
import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image

from nasengine.errors import DataError, InputError
from nasengine.sr.color import rgb_to_y
from nasengine.sr.image import IMAGE_EXTENSIONS, image_size, list_images, load_rgb
from nasengine.sr.metrics import psnr as _psnr
from nasengine.sr.metrics import ssim as _ssim
from nasengine.sr.models import to_uint8
from nasengine.sr.resize import imresize, modcrop

__all__ = [
    "ENV_VAR",
    "EMBEDDED_DIR",
    "DEFAULT_LENGTH",
    "DataWarning",
    "DatasetInfo",
    "SampleInfo",
    "embedded_datasets",
    "data_roots",
    "available_datasets",
    "resolve_dataset",
    "resolve_benchmark",
    "resolve_training",
    "check_scale",
    "augment",
    "PatchDataset",
    "make_loader",
    "ValidationPatches",
    "validation_set",
    "validation_psnr",
]

#: Environment variable: extra data roots, ``os.pathsep``-separated.
ENV_VAR = "NASENGINE_DATA"
#: Where the embedded sets live (one sub-folder per set).
EMBEDDED_DIR = Path(__file__).resolve().parent / "datasets"
#: Samples per epoch of a :class:`PatchDataset` when ``length`` is not given: 16,000, i.e. EDSR's
#: "epoch" of 1,000 steps of batch 16, whatever the number of images.
DEFAULT_LENGTH = 16_000

_KINDS = ("benchmark", "training", "any")


class DataWarning(UserWarning):
    """Some data was skipped (e.g. images smaller than the patch)."""


# --------------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------------
def _as_int(value, what: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}")
    if isinstance(value, numbers.Integral):
        ivalue = int(value)
    else:
        fvalue = float(value)
        if not math.isfinite(fvalue) or fvalue != int(fvalue):
            raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}")
        ivalue = int(fvalue)
    if ivalue < minimum:
        raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return ivalue


def check_scale(scale) -> int:
    """The SR scale as an ``int >= 1``; ``InputError`` naming the value otherwise (0, negative,
    fractional, not a number)."""
    return _as_int(scale, "scale", minimum=1)


def _check_choice(value, what: str, choices: Sequence[str]) -> str:
    v = value.lower() if isinstance(value, str) else value
    if v not in choices:
        raise InputError(f"{what} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return v


# --------------------------------------------------------------------------------------------------
# name resolution
# --------------------------------------------------------------------------------------------------
class DatasetInfo(NamedTuple):
    """One resolvable data set: its name, folder, image count and where it was found
    (``"embedded"`` or the data root)."""

    name: str
    folder: Path
    images: int
    source: str


def _has_images(folder: Path) -> bool:
    try:
        return folder.is_dir() and any(
            p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
            for p in folder.iterdir()
        )
    except OSError:
        return False


def _descend_hr(folder: Path) -> Path:
    """A folder without images but with an ``HR`` sub-folder (any case) means that sub-folder."""
    if folder.is_dir() and not _has_images(folder):
        hr = _child(folder, "HR")
        if hr is not None and _has_images(hr):
            return hr
    return folder


def _child(parent: Path, name: str) -> Path | None:
    """``parent/name`` if it is a folder, else the folder of ``parent`` whose name matches
    case-insensitively (first in sorted order), else None."""
    exact = parent / name
    if exact.is_dir():
        return exact
    if os.sep in name or (os.altsep and os.altsep in name):
        return None
    try:
        matches = sorted(p for p in parent.iterdir() if p.name.lower() == name.lower() and p.is_dir())
    except OSError:
        return None
    return matches[0] if matches else None


def _display_name(folder: Path) -> str:
    return folder.parent.name if folder.name.lower() == "hr" else folder.name


def embedded_datasets() -> dict[str, Path]:
    """The sets shipped inside the package: ``{"Set5": folder, "default": folder}``."""
    if not EMBEDDED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(EMBEDDED_DIR.iterdir()) if _has_images(p)}


def _checkout_data() -> Path:
    import nasengine

    return Path(nasengine.__file__).resolve().parents[2] / "shared" / "data"


def data_roots(*, existing_only: bool = True) -> list[Path]:
    """The roots searched after the embedded sets, in order: ``$NASENGINE_DATA`` entries, then the
    checkout's ``shared/data`` when it exists. With ``existing_only=False`` the missing
    ``NASENGINE_DATA`` entries are kept too (for error messages)."""
    roots = []
    for entry in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if entry.strip():
            root = Path(entry.strip()).expanduser()
            if not existing_only or root.is_dir():
                roots.append(root)
    checkout = _checkout_data()
    if checkout.is_dir():
        roots.append(checkout)
    return roots


def _patterns(kind: str) -> list[tuple[str, ...]]:
    # each pattern: path parts under the root, with "{}" standing for the name
    bench = [("benchmarks", "{}", "HR"), ("benchmarks", "{}")]
    train = [("train", "{}")]
    head = [("{}", "HR"), ("{}",)]
    return head + (train + bench if kind == "training" else bench + train)


def _walk(root: Path, parts: tuple[str, ...], name: str) -> Path | None:
    folder = root
    for part in parts:
        folder = _child(folder, name if part == "{}" else part)
        if folder is None:
            return None
    return folder


def _search_roots(name: str, kind: str) -> Path | None:
    for root in data_roots():
        for parts in _patterns(kind):
            folder = _walk(root, parts, name)
            if folder is not None and _has_images(folder):
                return folder
    return None


def _resolve(name_or_path, kind: str, *, allow_file: bool) -> tuple[str, Path]:
    kind = _check_choice(kind, "kind", _KINDS)
    if isinstance(name_or_path, Path) or (
        isinstance(name_or_path, os.PathLike) and not isinstance(name_or_path, str)
    ):
        text = os.fspath(name_or_path)
    elif isinstance(name_or_path, str):
        text = name_or_path
    else:
        raise InputError(f"a data set is a name or a path, got {name_or_path!r}")
    if not text.strip():
        raise DataError("empty data set name")
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir():
            folder = _descend_hr(path)
            list_images(folder)  # DataError naming the folder if it holds no image
            return _display_name(folder.resolve()), folder
        if allow_file:
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                raise DataError(
                    f"{path}: not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)}) "
                    "nor a folder of images"
                )
            return path.stem, path
        raise DataError(f"{path}: a file, not a folder of images")
    embedded = embedded_datasets()
    for key, folder in embedded.items():
        if key.lower() == text.lower():
            return key, folder
    folder = _search_roots(text, kind)
    if folder is not None:
        return _display_name(folder), folder
    roots = data_roots(existing_only=False)
    searched = ", ".join(str(r) + ("" if r.is_dir() else " (missing)") for r in roots) or "none"
    label = {"benchmark": "benchmark set", "training": "training set", "any": "data set"}[kind]
    raise DataError(
        f"unknown {label} {text!r}: not an existing path, not an embedded set "
        f"({', '.join(embedded) or 'none'}), and not found under the data roots searched: {searched}. "
        f"Set {ENV_VAR} to a folder holding <name>/HR, <name>, benchmarks/<name>/HR or train/<name>."
    )


def resolve_dataset(name_or_path, *, kind: str = "any") -> tuple[str, Path]:
    """``(name, folder)`` of a data set given by name or path (see the module docstring for the
    lookup order). ``kind`` is ``"benchmark"``, ``"training"`` or ``"any"``: it only changes which of
    ``train/<name>`` and ``benchmarks/<name>`` is tried first, and the wording of errors. Raises
    :class:`~nasengine.errors.DataError` for an unknown name (listing the embedded names and the
    roots searched) or a folder without images (naming it)."""
    return _resolve(name_or_path, kind, allow_file=False)


def _resolve_files(name_or_path, kind: str) -> tuple[str, list[Path]]:
    name, found = _resolve(name_or_path, kind, allow_file=True)
    return name, ([found] if found.is_file() else list_images(found))


def resolve_benchmark(name_or_path) -> tuple[str, list[Path]]:
    """``(name, sorted HR image files)`` of a benchmark set (e.g. ``"Set5"``, ``"B100"``, a folder,
    or one image file)."""
    return _resolve_files(name_or_path, "benchmark")


def resolve_training(name_or_path) -> tuple[str, list[Path]]:
    """``(name, sorted HR image files)`` of a training set (e.g. ``"default"``, ``"T91"``,
    ``"DIV2K"`` under a data root, a folder, or one image file)."""
    return _resolve_files(name_or_path, "training")


def available_datasets() -> list[DatasetInfo]:
    """Every name that resolves (current-directory paths aside), in lookup order: the embedded sets,
    then each data root's sets. A name found twice is listed once, where it resolves."""
    out: list[DatasetInfo] = []
    seen: set[str] = set()

    def add(name: str, folder: Path, source: str) -> None:
        if name.lower() in seen:
            return
        try:
            count = len(list_images(folder))
        except DataError:
            return
        seen.add(name.lower())
        out.append(DatasetInfo(name, folder, count, source))

    for name, folder in embedded_datasets().items():
        add(name, folder, "embedded")
    for root in data_roots():
        for parts in _patterns("any"):
            base = _walk(root, parts[: parts.index("{}")], "")
            if base is None or not base.is_dir():
                continue
            try:
                children = sorted(p for p in base.iterdir() if p.is_dir())
            except OSError:
                continue
            for child in children:
                folder = _walk(child, parts[parts.index("{}") + 1:], "")
                if folder is not None and _has_images(folder):
                    add(child.name, folder, str(root))
    return out


# --------------------------------------------------------------------------------------------------
# patches
# --------------------------------------------------------------------------------------------------
def augment(array: np.ndarray, hflip: bool, vflip: bool, rot90: bool) -> np.ndarray:
    """Flip left-right, then up-down, then rotate 90° counter-clockwise (``np.rot90``), acting on
    the first two axes (``HxW`` or ``HxWxC``). The 8 combinations are the 8 symmetries of the
    square. Returns a contiguous copy."""
    a = array
    if hflip:
        a = a[:, ::-1]
    if vflip:
        a = a[::-1]
    if rot90:
        a = np.rot90(a, 1, axes=(0, 1))
    return np.ascontiguousarray(a)


class SampleInfo(NamedTuple):
    """What :meth:`PatchDataset.sample` draws for a global index: the image (position in
    ``dataset.paths``), the HR patch's top-left corner and the augmentation."""

    image: int
    path: Path
    top: int
    left: int
    hflip: bool
    vflip: bool
    rot90: bool


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    """uint8 HxW or HxWxC -> float32 CxHxW in [0, 1]."""
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).to(torch.float32).div_(255.0)


def _lr_of(hr: np.ndarray, scale: int, kernel: str) -> np.ndarray:
    h, w = hr.shape[:2]
    if scale == 1:
        return hr.copy()
    if kernel == "pillow":
        img = Image.fromarray(hr)
        return np.asarray(img.resize((w // scale, h // scale), Image.Resampling.BICUBIC))
    return imresize(hr, output_shape=(h // scale, w // scale))


class PatchDataset(torch.utils.data.Dataset):
    """Random ``(lr, hr)`` training patches from HR images.

    ``images`` is a list of HR image paths, or a name / folder resolved by :func:`resolve_training`.
    ``patch_size`` is the HR patch side and must be a multiple of ``scale``; the LR patch is
    ``patch_size // scale``. Items are ``float32`` ``CxHxW`` tensors in [0, 1]: with
    ``channels="y"`` the rounded BT.601 studio-swing Y of the uint8 RGB patch divided by 255
    (C = 1), with ``"rgb"`` the RGB patch (C = 3).

    LR making (``lr_kernel``): ``"pillow"`` (default, fast) is Pillow's antialiased bicubic on the
    uint8 HR patch (about 0.002 dB from MATLAB on Set5, see PROTOCOL.md); ``"matlab"`` is the
    MATLAB-exact :func:`~nasengine.sr.resize.imresize` of the HR patch. Either way the LR is made
    from the patch alone (its border pixels see a mirrored patch edge, not the rest of the image).
    The augmentation (``augment=True``: random left-right flip, up-down flip and 90° rotation, see
    :func:`augment`) is applied to the LR and HR patches together after the LR is made, so it is an
    exact symmetry of the pair.

    Sampling: :meth:`sample` ``(k)`` draws the image (uniformly over the usable images), the patch
    position and the augmentation from ``np.random.default_rng([seed, k])`` and nothing else, so
    sample ``k`` is the same in every process, worker and resumed run. ``dataset[i]`` is
    ``sample(epoch * length + i)`` with the epoch set by :meth:`set_epoch` (0 at start);
    ``length`` (samples per "epoch", ``len(dataset)``) defaults to :data:`DEFAULT_LENGTH`.

    Images are decoded once at construction and kept in memory as uint8 (``cache=True``); with
    ``cache=False`` only their headers are read at construction and each sample decodes its image.
    Images smaller than the patch are skipped with a :class:`DataWarning`; if none is large enough a
    :class:`~nasengine.errors.DataError` lists the files and their sizes.
    """

    def __init__(
        self,
        images,
        scale: int,
        patch_size: int,
        *,
        channels: str = "y",
        augment: bool = True,
        lr_kernel: str = "pillow",
        seed: int = 0,
        length: int | None = None,
        cache: bool = True,
    ):
        self.scale = check_scale(scale)
        self.patch_size = _as_int(patch_size, "patch_size", minimum=1)
        if self.patch_size % self.scale:
            raise InputError(
                f"patch_size must be a multiple of scale={self.scale}, got patch_size={patch_size!r}"
            )
        self.channels = _check_choice(channels, "channels", ("y", "rgb"))
        self.lr_kernel = _check_choice(lr_kernel, "lr_kernel", ("pillow", "matlab"))
        self.seed = _as_int(seed, "seed", minimum=0)
        self.length = DEFAULT_LENGTH if length is None else _as_int(length, "length", minimum=1)
        self.augment = bool(augment)
        self.cache = bool(cache)
        self.epoch = 0

        if isinstance(images, (str, os.PathLike)):
            self.name, paths = resolve_training(images)
        else:
            paths = [Path(p) for p in images]
            self.name = "custom"
            if not paths:
                raise DataError("PatchDataset: the list of images is empty")

        if self.cache:
            arrays = [load_rgb(p) for p in paths]
            sizes = [a.shape[:2] for a in arrays]
        else:
            arrays = None
            sizes = [image_size(p) for p in paths]
        p = self.patch_size
        usable = [i for i, (h, w) in enumerate(sizes) if h >= p and w >= p]
        small = sorted(set(range(len(paths))) - set(usable))

        def describe(idx: list[int]) -> str:
            shown = ", ".join(f"{paths[i]} ({sizes[i][1]}x{sizes[i][0]})" for i in idx[:10])
            return shown + (f" and {len(idx) - 10} more" if len(idx) > 10 else "")

        if not usable:
            raise DataError(
                f"no training image is at least {p}x{p} pixels (patch_size={p}): {describe(small)}"
            )
        if small:
            warnings.warn(
                f"skipping {len(small)} image(s) smaller than the {p}x{p} patch: {describe(small)}",
                DataWarning,
                stacklevel=2,
            )
        self.paths: list[Path] = [paths[i] for i in usable]
        self.sizes: list[tuple[int, int]] = [tuple(sizes[i]) for i in usable]
        self._images = [arrays[i] for i in usable] if arrays is not None else None

    # ---- sampling ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Make ``dataset[i]`` return ``sample(epoch * len(dataset) + i)``."""
        self.epoch = _as_int(epoch, "epoch", minimum=0)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = int(i)
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for a PatchDataset of length {self.length}")
        return self.sample(self.epoch * self.length + i)

    def sample_info(self, k: int) -> SampleInfo:
        """The draws of global sample ``k`` (a pure function of ``seed`` and ``k``)."""
        k = _as_int(k, "sample index", minimum=0)
        rng = np.random.default_rng([self.seed, k])
        i = int(rng.integers(len(self.paths)))
        h, w = self.sizes[i]
        top = int(rng.integers(h - self.patch_size + 1))
        left = int(rng.integers(w - self.patch_size + 1))
        flips = rng.integers(2, size=3)  # always drawn, so augment=False keeps the same positions
        hf, vf, rot = (bool(b) and self.augment for b in flips)
        return SampleInfo(i, self.paths[i], top, left, hf, vf, rot)

    def _image(self, i: int) -> np.ndarray:
        if self._images is not None:
            return self._images[i]
        a = load_rgb(self.paths[i])
        if a.shape[:2] != self.sizes[i]:
            raise DataError(f"{self.paths[i]}: changed size since the dataset was built")
        return a

    def sample_arrays(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Global sample ``k`` as uint8 arrays ``(lr, hr)``: ``HxW`` (Y) or ``HxWx3`` (RGB)."""
        info = self.sample_info(k)
        p = self.patch_size
        hr = self._image(info.image)[info.top : info.top + p, info.left : info.left + p]
        hr = np.ascontiguousarray(hr)
        lr = _lr_of(hr, self.scale, self.lr_kernel)
        if self.channels == "y":
            hr, lr = rgb_to_y(hr), rgb_to_y(lr)
        hr = augment(hr, info.hflip, info.vflip, info.rot90)
        lr = augment(lr, info.hflip, info.vflip, info.rot90)
        return lr, hr

    def sample(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Global sample ``k`` as ``(lr, hr)`` float32 ``CxHxW`` tensors in [0, 1]."""
        lr, hr = self.sample_arrays(k)
        return _to_tensor(lr), _to_tensor(hr)

    def __repr__(self) -> str:
        return (
            f"PatchDataset({self.name!r}, images={len(self.paths)}, scale={self.scale}, "
            f"patch_size={self.patch_size}, channels={self.channels!r}, augment={self.augment}, "
            f"lr_kernel={self.lr_kernel!r}, seed={self.seed}, length={self.length})"
        )


class _GlobalSamples(torch.utils.data.Dataset):
    """Index ``k`` = global sample ``k`` (``dataset.sample(k)``, or ``dataset[k % len]`` for a
    dataset without ``sample``)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getitem__(self, k: int):
        if hasattr(self.dataset, "sample"):
            return self.dataset.sample(k)
        return self.dataset[k % len(self.dataset)]


class _StepBatches(torch.utils.data.Sampler):
    def __init__(self, batch_size: int, start_step: int, steps: int | None):
        self.batch_size, self.start_step, self.steps = batch_size, start_step, steps

    def __iter__(self) -> Iterator[list[int]]:
        t = self.start_step
        while self.steps is None or t < self.start_step + self.steps:
            yield [t * self.batch_size + j for j in range(self.batch_size)]
            t += 1

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("an unbounded loader (steps=None) has no length")
        return self.steps


def make_loader(
    dataset,
    batch_size: int,
    *,
    start_step: int = 0,
    steps: int | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    **kwargs,
) -> torch.utils.data.DataLoader:
    """A DataLoader whose ``n``-th batch is step ``start_step + n``: the global samples
    ``t * batch_size + j``, ``j < batch_size`` (:meth:`PatchDataset.sample`; any other dataset is
    indexed modulo its length). ``steps=None`` gives an unbounded stream (no ``len``); pass
    ``steps=len(dataset) // batch_size`` for one epoch. The batches are the same with any
    ``num_workers``. The loader never touches torch's global RNG. Extra keyword arguments go to
    :class:`torch.utils.data.DataLoader`."""
    batch_size = _as_int(batch_size, "batch_size", minimum=1)
    start_step = _as_int(start_step, "start_step", minimum=0)
    if steps is not None:
        steps = _as_int(steps, "steps", minimum=0)
    num_workers = _as_int(num_workers, "num_workers", minimum=0)
    # A private generator: otherwise every new iterator draws its worker base seed from torch's
    # global RNG, and a resumed run would see a different global RNG stream (e.g. for dropout).
    kwargs.setdefault("generator", torch.Generator().manual_seed(0))
    return torch.utils.data.DataLoader(
        _GlobalSamples(dataset),
        batch_sampler=_StepBatches(batch_size, start_step, steps),
        num_workers=num_workers,
        pin_memory=pin_memory,
        **kwargs,
    )


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
@dataclass
class ValidationPatches:
    """A small fixed validation set: LR inputs (float32 ``CxhxW`` in [0, 1], Y or RGB as the model
    expects) and the uint8 Y of the matching HR crops. Calling it scores a model
    (:func:`validation_psnr`), so it can be passed as a trainer's ``validate``."""

    name: str
    scale: int
    channels: str
    lr: list[torch.Tensor] = field(repr=False)
    hr_y: list[np.ndarray] = field(repr=False)
    paths: list[Path] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.lr)

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        return validation_psnr(model, self)


def validation_set(
    paths_or_name="Set5",
    scale: int = 2,
    channels: str = "y",
    *,
    size: int | None = 96,
    count: int | None = None,
) -> ValidationPatches:
    """Fixed validation crops from a benchmark set (name, folder or list of paths).

    Each HR image is modcropped, its LR made with the MATLAB-exact ``imresize`` of the *whole*
    image (the protocol's LR), and then a centred ``size x size`` HR crop (a multiple of ``scale``;
    the whole image where smaller) is paired with the aligned LR crop. ``size=None`` keeps whole
    images. ``count`` keeps the first ``count`` images (sorted by name)."""
    scale = check_scale(scale)
    channels = _check_choice(channels, "channels", ("y", "rgb"))
    if size is not None:
        size = _as_int(size, "size", minimum=1)
        if size % scale or size < 2 * scale + 11:
            raise InputError(
                f"size must be a multiple of scale={scale} and at least 2*scale+11 "
                f"(SSIM needs an 11x11 window after the border crop), got size={size}"
            )
    if isinstance(paths_or_name, (str, os.PathLike)):
        name, paths = resolve_benchmark(paths_or_name)
    else:
        name, paths = "custom", [Path(p) for p in paths_or_name]
        if not paths:
            raise DataError("validation_set: the list of images is empty")
    if count is not None:
        paths = paths[: _as_int(count, "count", minimum=1)]
    lrs, hrs = [], []
    for path in paths:
        hr = load_rgb(path)
        h, w = hr.shape[:2]
        if min(h, w) >= scale:
            hr = modcrop(hr, scale)
            h, w = hr.shape[:2]
        if min(h, w) < 2 * scale + 11:
            raise DataError(f"{path}: {w}x{h} is too small to validate at scale {scale}")
        lr = imresize(hr, output_shape=(h // scale, w // scale))
        if size is not None:
            ch, cw = min(size, h), min(size, w)
            top = (h - ch) // 2 // scale * scale
            left = (w - cw) // 2 // scale * scale
            hr = hr[top : top + ch, left : left + cw]
            lr = lr[top // scale : (top + ch) // scale, left // scale : (left + cw) // scale]
        lr_in = rgb_to_y(lr) if channels == "y" else lr
        lrs.append(_to_tensor(np.ascontiguousarray(lr_in)))
        hrs.append(np.ascontiguousarray(rgb_to_y(np.ascontiguousarray(hr))))
    return ValidationPatches(name, scale, channels, lrs, hrs, list(paths))


def _model_device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def validation_psnr(model: torch.nn.Module, val: ValidationPatches, *, device=None) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM of ``model`` on ``val`` with the protocol: output scaled to
    0..255, clipped and rounded (half up) to uint8; for RGB models the rounded BT.601 Y of that
    uint8 RGB; ``scale`` pixels cropped at every border; averaged over images. This is the same
    arithmetic as :class:`~nasengine.sr.models.TorchUpscaler` + :func:`~nasengine.sr.evaluate.evaluate`,
    so with ``size=None`` the numbers equal a benchmark evaluation with the "rgb" pipeline. The
    model is run in eval mode under ``torch.no_grad`` and its mode restored. An output with
    non-finite values scores NaN."""
    was_training = model.training
    dev, dtype = _model_device_dtype(model)
    if device is not None:
        dev = torch.device(device)
    s = val.scale
    ps, ss = [], []
    model.eval()
    try:
        with torch.no_grad():
            for lr, hr_y in zip(val.lr, val.hr_y):
                out = model(lr[None].to(device=dev, dtype=dtype))
                c = 1 if val.channels == "y" else 3
                want = (1, c, lr.shape[1] * s, lr.shape[2] * s)
                if tuple(out.shape) != want:
                    raise InputError(
                        f"validation: the model maps an LR input of shape {tuple(lr[None].shape)} to "
                        f"{tuple(out.shape)}, expected {want} (scale {s}, channels {val.channels!r})"
                    )
                # exactly what TorchUpscaler + evaluate do: * 255 in float32, clip, round half up
                out = (out[0].detach().to("cpu", torch.float32) * 255.0).permute(1, 2, 0).numpy()
                if not np.isfinite(out).all():
                    ps.append(float("nan"))
                    ss.append(float("nan"))
                    continue
                q = to_uint8(out)
                y = q[:, :, 0] if c == 1 else rgb_to_y(q)
                ps.append(float(_psnr(y, hr_y, crop=s)))
                ss.append(float(_ssim(y, hr_y, crop=s)))
    finally:
        model.train(was_training)
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss))}
