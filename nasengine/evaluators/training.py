"""The generic evaluator ``sr-train``: incomplete training (FALSR's), then PSNR/SSIM on a validation set."""
from __future__ import annotations

from nasengine.evaluator import EvalContext, Evaluator

__all__ = ["TrainingEvaluator"]


class TrainingEvaluator(Evaluator):
    """Incomplete training: train the decoded network briefly, then score PSNR/SSIM on a validation set.

    Options (a preset's ``evaluator`` section): ``train_data`` (name or folder, default the embedded
    ``default``), ``val_data`` (benchmark name or folder, default ``Set5``), ``patch_size`` (HR side),
    ``batch_size``, exactly one of ``steps`` / ``epochs`` / ``seconds``, ``lr``, ``betas``, ``schedule``
    (``constant``/``step``/``cosine``, with ``step_size``), ``init_std`` (``None``: torch's default init;
    a float: N(0, std) weights and zero biases), ``lr_kernel`` (``pillow``/``matlab`` for training LR),
    ``augment``, ``patches_per_epoch``, ``grad_clip`` (max global gradient norm; ``None``: no clipping).
    Y-channel networks (1 input channel) train and score on Y; RGB ones
    on RGB, scored on Y. Returns ``psnr``, ``ssim``, ``train_loss``, ``train_seconds``, ``steps``.

    The training itself is :func:`nasengine.train.train_model`. The decoded training images are kept by the
    evaluator (one set): a worker keeps its evaluator and evaluates many candidates on the same data.
    """

    def __init__(self, *, train_data: str = "default", val_data: str = "Set5", patch_size: int = 64,
                 batch_size: int = 16, steps: int | None = None, epochs: int | None = None,
                 seconds: float | None = None, lr: float = 1e-4, betas=(0.9, 0.999), schedule: str = "constant",
                 step_size: int | None = None, init_std: float | None = None, lr_kernel: str = "pillow",
                 augment: bool = True, patches_per_epoch: int | None = None, val_pipeline: str = "rgb",
                 grad_clip: float | None = None):
        from nasengine.sr.trainer import TrainConfig
        from nasengine.train import TrainRecipe

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
                                        epochs=epochs, seconds=seconds, schedule=schedule, step_size=step_size,
                                        grad_clip=grad_clip)
        self.recipe = TrainRecipe(config=self.train_config, train_data=train_data, patch_size=patch_size,
                                  lr_kernel=lr_kernel, augment=augment, patches_per_epoch=patches_per_epoch,
                                  val_data=val_data, val_pipeline=val_pipeline, init_std=init_std)
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
        done = train_model(graph, self.recipe, seed=ctx.seed, device=ctx.device,
                           dataset=self.dataset(graph.scale, channels, ctx.seed % (2**31)),
                           checkpoint_dir=ctx.workdir, report=ctx.report)
        return {"psnr": done.metrics["psnr"], "ssim": done.metrics["ssim"], "train_loss": done.final_loss,
                "train_seconds": done.train_seconds, "steps": float(done.result.step)}
