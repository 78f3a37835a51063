"""The generic evaluator ``sr-train``: incomplete training (FALSR's), then PSNR/SSIM on a validation set."""
from __future__ import annotations

from typing import Any

import attrs

from nasengine.evaluator import EvalContext, EvalPlan, Evaluator
from nasengine.options import choice, flag, option, optional, positive, read_options, real, sequence, string, whole

__all__ = ["TrainingEvaluator"]


class TrainingEvaluator(Evaluator):
    """Incomplete training: train the decoded network briefly, then score PSNR/SSIM on a validation set.

    Options (a preset's ``evaluator`` section): ``train_data`` (name or folder, default the embedded
    ``default``), ``val_data`` (benchmark name or folder, default ``Set5``), ``patch_size`` (HR side),
    ``batch_size``, exactly one of ``steps`` / ``epochs`` / ``seconds``, ``lr``, ``betas``, ``schedule``
    (``constant``/``step``/``cosine``, with ``step_size``), ``init_std`` (``None``: torch's default init;
    a float: N(0, std) weights and zero biases), ``lr_kernel`` (``pillow``/``matlab`` for training LR),
    ``augment``, ``patches_per_epoch``, ``gamma``, ``grad_clip``, ``checkpoint_every`` (see ``Options``). Y-channel networks (1 input channel) train and score on Y; RGB ones
    on RGB, scored on Y. Returns ``psnr``, ``ssim``, ``train_loss``, ``train_seconds``, ``steps``.

    With a ``workdir`` the trainer checkpoints there (every ``checkpoint_every`` steps and at the end). With
    ``keep_model`` too (a one-shot run's retraining), the folder is laid out as
    :func:`nasengine.train.train_architecture` lays out its own: the trained model in ``workdir/model.pt``,
    the checkpoints in ``workdir/checkpoints/``, continued when the evaluation runs again after a kill.

    The training itself is :func:`nasengine.train.train_model`. The decoded training images are kept by the
    evaluator (one set): a worker keeps its evaluator and evaluates many candidates on the same data.
    """

    @attrs.frozen(kw_only=True)
    class Options:
        train_data: str = option("default", string(), help="training images: a dataset name or a folder")
        val_data: str = option("Set5", string(), help="validation set: a benchmark name or a folder")
        patch_size: int = option(64, whole(2), help="HR patch side of the training batches")
        batch_size: int = option(16, whole(1), help="patches per training step")
        steps: int | None = option(None, optional(whole(1)),
                                   help="training steps (100 when none of steps/epochs/seconds is set)")
        epochs: int | None = option(None, optional(whole(1)), help="training epochs (instead of steps)")
        seconds: float | None = option(None, optional(positive), help="training time in s (instead of steps)")
        lr: float = option(1e-4, positive, help="Adam learning rate")
        betas: tuple = option((0.9, 0.999), sequence(real(0.0, 1.0, hi_open=True), length=2), help="Adam betas")
        schedule: str = option("constant", choice("constant", "step", "cosine"), help="learning-rate schedule")
        step_size: int | None = option(None, optional(whole(1)), help="steps between decays (schedule step)")
        gamma: float = option(0.5, real(0.0, 1.0, lo_open=True), help="decay factor of the step schedule")
        grad_clip: float | None = option(None, optional(positive), help="max global gradient norm (none: off)")
        init_std: float | None = option(None, optional(positive),
                                        help="weights from N(0, std), zero biases (none: torch's init)")
        lr_kernel: str = option("pillow", choice("pillow", "matlab"), help="how training LR patches are made")
        augment: bool = option(True, flag, help="random flips and rotations of the training patches")
        patches_per_epoch: int | None = option(None, optional(whole(1)), help="patches in one epoch")
        val_pipeline: str = option("rgb", choice("rgb", "y"), help="LR pipeline of the validation set")
        checkpoint_every: int = option(1000, whole(0),
                                       help="steps between checkpoints in the evaluation's workdir, if it has "
                                            "one (0: at the end only)")

    def __init__(self, **options: Any):
        from nasengine.sr.trainer import TrainConfig
        from nasengine.train import TrainRecipe

        o = read_options("evaluator", self.Options, options, name="sr-train")
        steps = 100 if o.steps is None and o.epochs is None and o.seconds is None else o.steps
        self.options = o
        self.train_data, self.val_data, self.patch_size = o.train_data, o.val_data, o.patch_size
        self.init_std, self.lr_kernel, self.augment = o.init_std, o.lr_kernel, o.augment
        self.patches_per_epoch, self.val_pipeline = o.patches_per_epoch, o.val_pipeline
        # Validate the hyper-parameters now, in the driver, rather than in every worker.
        self.train_config = TrainConfig(lr=o.lr, betas=tuple(o.betas), batch_size=o.batch_size, steps=steps,
                                        epochs=o.epochs, seconds=o.seconds, schedule=o.schedule,
                                        step_size=o.step_size, gamma=o.gamma, grad_clip=o.grad_clip,
                                        checkpoint_every=o.checkpoint_every)
        self.recipe = TrainRecipe(config=self.train_config, train_data=o.train_data, patch_size=o.patch_size,
                                  lr_kernel=o.lr_kernel, augment=o.augment, patches_per_epoch=o.patches_per_epoch,
                                  val_data=o.val_data, val_pipeline=o.val_pipeline, init_std=o.init_std)
        self._datasets: dict = {}  # (scale, channels) -> PatchDataset; one kept

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_datasets"] = {}  # decoded images stay in the process that decoded them
        return state

    def check(self) -> None:
        """The training and validation data must resolve (a ``DataError`` naming the set otherwise)."""
        from nasengine.sr.data import resolve_benchmark, resolve_training

        resolve_training(self.train_data)
        resolve_benchmark(self.val_data)

    def plan(self, graph, *, cost=None, measure: bool = True, device: str = "cpu",
             threads: int | None = None) -> EvalPlan:
        """Training steps and their multiply-adds (forward + backward ~ 3x the forward's, at the LR patch), and
        with ``measure`` the time here: a few real training steps of ``graph`` plus one validation."""
        from nasengine import train

        steps, budget = train.recipe_steps(self.recipe)
        cfg = self.train_config
        work = f"{budget}, batch {cfg.batch_size}, HR patch {self.patch_size}, data {self.train_data}"
        macs = None
        if cost is not None and steps:
            lr_pixels = (self.patch_size // int(graph.scale)) ** 2
            macs = 3.0 * cost.mult_adds / (cost.lr_size[0] * cost.lr_size[1]) * lr_pixels * cfg.batch_size * steps
        if not measure:
            return EvalPlan(work=work, train_macs=macs, data=self.train_data)
        per_step = train.time_steps(graph, self.recipe, device=device, threads=threads)
        training = steps * per_step if steps else float(cfg.seconds)
        try:
            validation = train.time_validation(graph, self.recipe, device=device, threads=threads)
        except Exception:  # noqa: BLE001 - data this machine lacks: the plan says so elsewhere
            validation = 0.0
        return EvalPlan(work=work, train_macs=macs, seconds=training + validation, data=self.train_data,
                        parts={"step": per_step, "training": training, "validation": validation})

    def dataset(self, scale: int, channels: str, seed: int = 0):
        """The training patches for a network of ``scale`` and ``channels``, decoded once per evaluator."""
        key = (int(scale), channels)
        if key not in self._datasets:
            self._datasets.clear()
            self._datasets[key] = self.recipe.dataset(scale, channels, seed)
        return self._datasets[key]

    def evaluate(self, graph, ctx: EvalContext) -> dict[str, float]:
        import torch

        from nasengine.sr.models import channels_of
        from nasengine.train import train_model

        graph.validate()
        channels = channels_of(graph.input_channels)
        if ctx.threads:
            torch.set_num_threads(ctx.threads)
        dataset = self.dataset(graph.scale, channels, ctx.seed % (2**31))
        if ctx.keep_model and ctx.workdir:
            from pathlib import Path

            from nasengine.checkpoints import save_trained_model
            from nasengine.genomefile import Architecture
            from nasengine.train import CHECKPOINT_FOLDER, MODEL_FILE

            out = Path(ctx.workdir)
            done = train_model(graph, self.recipe, seed=ctx.seed, device=ctx.device, dataset=dataset,
                               checkpoint_dir=out / CHECKPOINT_FOLDER, resume=True, report=ctx.report)
            arch = ctx.architecture if ctx.architecture is not None else Architecture(graph=graph, name=out.name)
            save_trained_model(out / MODEL_FILE, arch, done.module, metrics=done.metrics)
        else:
            done = train_model(graph, self.recipe, seed=ctx.seed, device=ctx.device, dataset=dataset,
                               checkpoint_dir=ctx.workdir, report=ctx.report)
        return {"psnr": done.metrics["psnr"], "ssim": done.metrics["ssim"], "train_loss": done.final_loss,
                "train_seconds": done.train_seconds, "steps": float(done.result.step)}
