"""The deconas-cb reward (METHODS.md §1.5) and the deconas method's presets (§1.9)."""
from __future__ import annotations

import pytest

from nasengine.errors import ConfigError
from nasengine.options import OptionError
from nasengine.plugins import get_plugins
from nasengine_deconas.reward import DeconasCbReward, deconas_cb_reward
from nasengine_deconas.space import DeconasSpace

# DeCoNASNet's penalties (§1.11): the reward of a child at 35 dB is 35 - 2 * cb.
METRICS = {"psnr_y_float_nocrop": 35.0, "cb_code": 0.40172, "cb_paper": 0.48160, "params": 1_713_795.0}


def test_reward_is_psnr_minus_alpha_cb():
    assert deconas_cb_reward().scalar(METRICS) == pytest.approx(35.0 - 2 * 0.40172)
    assert deconas_cb_reward(cb="paper").scalar(METRICS) == pytest.approx(35.0 - 2 * 0.48160)
    assert deconas_cb_reward(alpha=0.5, cb="paper").scalar(METRICS) == pytest.approx(35.0 - 0.5 * 0.48160)
    psnr = deconas_cb_reward(psnr_metric="psnr")
    assert psnr.scalar({**METRICS, "psnr": 30.0}) == pytest.approx(30.0 - 2 * 0.40172)


def test_reward_objectives_and_registration():
    reward = get_plugins().rewards.get("deconas-cb")()
    assert isinstance(reward, DeconasCbReward)
    assert [(o.metric, o.direction) for o in reward.objectives] == [("psnr_y_float_nocrop", "max"),
                                                                     ("params", "min")]
    custom = deconas_cb_reward(objectives=[["psnr", "max"], ["mult_adds", "min"]],
                               constraints=[["params", "max", 1e6]], penalty=3.0)
    assert custom.metrics == ["psnr", "mult_adds"]
    # params over the bound by 71.3795% (the engine's relative violation), times the penalty 3
    assert custom.scalar({**METRICS, "psnr": 35.0}) == pytest.approx(35.0 - 2 * 0.40172 - 3 * 0.713795)


def test_reward_errors_name_the_option_or_metric():
    with pytest.raises(OptionError, match="reward.cb: must be one of 'code', 'paper'"):
        deconas_cb_reward(cb="params")
    with pytest.raises(OptionError, match="reward.alpha"):
        deconas_cb_reward(alpha=-1)
    with pytest.raises(OptionError, match="reward.beta"):
        deconas_cb_reward(beta=1)
    with pytest.raises(ConfigError, match="lack 'cb_code'"):
        deconas_cb_reward().scalar({"psnr_y_float_nocrop": 30.0})


@pytest.mark.parametrize("preset", ["paper", "smoke"])
def test_presets_make_the_space_and_reward(preset):
    method = get_plugins().methods.get("deconas")
    assert (method.loop, method.space, method.controller, method.evaluator, method.reward) == (
        "one-shot", "deconas", "deconas-lstm", "sr-supernet", "deconas-cb")
    cfg = method.config(preset)
    space = DeconasSpace(**cfg["space"])
    deconas_cb_reward(**cfg["reward"])
    loop = cfg["loop"]
    if preset == "paper":  # §1.6 / §1.9
        assert (space.N, space.M, space.channels, space.size()) == (4, 4, 64, 2 ** 30)
        assert (loop["epochs"], loop["child_steps"], loop["controller_steps"], loop["controller_start"]) == (
            200, 1000, 100, 6)
        assert loop["derive_samples"] == 100 and cfg["evaluator"]["grad_filter"] == 51.065
    else:  # §1.9 smoke: 2^18 space, embedded data only
        assert (space.N, space.M, space.channels, space.size()) == (2, 3, 8, 2 ** 18)
        assert cfg["evaluator"]["train_data"] == cfg["evaluator"]["val_data"] == "default"
        assert cfg["retrain"]["train_data"] == "default"
