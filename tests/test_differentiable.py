"""The differentiable search loop (nasengine/search/differentiable.py) on the tiny gated space
(tests/gated_space.py: 4 gated hidden channels, sr-train on 16-px patches, 12 steps, a record every 4): rows,
derivation, retraining, the plan, lambda modes, exact resume after SIGKILL, the budget errors."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_helpers import only_plugins, run_cli

EXTRA = "tests.gated_space"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def diff_plugins():
    from tests import gated_space

    with only_plugins(gated_space) as plugins:
        yield plugins


def _store(path):
    from nasengine.store import ExperimentStore

    return ExperimentStore.open(path, lock=False)


def _rows(store) -> list:
    return [(r.generation, r.idx, r.genome, {k: v for k, v in r.metrics.items() if not k.endswith("_seconds")})
            for r in store.candidates()]


def test_rows_derivation_retraining_and_checkpoint(diff_plugins, one_torch_thread, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["search", "tiny-diff", "--out", str(out), "--seed", "0", "-q",
                    "--set", "loop.lam=1e-5"]) == 0
    with _store(out) as store:
        traj = store.candidates(generation=0)
        # rows after steps 0, 4, 8, 12 (record_every 4), each with its step, costs and the masked supernet's PSNR
        assert [r.metrics["step"] for r in traj] == [0.0, 4.0, 8.0, 12.0]
        assert all(r.mult_adds is not None and "psnr" in r.metrics for r in traj)
        assert all({"l1", "cost_term", "lambda", "lambda_r_over_l1"} <= set(r.metrics) for r in traj[1:])
        assert traj[1].metrics["lambda"] == 1e-5
        assert math.isclose(traj[1].metrics["lambda_r_over_l1"],
                            1e-5 * traj[1].metrics["cost_term"] / traj[1].metrics["l1"], rel_tol=1e-9)
        (derived,) = store.candidates(generation=1)
        res = store.results()["derived"]
        assert res["genome"] == derived.genome and res["derive"] == "weights" and (out / res["model"]).is_file()
        (retrained,) = store.candidates(generation=2)
        assert retrained.status == "ok" and retrained.key == derived.key and "psnr" in retrained.metrics
        ck = store.load_checkpoint("differentiable")
        assert ck.epoch == 12 and (out / ck.path).is_file()
    # show: the architecture over training as a table (step, hard Mult-Adds, params, PSNR) and trajectory.png
    from nasengine.report import RunReport

    capsys.readouterr()
    assert run_cli(["show", str(out), "--plots"]) == 0
    text = capsys.readouterr().out
    table = RunReport.load(out).trajectory_table().splitlines()
    assert table[0].split() == ["step", "mult_adds", "params", "psnr", "lambda"]
    assert [line.split()[0] for line in table[2:]] == ["0", "4", "8", "12"]
    assert "architecture over training" in text and table[-1] in text
    assert (out / "report" / "trajectory.png").stat().st_size > 1000


def test_fine_tuning_starts_from_the_derived_weights(diff_plugins, one_torch_thread, tmp_path):
    # at a vanishing lr the fine-tuned network is the derived one: its PSNR is the derived row's (same Set5)
    out = tmp_path / "run"
    assert run_cli(["search", "tiny-diff", "--out", str(out), "--seed", "0", "-q", "--set", "evaluator.steps=4",
                    "--set", "loop.retrain_from=derived", "--set", "retrain.lr=1e-12"]) == 0
    with _store(out) as store:
        (derived,) = store.candidates(generation=1)
        (tuned,) = store.candidates(generation=2)
        assert tuned.status == "ok" and tuned.worker == "driver" and tuned.key == derived.key
        assert abs(tuned.metrics["psnr"] - derived.metrics["psnr"]) < 1e-3
        assert store.results()["retrained"][0]["from"] == "derived"
    assert (out / "retrained" / "model.pt").is_file()


def test_retrain_space_retrains_another_scale_from_scratch(diff_plugins, one_torch_thread, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["search", "tiny-diff", "--out", str(out), "--seed", "0", "-q", "--set", "evaluator.steps=4",
                    "--set", "loop.retrain_space.scale=3", "--set", "retrain.patch_size=18"]) == 0
    from tests.gated_space import TinyGatedSpace

    with _store(out) as store:
        (derived,) = store.candidates(generation=1)
        (x3,) = store.candidates(generation=2)
    x3_space = TinyGatedSpace(channels=4, scale=3)
    graph = x3_space.decode(x3_space.from_json(x3.genome))
    assert x3.status == "ok" and x3.genome == derived.genome and x3.key == graph.key() != derived.key
    assert x3.mult_adds > derived.mult_adds  # the tail emits 9 instead of 4 channels per pixel
    # fine-tuning changes nothing in the architecture: with another space it is refused, in one line
    assert run_cli(["search", "tiny-diff", "--out", str(tmp_path / "r2"), "-q", "--set", "loop.retrain_from=derived",
                    "--set", "loop.retrain_space.scale=3"]) != 0
    err = capsys.readouterr().err
    assert "loop.retrain_from: 'derived' fine-tunes" in err and not (tmp_path / "r2").exists()


def test_derived_module_reproduces_the_masked_supernet(diff_plugins):
    """The derived network with the supernet's weights computes what the masked supernet computes; the cost
    term at hard gates equals the analytic Mult-Adds of the decoded genome (the loop records both)."""
    import torch

    from nasengine.cost import analytic_cost
    from tests.gated_space import TinyGatedSpace

    space = TinyGatedSpace(channels=6)
    torch.manual_seed(0)
    net = space.differentiable_supernet()
    with torch.no_grad():
        net.psi.copy_(torch.tensor([1.0, 0.2, 0.9, 0.4, 0.7, 0.1]))
    d = net.derive()
    assert d.genome == (1, 0, 1, 0, 1, 0)
    x = torch.rand(2, 1, 8, 8)
    assert torch.allclose(d.module(x), net(x), atol=1e-6)
    assert float(net.cost_term(lr_size=(8, 8)).mult_adds.detach()) == analytic_cost(space.decode(d.genome), (8, 8)).mult_adds


def _step(**kw):
    from nasengine.search.diffstep import DifferentiableStep

    return DifferentiableStep(lr=1e-3, arch_lr=0.1, lr_size=(8, 8), **kw)


def test_lambda_ratio_sets_lambda_at_step_0_and_pixel_range_scales_l1(diff_plugins):
    import torch

    from tests.gated_space import TinyGatedSpace

    torch.manual_seed(0)
    net = TinyGatedSpace(channels=4).differentiable_supernet()
    x, y = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 16, 16)
    step = _step(lam=1.0, lam_ratio=0.5)
    loss, logs = step(net, x, y, 0)
    assert math.isclose(logs["lambda_r_over_l1"], 0.5, rel_tol=1e-9) and math.isclose(float(loss.detach()), 1.5 * logs["l1"],
                                                                                        rel_tol=1e-6)
    _, again = step(net, x, y, 1)
    assert again["lambda"] == logs["lambda"]  # chosen once, then kept
    assert step.state_dict() == {"lam": logs["lambda"], "calibrated": True}
    # 0-255: the network sees x*255 and L1 is on that scale (METHODS §3.4)
    wide = _step(lam=0.0, pixel_range=255)
    _, logs255 = wide(net, x, y, 0)
    with torch.no_grad():
        expected = torch.nn.functional.l1_loss(net(x * 255), y * 255)
    assert math.isclose(logs255["l1"], float(expected), rel_tol=1e-6)


def test_target_lambda_rises_above_the_budget_and_falls_below_it(diff_plugins):
    import torch

    from tests.gated_space import TinyGatedSpace

    net = TinyGatedSpace(channels=4).differentiable_supernet()
    x, y = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 16, 16)
    full = float(net.cost_term(lr_size=(8, 8)).mult_adds)
    for target, direction in ((full / 2, 1), (full * 2, -1)):
        step = _step(lam=1e-3, lam_mode="target", target_mult_adds=target, target_eta=0.5, target_every=2)
        lams = [step(net, x, y, s)[1]["lambda"] for s in range(5)]
        # updates at steps 2 and 4 only: lambda * exp(0.5 * (R/T - 1)) with R/T = 2 or 1/2
        factor = math.exp(0.5 * (full / target - 1))
        assert lams[:2] == [1e-3, 1e-3] and math.isclose(lams[2], 1e-3 * factor) and lams[3] == lams[2]
        assert math.isclose(lams[4], 1e-3 * factor ** 2) and (lams[4] - 1e-3) * direction > 0


def test_plan_says_steps_schedule_lambda_and_time(diff_plugins, one_torch_thread, capsys):
    assert run_cli(["search", "tiny-diff", "--plan", "--set", "evaluator.schedule=step",
                    "--set", "evaluator.step_size=6", "--set", "loop.pixel_range=255"]) == 0
    out = capsys.readouterr().out
    assert "differentiable: 12 steps, Adam 0.001 (architecture 0.05)" in out
    assert "schedule x0.5 every 6 steps" in out and "L1 on 0-255 pixels + lambda * R" in out
    assert "ms per step (plain supernet step" in out and "the search about" in out


@pytest.mark.parametrize("override, message", [
    ("budget.candidates=3", "budget.candidates: the differentiable loop is bounded"),
    ("loop.lam_mode=target", "loop.target_mult_adds: lam_mode 'target' needs"),
    ("loop.pixel_range=7", "loop.pixel_range"),
    ("evaluator.seconds=3", "steps/epochs/seconds"),
])
def test_config_errors_are_one_line(diff_plugins, capsys, tmp_path, override, message):
    assert run_cli(["search", "tiny-diff", "--out", str(tmp_path / "r"), "--set", override, "-q"]) != 0
    err = capsys.readouterr().err
    assert message in err and not (tmp_path / "r").exists()


def test_a_space_without_a_differentiable_supernet_is_refused(diff_plugins, capsys, tmp_path):
    assert run_cli(["search", "tiny-diff", "--out", str(tmp_path / "r"), "--set", "space.name=simple",
                    "--set", "space.channels=y", "-q"]) != 0
    assert "has no differentiable_supernet()" in capsys.readouterr().err


def test_resume_after_sigkill_ends_as_an_uninterrupted_run(diff_plugins, one_torch_thread, tmp_path):
    """Kill a search subprocess after step 10 (the checkpoint of step 8 written; it stalls there, see
    tests/gated_space.py) and resume it: the gates (the whole trainer state), every row and the derived genome
    equal those of an uninterrupted run with the same seed."""
    import torch

    from nasengine.search import resume_search, run_search
    from nasengine.statecodec import decode_state

    over = {"loop": {"lam": 3e-5, "retrain": False}}
    ref = run_search(tmp_path / "ref", method="tiny-diff", seed=3, progress=False, overrides=over)
    assert ref.status == "done"
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NASENGINE_PLUGINS_EXTRA": EXTRA, "NASENGINE_TEST_DIFF_STALL": "10",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "nasengine", "search", "tiny-diff", "--out", str(killed),
                             "--seed", "3", "-q", "--set", "loop.lam=3e-5", "--set", "loop.retrain=false"],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while True:  # kill once step 8's checkpoint is recorded (it stalls after step 10)
            assert proc.poll() is None, f"the search ended before it was killed: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "the search never reached step 8"
            if (killed / "run.sqlite").exists():
                with _store(killed) as store:
                    ck = store.load_checkpoint("differentiable")
                    if ck is not None and ck.epoch == 8:
                        break
            time.sleep(0.05)
        time.sleep(0.3)  # steps 9 and 10 run on; the kill lands in the stall
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with _store(killed) as store:
        assert store.run.status == "running" and store.get(0, 3) is None
    assert resume_search(killed, progress=False).status == "done"

    def final(path):
        with _store(path) as store:
            ck = store.load_checkpoint("differentiable")
            return ck.epoch, decode_state((path / ck.path).read_bytes(), "test")["trainer"]

    (sa, ta), (sb, tb) = final(tmp_path / "ref"), final(killed)
    assert sa == sb == 12 and ta["model"].keys() == tb["model"].keys()
    assert all(torch.equal(ta["model"][k], tb["model"][k]) for k in ta["model"])  # weights and gates psi
    assert ta["train_step"] == tb["train_step"] and ta["losses"].tolist() == tb["losses"].tolist()
    with _store(tmp_path / "ref") as a, _store(killed) as b:
        assert a.results()["derived"]["genome"] == b.results()["derived"]["genome"]
        assert _rows(a) == _rows(b) and len(_rows(a)) == 5


def test_seconds_budget_stops_after_a_step_and_resume_goes_on(diff_plugins, one_torch_thread, tmp_path, monkeypatch):
    from nasengine.search import resume_search, run_search
    from nasengine.search.context import SearchContext
    from nasengine.search.differentiable import DifferentiableLoop

    steps = []
    on_step = DifferentiableLoop.on_step

    def counted(self, step, loss):
        steps.append(step)
        return on_step(self, step, loss)

    with monkeypatch.context() as m:  # each step takes 10 s of search time
        m.setattr(DifferentiableLoop, "on_step", counted)
        m.setattr(SearchContext, "elapsed", lambda self: 10.0 * len(steps))
        out = run_search(tmp_path / "r", method="tiny-diff", seed=0, progress=False,
                         overrides={"budget": {"seconds": 55}, "loop": {"retrain": False}})
    assert out.stop_reason.startswith("seconds budget reached (60.0/55 s) after step 6")
    with _store(tmp_path / "r") as store:
        assert store.load_checkpoint("differentiable").epoch == 6 and "derived" not in store.results()
    out = resume_search(tmp_path / "r", progress=False, overrides={"budget": {"seconds": 3600}})
    assert out.status == "done" and "derived" in out.stop_reason
    with _store(tmp_path / "r") as store:
        assert [r.metrics["step"] for r in store.candidates(generation=0)] == [0.0, 4.0, 8.0, 12.0]
