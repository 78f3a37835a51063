"""The plugin's registrations and the ``falsr`` method's presets (without needing the hybrid controller)."""
from __future__ import annotations

import math

import pytest

from nasengine.evaluators import TrainingEvaluator
from nasengine.method import Method
from nasengine.plugins import get_plugins
from nasengine.reward import Reward
from nasengine_falsr.plugin import falsr_method
from nasengine_falsr.space import FalsrSpace


@pytest.fixture(scope="module")
def plugins():
    return get_plugins()


def test_registered_through_the_entry_point(plugins):
    assert plugins.spaces.get("falsr") is FalsrSpace
    assert isinstance(plugins.methods.get("falsr"), Method)
    assert {f"falsr:{n}" for n in ("FALSR-A", "FALSR-B", "FALSR-C", "FALSR-C-paper")} <= set(
        plugins.architectures.names())


def test_method_recipe():
    m = falsr_method()
    assert (m.name, m.space, m.controller, m.evaluator, m.loop) == ("falsr", "falsr", "falsr-hybrid", "sr-train",
                                                                    "generational")
    assert set(m.presets) == {"paper", "smoke"} and m.default_preset == "smoke"


def _checked(cfg: dict) -> None:
    """Everything but the controller resolves to working objects."""
    FalsrSpace(**cfg["space"])
    TrainingEvaluator(**cfg["evaluator"])
    reward = Reward.from_config(**cfg["reward"])
    assert [(o.metric, o.direction) for o in reward.objectives] == [("psnr", "max"), ("mult_adds", "min"),
                                                                    ("params", "min")]
    assert cfg["cost"] == {"lr_size": [480, 480]}
    ctrl = cfg["controller"]
    assert 0 <= ctrl["p_r"] + ctrl["p_den"] <= 1 and 0 <= ctrl["p_mr"] + ctrl["p_mf"] <= 1


def test_paper_preset():
    cfg = falsr_method().config("paper")
    _checked(cfg)
    assert cfg["space"] == {"n_cells": 7, "scale": 2}
    assert cfg["controller"]["population_size"] == 64
    ev = cfg["evaluator"]
    assert (ev["lr"], ev["betas"], ev["batch_size"], ev["schedule"], ev["init_std"]) == (
        1e-4, [0.9, 0.999], 16, "constant", 0.02)
    assert (ev["train_data"], ev["epochs"], ev["patches_per_epoch"], ev["patch_size"]) == ("DIV2K", 200, 800, 96)
    assert cfg["budget"] == {"candidates": 10_000}
    assert cfg["reward"]["constraints"] == []  # the paper names min-PSNR / max-Mult-Adds bounds without values


def test_smoke_preset_is_a_cpu_budget():
    cfg = falsr_method().config("smoke")
    _checked(cfg)
    space = FalsrSpace(**cfg["space"])
    assert space.n_cells == 3 and space.channels == (16, 32, 48, 64)
    ev = cfg["evaluator"]
    assert ev["train_data"] == "default" and ev["patch_size"] == 64 and ev["steps"] <= 150
    assert cfg["controller"]["population_size"] * cfg["budget"]["generations"] <= 20
    assert cfg["executor"] == {"name": "process", "workers": 2}
    # the max-Mult-Adds constraint bounds the training cost of a candidate (checked before training)
    reward = Reward.from_config(**cfg["reward"])
    assert [(c.metric, c.kind, c.bound, c.stage) for c in reward.constraints] == [("mult_adds", "max", 60e9, "cost")]


def test_overrides_merge():
    cfg = falsr_method().config("smoke", {"budget": {"generations": 1}, "space": {"n_cells": 4}})
    assert cfg["budget"] == {"generations": 1} and cfg["space"] == {"n_cells": 4, "scale": 2}
    assert cfg["method"] == "falsr" and cfg["preset"] == "smoke"


def test_paper_plan_from_the_cli(monkeypatch, capsys):
    """`nasengine search falsr --preset paper --plan` validates the preset and prints the paper's budget and its
    estimated cost (the per-step time measured here is stubbed: the point is the plan, not this CPU)."""
    import nasengine.plan
    import nasengine.train
    from nasengine.cli import main
    from nasengine.plugins import get_plugins
    from nasengine.errors import DataError
    from nasengine.sr.data import resolve_training

    monkeypatch.setattr(nasengine.train, "time_steps", lambda *a, **k: 2.0)
    monkeypatch.setattr(nasengine.train, "time_validation", lambda *a, **k: 0.0)
    monkeypatch.setenv("NASENGINE_DATA", "")
    assert main(["search", "falsr", "--preset", "paper", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "controller falsr-hybrid, population 64" in out
    # 10,000 candidates in generations of 64: 157 generations (the last one finished), 10,048 models
    assert "about 10048 models (157 generations of 64)" in out
    assert "200 epochs of 800 patches, batch 16, HR patch 96, data DIV2K" in out
    plugins = get_plugins()
    method = plugins.methods.get("falsr")
    plan = nasengine.plan.search_plan(method, method.config("paper"), plugins=plugins)
    per_model = 200 * (800 // 16) * 2.0  # steps x 2 s
    assert plan["seconds_per_candidate_here"] == per_model
    assert plan["seconds_here"] == pytest.approx(157 * math.ceil(64 / plan["parallelism"]) * per_model
                                                 * plan["feasible_share"])
    assert "2000 ms per step, 0 s validation -> 5.6 hours per model" in out
    try:
        resolve_training("DIV2K")
    except DataError:  # as on CI: the plan says so (the search itself would stop before making a run folder)
        assert "note: not runnable on this machine as configured: unknown training set 'DIV2K'" in out
