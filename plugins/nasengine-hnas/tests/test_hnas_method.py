"""The ``hnas`` and ``hnas-generational`` methods through the ``nasengine`` CLI with tiny budgets (issue 13, items
7-8): the one-shot search with the hierarchical controller (epoch hook, joint reward, retraining at another
width), and NSGA-II and the generic ``reinforce`` controller on the HNAS space under the generational loop."""
from __future__ import annotations

import pytest

from nasengine.cli import EXIT_OK
from nasengine.store import ExperimentStore
from tests.cli_helpers import run_cli

TINY_SPACE = ["--set", "space.L=2", "--set", "space.channels=4"]


def test_hnas_one_shot_search_end_to_end(tmp_path):
    out = tmp_path / "run"
    argv = ["search", "hnas", "--preset", "smoke", "--out", str(out), "--seed", "0", "-q", *TINY_SPACE,
            "--set", "loop.epochs=2", "--set", "loop.child_steps=2", "--set", "loop.controller_steps=2",
            "--set", "loop.derive_samples=2", "--set", "loop.derive_batches=1", "--set", "retrain.steps=2",
            "--set", "evaluator.val_patches=4"]
    assert run_cli(argv) == EXIT_OK
    store = ExperimentStore.open(out)
    assert store.run.status == "done"
    scored = store.candidates(generation=1) + store.candidates(generation=2)
    assert len(scored) == 4 and all(r.status == "ok" for r in scored)
    for r in scored:  # the reward PSNR and the repo's cost figure beside the true Mult-Adds, each named
        assert r.metrics["psnr_rgb_shave"] > 0 and r.costs["mult_adds_conv2d_48px_x10"] > 0
        assert r.costs["mult_adds_executed"] >= r.costs["mult_adds"] > 0
    _, state = store.load_controller_state()
    assert state["controller"] == "hnas-hierarchical" and state["epoch"] == 2  # start_epoch was called
    assert state["policy_gradient"]["steps"] == 4
    derived = store.results()["derived"]
    (retrained,) = store.candidates(generation=4)
    # retrained at loop.retrain_space's channels 8 (the search ran at 4): another architecture key, more params
    assert retrained.status == "ok" and retrained.metrics["psnr"] > 0
    assert retrained.key != derived["key"] and retrained.genome == derived["genome"]
    assert retrained.params > store.candidates(generation=3)[0].params
    # its kept model is the derived architecture's, found by genome (the keys differ)
    assert derived["model"] and (out / derived["model"]).is_file()
    store.close()
    from nasengine.export import run_model

    assert run_model(out) == out / derived["model"]


@pytest.mark.parametrize("controller", ["nsga2", "reinforce"])
def test_generational_controllers_search_the_hnas_space(tmp_path, controller):
    out = tmp_path / "run"
    argv = ["search", "hnas-generational", "--preset", "smoke", "--out", str(out), "--seed", "1", *TINY_SPACE,
            "--set", f"controller.name={controller}", "--set", "budget.generations=1",
            "--set", "controller.population_size=2", "--set", "evaluator.steps=3", "--set", "evaluator.patch_size=32",
            "--executor", "inline", "-q"]
    assert run_cli(argv) == EXIT_OK
    store = ExperimentStore.open(out)
    records = store.candidates()
    assert store.run.status == "done" and len(records) == 2 and all(r.status == "ok" for r in records)
    assert all(r.genome["method"] == "hnas" and r.genome["L"] == 2 for r in records)
    assert all(r.costs["mult_adds"] > 0 and r.metrics["psnr"] > 0 for r in records)
    store.close()


def test_the_hierarchical_controller_refuses_other_spaces(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["search", "deconas-generational", "--preset", "smoke", "--out", str(out), "--plan",
            "--set", "controller.name=hnas-hierarchical"]
    assert run_cli(argv) != EXIT_OK
    err = capsys.readouterr().err
    assert "hierarchical space" in err
