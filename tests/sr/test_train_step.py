"""The trainer's pluggable training step (nasengine.sr.trainer.TrainStep): extra loss terms, parameter groups
with their own learning rates, step state, logs; checkpoints, resume and divergence checks still the trainer's."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from nasengine.errors import ConfigError, InputError
from nasengine.sr.data import PatchDataset
from nasengine.sr.trainer import CHECKPOINT_NAME, TrainConfig, Trainer, TrainingDiverged, TrainStep


class GatedSR(nn.Module):
    """Two convs + pixel shuffle whose hidden channels are scaled by a learnable gate (FGNAS-like)."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.head = nn.Conv2d(1, width, 3, padding=1)
        self.gate = nn.Parameter(torch.full((width,), 0.5))
        self.tail = nn.Conv2d(width, 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x, mask=None):
        g = self.gate if mask is None else self.gate * mask
        return self.shuffle(self.tail(torch.relu(self.head(x)) * g[None, :, None, None]))


class CostStep(TrainStep):
    """L1 + ``weight`` x sum|gate| (a differentiable cost term); the gate in its own group at ``gate_lr``; a
    random channel mask per batch from the step's own generator (a supernet's sampled child)."""

    def __init__(self, weight: float = 0.01, gate_lr: float = 1e-2, seed: int = 5, nan_at: int | None = None):
        super().__init__("l1")
        self.weight, self.gate_lr, self.nan_at = weight, gate_lr, nan_at
        self.generator = torch.Generator().manual_seed(seed)
        self.masks: list[torch.Tensor] = []

    def param_groups(self, model):
        rest = [p for name, p in model.named_parameters() if name != "gate"]
        return [{"params": rest}, {"params": [model.gate], "lr": self.gate_lr}]

    def forward(self, model, lr, hr, step):
        mask = (torch.rand(model.gate.shape, generator=self.generator) > 0.25).float()
        self.masks.append(mask)
        l1 = self.reconstruction_loss(model(lr, mask), hr)
        cost = model.gate.abs().sum()
        if self.nan_at is not None and step + 1 >= self.nan_at:
            cost = cost * float("nan")
        return l1 + self.weight * cost, {"l1": l1.detach(), "cost": cost}

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def patches():
    return PatchDataset("default", 2, 16, seed=3, length=64)


def gated(seed: int = 0) -> GatedSR:
    torch.manual_seed(seed)
    return GatedSR()


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_two_param_groups_with_their_own_learning_rates(patches):
    model = gated()
    before = copy.deepcopy(model)
    cfg = TrainConfig(lr=1e-4, batch_size=2, steps=1, device="cpu")
    trainer = Trainer(model, patches, cfg, train_step=CostStep(gate_lr=1e-2), progress=False)
    groups = trainer.optimizer.param_groups
    assert len(groups) == 2
    assert [len(g["params"]) for g in groups] == [4, 1] and groups[1]["params"][0] is model.gate
    trainer.fit()
    assert [g["lr"] for g in groups] == [1e-4, 1e-2]
    # Adam's first step moves each weight by about its group's rate
    gate_moves = (model.gate - before.gate).abs()
    assert torch.allclose(gate_moves[gate_moves > 0], torch.tensor(1e-2), rtol=1e-3)
    assert (model.head.weight - before.head.weight).abs().max() <= 1e-4 * 1.001


def test_group_rates_follow_the_schedule_scaled(patches):
    cfg = TrainConfig(lr=1e-3, batch_size=2, steps=5, schedule="step", step_size=2, gamma=0.5, device="cpu")
    trainer = Trainer(gated(), patches, cfg, train_step=CostStep(gate_lr=4e-3), progress=False)
    seen = []
    trainer.callback = lambda step, loss: seen.append([g["lr"] for g in trainer.optimizer.param_groups])
    trainer.fit()
    assert seen == [[1e-3, 4e-3], [1e-3, 4e-3], [5e-4, 2e-3], [5e-4, 2e-3], [2.5e-4, 1e-3]]


def test_the_extra_loss_term_is_what_is_minimised_and_logged(patches):
    model = gated()
    reference = copy.deepcopy(model)
    cfg = TrainConfig(lr=1e-3, batch_size=2, steps=3, device="cpu")

    class Hooks:
        def __init__(self):
            self.logs, self.losses = [], []

        def on_logs(self, step, logs):
            self.logs.append((step, logs))

        def on_step(self, step, loss):
            self.losses.append(loss)

    hooks, step = Hooks(), CostStep(weight=0.5)
    result = Trainer(model, patches, cfg, train_step=step, callback=hooks, progress=False).fit()
    lr, hr = zip(*(patches.sample(k) for k in range(2)))
    lr, hr = torch.stack(lr), torch.stack(hr)
    with torch.no_grad():
        l1 = nn.functional.l1_loss(reference(lr, step.masks[0]), hr)
        expected = l1 + 0.5 * reference.gate.abs().sum()
    assert result.losses[0] == pytest.approx(float(expected), rel=1e-6)
    assert [s for s, _ in hooks.logs] == [1, 2, 3] and hooks.losses == result.losses
    assert hooks.logs[0][1]["l1"] == pytest.approx(float(l1), rel=1e-6)
    assert hooks.logs[0][1]["cost"] == pytest.approx(4.0)  # 8 gates of 0.5
    assert result.logs == hooks.logs[-1][1]
    assert result.losses[0] > float(l1) + 1.9  # the cost term is in the loss


class Crash(Exception):
    pass


def test_resume_of_a_custom_step_run_is_exact(patches, tmp_path):
    cfg = TrainConfig(lr=1e-3, batch_size=2, steps=8, schedule="cosine", checkpoint_every=3, seed=4, device="cpu")
    straight = gated()
    full_trainer = Trainer(straight, patches, cfg, train_step=CostStep(), progress=False)
    full = full_trainer.fit()

    def crash(step, loss):
        if step == 5:
            raise Crash

    with pytest.raises(Crash):
        Trainer(gated(), patches, cfg, train_step=CostStep(), checkpoint_dir=tmp_path, callback=crash,
                progress=False).fit()
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["step"] == 3
    fresh, step = gated(9), CostStep(seed=77)  # the checkpoint's weights and generator must win
    resumed = Trainer.resume(tmp_path / CHECKPOINT_NAME, fresh, patches, train_step=step, progress=False)
    result = resumed.fit()
    assert result.step == 8 and result.losses == full.losses
    assert same_weights(fresh, straight)
    a, b = resumed.optimizer.state_dict(), full_trainer.optimizer.state_dict()
    assert [g["lr"] for g in a["param_groups"]] == [g["lr"] for g in b["param_groups"]]
    assert len(a["param_groups"]) == 2
    for i in b["state"]:
        assert all(torch.equal(a["state"][i][k], b["state"][i][k]) for k in ("exp_avg", "exp_avg_sq"))
    assert torch.equal(step.generator.get_state(), full_trainer.train_step.generator.get_state())


def test_a_checkpoint_of_another_step_does_not_load(patches, tmp_path):
    cfg = TrainConfig(lr=1e-3, batch_size=2, steps=2, device="cpu")
    Trainer(gated(), patches, cfg, train_step=CostStep(), checkpoint_dir=tmp_path, progress=False).fit()
    with pytest.raises(ConfigError, match="^train_step: .*CostStep, this trainer has .*TrainStep"):
        Trainer.resume(tmp_path / CHECKPOINT_NAME, gated(), patches, progress=False)

    class SameGroups(CostStep):
        pass

    with pytest.raises(ConfigError, match="SameGroups"):
        Trainer.resume(tmp_path / CHECKPOINT_NAME, gated(), patches, train_step=SameGroups(), progress=False)

    class OneGroup(CostStep):
        def param_groups(self, model):
            return TrainStep.param_groups(self, model)

    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    state["train_step_class"] = f"{OneGroup.__module__}.{OneGroup.__qualname__}"
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(InputError, match="optimizer does not fit"):
        Trainer.resume(tmp_path / "other.pt", gated(), patches, train_step=OneGroup(), progress=False)


def test_divergence_of_a_custom_step_is_detected(patches, tmp_path):
    cfg = TrainConfig(lr=1e-3, batch_size=2, steps=10, checkpoint_every=1, device="cpu")
    model = gated()
    with pytest.raises(TrainingDiverged) as exc:
        Trainer(model, patches, cfg, train_step=CostStep(nan_at=3), checkpoint_dir=tmp_path, progress=False).fit()
    assert exc.value.step == 3 and math.isnan(exc.value.loss)
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["step"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_default_step_is_the_plain_trainer(patches):
    cfg = TrainConfig(lr=1e-3, batch_size=2, steps=4, loss="mse", device="cpu")

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 4, 3, padding=1)
            self.s = nn.PixelShuffle(2)

        def forward(self, x):
            return self.s(self.c(x))

    torch.manual_seed(0)
    a = Plain()
    b = copy.deepcopy(a)
    ra = Trainer(a, patches, cfg, progress=False).fit()
    rb = Trainer(b, patches, cfg, train_step=TrainStep("MSE"), progress=False).fit()
    assert ra.losses == rb.losses and same_weights(a, b) and ra.logs == {}


def test_bad_steps_are_refused(patches):
    cfg = TrainConfig(batch_size=2, steps=1, device="cpu")
    with pytest.raises(ConfigError, match="train_step"):
        Trainer(gated(), patches, cfg, train_step=lambda *a: None, progress=False)
    with pytest.raises(ConfigError, match="loss"):
        TrainStep("l3")

    class Vector(TrainStep):
        def forward(self, model, lr, hr, step):
            return (model(lr) - hr).abs().flatten(1).mean(1), {}

    with pytest.raises(InputError, match="scalar loss"):
        Trainer(gated(), patches, cfg, train_step=Vector(), progress=False).fit()
