"""nasengine.sr.trainer: it learns, it resumes bit-exactly, it refuses NaN and bad configs."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nasengine.errors import ConfigError, InputError, NasengineError
from nasengine.sr.data import PatchDataset, validation_set
from nasengine.sr.trainer import (
    CHECKPOINT_NAME,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    TrainResult,
    scheduled_lr,
)


class TinySR(nn.Module):
    """3 convs, 16 channels, pixel shuffle; Y in, Y out."""

    def __init__(self, scale: int = 2, channels: int = 16, dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Dropout2d(dropout),
            nn.Conv2d(channels, scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )

    def forward(self, x):
        return self.body(x)


def tiny(seed: int = 0, **kw) -> TinySR:
    torch.manual_seed(seed)
    return TinySR(**kw)


@pytest.fixture(autouse=True)
def one_thread():
    """These networks are tiny: one intra-op thread is as fast as two on an idle 2-core machine and
    much faster on a busy one (no spinning threads fighting other processes)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def default_patches():
    return PatchDataset("default", 2, 32, seed=0, length=1600)


@pytest.fixture(scope="module")
def small_patches():
    return PatchDataset("default", 2, 16, seed=3, length=64)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---- it learns ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_training_beats_untrained_validation_psnr(default_patches):
    val = validation_set("Set5", 2, "y", size=48)
    model = tiny(0)
    before = val(model)
    cfg = TrainConfig(lr=2e-3, batch_size=16, steps=300, val_every=100, seed=0, device="cpu", schedule="cosine", min_lr=2e-4)
    result = Trainer(model, default_patches, cfg, validate=val, progress=False).fit()
    assert isinstance(result, TrainResult)
    assert result.step == 300 and len(result.losses) == 300
    assert [h["step"] for h in result.history] == [100, 200, 300]
    assert result.final_validation == result.history[-1]
    after = result.history[-1]
    assert after["psnr"] > before["psnr"] + 10, (before, after)
    assert after["psnr"] > 25 and after["ssim"] > before["ssim"]
    assert sum(result.losses[-50:]) < 0.5 * sum(result.losses[:50])
    assert result.seconds > 0 and result.checkpoint is None


# ---- exact resume ------------------------------------------------------------------------------
class Crash(Exception):
    pass


def crash_at(step):
    def callback(t, loss):
        if t == step:
            raise Crash(f"simulated crash after step {t}")

    return callback


def test_resume_is_bit_exact(small_patches, tmp_path):
    cfg = TrainConfig(
        lr=1e-3, batch_size=4, steps=10, schedule="cosine", min_lr=1e-4, grad_clip=0.5,
        checkpoint_every=4, val_every=3, seed=7, device="cpu",
    )
    val = validation_set("Set5", 2, "y", size=32, count=1)

    straight = tiny(0, dropout=0.2)
    straight_trainer = Trainer(straight, small_patches, cfg, validate=val, progress=False)
    full = straight_trainer.fit()

    crashed = tiny(0, dropout=0.2)
    run = tmp_path / "run"
    with pytest.raises(Crash):
        Trainer(crashed, small_patches, cfg, validate=val, checkpoint_dir=run, progress=False,
                callback=crash_at(6)).fit()
    ckpt = torch.load(run / CHECKPOINT_NAME, weights_only=True)
    assert ckpt["step"] == 4 and ckpt["config"]["seed"] == 7
    assert sorted(p.name for p in run.iterdir()) == [CHECKPOINT_NAME]  # atomic: no temp files left

    torch.manual_seed(999)  # whatever happened to the global RNG meanwhile
    fresh = tiny(123, dropout=0.2)  # different initial weights: the checkpoint's must win
    resumed = Trainer.resume(run / CHECKPOINT_NAME, fresh, small_patches, validate=val, progress=False)
    assert resumed.step == 4
    result = resumed.fit()

    assert result.step == full.step == 10
    assert same_weights(fresh, straight)
    assert result.losses == full.losses
    assert result.history == full.history
    opt_a, opt_b = resumed.optimizer.state_dict()["state"], straight_trainer.optimizer.state_dict()["state"]
    assert opt_a.keys() == opt_b.keys() and len(opt_a) == 6
    for i in opt_a:
        assert all(torch.equal(opt_a[i][k], opt_b[i][k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    assert torch.load(run / CHECKPOINT_NAME, weights_only=True)["step"] == 10


def test_fit_resume_from_on_a_new_trainer(small_patches, tmp_path):
    cfg = TrainConfig(lr=1e-3, batch_size=2, steps=6, schedule="step", step_size=2, seed=1, device="cpu")
    straight = tiny(0)
    Trainer(straight, small_patches, cfg, progress=False).fit()

    part = tiny(0)
    Trainer(part, small_patches, cfg.evolve(steps=3), checkpoint_dir=tmp_path, progress=False).fit()
    other = tiny(5)
    result = Trainer(other, small_patches, cfg, checkpoint_dir=tmp_path, progress=False).fit(
        resume_from=tmp_path / CHECKPOINT_NAME
    )
    assert result.step == 6 and len(result.losses) == 6
    assert same_weights(other, straight)


def test_resume_with_changed_trajectory_field_is_refused(small_patches, tmp_path):
    cfg = TrainConfig(lr=1e-3, batch_size=2, steps=2, device="cpu")
    Trainer(tiny(0), small_patches, cfg, checkpoint_dir=tmp_path, progress=False).fit()
    with pytest.raises(ConfigError, match="^lr:"):
        Trainer(tiny(0), small_patches, cfg.evolve(lr=5e-4), progress=False).fit(
            resume_from=tmp_path / CHECKPOINT_NAME
        )
    with pytest.raises(InputError, match="does not fit"):
        Trainer.resume(tmp_path / CHECKPOINT_NAME, TinySR(channels=8), small_patches, progress=False)
    with pytest.raises(InputError, match="no such checkpoint"):
        Trainer.resume(tmp_path / "missing.pt", tiny(0), small_patches)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(InputError, match="junk.pt"):
        Trainer.resume(junk, tiny(0), small_patches)


def test_resume_finished_run_does_nothing(small_patches, tmp_path):
    cfg = TrainConfig(lr=1e-3, batch_size=2, steps=2, device="cpu")
    model = tiny(0)
    Trainer(model, small_patches, cfg, checkpoint_dir=tmp_path, progress=False).fit()
    again = tiny(1)
    result = Trainer.resume(tmp_path / CHECKPOINT_NAME, again, small_patches, progress=False).fit()
    assert result.step == 2 and same_weights(again, model)


def test_training_is_reproducible_and_batches_follow_the_dataset(small_patches):
    cfg = TrainConfig(lr=1e-3, batch_size=3, steps=3, seed=4, device="cpu")
    a, b = tiny(0), tiny(0)
    ra = Trainer(a, small_patches, cfg, progress=False).fit()
    rb = Trainer(b, small_patches, cfg, progress=False).fit()
    assert same_weights(a, b) and ra.losses == rb.losses
    # the first step's loss is the L1 loss on samples 0, 1, 2 with the initial weights
    init = tiny(0)
    lr = torch.stack([small_patches.sample(j)[0] for j in range(3)])
    hr = torch.stack([small_patches.sample(j)[1] for j in range(3)])
    with torch.no_grad():
        assert ra.losses[0] == float(nn.functional.l1_loss(init(lr), hr))


# ---- divergence --------------------------------------------------------------------------------
class GoesNan(nn.Module):
    def __init__(self, at_call: int):
        super().__init__()
        self.inner = TinySR()
        self.calls = 0
        self.at_call = at_call

    def forward(self, x):
        self.calls += 1
        y = self.inner(x)
        return y * float("nan") if self.calls >= self.at_call else y


def test_nan_loss_raises_training_diverged(small_patches, tmp_path):
    torch.manual_seed(0)
    model = GoesNan(at_call=3)
    cfg = TrainConfig(lr=1e-3, batch_size=2, steps=10, checkpoint_every=1, device="cpu")
    with pytest.raises(TrainingDiverged) as exc:
        Trainer(model, small_patches, cfg, checkpoint_dir=tmp_path, progress=False).fit()
    assert exc.value.step == 3 and math.isnan(exc.value.loss)
    assert "step 3" in str(exc.value) and "nan" in str(exc.value)
    assert isinstance(exc.value, NasengineError)
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["step"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_infinite_loss_raises(small_patches):
    class Inf(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, x):
            return nn.functional.interpolate(x, scale_factor=2) * self.w * float("inf")

    with pytest.raises(TrainingDiverged, match="step 1: loss = inf"):
        Trainer(Inf(), small_patches, TrainConfig(steps=1, device="cpu"), progress=False).fit()


def test_wrong_output_shape(small_patches):
    class Same(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return self.c(x)

    with pytest.raises(InputError, match="shape"):
        Trainer(Same(), small_patches, TrainConfig(steps=1, device="cpu"), progress=False).fit()


# ---- budgets, schedule, hooks ------------------------------------------------------------------
def test_epochs_budget(small_patches):
    cfg = TrainConfig(batch_size=16, epochs=2, device="cpu")
    t = Trainer(tiny(0), small_patches, cfg, progress=False)
    assert t.steps_per_epoch == 4 and t.total_steps == 8
    assert t.fit().step == 8


def test_seconds_budget(small_patches):
    cfg = TrainConfig(batch_size=2, seconds=0.3, device="cpu", schedule="cosine")
    result = Trainer(tiny(0), small_patches, cfg, progress=False).fit()
    assert result.step >= 1 and result.seconds >= 0.3 and len(result.losses) == result.step


def test_scheduled_lr():
    step = TrainConfig(lr=1.0, steps=10, schedule="step", step_size=3)
    assert [scheduled_lr(step, t) for t in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    cos = TrainConfig(lr=1.0, min_lr=0.1, steps=10, schedule="cosine")
    assert scheduled_lr(cos, 0, total_steps=10) == 1.0
    assert scheduled_lr(cos, 5, total_steps=10) == pytest.approx(0.55)
    assert scheduled_lr(cos, 10, total_steps=10) == pytest.approx(0.1)
    assert scheduled_lr(cos, 0, fraction=1.0) == pytest.approx(0.1)
    const = TrainConfig(lr=0.3, steps=1)
    assert scheduled_lr(const, 10**6) == 0.3


def test_optimizer_uses_the_schedule(small_patches):
    seen = []
    cfg = TrainConfig(lr=1e-3, batch_size=2, steps=4, schedule="step", step_size=2, device="cpu")
    trainer = Trainer(tiny(0), small_patches, cfg, progress=False,
                      callback=lambda t, loss: seen.append(trainer.optimizer.param_groups[0]["lr"]))
    trainer.fit()
    assert seen == [1e-3, 1e-3, 5e-4, 5e-4]


def test_callback_object_and_validation_hook(small_patches):
    class Hooks:
        def __init__(self):
            self.steps, self.vals = [], []

        def on_step(self, step, loss):
            self.steps.append((step, loss))

        def on_validation(self, step, metrics):
            self.vals.append((step, metrics))

    hooks = Hooks()
    cfg = TrainConfig(batch_size=2, steps=4, val_every=2, device="cpu")
    calls = []

    def validate(model):
        calls.append(model.training)
        return {"psnr": 1.0, "ssim": 0.5}

    model = tiny(0)
    model.eval()
    result = Trainer(model, small_patches, cfg, validate=validate, callback=hooks, progress=False).fit()
    assert [s for s, _ in hooks.steps] == [1, 2, 3, 4]
    assert [loss for _, loss in hooks.steps] == result.losses
    assert hooks.vals == [(2, {"psnr": 1.0, "ssim": 0.5}), (4, {"psnr": 1.0, "ssim": 0.5})]
    assert result.history == [{"step": 2, "psnr": 1.0, "ssim": 0.5}, {"step": 4, "psnr": 1.0, "ssim": 0.5}]
    assert not model.training  # the caller's mode is restored


def test_validation_at_the_end_when_val_every_is_zero(small_patches):
    cfg = TrainConfig(batch_size=2, steps=3, device="cpu")
    result = Trainer(tiny(0), small_patches, cfg, validate=lambda m: {"psnr": 2.0}, progress=False).fit()
    assert result.history == [{"step": 3, "psnr": 2.0}]


def test_progress_bar_does_not_break(small_patches, capsys):
    cfg = TrainConfig(batch_size=2, steps=2, device="cpu")
    assert Trainer(tiny(0), small_patches, cfg, progress=True).fit().step == 2


# ---- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"lr": 0, "steps": 1}, "lr"),
        ({"lr": float("nan"), "steps": 1}, "lr"),
        ({"lr": "fast", "steps": 1}, "lr"),
        ({"betas": (0.9,), "steps": 1}, "betas"),
        ({"betas": (0.9, 1.0), "steps": 1}, "betas"),
        ({"batch_size": 0, "steps": 1}, "batch_size"),
        ({"batch_size": 2.5, "steps": 1}, "batch_size"),
        ({"steps": 0}, "steps"),
        ({"steps": -5}, "steps"),
        ({"epochs": 0}, "epochs"),
        ({"seconds": -1.0}, "seconds"),
        ({}, "steps/epochs/seconds"),
        ({"steps": 5, "epochs": 1}, "steps/epochs/seconds"),
        ({"steps": 1, "schedule": "linear"}, "schedule"),
        ({"steps": 1, "schedule": "step"}, "step_size"),
        ({"steps": 1, "schedule": "step", "step_size": 0}, "step_size"),
        ({"steps": 1, "gamma": 0}, "gamma"),
        ({"steps": 1, "min_lr": -1e-5}, "min_lr"),
        ({"steps": 1, "lr": 1e-4, "min_lr": 1e-3}, "min_lr"),
        ({"steps": 1, "val_every": -1}, "val_every"),
        ({"steps": 1, "checkpoint_every": 1.5}, "checkpoint_every"),
        ({"steps": 1, "seed": -1}, "seed"),
        ({"steps": 1, "device": "gpu"}, "device"),
        ({"steps": 1, "grad_clip": 0}, "grad_clip"),
        ({"steps": 1, "loss": "huber"}, "loss"),
        ({"steps": 1, "num_workers": -1}, "num_workers"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as exc:
        TrainConfig(**kwargs)
    assert str(exc.value).startswith(f"{field}:"), str(exc.value)


def test_config_defaults_and_round_trip():
    cfg = TrainConfig(steps=100)
    assert (cfg.lr, cfg.betas, cfg.batch_size, cfg.schedule, cfg.loss, cfg.grad_clip) == (
        1e-4, (0.9, 0.999), 16, "constant", "l1", None
    )
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig(steps=1, betas=[0.5, 0.9], schedule="COSINE", loss="MSE").betas == (0.5, 0.9)
    with pytest.raises(ConfigError, match="^bogus:"):
        TrainConfig.from_dict({"steps": 1, "bogus": 3})
    with pytest.raises(Exception):
        cfg.lr = 1.0  # frozen


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda(small_patches):
    with pytest.raises(ConfigError, match="^device:"):
        Trainer(tiny(0), small_patches, TrainConfig(steps=1, device="cuda"))


def test_epochs_need_a_batch(small_patches):
    with pytest.raises(ConfigError, match="^epochs:"):
        Trainer(tiny(0), small_patches, TrainConfig(epochs=1, batch_size=128, device="cpu"))
