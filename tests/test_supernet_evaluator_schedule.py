"""sr-supernet's learning-rate schedule (``schedule: cosine``, HNAS's shared weights: METHODS.md §2.6) and its
derivation images (``derive_data``, HNAS derives on Set5: §2.7). Tiny models and patches."""
from __future__ import annotations

import math

import pytest
import torch

from nasengine.errors import ConfigError, InputError
from nasengine.evaluators.supernet import SupernetEvaluator, psnr_y_float_nocrop
from nasengine.sr.data import resolve_dataset
from nasengine.sr.image import list_images, load_rgb
from nasengine.sr.resize import imresize
from tests.test_supernet_evaluator import TINY, tiny_model

COSINE = dict(TINY, schedule="cosine", lr=1e-2, min_lr=1e-4)


def _rates(ev, model, steps):
    rates = []
    for _ in range(steps):
        ev.train_step(model)
        rates.append(ev.optimizer.param_groups[0]["lr"])
    return rates


def test_cosine_rate_by_hand_and_options():
    ev = SupernetEvaluator(**COSINE)
    model = tiny_model()
    ev.setup(model, scale=2, seed=0, total_steps=4)
    # step t of T = 4: 1e-4 + (1e-2 - 1e-4) (1 + cos(pi t / 4)) / 2 (torch's CosineAnnealingLR formula per step)
    want = [1e-4 + (1e-2 - 1e-4) * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(6)]
    assert _rates(ev, model, 6) == pytest.approx(want[:4] + [1e-4, 1e-4], rel=1e-12)
    assert _rates(ev, model, 0) == [] and ev.lr_at(0) == pytest.approx(1e-2)
    constant = SupernetEvaluator(**TINY)
    constant.setup(tiny_model(), scale=2, seed=0)  # no total_steps needed
    assert constant.lr_at(10**6) == TINY["lr"]
    with pytest.raises(ConfigError, match="evaluator.schedule: 'cosine' needs"):
        SupernetEvaluator(**COSINE).setup(tiny_model(), scale=2, seed=0)
    with pytest.raises(ConfigError, match="evaluator.min_lr: must be <= lr"):
        SupernetEvaluator(**dict(COSINE, min_lr=1.0))
    with pytest.raises(ConfigError, match="evaluator.schedule:"):
        SupernetEvaluator(schedule="step")


def test_cosine_resume_is_bit_identical():
    def fresh(model):
        ev = SupernetEvaluator(**COSINE)
        ev.setup(model, scale=2, seed=3, total_steps=6)
        return ev

    m1 = tiny_model()
    straight = fresh(m1)
    _rates(straight, m1, 6)
    m2 = tiny_model()
    first = fresh(m2)
    _rates(first, m2, 3)
    state, weights = first.state_dict(), {k: v.clone() for k, v in m2.state_dict().items()}
    m3 = tiny_model(seed=5)
    m3.load_state_dict(weights)
    resumed = fresh(m3)
    resumed.load_state_dict(state)
    assert resumed.optimizer.param_groups[0]["lr"] == first.optimizer.param_groups[0]["lr"]
    _rates(resumed, m3, 3)
    for a, b in zip(m1.parameters(), m3.parameters()):
        assert torch.equal(a, b)
    other = SupernetEvaluator(**COSINE)
    other.setup(tiny_model(), scale=2, seed=3, total_steps=7)
    with pytest.raises(InputError, match="total_steps 6"):
        other.load_state_dict(state)


def test_derivation_scores_whole_images_of_derive_data():
    ev = SupernetEvaluator(**TINY, derive_data="Set5", derive_images="1-2")
    ev.check()
    model = tiny_model()
    ev.setup(model, scale=2, seed=0)
    before = (ev.train_position, ev.val_position)
    got = ev.score_derivation(model, batches=3)
    assert (ev.train_position, ev.val_position) == before
    # By hand: the first two Set5 images, cropped to even sizes, LR by MATLAB bicubic, the model in eval mode,
    # psnr_y_float_nocrop per image (one image per batch), averaged.
    _, folder = resolve_dataset("Set5", kind="any")
    values = []
    for path in list_images(folder)[:2]:
        hr = load_rgb(path)
        hr = hr[:hr.shape[0] // 2 * 2, :hr.shape[1] // 2 * 2]
        lr = imresize(hr, output_shape=(hr.shape[0] // 2, hr.shape[1] // 2))

        def t(a):
            return torch.from_numpy(a.transpose(2, 0, 1)[None].copy()).float() / 255.0

        with torch.no_grad():
            values.append(psnr_y_float_nocrop(model(t(lr)), t(hr), 2))
    assert got == {"psnr_y_float_nocrop": pytest.approx(sum(values) / 2, abs=1e-6)}
    # Without derive_data, the derivation score is the ordinary score on the validation patches.
    plain = SupernetEvaluator(**TINY)
    plain.setup(model, scale=2, seed=0)
    assert plain.score_derivation(model, batches=1) == SupernetEvaluator.score(_fresh(model), model)
    assert plain.val_position == 1


def _fresh(model):
    ev = SupernetEvaluator(**TINY)
    ev.setup(model, scale=2, seed=0)
    return ev
