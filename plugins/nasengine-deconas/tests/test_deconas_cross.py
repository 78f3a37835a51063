"""Across methods (issue 12, item 8), through the ``nasengine`` CLI with tiny budgets: the ``deconas-lstm``
controller and the engine's ``reinforce`` run on the FALSR space (generational loop); NSGA-II and random
search run on the DeCoNAS space with the incomplete-training evaluator (method ``deconas-generational``)."""
from __future__ import annotations

import pytest

from nasengine.cli import EXIT_OK
from nasengine.store import ExperimentStore
from tests.cli_helpers import run_cli

TINY_TRAINING = ["--set", "evaluator.steps=5", "--set", "evaluator.patch_size=32", "--executor", "inline", "-q"]


@pytest.mark.parametrize("controller", ["deconas-lstm", "reinforce"])
def test_policy_controllers_search_the_falsr_space(tmp_path, capsys, controller):
    pytest.importorskip("nasengine_falsr")
    out = tmp_path / "run"
    argv = ["search", "falsr", "--preset", "smoke", "--out", str(out), "--seed", "1",
            "--set", f"controller.name={controller}", "--set", "space.n_cells=2", "--set", "budget.generations=2",
            "--set", "controller.population_size=2", *TINY_TRAINING]
    if controller == "deconas-lstm":  # FALSR's evaluator reports `psnr`: the baseline tracks it (§1.5's rule)
        argv += ["--set", "controller.baseline_metric=psnr"]
    assert run_cli(argv) == EXIT_OK
    assert f"controller {controller}, population 2" in capsys.readouterr().out
    store = ExperimentStore.open(out)
    assert store.run.status == "done" and store.run.config["controller"]["name"] == controller
    assert len(store.candidates()) == 4 and any(r.status == "ok" for r in store.candidates())
    _, state = store.load_controller_state()
    learner = state["policy_gradient"]
    assert learner["steps"] >= 1 and learner["baseline"] is not None  # it learned from the told rewards
    if controller == "deconas-lstm":
        psnrs = [r.metrics["psnr"] for r in store.candidates() if r.status == "ok"]
        assert min(psnrs) <= learner["baseline"] <= max(psnrs)  # an EMA of the PSNR, not of the reward
    store.close()


@pytest.mark.parametrize("controller", ["nsga2", "random"])
def test_generational_controllers_search_the_deconas_space(tmp_path, capsys, controller):
    out = tmp_path / "run"
    argv = ["search", "deconas-generational", "--preset", "smoke", "--out", str(out), "--seed", "1",
            "--set", f"controller.name={controller}", "--set", "space.N=1", "--set", "space.M=2",
            "--set", "space.channels=4", "--set", "budget.generations=1", "--set", "controller.population_size=2",
            *TINY_TRAINING]
    assert run_cli(argv) == EXIT_OK
    assert f"controller {controller}, population 2" in capsys.readouterr().out
    store = ExperimentStore.open(out)
    records = store.candidates()
    assert store.run.status == "done" and len(records) == 2 and all(r.status == "ok" for r in records)
    assert all(r.genome["method"] == "deconas" and len(r.genome["masks"]) == 3 for r in records)
    assert all(r.costs["mult_adds"] > 0 and r.metrics["psnr"] > 0 for r in records)
    store.close()
