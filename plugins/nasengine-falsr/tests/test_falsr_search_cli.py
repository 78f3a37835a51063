"""`nasengine search falsr` end to end through the CLI on a shrunken smoke preset (the full smoke preset takes
minutes: `benchmarks/falsr_search.py` runs it), with the hybrid controller and with a generic one."""
from __future__ import annotations

import json

import pytest

from nasengine.cli import EXIT_OK, main
from nasengine.store import ExperimentStore

# The smoke preset with 2 generations of 2 tiny trainings, in-process.
SHRUNK = ["--set", "budget.generations=2", "--set", "controller.population_size=2", "--set", "evaluator.steps=4",
          "--set", "evaluator.patch_size=32", "--executor", "inline", "-q"]


def run(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse
        return exc.code


@pytest.mark.parametrize("controller", ["falsr-hybrid", "evolution"])
def test_search_show_resume(tmp_path, capsys, controller):
    out = tmp_path / "run"
    argv = ["search", "falsr", "--preset", "smoke", "--out", str(out), "--seed", "1", *SHRUNK]
    if controller != "falsr-hybrid":
        argv += ["--set", f"controller.name={controller}"]
    assert run(argv) == EXIT_OK
    text = capsys.readouterr().out
    assert f"controller {controller}, population 2" in text and "Pareto front" in text
    assert (out / "report" / "psnr_vs_mult_adds.png").stat().st_size > 1000
    store = ExperimentStore.open(out)
    records = store.candidates()
    assert store.run.status == "done" and store.run.config["controller"].get("name", "falsr-hybrid") == controller
    assert len(records) == 4 and any(r.status == "ok" for r in records)
    assert all(r.costs["mult_adds"] > 0 for r in records)  # costed at 480x480 before training
    store.close()
    # extend the finished run by a generation
    assert run(["resume", str(out), "--set", "budget.generations=3", "-q"]) == EXIT_OK
    assert len(ExperimentStore.open(out).candidates()) == 6
    capsys.readouterr()
    assert run(["show", str(out), "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["run"]["method"] == "falsr" and data["front"]
