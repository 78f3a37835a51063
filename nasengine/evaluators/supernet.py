"""The shared-weights evaluator ``sr-supernet``: trains a supernet's children on a seeded patch stream and scores
them with a method's own reward PSNR on fixed validation patches.

It is the evaluator of a one-shot method (``Method(loop="one-shot")``): the loop owns the supernet and the
controller and calls, per shared-weights step and per controller step::

    ev = SupernetEvaluator(**options)           # the preset's ``evaluator`` section
    ev.check()                                  # the data resolves (DataError naming the set otherwise)
    ev.setup(supernet, scale=2, seed=0, device="cpu")   # data + Adam over supernet.parameters()
    loss = ev.train_step(sn.child(genome))      # one mini-batch: forward, loss, backward, Adam step
    metrics = ev.score(sn.child(genome), batches=1)     # {ev.reward_metric: PSNR} on the next batches
    state = ev.state_dict(); ev.load_state_dict(state)  # optimizer + stream positions (exact resume)
    metrics = ev.score_derivation(sn.child(genome), batches=1)  # derivation: derive_data when set, else score

Learning rate. ``schedule: constant`` keeps ``lr``; ``cosine`` anneals it per shared-weights step from ``lr`` to
``min_lr`` over the run's ``total_steps`` (the one-shot loop passes ``epochs x child_steps`` to ``setup``): the
rate of step ``t`` (0-based) is ``min_lr + (lr - min_lr) (1 + cos(pi t / total_steps)) / 2``, a pure function of
the stream position, so a resumed run continues the same curve.

Derivation data. With ``derive_data`` set, :meth:`score_derivation` scores a child on those whole images (each
image its own batch, the reward PSNR averaged over the images), not on the validation patches: HNAS derives on
the whole Set5 images (METHODS.md §2.7), and whole images are what a test set's PSNR means; a handful of small
benchmark images fits in memory at search widths.

Streams. Training sample ``k`` is a pure function of ``(seed, k)`` (image, position, augmentation and the
grad-filter redraws come from ``np.random.default_rng([seed, k, attempt])``), and mini-batch ``t`` is the
samples ``t * batch_size + j``: a resumed run sees the same batches. The validation patches are fixed (a
function of the validation data and the options only, not of the run seed, so rewards of different runs are
comparable) and ``score`` walks through them batch after batch, wrapping around.

Reward PSNR. Each definition is one entry of :data:`REWARD_PSNRS` (option ``reward_psnr`` -> metric name and
function); the metric is named by its definition (``psnr_y_float_nocrop``), never plain ``psnr``, which stays
the protocol PSNR of a final evaluation (PROTOCOL.md).
"""
from __future__ import annotations

import math
import re
import time
from typing import Any, Callable, NamedTuple

import attrs
import numpy as np

from nasengine.errors import ConfigError, DataError, InputError, NasengineError
from nasengine.evaluator import EvalContext, EvalPlan, Evaluator
from nasengine.options import choice, flag, optional, option, positive, read_options, real, sequence, string, whole

__all__ = ["SupernetEvaluator", "RewardPSNR", "REWARD_PSNRS", "psnr_y_float_nocrop", "psnr_rgb_shave",
           "mean_squared_gradient", "STATE_FORMAT"]

#: ``format`` entry of :meth:`SupernetEvaluator.state_dict`.
STATE_FORMAT = "nasengine.sr-supernet/1"
#: Redraws of a patch the grad filter rejects before giving up with a DataError.
MAX_REDRAWS = 1000
#: Seed of the fixed validation patches (the same in every run).
VAL_SEED = 0x5EED_5A1
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


# --------------------------------------------------------------------------------------------------
# reward PSNR definitions
# --------------------------------------------------------------------------------------------------
def psnr_y_float_nocrop(pred, hr, scale: int) -> float:
    """DeCoNAS's reward PSNR (METHODS.md §1.5): per patch, PSNR of the float BT.601 Y
    (``Y = (65.481 R + 128.553 G + 24.966 B) / 255 + 16 / 255`` on [0, 1] RGB, not rounded) with peak 1.0,
    no border crop, the prediction not clipped (only bounded to +-1e7 as the released code does), then the
    mean over the patches of the batch. One-channel tensors are Y already. ``pred``/``hr``: ``BxCxHxW``."""
    import torch

    p = pred.detach().to(torch.float64).clamp(-1e7, 1e7)
    h = hr.detach().to(torch.float64)
    if p.shape[1] == 3:
        w = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64, device=p.device).view(1, 3, 1, 1) / 255.0
        p = (p * w).sum(1) + 16.0 / 255.0
        h = (h * w).sum(1) + 16.0 / 255.0
    mse = ((p - h) ** 2).flatten(1).mean(1)
    # An exact patch scores 100 dB, as the released code's calc_psnr does (METHODS.md §1.5 [C]), not inf.
    psnr = torch.where(mse > 0, -10.0 * torch.log10(mse.clamp_min(1e-300)), torch.full_like(mse, 100.0))
    return float(psnr.mean())


def psnr_rgb_shave(pred, hr, scale: int) -> float:
    """HNAS's reward PSNR (METHODS.md §2.5): the prediction quantised to 1/255 steps (clipped to [0, 1]),
    ``scale + 6`` pixels shaved at every border, RGB, one MSE over the whole batch, peak 1.0."""
    import torch

    p = (pred.detach().to(torch.float64).clamp(0.0, 1.0) * 255.0).round() / 255.0
    h = hr.detach().to(torch.float64)
    s = int(scale) + 6
    if p.shape[-1] <= 2 * s or p.shape[-2] <= 2 * s:
        raise InputError(f"reward_psnr 'rgb_shave': a {p.shape[-2]}x{p.shape[-1]} patch has nothing left after "
                         f"shaving {s} pixels per border (val_patch_size too small)")
    mse = float(((p - h)[..., s:-s, s:-s] ** 2).mean())
    return 100.0 if mse == 0 else -10.0 * math.log10(mse)


class RewardPSNR(NamedTuple):
    """One reward-PSNR definition: the metric name it is stored under, and ``fn(pred, hr, scale) -> float``
    on a validation batch (float ``BxCxHxW`` in [0, 1])."""

    metric: str
    fn: Callable[[Any, Any, int], float]


#: ``reward_psnr`` option value -> definition.
REWARD_PSNRS: dict[str, RewardPSNR] = {
    "y_float_nocrop": RewardPSNR("psnr_y_float_nocrop", psnr_y_float_nocrop),
    "rgb_shave": RewardPSNR("psnr_rgb_shave", psnr_rgb_shave),
}


def mean_squared_gradient(patch: np.ndarray) -> float:
    """The grad filter's measure of an ``HxWxC`` patch on the 0-255 scale: the mean over the ``(H-1)x(W-1)xC``
    pixels of ``(x[i,j] - x[i+1,j])**2 + (x[i,j] - x[i,j+1])**2``."""
    # The definition of DeCoNAS's utils_img.gradients (Junem360/DeCoNAS@dc3f098, METHODS.md §1.6), written anew.
    x = np.asarray(patch, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    core = x[:-1, :-1]
    return float(np.mean((core - x[1:, :-1]) ** 2 + (core - x[:-1, 1:]) ** 2))


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------
def _image_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = _RANGE.match(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


_range_check = optional(string().where(
    lambda v: (r := _image_range(v)) is not None and 1 <= r[0] <= r[1],
    "a range of image numbers 'FIRST-LAST' (1-based, inclusive, over the sorted files), e.g. '801-900'"))


def _select(option_name: str, name: str, paths: list, text: str | None) -> list:
    """The images ``text`` ('A-B', 1-based inclusive) selects from the sorted ``paths`` of data set ``name``."""
    r = _image_range(text)
    if r is None:
        return list(paths)
    if r[1] > len(paths):
        raise DataError(f"evaluator.{option_name}: {text!r} asks for image {r[1]}, but {name!r} holds "
                        f"{len(paths)} image(s)")
    return list(paths[r[0] - 1:r[1]])


def _resolve_images(option_name: str, data: str, images: str | None) -> tuple[str, list]:
    from nasengine.sr.data import resolve_dataset
    from nasengine.sr.image import list_images

    try:
        name, folder = resolve_dataset(data, kind="training" if option_name == "train_images" else "any")
    except DataError as exc:
        raise DataError(f"evaluator.{option_name.replace('_images', '_data')}: {exc}") from None
    return name, _select(option_name, name, list_images(folder), images)


def _lr_of(hr: np.ndarray, scale: int, kernel: str) -> np.ndarray:
    """The uint8 LR of the uint8 HR patch ``hr``: ``matlab`` (MATLAB imresize on uint8, rounded after each
    pass), ``matlab_float`` (the same kernel on floats, rounded once at the end: DeCoNAS's own imresize,
    METHODS.md §1.6) or ``pillow``."""
    from nasengine.sr import data
    from nasengine.sr.resize import imresize

    if kernel != "matlab_float" or scale == 1:
        return data._lr_of(hr, scale, kernel)
    h, w = hr.shape[:2]
    lr = imresize(hr.astype(np.float64), output_shape=(h // scale, w // scale))
    return np.clip(np.round(lr), 0, 255).astype(np.uint8)


class _Patches:
    """Random HR patches of some images, their LR made from the patch itself, optionally grad-filtered and
    augmented (rot90 k in 0..3, then a left-right flip with probability 1/2). Patch ``k`` is a pure function
    of ``(seed, k)``."""

    def __init__(self, name: str, paths: list, *, scale: int, patch_size: int, channels: str, lr_kernel: str,
                 augment: bool, grad_filter: float | None, seed: int, what: str):
        from nasengine.sr.image import load_rgb

        self.name, self.scale, self.patch_size, self.channels = name, scale, patch_size, channels
        self.lr_kernel, self.augment, self.grad_filter, self.seed, self.what = \
            lr_kernel, augment, grad_filter, seed, what
        images = [load_rgb(p) for p in paths]
        usable = [i for i, a in enumerate(images) if min(a.shape[:2]) >= patch_size]
        if not usable:
            raise DataError(f"{what} {name!r}: no image is at least {patch_size}x{patch_size} pixels "
                            f"(the HR patch size)")
        self.images = [images[i] for i in usable]
        self.paths = [paths[i] for i in usable]

    def arrays(self, k: int, *, image: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Patch ``k`` as uint8 ``(lr, hr)``, ``HxWxC``. ``image``: draw from that image (a redraw the grad
        filter asks for moves on to the next image) instead of a random one."""
        from nasengine.sr.color import rgb_to_y

        p = self.patch_size
        for attempt in range(MAX_REDRAWS):
            rng = np.random.default_rng([self.seed, k, attempt])
            i = int(rng.integers(len(self.images))) if image is None else (image + attempt) % len(self.images)
            a = self.images[i]
            top = int(rng.integers(a.shape[0] - p + 1))
            left = int(rng.integers(a.shape[1] - p + 1))
            k_rot, flip = int(rng.integers(4)), bool(rng.integers(2))  # always drawn: same crops without augment
            hr = a[top:top + p, left:left + p]
            # DeCoNAS keeps a patch only if its mean squared gradient is > grad_filter (METHODS.md §1.6).
            if self.grad_filter is not None and mean_squared_gradient(hr) <= self.grad_filter:
                continue
            if self.augment:
                # The released code's augmentation (rot90 k times, then a flip), applied to the HR patch before
                # its LR is made (METHODS.md §1.6); the LR is made from the patch alone (pitfall §1.10.11).
                hr = np.rot90(hr, k_rot, axes=(0, 1))
                if flip:
                    hr = hr[:, ::-1]
            hr = np.ascontiguousarray(hr)
            lr = _lr_of(hr, self.scale, self.lr_kernel)
            if self.channels == "y":
                hr, lr = rgb_to_y(hr)[:, :, None], rgb_to_y(lr)[:, :, None]
            return lr, hr
        raise DataError(f"{self.what} {self.name!r}: no {p}x{p} patch of its {len(self.images)} image(s) passed "
                        f"grad_filter={self.grad_filter} in {MAX_REDRAWS} draws (lower evaluator.grad_filter or "
                        "set it to null)")

    def tensors(self, ks, **kw):
        """Patches ``ks`` stacked as float32 ``(lr, hr)`` ``NxCxHxW`` tensors in [0, 1]."""
        import torch

        lrs, hrs = zip(*(self.arrays(k, **kw) for k in ks))

        def stack(arrs):
            return torch.from_numpy(np.stack(arrs).transpose(0, 3, 1, 2).copy()).to(torch.float32).div_(255.0)

        return stack(lrs), stack(hrs)


# --------------------------------------------------------------------------------------------------
# the evaluator
# --------------------------------------------------------------------------------------------------
class SupernetEvaluator(Evaluator):
    """Shared-weights training and reward scoring of supernet children (see the module docstring).

    Options (a one-shot preset's ``evaluator`` section): ``train_data`` / ``train_images`` (training set and
    an optional 'FIRST-LAST' range of its sorted images), ``patch_size`` (HR side), ``batch_size``, ``lr``,
    ``betas`` (Adam), ``loss`` (``l1``/``mse``), ``lr_kernel`` (``matlab``: MATLAB imresize of
    the uint8 HR patch; ``matlab_float``: the same kernel in float, rounded once, as DeCoNAS's code; ``pillow``), ``augment``, ``grad_filter`` (reject and redraw a patch whose mean
    squared gradient on the 0-255 scale is <= the value; ``None``: off), ``val_data`` / ``val_images``,
    ``val_patches`` (how many fixed validation patches, cut in turn from each validation image),
    ``val_patch_size`` (HR), ``val_batch`` (patches per scored batch), ``reward_psnr`` (a key of
    :data:`REWARD_PSNRS`), ``channels`` (``auto``: from the supernet's space; ``y``/``rgb``), ``prefetch``
    (training batches made ahead by a background thread), ``schedule`` / ``min_lr`` (the shared weights' rate,
    see the module docstring), ``derive_data`` / ``derive_images`` (whole images a derivation scores on).

    ``setup`` must come before ``train_step``/``score``/``state_dict``. ``evaluate`` (the generational loops'
    interface) is refused: this evaluator scores children of a supernet.
    """

    @attrs.frozen(kw_only=True)
    class Options:
        train_data: str = option("default", string(), help="training images: a dataset name or a folder")
        train_images: str | None = option(None, _range_check,
                                          help="only these training images, 'FIRST-LAST' of the sorted files")
        patch_size: int = option(64, whole(2), help="HR patch side of the training batches")
        batch_size: int = option(16, whole(1), help="patches per shared-weights step")
        lr: float = option(1e-4, positive, help="Adam learning rate of the shared weights (where a schedule starts)")
        betas: tuple = option((0.9, 0.999), sequence(real(0.0, 1.0, hi_open=True), length=2), help="Adam betas")
        loss: str = option("l1", choice("l1", "mse"), help="training loss")
        lr_kernel: str = option("matlab", choice("matlab", "matlab_float", "pillow"),
                                help="how LR patches are made from HR ones (matlab_float: rounded once, DeCoNAS's)")
        augment: bool = option(True, flag, help="random rot90 (k = 0..3) and left-right flip of training patches")
        grad_filter: float | None = option(None, optional(real(0.0)),
                                           help="redraw patches whose mean squared gradient (0-255) is <= this")
        val_data: str = option("Set5", string(), help="validation images: a dataset name or a folder")
        val_images: str | None = option(None, _range_check,
                                        help="only these validation images, 'FIRST-LAST' of the sorted files")
        val_patches: int = option(100, whole(1), help="fixed validation patches (cut from each image in turn)")
        val_patch_size: int = option(96, whole(2), help="HR side of the validation patches")
        val_batch: int = option(10, whole(1), help="validation patches per scored batch")
        reward_psnr: str = option("y_float_nocrop", choice(*REWARD_PSNRS), help="the reward PSNR's definition")
        schedule: str = option("constant", choice("constant", "cosine"),
                               help="shared weights' rate: constant lr, or cosine from lr to min_lr over the run")
        min_lr: float = option(0.0, real(0.0), help="the rate the cosine schedule ends at")
        derive_data: str | None = option(None, optional(string()),
                                         help="score derivation children on these whole images (a dataset name "
                                              "or a folder; null: on the validation patches)")
        derive_images: str | None = option(None, _range_check,
                                           help="only these derivation images, 'FIRST-LAST' of the sorted files")
        prefetch: int = option(1, whole(0), help="training batches a background thread makes ahead (0: none)")
        channels: str = option("auto", choice("auto", "y", "rgb"),
                               help="image channels of the children (auto: from the supernet's space)")

    def __init__(self, **options: Any):
        o = read_options("evaluator", self.Options, options, name="sr-supernet")
        self.options = o
        self.reward_metric = REWARD_PSNRS[o.reward_psnr].metric
        if o.schedule == "cosine" and o.min_lr > o.lr:
            raise ConfigError(f"evaluator.min_lr: must be <= lr ({o.lr:g}) for the cosine schedule, got {o.min_lr:g}")
        self._reset()

    def _reset(self) -> None:
        self.optimizer = None
        self.train_position = 0  # shared-weights steps done (next batch index)
        self.val_position = 0  # validation batches scored (next batch index)
        self._train = self._val = None
        self._derive: list | None = None  # whole derivation images (lr, hr), when derive_data is set
        self._setup: dict | None = None
        self._ahead: dict = {}  # batch index -> Future of train_batch(index), made by the prefetch thread
        self._pool = None

    def __getstate__(self) -> dict:
        return {"options": self.options, "reward_metric": self.reward_metric}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    # ---- driver side ---------------------------------------------------------------------------------------
    def describe(self) -> str:
        o = self.options
        rate = f"{o.lr:g}" if o.schedule == "constant" else f"{o.lr:g} cosine to {o.min_lr:g}"
        text = (f"sr-supernet: Adam {rate}, batch {o.batch_size}, HR patch {o.patch_size} of {o.train_data}; "
                f"reward {self.reward_metric} on {o.val_patches} patches of {o.val_data} ({o.val_batch} per batch)")
        if o.derive_data is not None:
            text += f"; derivation on the whole images of {o.derive_data}"
        return text

    def check(self) -> None:
        """The training and validation data resolve and the image ranges fit (a ``DataError`` naming the set)."""
        o = self.options
        _resolve_images("train_images", o.train_data, o.train_images)
        _resolve_images("val_images", o.val_data, o.val_images)
        if o.derive_data is not None:
            _resolve_images("derive_images", o.derive_data, o.derive_images)

    def evaluate(self, graph, ctx: EvalContext) -> dict[str, float]:
        raise ConfigError("evaluator 'sr-supernet' scores children of a weight-sharing supernet and cannot evaluate "
                          "an architecture on its own: use it with a one-shot method (loop 'one-shot'), or "
                          "'sr-train' for a generational search")

    def plan(self, graph, *, cost=None, measure: bool = True, device: str = "cpu",
             threads: int | None = None) -> EvalPlan:
        """One shared-weights step of ``graph`` (a typical child): its training multiply-adds (forward +
        backward ~ 3x the forward's at the LR patch) and, with ``measure``, the seconds of one step and of one
        scored validation batch here, standalone (``parts``: ``step``, ``score``)."""
        o = self.options
        work = (f"shared-weights steps of batch {o.batch_size}, HR patch {o.patch_size}, data {o.train_data}; "
                f"reward {self.reward_metric} on batches of {o.val_batch} patches of {o.val_data}")
        macs = None
        if cost is not None:
            lr_pixels = (o.patch_size // int(graph.scale)) ** 2
            macs = 3.0 * cost.mult_adds / (cost.lr_size[0] * cost.lr_size[1]) * lr_pixels * o.batch_size
        if measure:
            try:  # without the data here no search time can be estimated: timing a step alone is wasted
                self.check()
            except NasengineError:
                measure = False
        if not measure:
            return EvalPlan(work=work, train_macs=macs, data=o.train_data)
        step, score = _time_graph(graph, o, device=device, threads=threads)
        return EvalPlan(work=work, train_macs=macs, seconds=step, data=o.train_data,
                        parts={"step": step, "score": score})

    # ---- run side ------------------------------------------------------------------------------------------
    def setup(self, supernet, *, scale: int, seed: int, device: str = "cpu", total_steps: int | None = None) -> None:
        """Decode the data for ``scale``, fix the training stream's ``seed`` (an int >= 0) and make Adam over
        ``supernet.parameters()`` (those with ``requires_grad``). A ``torch.nn.Module`` is moved to ``device``
        first; ``device`` is where the batches go. ``total_steps``: the shared-weights steps the run will make
        (needed by ``schedule: cosine``; ignored by ``constant``). Resets the stream positions."""
        import torch

        from nasengine.sr.data import check_scale

        o = self.options
        scale = check_scale(scale)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InputError(f"seed must be an integer >= 0, got {seed!r}")
        for name, side in (("patch_size", o.patch_size), ("val_patch_size", o.val_patch_size)):
            if side % scale:
                raise ConfigError(f"evaluator.{name}: must be a multiple of the scale {scale}, got {side}")
        if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, int)
                                        or total_steps < 0):
            raise InputError(f"total_steps must be an integer >= 0 or None, got {total_steps!r}")
        if o.schedule == "cosine" and total_steps is None:
            raise ConfigError("evaluator.schedule: 'cosine' needs the run's number of shared-weights steps "
                              "(setup(..., total_steps=N); the one-shot loop passes epochs x child_steps)")
        channels = _channels_of(supernet, o.channels)
        if isinstance(supernet, torch.nn.Module):
            supernet.to(device)
        params = [p for p in supernet.parameters() if p.requires_grad]
        if not params:
            raise InputError("sr-supernet: the supernet has no trainable parameters")
        self.close()
        common = dict(scale=scale, channels=channels, lr_kernel=o.lr_kernel, grad_filter=o.grad_filter)
        name, paths = _resolve_images("train_images", o.train_data, o.train_images)
        self._train = _Patches(name, paths, patch_size=o.patch_size, augment=o.augment, seed=seed,
                               what="evaluator.train_data", **common)
        name, paths = _resolve_images("val_images", o.val_data, o.val_images)
        val = _Patches(name, paths, patch_size=o.val_patch_size, augment=False, seed=VAL_SEED,
                       what="evaluator.val_data", **common)
        # Validation patch i is cut from image i mod n (each image in turn; the next one where the grad filter
        # rejects a draw), at a position fixed by i [E: METHODS.md §1.5 leaves the validation patches open].
        self._val = [val.tensors([i], image=i % len(val.images)) for i in range(o.val_patches)]
        if o.derive_data is not None:
            name, paths = _resolve_images("derive_images", o.derive_data, o.derive_images)
            self._derive = _whole_images(name, paths, scale=scale, channels=channels, lr_kernel=o.lr_kernel)
        self.optimizer = torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas))
        self._setup = {"scale": scale, "seed": seed, "channels": channels, "device": str(device),
                       "total_steps": total_steps}

    def lr_at(self, t: int) -> float:
        """The shared weights' learning rate of step ``t`` (0-based) under the ``schedule``."""
        o = self.options
        if o.schedule == "constant":
            return o.lr
        total = self._need_setup("lr_at")["total_steps"]
        frac = 1.0 if total == 0 else min(t, total) / total
        return o.min_lr + (o.lr - o.min_lr) * (1.0 + math.cos(math.pi * frac)) / 2.0

    def _need_setup(self, what: str) -> dict:
        if self._setup is None:
            raise ConfigError(f"sr-supernet: {what} before setup(supernet, scale=..., seed=..., device=...)")
        return self._setup

    def train_batch(self, t: int):
        """Mini-batch ``t`` of the training stream: float32 ``(lr, hr)`` ``BxCxHxW`` tensors (on the CPU)."""
        self._need_setup("train_batch")
        b = self.options.batch_size
        return self._train.tensors(range(t * b, (t + 1) * b))

    def _prefetched(self, t: int):
        """``train_batch(t)``, made ahead by a background thread (``prefetch`` batches ahead); the batches are
        pure functions of their index, so prefetching changes no result."""
        from concurrent.futures import ThreadPoolExecutor

        ahead = self.options.prefetch
        future = self._ahead.pop(t, None)
        for u in [u for u in self._ahead if not t < u <= t + ahead]:
            self._ahead.pop(u).cancel()
        if ahead and self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="sr-supernet-data")
        for u in range(t + 1, t + 1 + ahead):
            if u not in self._ahead:
                self._ahead[u] = self._pool.submit(self.train_batch, u)
        return future.result() if future is not None else self.train_batch(t)

    def close(self) -> None:
        """Stop the prefetch thread and forget the data and the optimizer (``setup`` again to continue)."""
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._reset()

    def val_batch(self, b: int):
        """Validation batch ``b``: the fixed patches ``b * val_batch + j`` (modulo ``val_patches``), stacked."""
        import torch

        self._need_setup("val_batch")
        n, size = self.options.val_patches, self.options.val_batch
        items = [self._val[(b * size + j) % n] for j in range(size)]
        return torch.cat([lr for lr, _ in items]), torch.cat([hr for _, hr in items])

    def train_step(self, model) -> float:
        """One shared-weights step on ``model`` (a child whose parameters are the supernet's) with the next
        mini-batch: forward in train mode, loss, backward, Adam step. Parameters the child does not use get no
        gradient and are not touched (their Adam moments neither). Returns the loss; a non-finite loss raises
        :class:`~nasengine.sr.trainer.TrainingDiverged` without an update (the batch counts as used)."""
        import torch.nn.functional as F

        from nasengine.sr.trainer import TrainingDiverged

        setup = self._need_setup("train_step")
        t = self.train_position
        lr, hr = self._prefetched(t)
        lr, hr = lr.to(setup["device"]), hr.to(setup["device"])
        self.train_position = t + 1
        if self.options.schedule != "constant":
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(t)
        model.train()
        self.optimizer.zero_grad(set_to_none=True)
        out = model(lr)
        if out.shape != hr.shape:
            raise InputError(f"sr-supernet: the child maps an LR batch of shape {tuple(lr.shape)} to "
                             f"{tuple(out.shape)}, but the HR batch is {tuple(hr.shape)}")
        loss = F.l1_loss(out, hr) if self.options.loss == "l1" else F.mse_loss(out, hr)
        value = float(loss.detach())
        if not math.isfinite(value):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(t + 1, value)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return value

    def score(self, model, batches: int = 1) -> dict[str, float]:
        """The reward PSNR of ``model`` on the next ``batches`` validation batches (the mean of the per-batch
        values), under ``torch.no_grad`` in eval mode (the mode is restored): ``{reward_metric: value}``. A
        non-finite output gives NaN."""
        self._need_setup("score")
        if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
            raise InputError(f"batches must be an integer >= 1, got {batches!r}")

        def batches_from_the_stream():
            for _ in range(batches):
                pair = self.val_batch(self.val_position)
                self.val_position += 1
                yield pair

        return self._reward_psnr(model, batches_from_the_stream(), "a validation batch")

    def score_derivation(self, model, batches: int = 1) -> dict[str, float]:
        """A derivation child's score: with ``derive_data``, the reward PSNR on each whole derivation image
        (one image per forward), averaged over the images (the stream positions do not move); without it,
        :meth:`score` on the next ``batches`` validation batches. Same metric name either way, so a reward reads
        it unchanged."""
        if self.options.derive_data is None:
            return self.score(model, batches=batches)
        self._need_setup("score_derivation")
        return self._reward_psnr(model, self._derive, "a derivation image")

    def _reward_psnr(self, model, pairs, what: str) -> dict[str, float]:
        """The reward PSNR of ``model`` (eval mode, no grad) averaged over ``pairs`` of (LR, HR) batches; a
        non-finite output gives NaN."""
        import torch

        setup = self._setup
        fn = REWARD_PSNRS[self.options.reward_psnr].fn
        was_training = model.training
        values = []
        model.eval()
        try:
            with torch.no_grad():
                for lr, hr in pairs:
                    out = model(lr.to(setup["device"])).cpu()
                    if out.shape != hr.shape:
                        raise InputError(f"sr-supernet: the child maps {what} of shape {tuple(lr.shape)} to "
                                         f"{tuple(out.shape)}, expected {tuple(hr.shape)}")
                    values.append(fn(out, hr, setup["scale"]) if torch.isfinite(out).all() else float("nan"))
        finally:
            model.train(was_training)
        return {self.reward_metric: float(np.mean(values))}

    def state_dict(self) -> dict:
        """The optimizer state and both stream positions (tensors and plain data; the streams use no RNG), and
        the schedule's ``total_steps``."""
        setup = self._need_setup("state_dict")
        return {"format": STATE_FORMAT, "seed": setup["seed"], "scale": setup["scale"],
                "train_position": self.train_position, "val_position": self.val_position,
                "total_steps": setup["total_steps"], "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` (after ``setup`` with the same supernet, scale and seed)."""
        setup = self._need_setup("load_state_dict")
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise InputError(f"sr-supernet: not an evaluator state of format {STATE_FORMAT}")
        keys = ("seed", "scale", "total_steps") if self.options.schedule != "constant" else ("seed", "scale")
        for key in keys:
            if state.get(key) != setup[key]:
                raise InputError(f"sr-supernet: the state was saved with {key} {state[key]}, this run has "
                                 f"{setup[key]}")
        self.optimizer.load_state_dict(state["optimizer"])
        for future in self._ahead.values():
            future.cancel()
        self._ahead.clear()
        self.train_position = int(state["train_position"])
        self.val_position = int(state["val_position"])


def _whole_images(name: str, paths: list, *, scale: int, channels: str, lr_kernel: str) -> list:
    """Each image of ``paths`` as float32 ``(lr, hr)`` ``1xCxHxW`` tensors in [0, 1]: the HR cropped to a
    multiple of ``scale`` (bottom/right), its LR made with ``lr_kernel`` as the training patches' are."""
    import torch

    from nasengine.sr.color import rgb_to_y
    from nasengine.sr.image import load_rgb

    out = []
    for path in paths:
        a = load_rgb(path)
        h, w = a.shape[0] - a.shape[0] % scale, a.shape[1] - a.shape[1] % scale
        if h < scale or w < scale:
            raise DataError(f"evaluator.derive_data {name!r}: {path} is smaller than the scale {scale}")
        hr = np.ascontiguousarray(a[:h, :w])
        lr = _lr_of(hr, scale, lr_kernel)
        if channels == "y":
            hr, lr = rgb_to_y(hr)[:, :, None], rgb_to_y(lr)[:, :, None]
        out.append(tuple(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))[None].copy())
                         .to(torch.float32).div_(255.0) for x in (lr, hr)))
    return out


def _channels_of(supernet, option: str) -> str:
    """``y``/``rgb``: the option, or (``auto``) the input channels of the supernet's space's densest graph."""
    if option != "auto":
        return option
    from nasengine.sr.models import channels_of

    graph = getattr(supernet, "graph", None)
    space = getattr(supernet, "space", None)
    if graph is None and space is not None:
        try:
            graph = space.decode(space.densest())
        except NotImplementedError:
            graph = None
    if graph is None or not hasattr(graph, "input_channels"):
        raise ConfigError("evaluator.channels: 'auto' needs a supernet with a space (or graph) to read the "
                          "image channels from; set evaluator.channels to 'y' or 'rgb'")
    return channels_of(int(graph.input_channels))


def _time_graph(graph, o, *, device: str, threads: int | None) -> tuple[float, float]:
    """Seconds of one standalone training step of ``graph`` (median of 3 after a warm-up) and of one scored
    validation batch, on random tensors; torch's RNG is left as it was."""
    import torch

    from nasengine.sr.models import channels_of
    from nasengine.train import _threads, init_model

    scale, c = int(graph.scale), 1 if channels_of(graph.input_channels) == "y" else 3
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(o.batch_size, c, o.patch_size // scale, o.patch_size // scale, generator=gen).to(device)
    y = torch.rand(o.batch_size, c, o.patch_size, o.patch_size, generator=gen).to(device)
    v = torch.rand(o.val_batch, c, o.val_patch_size // scale, o.val_patch_size // scale, generator=gen).to(device)

    def sync():
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()

    with _threads(threads), torch.random.fork_rng(devices=[]):
        model = init_model(graph, seed=0).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=o.lr, betas=tuple(o.betas))
        times = []
        for _ in range(4):
            t0 = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.l1_loss(model(x), y).backward()
            opt.step()
            sync()
            times.append(time.perf_counter() - t0)
        model.eval()
        with torch.no_grad():
            t0 = time.perf_counter()
            model(v)
            sync()
            score = time.perf_counter() - t0
    return float(sorted(times[1:])[1]), float(score)
