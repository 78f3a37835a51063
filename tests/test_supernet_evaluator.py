"""The shared-weights evaluator ``sr-supernet``: options, reward PSNR definitions, the patch streams, resume,
training, and its refusal to act as a generational evaluator. Tiny models and patches (any nn.Module stands in
for a supernet child: the API takes modules)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from nasengine.errors import ConfigError, DataError, InputError
from nasengine.evaluator import EvalContext
from nasengine.evaluators.supernet import (REWARD_PSNRS, SupernetEvaluator, mean_squared_gradient,
                                           psnr_rgb_shave, psnr_y_float_nocrop)
from nasengine.plugins import get_plugins
from nasengine.sr.trainer import TrainingDiverged

TINY = dict(train_data="default", patch_size=16, batch_size=2, val_data="Set5", val_patches=3, val_batch=2,
            val_patch_size=16, channels="rgb", lr=1e-2)


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2))


def ready(model=None, seed: int = 0, **options) -> tuple[SupernetEvaluator, torch.nn.Module]:
    model = tiny_model() if model is None else model
    ev = SupernetEvaluator(**{**TINY, **options})
    ev.setup(model, scale=2, seed=seed, device="cpu")
    return ev, model


# ---- options and registration ----------------------------------------------------------------------------
def test_registered_in_the_builtin_plugin():
    assert get_plugins().evaluators.get("sr-supernet") is SupernetEvaluator
    assert SupernetEvaluator().reward_metric == "psnr_y_float_nocrop"
    assert SupernetEvaluator(reward_psnr="rgb_shave").reward_metric == "psnr_rgb_shave"


@pytest.mark.parametrize("options, named", [
    ({"bogus": 1}, "evaluator.bogus: unknown option"),
    ({"lr": -1.0}, "evaluator.lr:"),
    ({"loss": "huber"}, "evaluator.loss:"),
    ({"reward_psnr": "psnr"}, "evaluator.reward_psnr:"),
    ({"val_images": "9-3"}, "evaluator.val_images:"),
    ({"train_images": "first"}, "evaluator.train_images:"),
    ({"grad_filter": -1.0}, "evaluator.grad_filter:"),
    ({"betas": [0.9]}, "evaluator.betas:"),
    ({"channels": "bgr"}, "evaluator.channels:"),
])
def test_bad_options_name_the_option(options, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        SupernetEvaluator(**options)


def test_check_names_missing_data_and_ranges(tmp_path):
    SupernetEvaluator(**TINY).check()
    with pytest.raises(DataError, match="evaluator.train_data:.*no-such-set"):
        SupernetEvaluator(train_data="no-such-set").check()
    with pytest.raises(DataError, match="evaluator.val_data:"):
        SupernetEvaluator(val_data=str(tmp_path / "missing")).check()
    with pytest.raises(DataError, match=r"evaluator.val_images: '4-6'.*'Set5' holds 5"):
        SupernetEvaluator(val_images="4-6").check()


def test_setup_errors():
    ev = SupernetEvaluator(**{**TINY, "channels": "auto"})
    with pytest.raises(ConfigError, match="before setup"):
        ev.train_step(tiny_model())
    with pytest.raises(ConfigError, match="evaluator.channels: 'auto'"):
        ev.setup(tiny_model(), scale=2, seed=0)
    with pytest.raises(ConfigError, match="evaluator.patch_size: must be a multiple of the scale 3"):
        SupernetEvaluator(**TINY).setup(tiny_model(), scale=3, seed=0)


def test_evaluate_is_refused_with_a_pointer_to_one_shot():
    with pytest.raises(ConfigError, match="one-shot"):
        SupernetEvaluator().evaluate(None, EvalContext())


# ---- reward PSNR -----------------------------------------------------------------------------------------
def test_psnr_y_float_nocrop_by_hand():
    """Two 2x2 RGB patches, the PSNR computed by hand from METHODS.md §1.5's formula."""
    hr = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]] * 3, [[[0.1, 0.1], [0.9, 0.9]]] * 3], dtype=torch.float64)  # grey patches
    pred = hr.clone()
    pred[0, 0, 0, 0] += 0.5  # R up: Y up by 65.481 * 0.5 / 255; the output goes above 1: not clipped
    pred[1] = pred[1] + 0.1  # all up: Y up by (65.481 + 128.553 + 24.966) * 0.1 / 255 everywhere
    pred[1, :, 1, 1] = 1.2
    d0 = 65.481 * 0.5 / 255
    p0 = 10 * math.log10(1 / (d0 ** 2 / 4))
    k = (65.481 + 128.553 + 24.966) / 255
    d1 = [k * 0.1, k * 0.1, k * 0.1, k * 0.3]
    p1 = 10 * math.log10(1 / (sum(d * d for d in d1) / 4))
    assert psnr_y_float_nocrop(pred, hr, 2) == pytest.approx((p0 + p1) / 2, rel=1e-12)
    # unclipped: clipping pred to [0, 1] would change the value
    assert psnr_y_float_nocrop(pred.clamp(0, 1), hr, 2) != pytest.approx((p0 + p1) / 2, rel=1e-6)
    # an exact patch scores 100 dB (the released code), not inf; Y input is taken as is
    assert psnr_y_float_nocrop(hr, hr, 2) == 100.0
    assert psnr_y_float_nocrop(hr[:, :1] + 0.01, hr[:, :1], 2) == pytest.approx(40.0)


def test_psnr_rgb_shave_by_hand():
    """Quantised prediction, ``scale + 6`` pixels shaved, one MSE over the batch (METHODS.md §2.5)."""
    hr = torch.zeros(2, 3, 20, 20)
    pred = torch.zeros(2, 3, 20, 20)
    pred[:, :, :8] = 0.9  # inside the 8-pixel shave at scale 2: ignored
    pred[0, 0, 8:12, 8:12] = 10.4 / 255  # quantised to 10/255
    mse = 16 * (10 / 255) ** 2 / (2 * 3 * 4 * 4)
    assert psnr_rgb_shave(pred, hr, 2) == pytest.approx(-10 * math.log10(mse), rel=1e-12)
    with pytest.raises(InputError, match="val_patch_size"):
        psnr_rgb_shave(pred, hr, 4)
    assert set(REWARD_PSNRS) == {"y_float_nocrop", "rgb_shave"}


# ---- streams -----------------------------------------------------------------------------------------------
def test_mean_squared_gradient_by_hand():
    x = np.array([[0, 3, 3], [4, 4, 0], [0, 0, 0]], dtype=np.uint8)[:, :, None]
    # pixels (0,0), (0,1), (1,0), (1,1): (down^2 + right^2) = 16+9, 1+0, 16+0, 16+16
    assert mean_squared_gradient(x) == pytest.approx((25 + 1 + 16 + 32) / 4)


def test_grad_filter_rejects_flat_patches(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(folder / "a_flat.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "b_noise.png")
    options = dict(train_data=str(folder), val_data=str(folder), augment=False)
    ev, _ = ready(grad_filter=51.065, **options)
    lr, hr = ev.train_batch(0)
    for t in range(1, 4):
        hr = torch.cat([hr, ev.train_batch(t)[1]])
    assert all(float(p.std()) > 0.1 for p in hr)  # never the flat image
    ev_off, _ = ready(grad_filter=None, **options)
    hrs = torch.cat([ev_off.train_batch(t)[1] for t in range(4)])
    assert any(float(p.std()) == 0 for p in hrs)  # without the filter the flat image is drawn
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(flat / "a.png")
    ev_flat, _ = ready(grad_filter=51.065, **{**options, "train_data": str(flat)})
    with pytest.raises(DataError, match="grad_filter=51.065"):
        ev_flat.train_batch(0)


def test_streams_are_pure_functions_of_seed_and_position():
    a, _ = ready(seed=3)
    b, _ = ready(seed=3)
    later = b.train_batch(5)
    first = b.train_batch(0)
    for x, y in zip(first, a.train_batch(0)):
        assert torch.equal(x, y)
    for x, y in zip(later, a.train_batch(5)):
        assert torch.equal(x, y)
    c, _ = ready(seed=4)
    assert not torch.equal(c.train_batch(0)[1], first[1])
    # the validation patches are fixed whatever the seed, and batches wrap around the 3 patches
    for x, y in zip(a.val_batch(0), c.val_batch(0)):
        assert torch.equal(x, y)
    lr0, hr0 = a.val_batch(0)
    lr1, hr1 = a.val_batch(1)
    assert lr0.shape == (2, 3, 8, 8) and hr0.shape == (2, 3, 16, 16)
    assert torch.equal(hr1[1], hr0[0])  # patch 3 mod 3 = patch 0


def test_train_step_lowers_the_loss_and_score_is_the_reward_metric():
    ev, model = ready()
    lr, hr = ev.train_batch(0)

    def loss_on_batch_0():
        with torch.no_grad():
            return float(torch.nn.functional.l1_loss(model(lr), hr))

    before, psnr_before = loss_on_batch_0(), ev.score(model, batches=2)
    for _ in range(25):
        ev.train_step(model)
    assert loss_on_batch_0() < 0.5 * before
    scored = ev.score(model, batches=2)
    assert set(scored) == {"psnr_y_float_nocrop"} and scored["psnr_y_float_nocrop"] > psnr_before[
        "psnr_y_float_nocrop"]
    assert model.training and ev.train_position == 25 and ev.val_position == 4


def test_only_used_parameters_move():
    """A supernet parameter the child does not use gets no gradient, no Adam state and keeps its value."""
    model = tiny_model()
    unused = torch.nn.Parameter(torch.ones(4))
    bank = torch.nn.ParameterList([*model.parameters(), unused])
    ev, _ = ready(model=bank, seed=0)
    used_before = [p.detach().clone() for p in model.parameters()]
    ev.train_step(model)
    assert torch.equal(unused.detach(), torch.ones(4)) and unused not in ev.optimizer.state
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), used_before))


def test_non_finite_loss_raises_without_an_update():
    ev, model = ready()

    class Blow(torch.nn.Module):
        def forward(self, x):
            return model(x) * float("inf")

    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(TrainingDiverged, match="step 1"):
        ev.train_step(Blow())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert ev.train_position == 1


def test_resume_from_state_dict_is_bit_identical():
    straight, m1 = ready(seed=7)
    for _ in range(4):
        straight.train_step(m1)
        straight.score(m1)
    first, m2 = ready(seed=7)
    for _ in range(2):
        first.train_step(m2)
        first.score(m2)
    state = first.state_dict()
    weights = {k: v.clone() for k, v in m2.state_dict().items()}
    m3 = tiny_model(seed=99)  # another init: the weights come from the checkpoint
    m3.load_state_dict(weights)
    resumed, _ = ready(model=m3, seed=7)
    resumed.load_state_dict(state)
    for _ in range(2):
        resumed.train_step(m3)
        resumed.score(m3)
    for a, b in zip(m1.parameters(), m3.parameters()):
        assert torch.equal(a, b)
    assert (resumed.train_position, resumed.val_position) == (4, 4)
    assert resumed.score(m3) == straight.score(m1)
    other, _ = ready(seed=8)
    with pytest.raises(InputError, match="seed 7"):
        other.load_state_dict(state)


def test_plan_counts_and_times_one_step():
    space = get_plugins().spaces.get("simple")(channels="rgb")
    graph = space.decode(space.sample(np.random.default_rng(0)))
    ev = SupernetEvaluator(**TINY)
    assert ev.plan(graph, measure=False).seconds is None
    plan = ev.plan(graph, measure=True)
    assert plan.seconds > 0 and set(plan.parts) == {"step", "score"} and "batch 2" in plan.work


def test_prefetching_changes_no_result():
    runs = []
    for prefetch in (0, 3):
        ev, model = ready(seed=5, prefetch=prefetch)
        losses = [ev.train_step(model) for _ in range(4)]
        runs.append((losses, [p.detach().clone() for p in model.parameters()]))
        ev.close()
        with pytest.raises(ConfigError, match="before setup"):
            ev.score(model)
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_matlab_float_rounds_once():
    """DeCoNAS's imresize works in float and rounds at the end; MATLAB's uint8 path rounds after each pass."""
    from nasengine.evaluators.supernet import _lr_of
    from nasengine.sr.resize import imresize

    hr = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    once = _lr_of(hr, 2, "matlab_float")
    assert np.array_equal(once, np.round(imresize(hr.astype(float), output_shape=(16, 16))).astype(np.uint8))
    per_pass = _lr_of(hr, 2, "matlab")
    assert np.abs(once.astype(int) - per_pass).max() == 1 and (once != per_pass).any()
