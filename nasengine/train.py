"""Train an architecture to a model file: the one implementation behind the ``sr-train`` evaluator's incomplete
training, ``nasengine train``, and a method's "retrain the found architecture" stage.

    from nasengine.train import TrainRecipe, train_architecture
    from nasengine.sr.trainer import TrainConfig

    recipe = TrainRecipe(config=TrainConfig(lr=1e-4, steps=10_000, checkpoint_every=500), patch_size=96)
    done = train_architecture("falsr:FALSR-A", "runs/falsr-a", recipe)   # genome file, name, Architecture or ArchGraph
    done.path      # runs/falsr-a/model.pt: the architecture + weights (nasengine.checkpoints format)
    done.metrics   # {"psnr": ..., "ssim": ...} on recipe.val_data (Y channel, the standard protocol)
    # after a crash: the same call with resume=True continues runs/falsr-a/checkpoints/last.pt exactly

:func:`train_model` is the same without the folder (an evaluator keeps nothing but the metrics).
Networks with 1 input channel train and score on Y, those with 3 on RGB (scored on Y): see
:func:`nasengine.sr.models.channels_of`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import attrs

from nasengine.errors import ConfigError, ValidationError
from nasengine.sr.evaluate import PIPELINES
from nasengine.sr.trainer import TrainConfig, TrainResult, TrainStep

__all__ = ["TrainRecipe", "TrainedModel", "resolve_architecture", "init_model", "train_model", "recipe_steps",
           "time_steps", "time_validation",
           "train_architecture", "MODEL_FILE", "CHECKPOINT_FOLDER"]

#: What :func:`train_architecture` writes inside its output folder.
MODEL_FILE = "model.pt"
CHECKPOINT_FOLDER = "checkpoints"


@attrs.frozen(kw_only=True)
class TrainRecipe:
    """How to train: the optimizer's :class:`~nasengine.sr.trainer.TrainConfig` (budget, lr, schedule, seed,
    device, validation and checkpoint intervals) and the data.

    ``train_data``: training images (name or folder); ``patch_size``: HR patch side; ``lr_kernel``
    (``pillow``/``matlab``), ``augment``, ``patches_per_epoch``: see :class:`nasengine.sr.data.PatchDataset`.
    ``val_data``: benchmark set scored during and after training (``None``: no validation);
    ``val_pipeline``: its LR pipeline (``rgb`` or ``y``). ``init_std``: ``None`` keeps torch's default
    initialisation, a float draws weights from N(0, std) with zero biases.
    """

    config: TrainConfig = attrs.field(factory=lambda: TrainConfig(steps=1000))
    train_data: str = "default"
    patch_size: int = 64
    lr_kernel: str = "pillow"
    augment: bool = True
    patches_per_epoch: int | None = None
    val_data: str | None = "Set5"
    val_pipeline: str = attrs.field(default="rgb")
    init_std: float | None = None

    @val_pipeline.validator
    def _check_pipeline(self, _attribute, value) -> None:
        if value not in PIPELINES:
            raise ConfigError(f"val_pipeline: must be one of {', '.join(PIPELINES)}, got {value!r}")

    def dataset(self, scale: int, channels: str, seed: int = 0):
        """The :class:`~nasengine.sr.data.PatchDataset` of this recipe for a network of ``scale`` and
        ``channels`` (``"y"``/``"rgb"``)."""
        from nasengine.sr.data import PatchDataset

        return PatchDataset(self.train_data, scale=scale, patch_size=self.patch_size, channels=channels,
                            augment=self.augment, lr_kernel=self.lr_kernel, seed=seed, length=self.patches_per_epoch)


@attrs.define
class TrainedModel:
    """What :func:`train_model` / :func:`train_architecture` return. ``metrics``: the final validation
    (``psnr``, ``ssim``; empty without ``val_data``); ``train_seconds``: wall clock of this call's training,
    validation excluded; ``path`` and ``architecture``: the model file and what it holds (None from
    :func:`train_model`)."""

    module: Any
    scale: int
    channels: str
    result: TrainResult
    metrics: dict[str, float]
    train_seconds: float
    path: Path | None = None
    architecture: Any = None

    @property
    def final_loss(self) -> float:
        return float(self.result.losses[-1]) if self.result.losses else float("nan")


def resolve_architecture(spec, *, plugins=None):
    """A :class:`nasengine.genomefile.Architecture` for ``spec``: an Architecture, an
    :class:`~nasengine.graph.ArchGraph` (named ``"graph"``), a genome/graph file or a registered name."""
    from nasengine.genomefile import Architecture, load_architecture
    from nasengine.graph import ArchGraph

    if isinstance(spec, Architecture):
        return spec
    if isinstance(spec, ArchGraph):
        return Architecture(graph=spec, name="graph")
    return load_architecture(spec, plugins=plugins)


def init_model(graph, *, seed: int = 0, init_std: float | None = None):
    """The torch module of ``graph`` with its initial weights drawn after ``torch.manual_seed(seed)``
    (``init_std``: see :class:`TrainRecipe`)."""
    import torch

    from nasengine.builder import build

    torch.manual_seed(seed)
    model = build(graph)
    if init_std is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                else:
                    p.normal_(0.0, init_std)
    return model


class _Progress:
    """Trainer callback: the caller's callback (function or hook object) plus ``report(step, total)``."""

    def __init__(self, callback, report, total: Callable[[], int | None]):
        self.callback, self.report, self.total = callback, report, total

    def on_step(self, step: int, loss: float) -> None:
        cb = self.callback
        if cb is not None:
            if hasattr(cb, "on_step"):
                cb.on_step(step, loss)
            elif callable(cb):
                cb(step, loss)
        if self.report is not None:
            self.report(step, self.total() or 0)

    def on_validation(self, step: int, metrics: dict) -> None:
        hook = getattr(self.callback, "on_validation", None)
        if hook is not None:
            hook(step, metrics)

    def on_logs(self, step: int, logs: dict) -> None:
        hook = getattr(self.callback, "on_logs", None)
        if hook is not None:
            hook(step, logs)


def train_model(graph, recipe: TrainRecipe, *, seed: int | None = None, device: str | None = None, dataset=None,
                checkpoint_dir=None, resume: bool = False, progress: bool = False, callback=None,
                report: Callable[[int, int], None] | None = None,
                train_step: TrainStep | None = None, model=None) -> TrainedModel:
    """Build ``graph`` (an :class:`~nasengine.graph.ArchGraph`), train it with ``recipe``, score it on
    ``recipe.val_data``. ``model``: a torch module of ``graph`` to start from instead (fine-tuning its weights).

    ``seed`` (default ``recipe.config.seed``) seeds the initial weights; training and patch sampling use
    ``seed % 2**31``. ``device`` overrides the config's. ``dataset``: the training patches, if the caller
    keeps them (default: ``recipe.dataset(...)``; its ``seed`` is set to the training seed).
    ``checkpoint_dir``: where the trainer's ``last.pt`` goes; ``resume``: continue it when it exists.
    ``callback``: a :class:`~nasengine.sr.trainer.Trainer` callback; ``report(step, total)``: progress
    (total 0 for a seconds budget). ``train_step``: the trainer's step (default: L1 over all weights).
    """
    from nasengine.sr.data import resolve_benchmark
    from nasengine.sr.evaluate import evaluate
    from nasengine.sr.models import TorchUpscaler, channels_of
    from nasengine.sr.trainer import CHECKPOINT_NAME, Trainer

    graph.validate()
    channels = channels_of(graph.input_channels)
    scale = int(graph.scale)
    if recipe.val_data:
        resolve_benchmark(recipe.val_data)  # a missing set is an error now, not after the training
    seed = recipe.config.seed if seed is None else int(seed)
    train_seed = seed % (2**31)
    config = recipe.config.evolve(seed=train_seed, **({"device": device} if device is not None else {}))
    if model is None:
        model = init_model(graph, seed=seed, init_std=recipe.init_std)
    if dataset is None:
        dataset = recipe.dataset(scale, channels, train_seed)
    dataset.seed = train_seed

    validating = [0.0]  # seconds spent in validation

    def validate(module) -> dict[str, float]:
        t0 = time.perf_counter()
        rep = evaluate(TorchUpscaler(module, scale=scale, channels=channels, device=trainer.device),
                       [recipe.val_data], scale=scale, pipeline=recipe.val_pipeline)
        (mean,) = rep.sets
        validating[0] += time.perf_counter() - t0
        return {"psnr": float(mean.psnr), "ssim": float(mean.ssim)}

    hooks = _Progress(callback, report, lambda: trainer.total_steps) if callback is not None or report is not None else None
    trainer = Trainer(model, dataset, config, validate=validate if recipe.val_data else None,
                      checkpoint_dir=checkpoint_dir, progress=progress, callback=hooks, train_step=train_step)
    last = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    t0 = time.perf_counter()
    result = trainer.fit(resume_from=last if resume and last is not None and last.exists() else None)
    seconds = time.perf_counter() - t0 - validating[0]
    final = result.final_validation or {}
    metrics = {k: float(v) for k, v in final.items() if k != "step"}
    return TrainedModel(module=model, scale=scale, channels=channels, result=result, metrics=metrics,
                        train_seconds=seconds)


def recipe_steps(recipe: TrainRecipe) -> tuple[float | None, str]:
    """How many optimizer steps ``recipe`` trains (``None`` for a seconds budget) and the phrase for a plan."""
    cfg = recipe.config
    if cfg.steps is not None:
        return float(cfg.steps), f"{cfg.steps} steps"
    if cfg.epochs is not None:
        from nasengine.sr.data import DEFAULT_LENGTH

        per_epoch = int(recipe.patches_per_epoch or DEFAULT_LENGTH)
        return float(cfg.epochs * (per_epoch // cfg.batch_size)), f"{cfg.epochs} epochs of {per_epoch} patches"
    return None, f"{cfg.seconds:g} s"


def _threads(threads: int | None):
    """A context that runs torch with ``threads`` CPU threads (``None``: as it is), then restores them."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def ctx():
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(int(threads))
        try:
            yield
        finally:
            torch.set_num_threads(before)

    return ctx()


def time_steps(graph, recipe: TrainRecipe, *, device: str = "cpu", threads: int | None = None,
               steps: int = 3) -> float:
    """Seconds per training step of ``graph`` with ``recipe`` (its batch, HR patch, Adam) on ``device`` with
    ``threads`` torch threads: the median of ``steps`` steps after one warm-up step, on random patches."""
    import torch

    from nasengine.sr.models import channels_of

    scale, c = int(graph.scale), 1 if channels_of(graph.input_channels) == "y" else 3
    batch, lr_side = recipe.config.batch_size, recipe.patch_size // scale
    with _threads(threads):
        model = init_model(graph, seed=0, init_std=recipe.init_std).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=recipe.config.lr, betas=recipe.config.betas)
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(batch, c, lr_side, lr_side, generator=gen).to(device)
        y = torch.rand(batch, c, lr_side * scale, lr_side * scale, generator=gen).to(device)
        times = []
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.l1_loss(model(x), y).backward()
            opt.step()
            if str(device).startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    times = sorted(times[1:])
    return float(times[len(times) // 2])


def time_validation(graph, recipe: TrainRecipe, *, device: str = "cpu", threads: int | None = None) -> float:
    """Seconds one validation of ``graph`` on ``recipe.val_data`` takes (0 without validation data)."""
    if not recipe.val_data:
        return 0.0
    from nasengine.sr.evaluate import evaluate
    from nasengine.sr.models import TorchUpscaler, channels_of

    with _threads(threads):
        model = init_model(graph, seed=0, init_std=recipe.init_std)
        up = TorchUpscaler(model, scale=int(graph.scale), channels=channels_of(graph.input_channels), device=device)
        t0 = time.perf_counter()
        evaluate(up, [recipe.val_data], scale=int(graph.scale), pipeline=recipe.val_pipeline)
        return time.perf_counter() - t0


def train_architecture(architecture, out, recipe: TrainRecipe, *, resume: bool = False, progress: bool = True,
                       callback=None, train_step: TrainStep | None = None, plugins=None) -> TrainedModel:
    """Train ``architecture`` (see :func:`resolve_architecture`) with ``recipe`` into the folder ``out``:
    ``out/model.pt`` (architecture + weights + final metrics, :func:`nasengine.checkpoints.save_trained_model`)
    and the trainer's checkpoints in ``out/checkpoints/``; ``resume`` continues them exactly."""
    from nasengine.checkpoints import save_trained_model
    from nasengine.sr.models import channels_of

    arch = resolve_architecture(architecture, plugins=plugins)
    try:
        channels_of(arch.graph.input_channels)
    except ValidationError as exc:
        raise ValidationError(f"{arch.name}: {exc}") from None
    out = Path(out)
    done = train_model(arch.graph, recipe, checkpoint_dir=out / CHECKPOINT_FOLDER, resume=resume, progress=progress,
                       callback=callback, train_step=train_step)
    done.architecture = arch
    done.path = save_trained_model(out / MODEL_FILE, arch, done.module, metrics=done.metrics)
    return done
