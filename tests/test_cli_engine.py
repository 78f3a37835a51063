"""End-to-end CLI of the engine (issue 3): search -> show -> resume -> export -> train -> evaluate/upscale."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from nasengine.cli import EXIT_OK, EXIT_USAGE
from tests.cli_helpers import run_cli

TINY = ["--set", "budget.generations=2", "--set", "controller.population_size=3", "--set", "evaluator.steps=8",
        "--set", "evaluator.patch_size=32", "--set", "evaluator.val_data=Set5", "--executor", "inline", "-q"]



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert run_cli(["search", "simple", "--out", str(out), "--seed", "3"] + TINY) == EXIT_OK
    return out


def test_search_writes_store_and_plots(run_dir):
    assert (run_dir / "run.sqlite").is_file()
    for name in ("psnr_vs_mult_adds.png", "psnr_vs_params.png", "front_over_generations.png"):
        assert (run_dir / "report" / name).stat().st_size > 1000


def test_show_json(run_dir, capsys):
    assert run_cli(["show", str(run_dir), "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["run"]["method"] == "simple" and data["run"]["seed"] == 3
    assert len(data["candidates"]) == 6
    assert data["front"] and all(c["status"] == "ok" for c in data["front"])
    assert "builtin" in data["run"]["plugins"]


def test_resume_extends_budget(run_dir, capsys):
    assert run_cli(["resume", str(run_dir), "--set", "budget.generations=3", "-q"]) == EXIT_OK
    capsys.readouterr()
    assert run_cli(["show", str(run_dir), "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert len(data["candidates"]) == 9


def test_search_refuses_existing_run(run_dir, capsys):
    assert run_cli(["search", "simple", "--out", str(run_dir)] + TINY) == EXIT_USAGE
    assert "already holds a run" in capsys.readouterr().err


def test_unknown_method_lists_known(capsys):
    assert run_cli(["search", "nosuch", "--plan"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "nosuch" in err and "simple" in err


def test_plan_only(capsys):
    assert run_cli(["search", "simple", "--preset", "full", "--plan"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "plan: method simple (preset full" in out and "MACs" in out and "ms per step" in out


def test_export_front_torchscript(run_dir, tmp_path):
    out = tmp_path / "exp"
    assert run_cli(["export", str(run_dir), "-o", str(out)]) == EXIT_OK
    models = sorted(out.glob("*.pt"))
    assert models and len(models) == len(list(out.glob("*.json")))
    module = torch.jit.load(str(models[0]))
    assert module(torch.rand(1, 1, 8, 8)).shape == (1, 1, 16, 16)


def test_cost_train_evaluate_upscale_export(run_dir, tmp_path, capsys):
    assert run_cli(["export", str(run_dir), "-o", str(tmp_path / "g")]) == EXIT_OK
    genome = sorted((tmp_path / "g").glob("*.json"))[0]
    capsys.readouterr()
    assert run_cli(["cost", str(genome), "--json", "--lr-size", "64x48"]) == EXIT_OK
    cost = json.loads(capsys.readouterr().out)
    assert cost["lr_size"] == [48, 64] and cost["mult_adds"] > 0 and cost["params"] > 0
    out = tmp_path / "trained"
    assert run_cli(["train", str(genome), "--out", str(out), "--steps", "20", "--patch-size", "32", "-q",
                    "--device", "cpu"]) == EXIT_OK
    model = out / "model.pt"
    assert model.is_file() and (out / "checkpoints" / "last.pt").is_file()
    capsys.readouterr()
    assert run_cli(["evaluate", "--model", str(model), "--data", "Set5", "--json"]) == EXIT_OK
    psnr = json.loads(capsys.readouterr().out)[0]["sets"]["Set5"]["psnr"]
    assert 10 < psnr < 45
    img = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(img)
    assert run_cli(["upscale", str(img), "--model", str(model), "-o", str(tmp_path / "up.png")]) == EXIT_OK
    with Image.open(tmp_path / "up.png") as im:
        assert im.size == (24, 20)
    assert run_cli(["export", str(model), "-o", str(tmp_path / "one.pt")]) == EXIT_OK
    assert torch.jit.load(str(tmp_path / "one.pt"))(torch.rand(1, 1, 6, 6)).shape == (1, 1, 12, 12)
    onnx = pytest.importorskip("onnx")  # the test extra installs it
    assert run_cli(["export", str(model), "--format", "onnx", "-o", str(tmp_path / "one.onnx")]) == EXIT_OK
    proto = onnx.load(str(tmp_path / "one.onnx"))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["lr"]
    # a genome is not a model: evaluating it asks for training first
    assert run_cli(["evaluate", "--model", str(genome)]) == EXIT_USAGE
    assert "train it first" in capsys.readouterr().err


def test_a_search_on_worker_processes_ends_without_resource_warnings(tmp_path):
    """Workers leave with os._exit; nothing they created may be reported leaked by Python's resource tracker
    (tqdm's multiprocessing lock once was, as "leaked semaphore objects")."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "nasengine", "search", "simple", "--out", str(tmp_path / "run"), "-q",
         "--executor", "process", "--workers", "2", "--set", "budget.generations=1",
         "--set", "controller.population_size=2", "--set", "evaluator.steps=2", "--set", "evaluator.patch_size=32"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_OK, proc.stderr[-2000:]
    assert "leaked" not in proc.stderr and "resource_tracker" not in proc.stderr, proc.stderr[-2000:]


def test_a_run_whose_config_names_its_reward_shows_and_exports(tmp_path, capsys):
    """``--set reward.name=...`` is stored in the run's config; the report (printed at the end of the search),
    ``show`` and ``export`` read the reward and space through the run's spec instead of passing ``name`` on."""
    out = tmp_path / "run"
    argv = ["search", "simple", "--preset", "smoke", "--out", str(out), "--set", "reward.name=objectives",
            "--set", "space.name=simple", "--set", "budget.generations=1", "--set", "controller.population_size=2",
            "--set", "evaluator.steps=2", "--set", "evaluator.patch_size=32", "--executor", "inline", "-q"]
    assert run_cli(argv) == EXIT_OK
    assert "Pareto front" in capsys.readouterr().out
    assert run_cli(["show", str(out)]) == EXIT_OK
    assert "objectives: psnr (max), mult_adds (min)" in capsys.readouterr().out
    assert run_cli(["export", str(out), "--output", str(tmp_path / "exp")]) == EXIT_OK
    assert list((tmp_path / "exp").glob("*.json"))
