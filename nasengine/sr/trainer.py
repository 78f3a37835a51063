"""A small, exact, resumable trainer for SR networks (any ``nn.Module``: LR float [0, 1] NCHW -> HR).

    from nasengine.sr.data import PatchDataset, validation_set
    from nasengine.sr.trainer import TrainConfig, Trainer

    data = PatchDataset("default", 2, 64)                     # scale 2, 64x64 HR patches
    val = validation_set("Set5", scale=2)                     # callable: model -> {"psnr", "ssim"}
    cfg = TrainConfig(lr=1e-4, batch_size=16, steps=10_000, val_every=1000, checkpoint_every=1000)
    result = Trainer(model, data, cfg, validate=val, checkpoint_dir="runs/x").fit()
    # after a crash:
    Trainer.resume("runs/x/last.pt", model, data, validate=val).fit()

Reproducibility. ``fit`` calls ``torch.manual_seed(config.seed)`` before its first step; the batch of
step ``t`` (0-based) is the dataset's global samples ``t * batch_size + j`` (``dataset.sample(k)``, see
:class:`~nasengine.sr.data.PatchDataset`; a dataset without ``sample`` is indexed ``k % len``); the
learning rate is a pure function of the step. Nothing else is random, so with a ``steps`` or
``epochs`` budget a run is bit-reproducible on the same machine and software, and a run resumed from
a checkpoint ends with exactly the weights of an uninterrupted one (the checkpoint also restores the
torch RNG, for models that use dropout). That holds on the CPU; on a GPU it also needs deterministic
kernels (``torch.use_deterministic_algorithms(True)``, cuDNN benchmarking off), which the trainer
does not switch on for you. A custom :class:`TrainStep` that draws random numbers (a supernet
sampling a child per batch) keeps this when it draws from torch's global RNG or returns its own
generator's state from ``state_dict``. A ``seconds`` budget stops on the wall clock, so where it stops -- and,
with ``schedule="cosine"``, the learning rate, which then follows the elapsed fraction of the time --
is not reproducible.

Checkpoints (``<checkpoint_dir>/last.pt``, written atomically: temporary file, fsync, ``os.replace``)
hold the model, the optimizer, the schedule, the step, the config, the validation history, the losses,
the elapsed seconds, the RNG state and the training step's class and state; they load with
``torch.load(weights_only=True)``.

A non-finite loss (or, with ``grad_clip``, a non-finite gradient norm) raises
:class:`TrainingDiverged` naming the step and the value; the weights are left as after the last good
step, and no checkpoint is written for the failed step.
"""
from __future__ import annotations

import math
import numbers
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import attrs
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from nasengine.errors import ConfigError, InputError, NasengineError
from nasengine.sr.data import make_loader

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainStep",
    "Trainer",
    "TrainingDiverged",
    "scheduled_lr",
    "CHECKPOINT_NAME",
]

#: File name of the trainer's checkpoint inside ``checkpoint_dir``.
CHECKPOINT_NAME = "last.pt"
_FORMAT = "nasengine.sr.trainer/1"

SCHEDULES = ("constant", "step", "cosine")
LOSSES = ("l1", "mse")
#: Fields that shape the training trajectory: a resumed run must use the checkpoint's values.
_TRAJECTORY = ("lr", "betas", "batch_size", "schedule", "step_size", "gamma", "min_lr", "seed", "loss", "grad_clip")


class TrainingDiverged(NasengineError):
    """The loss (or the gradient norm) became NaN or infinite. ``step`` is the 1-based step that
    produced it, ``loss`` the value."""

    def __init__(self, step: int, loss: float, what: str = "loss"):
        self.step = step
        self.loss = loss
        super().__init__(
            f"training diverged at step {step}: {what} = {loss!r} "
            "(lower the learning rate, or clip the gradient norm: --set evaluator.grad_clip=1.0 in a search, "
            "--grad-clip 1.0 with nasengine train)"
        )


# --------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------
def _fail(name: str, problem: str, value) -> None:
    raise ConfigError(f"{name}: {problem}, got {value!r}")


def _int(name: str, value, minimum: int, *, optional: bool = False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(name, f"must be an integer >= {minimum}", value)
    if not isinstance(value, numbers.Integral):
        if not math.isfinite(value) or value != int(value):
            _fail(name, f"must be an integer >= {minimum}", value)
    if int(value) < minimum:
        _fail(name, f"must be an integer >= {minimum}", value)
    return int(value)


def _float(name: str, value, *, positive: bool = True, optional: bool = False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        _fail(name, "must be a finite number", value)
    if positive and value <= 0:
        _fail(name, "must be > 0", value)
    if not positive and value < 0:
        _fail(name, "must be >= 0", value)
    return float(value)


_DEVICE = re.compile(r"^(cpu|cuda|cuda:\d+|mps|auto)$")


@attrs.define(frozen=True, kw_only=True)
class TrainConfig:
    """Training hyper-parameters; every value is checked and a bad one raises
    :class:`~nasengine.errors.ConfigError` naming the field.

    Budget: exactly one of ``steps`` (optimizer steps), ``epochs`` (each ``len(dataset) //
    batch_size`` steps) or ``seconds`` (wall clock of the training loop, validation and checkpoints
    included; not bit-reproducible). A resumed run counts the steps and seconds done before.

    ``schedule``: ``"constant"``; ``"step"`` multiplies the rate by ``gamma`` (0.5: halving) every
    ``step_size`` steps (required); ``"cosine"`` anneals from ``lr`` to ``min_lr`` over the budget.
    ``val_every``: validate every so many steps (0: only at the end; the end is always validated).
    ``checkpoint_every``: checkpoint every so many steps (0: only at the end; needs a
    ``checkpoint_dir``). ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"``
    (CUDA when available). ``grad_clip``: max global gradient norm, or None. ``loss``: ``"l1"`` or
    ``"mse"``. ``num_workers``: DataLoader worker processes (the batches are the same with any).
    """

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 16
    steps: int | None = None
    epochs: int | None = None
    seconds: float | None = None
    schedule: str = "constant"
    step_size: int | None = None
    gamma: float = 0.5
    min_lr: float = 0.0
    val_every: int = 0
    checkpoint_every: int = 0
    seed: int = 0
    device: str = "auto"
    grad_clip: float | None = None
    loss: str = "l1"
    num_workers: int = 0

    def __attrs_post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        put("lr", _float("lr", self.lr))
        betas = self.betas
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            _fail("betas", "must be two numbers in [0, 1)", betas)
        for b in betas:
            if isinstance(b, bool) or not isinstance(b, numbers.Real) or not 0 <= b < 1:
                _fail("betas", "must be two numbers in [0, 1)", betas)
        put("betas", (float(betas[0]), float(betas[1])))
        put("batch_size", _int("batch_size", self.batch_size, 1))
        put("steps", _int("steps", self.steps, 1, optional=True))
        put("epochs", _int("epochs", self.epochs, 1, optional=True))
        put("seconds", _float("seconds", self.seconds, optional=True))
        given = [n for n in ("steps", "epochs", "seconds") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ConfigError(
                "steps/epochs/seconds: give exactly one training budget, got "
                + (", ".join(f"{n}={getattr(self, n)!r}" for n in given) if given else "none")
            )
        if not isinstance(self.schedule, str) or self.schedule.lower() not in SCHEDULES:
            _fail("schedule", f"must be one of {', '.join(SCHEDULES)}", self.schedule)
        put("schedule", self.schedule.lower())
        put("step_size", _int("step_size", self.step_size, 1, optional=True))
        if self.schedule == "step" and self.step_size is None:
            _fail("step_size", 'is required with schedule="step"', self.step_size)
        put("gamma", _float("gamma", self.gamma))
        put("min_lr", _float("min_lr", self.min_lr, positive=False))
        if self.min_lr > self.lr:
            _fail("min_lr", f"must not exceed lr={self.lr}", self.min_lr)
        put("val_every", _int("val_every", self.val_every, 0))
        put("checkpoint_every", _int("checkpoint_every", self.checkpoint_every, 0))
        put("seed", _int("seed", self.seed, 0))
        if not isinstance(self.device, str) or not _DEVICE.match(self.device.lower()):
            _fail("device", 'must be "cpu", "cuda", "cuda:N", "mps" or "auto"', self.device)
        put("device", self.device.lower())
        put("grad_clip", _float("grad_clip", self.grad_clip, optional=True))
        if not isinstance(self.loss, str) or self.loss.lower() not in LOSSES:
            _fail("loss", f"must be one of {', '.join(LOSSES)}", self.loss)
        put("loss", self.loss.lower())
        put("num_workers", _int("num_workers", self.num_workers, 0))

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (safe for ``torch.load(weights_only=True)`` and JSON)."""
        d = attrs.asdict(self)
        d["betas"] = list(d["betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown TrainConfig field (known: {', '.join(sorted(names))})")
        return cls(**d)

    def evolve(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (validated again)."""
        return attrs.evolve(self, **changes)


def scheduled_lr(config: TrainConfig, step: int, *, total_steps: int | None = None, fraction: float | None = None) -> float:
    """The learning rate used for the optimizer step that follows ``step`` completed steps.
    Cosine needs ``total_steps`` (steps/epochs budget) or the elapsed ``fraction`` of the budget
    (seconds budget)."""
    c = config
    if c.schedule == "constant":
        return c.lr
    if c.schedule == "step":
        return c.lr * c.gamma ** (step // c.step_size)
    if total_steps is not None:
        frac = min(step / max(total_steps, 1), 1.0)
    elif fraction is not None:
        frac = min(max(fraction, 0.0), 1.0)
    else:
        raise ConfigError("schedule: cosine needs the total number of steps or the elapsed fraction")
    return c.min_lr + (c.lr - c.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))


# --------------------------------------------------------------------------------------------------
# the training step
# --------------------------------------------------------------------------------------------------
class TrainStep:
    """What one optimizer step computes, and over which parameters: the trainer's pluggable part.

    The default (this class) is plain SR training: ``loss(model(lr), hr)`` (``"l1"`` or ``"mse"``)
    over one Adam group holding every trainable parameter. Subclass it for a supernet (sample a
    child per batch), an extra loss term (a differentiable cost), or parameter groups of their own:

    * :meth:`param_groups` ``(model) -> list[dict]``: Adam parameter groups (``{"params": [...],
      **adam options}``). A group's ``"lr"`` is its base rate: it follows the trainer's schedule
      scaled by ``lr / config.lr``; a group without ``"lr"`` follows the schedule itself.
    * :meth:`forward` ``(model, lr, hr, step) -> (loss, logs)``: the scalar loss tensor to
      minimise for the batch (``step``: steps completed before it) and a dict of numbers shown in
      the progress bar and handed to a callback's ``on_logs(step, logs)``.
    * :meth:`state_dict` / :meth:`load_state_dict`: state of the step itself (e.g. its own
      random generator), saved in the trainer's checkpoints (tensors and plain data only).

    The trainer keeps the rest: schedule, divergence checks (a non-finite loss), gradient
    clipping, checkpoints, resume, validation and progress.
    """

    def __init__(self, loss: str = "l1"):
        if not isinstance(loss, str) or loss.lower() not in LOSSES:
            _fail("loss", f"must be one of {', '.join(LOSSES)}", loss)
        self.loss = loss.lower()

    def param_groups(self, model: torch.nn.Module) -> list[dict]:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def reconstruction_loss(self, out: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """``loss(out, hr)`` after checking that the shapes agree (:class:`InputError` otherwise)."""
        if out.shape != hr.shape:
            raise InputError(
                f"model: maps an LR batch to {tuple(out.shape)}, but the HR batch is {tuple(hr.shape)}"
            )
        if self.loss == "l1":
            return F.l1_loss(out, hr)
        return F.mse_loss(out, hr)

    def forward(self, model: torch.nn.Module, lr: torch.Tensor, hr: torch.Tensor, step: int):
        out = model(lr)
        if out.shape != hr.shape:
            raise InputError(
                f"model: maps an LR batch of shape {tuple(lr.shape)} to "
                f"{tuple(out.shape)}, but the HR batch is {tuple(hr.shape)}"
            )
        return self.reconstruction_loss(out, hr), {}

    def __call__(self, model, lr, hr, step):
        return self.forward(model, lr, hr, step)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise InputError(f"{type(self).__name__}: the checkpoint holds a training-step state this step "
                             "does not take")


# --------------------------------------------------------------------------------------------------
# trainer
# --------------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns. ``step``: steps done in total (resumed runs included);
    ``losses``: the loss of every step, ``losses[t]`` of step ``t + 1``; ``history``: one dict per
    validation, ``{"step": t, **metrics}``; ``seconds``: wall clock of training (all segments);
    ``checkpoint``: the last checkpoint written, if any; ``logs``: the training step's logs of the
    last step done in this segment (``{}`` for the default step)."""

    step: int
    losses: list[float] = field(repr=False)
    history: list[dict[str, float]]
    seconds: float
    checkpoint: Path | None = None
    logs: dict[str, float] = field(default_factory=dict)

    @property
    def final_validation(self) -> dict[str, float] | None:
        return self.history[-1] if self.history else None


def _resolve_device(name: str) -> torch.device:
    from nasengine.device import resolve_device

    try:
        return resolve_device(name)
    except InputError as exc:
        raise ConfigError(str(exc)) from None


def _qualname(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _read_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise InputError(f"{path}: not a nasengine trainer checkpoint (format {_FORMAT})")
    return state


class Trainer:
    """Train ``model`` on ``dataset`` with Adam (see the module docstring).

    ``train_step``: a :class:`TrainStep` (default: ``TrainStep(config.loss)``): the forward pass,
    the loss and the parameter groups of one step.
    ``validate``: any callable ``model -> dict[str, float]`` (e.g. a
    :class:`~nasengine.sr.data.ValidationPatches`), called every ``config.val_every`` steps and at
    the end; the model is handed over as it is (the callable switches it to eval mode if it wants).
    ``checkpoint_dir``: where ``last.pt`` goes (None: no checkpoints). ``progress``: a tqdm bar
    (shown only on a terminal) with the step, the loss and the last validation PSNR. ``callback``:
    ``f(step, loss)`` or an object with ``on_step(step, loss)`` (and optionally
    ``on_validation(step, metrics)`` and ``on_logs(step, logs)``, the latter when the training
    step returned logs), called after every step, once its validation and checkpoint are done; an
    exception from it stops training (the checkpoint of that step is already written).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        dataset,
        config: TrainConfig,
        *,
        validate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        checkpoint_dir=None,
        progress: bool = True,
        callback=None,
        train_step: TrainStep | None = None,
    ):
        if isinstance(config, dict):
            config = TrainConfig.from_dict(config)
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"config: expected a TrainConfig, got {type(config).__name__}")
        if not isinstance(model, torch.nn.Module):
            raise InputError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.dataset = dataset
        self.config = config
        self.validate = validate
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.progress = progress
        self.callback = callback
        self.device = _resolve_device(config.device)

        self.steps_per_epoch: int | None = None
        if config.epochs is not None:
            try:
                n = len(dataset)
            except TypeError:
                raise ConfigError("epochs: the dataset has no length; give a steps budget") from None
            if n < config.batch_size:
                raise ConfigError(
                    f"epochs: an epoch of {n} samples holds no batch of batch_size={config.batch_size}"
                )
            self.steps_per_epoch = n // config.batch_size
        self.total_steps: int | None = (
            config.steps if config.steps is not None
            else config.epochs * self.steps_per_epoch if config.epochs is not None
            else None
        )

        self.model.to(self.device)
        if train_step is None:
            train_step = TrainStep(config.loss)
        elif not isinstance(train_step, TrainStep):
            raise ConfigError(f"train_step: expected a TrainStep, got {type(train_step).__name__}")
        self.train_step = train_step
        groups = [dict(g) for g in train_step.param_groups(self.model)]
        for g in groups:
            g["params"] = list(g.get("params", ()))
        if not any(g["params"] for g in groups):
            raise InputError("model: it has no trainable parameters")
        # A group's own "lr" scales the schedule; None: the group follows it as it is.
        self._group_lrs: list[float | None] = [
            None if g.get("lr") is None else _float("param_groups.lr", g["lr"]) for g in groups
        ]
        self.optimizer = torch.optim.Adam(groups, lr=config.lr, betas=config.betas)
        self.last_logs: dict[str, float] = {}
        self.step = 0
        self.losses: list[float] = []
        self.history: list[dict[str, float]] = []
        self.seconds_before = 0.0
        self._started = False
        self._last_checkpoint: Path | None = None
        self._checkpoint_step: int | None = None

    # ---- checkpoints ----------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return self.checkpoint_dir / CHECKPOINT_NAME if self.checkpoint_dir is not None else None

    def state_dict(self, seconds: float | None = None) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": _FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {
                "schedule": self.config.schedule,
                "lr": float(self.optimizer.param_groups[0]["lr"]),
                "total_steps": self.total_steps,
            },
            "config": self.config.to_dict(),
            "history": [dict(h) for h in self.history],
            "losses": torch.tensor(self.losses, dtype=torch.float64),
            "seconds": float(self.seconds_before if seconds is None else seconds),
            "rng": rng,
            "model_class": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
            "train_step": self.train_step.state_dict(),
            "train_step_class": _qualname(self.train_step),
        }

    def save_checkpoint(self, path=None, *, seconds: float | None = None) -> Path:
        """Write the full training state atomically (default: ``checkpoint_dir/last.pt``)."""
        if path is None:
            if self.checkpoint_path is None:
                raise ConfigError("checkpoint_dir: no checkpoint folder was given")
            path = self.checkpoint_path
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                torch.save(self.state_dict(seconds), fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        self._last_checkpoint = path
        self._checkpoint_step = self.step
        return path

    def load_checkpoint(self, path) -> None:
        """Restore the state saved by :meth:`save_checkpoint`; the next :meth:`fit` continues
        exactly. The checkpoint's trajectory fields (lr, betas, batch_size, schedule, step_size,
        gamma, min_lr, seed, loss, grad_clip) must equal this trainer's config (``ConfigError``
        naming the field otherwise); the budget, validation, checkpoint and device fields may
        differ (e.g. to train longer)."""
        state = _read_checkpoint(path)
        self._apply(state, Path(path))

    def load_state_dict(self, state: dict, source: str = "the state") -> None:
        """Restore a state made by :meth:`state_dict` (e.g. kept inside a search loop's own checkpoint file);
        the checks and the effect are those of :meth:`load_checkpoint` (``source`` names it in errors)."""
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise InputError(f"{source}: not a nasengine trainer state (format {_FORMAT})")
        self._apply(state, Path(source))

    def _apply(self, state: dict, path: Path) -> None:
        saved = TrainConfig.from_dict(state["config"])
        for name in _TRAJECTORY:
            if getattr(saved, name) != getattr(self.config, name):
                raise ConfigError(
                    f"{name}: the checkpoint {path} was trained with {name}={getattr(saved, name)!r}, "
                    f"this config has {getattr(self.config, name)!r}; resuming would not be exact"
                )
        step_class = state.get("train_step_class", _qualname(TrainStep()))
        if step_class != _qualname(self.train_step):
            raise ConfigError(
                f"train_step: the checkpoint {path} was trained with {step_class}, this trainer has "
                f"{_qualname(self.train_step)}; resuming would not be exact"
            )
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise InputError(f"{path}: the checkpoint does not fit this model ({exc})") from exc
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:  # other parameter groups
            raise InputError(f"{path}: the checkpoint's optimizer does not fit this training step ({exc})") from exc
        self.train_step.load_state_dict(state.get("train_step") or {})
        self.step = int(state["step"])
        self.losses = [float(x) for x in state["losses"].tolist()]
        self.history = [dict(h) for h in state["history"]]
        self.seconds_before = float(state["seconds"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self._started = True
        self._last_checkpoint = path
        self._checkpoint_step = self.step

    @classmethod
    def resume(
        cls,
        path,
        model: torch.nn.Module,
        dataset,
        *,
        config: TrainConfig | None = None,
        validate=None,
        checkpoint_dir=None,
        progress: bool = True,
        callback=None,
        train_step: TrainStep | None = None,
    ) -> "Trainer":
        """A fresh trainer that continues the run saved in ``path`` (config from the checkpoint
        unless ``config`` is given, e.g. with a larger budget; checkpoints go next to ``path``
        unless ``checkpoint_dir`` is given). Call :meth:`fit` on it."""
        path = Path(path)
        state = _read_checkpoint(path)
        cfg = config if config is not None else TrainConfig.from_dict(state["config"])
        trainer = cls(
            model,
            dataset,
            cfg,
            validate=validate,
            checkpoint_dir=checkpoint_dir if checkpoint_dir is not None else path.parent,
            progress=progress,
            callback=callback,
            train_step=train_step,
        )
        trainer._apply(state, path)
        return trainer

    # ---- training -------------------------------------------------------------------------
    def _run_validation(self) -> dict[str, float]:
        metrics = {k: float(v) for k, v in dict(self.validate(self.model)).items()}
        self.model.train()
        entry = {"step": self.step, **metrics}
        self.history.append(entry)
        on_val = getattr(self.callback, "on_validation", None)
        if on_val is not None:
            on_val(self.step, metrics)
        return metrics

    def _notify(self, loss: float, logs: dict[str, float]) -> None:
        cb = self.callback
        if cb is None:
            return
        on_logs = getattr(cb, "on_logs", None)
        if logs and on_logs is not None:
            on_logs(self.step, dict(logs))
        on_step = getattr(cb, "on_step", None)
        if on_step is not None:
            on_step(self.step, loss)
        elif callable(cb):
            cb(self.step, loss)

    def fit(self, resume_from=None) -> TrainResult:
        """Train until the budget is spent (continuing a loaded or ``resume_from`` checkpoint), then
        checkpoint the final step (if ``checkpoint_dir``) before validating it (if ``validate``; the
        checkpoint is written again with the validation): a failing final validation loses no training,
        and resuming the checkpoint runs only what is left."""
        cfg = self.config
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        if not self._started:
            torch.manual_seed(cfg.seed)
            self._started = True
        total = self.total_steps
        start = self.step
        remaining = None if total is None else max(total - start, 0)
        loader = make_loader(
            self.dataset,
            cfg.batch_size,
            start_step=start,
            steps=remaining,
            num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        was_training = self.model.training
        self.model.train()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        t0 = time.perf_counter()
        elapsed = lambda: self.seconds_before + (time.perf_counter() - t0)  # noqa: E731
        last_psnr = next((h["psnr"] for h in reversed(self.history) if "psnr" in h), None)
        bar = tqdm(
            total=total,
            initial=start,
            disable=True if not self.progress else None,  # None: shown on a terminal only
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )
        try:
            if remaining != 0 and not (cfg.seconds is not None and elapsed() >= cfg.seconds):
                for lr_batch, hr_batch in loader:
                    if cfg.schedule == "cosine" and total is None:
                        rate = scheduled_lr(cfg, self.step, fraction=elapsed() / cfg.seconds)
                    else:
                        rate = scheduled_lr(cfg, self.step, total_steps=total)
                    for group, base in zip(self.optimizer.param_groups, self._group_lrs):
                        group["lr"] = rate if base is None else base * (rate / cfg.lr)
                    lr_batch = lr_batch.to(self.device, non_blocking=True)
                    hr_batch = hr_batch.to(self.device, non_blocking=True)
                    loss, logs = self.train_step(self.model, lr_batch, hr_batch, self.step)
                    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                        raise InputError(f"{type(self.train_step).__name__}: a training step must return a "
                                         f"scalar loss tensor, got {type(loss).__name__}")
                    logs = {str(k): float(v.detach() if isinstance(v, torch.Tensor) else v)
                            for k, v in (logs or {}).items()}
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise TrainingDiverged(self.step + 1, value)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip is not None:
                        norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
                        if not math.isfinite(norm):
                            raise TrainingDiverged(self.step + 1, norm, what="gradient norm")
                    self.optimizer.step()
                    self.step += 1
                    self.losses.append(value)
                    self.last_logs = logs
                    if self.validate is not None and cfg.val_every and self.step % cfg.val_every == 0:
                        last_psnr = self._run_validation().get("psnr", last_psnr)
                    if (
                        self.checkpoint_dir is not None
                        and cfg.checkpoint_every
                        and self.step % cfg.checkpoint_every == 0
                    ):
                        self.save_checkpoint(seconds=elapsed())
                    bar.update(1)
                    post = f"loss={value:.4f}"
                    post += "".join(f" {k}={v:.4g}" for k, v in logs.items())
                    if last_psnr is not None:
                        post += f" val_psnr={last_psnr:.2f}"
                    bar.set_postfix_str(post, refresh=False)
                    self._notify(value, logs)
                    if cfg.seconds is not None and elapsed() >= cfg.seconds:
                        break
            seconds = elapsed()
            # The trained weights are saved before anything after the training that could fail (the final
            # validation here, the caller's model file): a resume then has only that left to do.
            if self.checkpoint_dir is not None and self._checkpoint_step != self.step:
                self.save_checkpoint(seconds=seconds)
            if self.validate is not None and (not self.history or self.history[-1]["step"] != self.step):
                self._run_validation()
                if self.checkpoint_dir is not None:
                    self.save_checkpoint(seconds=seconds)  # again, now with the final validation in it
        finally:
            bar.close()
            self.model.train(was_training)
        self.seconds_before = seconds
        return TrainResult(
            step=self.step,
            losses=list(self.losses),
            history=[dict(h) for h in self.history],
            seconds=seconds,
            checkpoint=self._last_checkpoint,
            logs=dict(self.last_logs),
        )
