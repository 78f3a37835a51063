"""The Evaluator role: turns an architecture into metrics (PSNR, SSIM, ...).

An evaluator is constructed from a method preset's ``evaluator`` section (keyword options) in whatever
process runs the evaluation, so its options must be plain data. ``evaluate`` receives the decoded graph and
an :class:`EvalContext`; it returns a flat dict of float metrics or raises (any exception marks the
candidate failed; :class:`nasengine.sr.trainer.TrainingDiverged` is the usual one for a NaN loss).
Evaluations must be deterministic given ``ctx.seed`` so that a resumed search is exact.
"""
from __future__ import annotations

import abc
from typing import Any, Callable, Mapping

import attrs

__all__ = ["Evaluator", "EvalContext", "build_evaluator"]


@attrs.frozen
class EvalContext:
    """Where and how one evaluation runs.

    ``seed`` is derived from the run seed and the candidate, ``device`` is a torch device string chosen by
    the executor (``"cuda:1"`` on a GPU worker), ``workdir`` a folder the evaluator may use for checkpoints
    (``None``: keep nothing), ``threads`` the CPU threads it may use, ``report`` an optional callback for
    progress (``report(step, total)``).
    """

    seed: int = 0
    device: str = "cpu"
    workdir: str | None = None
    threads: int | None = None
    genome: Any = None
    report: Callable[[int, int], None] | None = None


class Evaluator(abc.ABC):
    """Base class of evaluators. Subclasses accept their preset options as keyword arguments."""

    @abc.abstractmethod
    def evaluate(self, graph, ctx: EvalContext) -> dict[str, float]:
        """Metrics of the architecture ``graph`` (a validated :class:`nasengine.graph.ArchGraph`)."""

    def check(self) -> None:
        """Called once in the driver before a search starts: raise a :class:`nasengine.errors.NasengineError`
        (``DataError``, ``ConfigError``) for what would make every evaluation fail, e.g. missing data.
        The default checks nothing."""

    def describe(self) -> str:
        return type(self).__name__


def build_evaluator(plugins, name: str, options: Mapping[str, Any]) -> Evaluator:
    """The registered evaluator ``name`` made with ``options`` in this process; options it does not take are a
    :class:`~nasengine.errors.ConfigError` naming it."""
    from nasengine.options import construct

    return construct("evaluator", name, plugins.evaluators.get(name), options)


# ---- the generic evaluator: incomplete training -------------------------------------------------------

_DATASETS: dict = {}


def _cached_dataset(**kwargs):
    """Decoded training images are kept per process: a worker evaluates many candidates on the same data."""
    from nasengine.sr.data import PatchDataset

    key = tuple(sorted(kwargs.items()))
    if key not in _DATASETS:
        _DATASETS.clear()
        _DATASETS[key] = PatchDataset(**kwargs)
    return _DATASETS[key]


class TrainingEvaluator(Evaluator):
    """Incomplete training: train the decoded network briefly, then score PSNR/SSIM on a validation set.

    Options (a preset's ``evaluator`` section): ``train_data`` (name or folder, default the embedded
    ``default``), ``val_data`` (benchmark name or folder, default ``Set5``), ``patch_size`` (HR side),
    ``batch_size``, exactly one of ``steps`` / ``epochs`` / ``seconds``, ``lr``, ``betas``, ``schedule``
    (``constant``/``step``/``cosine``, with ``step_size``), ``init_std`` (``None``: torch's default init;
    a float: N(0, std) weights and zero biases), ``lr_kernel`` (``pillow``/``matlab`` for training LR),
    ``augment``, ``patches_per_epoch``. Y-channel networks (1 input channel) train and score on Y; RGB ones
    on RGB, scored on Y. Returns ``psnr``, ``ssim``, ``train_loss``, ``train_seconds``, ``steps``.
    """

    def __init__(self, *, train_data: str = "default", val_data: str = "Set5", patch_size: int = 64,
                 batch_size: int = 16, steps: int | None = None, epochs: int | None = None,
                 seconds: float | None = None, lr: float = 1e-4, betas=(0.9, 0.999), schedule: str = "constant",
                 step_size: int | None = None, init_std: float | None = None, lr_kernel: str = "pillow",
                 augment: bool = True, patches_per_epoch: int | None = None, val_pipeline: str = "rgb"):
        from nasengine.sr.trainer import TrainConfig

        if steps is None and epochs is None and seconds is None:
            steps = 100
        self.train_data = train_data
        self.val_data = val_data
        self.patch_size = patch_size
        self.init_std = init_std
        self.lr_kernel = lr_kernel
        self.augment = augment
        self.patches_per_epoch = patches_per_epoch
        self.val_pipeline = val_pipeline
        # Validate the hyper-parameters now, in the driver, rather than in every worker.
        self.train_config = TrainConfig(lr=lr, betas=tuple(betas), batch_size=batch_size, steps=steps,
                                        epochs=epochs, seconds=seconds, schedule=schedule, step_size=step_size)

    def check(self) -> None:
        """The training and validation data must resolve (a ``DataError`` naming the set otherwise)."""
        from nasengine.sr.data import resolve_benchmark, resolve_training

        resolve_training(self.train_data)
        resolve_benchmark(self.val_data)

    def evaluate(self, graph, ctx: EvalContext) -> dict[str, float]:
        import time

        import torch

        from nasengine.builder import build
        from nasengine.sr.evaluate import evaluate
        from nasengine.sr.models import TorchUpscaler
        from nasengine.sr.trainer import Trainer

        shapes = graph.validate()
        in_channels = graph.input_channels
        channels = {1: "y", 3: "rgb"}.get(in_channels)
        if channels is None:
            from nasengine.errors import ValidationError

            raise ValidationError(f"the SR evaluator needs 1 (Y) or 3 (RGB) input channels, got {in_channels}",
                                  field="input.channels")
        scale = graph.scale
        del shapes
        if ctx.threads:
            torch.set_num_threads(ctx.threads)
        torch.manual_seed(ctx.seed)
        model = build(graph)
        if self.init_std is not None:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name.endswith("bias"):
                        p.zero_()
                    else:
                        p.normal_(0.0, self.init_std)
        dataset = _cached_dataset(images=self.train_data, scale=scale, patch_size=self.patch_size, channels=channels,
                                  augment=self.augment, lr_kernel=self.lr_kernel, seed=ctx.seed % (2**31),
                                  length=self.patches_per_epoch)
        dataset.seed = ctx.seed % (2**31)
        config = self.train_config.evolve(seed=ctx.seed % (2**31), device=ctx.device)
        trainer = Trainer(model, dataset, config, checkpoint_dir=ctx.workdir, progress=False,
                          callback=(lambda step, loss: ctx.report(step, trainer.total_steps or 0)) if ctx.report else None)
        t0 = time.perf_counter()
        result = trainer.fit()
        seconds = time.perf_counter() - t0
        report = evaluate(TorchUpscaler(model, scale=scale, channels=channels, device=config.device),
                          [self.val_data], scale=scale, pipeline=self.val_pipeline)
        (mean,) = report.sets
        return {"psnr": float(mean.psnr), "ssim": float(mean.ssim),
                "train_loss": float(result.losses[-1]) if result.losses else float("nan"),
                "train_seconds": seconds, "steps": float(result.step)}
