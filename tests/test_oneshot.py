"""The one-shot search loop (nasengine/search/oneshot.py) end to end on the tiny one-shot method
(tests/oneshot_method.py: tiny-dense space at C = 4, reinforce, sr-supernet on 16-px patches, 3 epochs of 3
supernet steps, controller from epoch 2): the CLI run and its rows, the derived genome in ``show``, the plan,
exact resume after SIGKILL, a torn checkpoint, the budget errors."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_helpers import only_plugins, run_cli

EXTRA = "tests.supernet_space,tests.oneshot_method"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def oneshot_plugins():
    """The built-in plugin plus the tiny-dense space and the tiny-oneshot method, for this module."""
    from tests import oneshot_method, supernet_space

    with only_plugins(supernet_space, oneshot_method) as plugins:
        yield plugins


@pytest.fixture(scope="module")
def run_dir(oneshot_plugins, tmp_path_factory):
    """``nasengine search tiny-oneshot`` run once, in process."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("oneshot") / "run"
        assert run_cli(["search", "tiny-oneshot", "--out", str(out), "--seed", "0", "-q"]) == 0
    finally:
        torch.set_num_threads(before)
    return out


def _store(path):
    from nasengine.store import ExperimentStore

    return ExperimentStore.open(path)


def test_rows_derivation_retraining_and_checkpoint(run_dir):
    from tests.oneshot_method import LOOP, REWARD_METRIC

    with _store(run_dir) as store:
        rows = store.candidates()
        results = store.results()
        ck = store.load_checkpoint("oneshot")
    by_gen: dict[int, list] = {}
    for r in rows:
        by_gen.setdefault(r.generation, []).append(r)
    epochs = LOOP["epochs"]
    # controller rows in epochs 2..3 (controller_start 2): 2 updates x population 2 each; then derivation, retrain
    assert sorted(by_gen) == [2, 3, epochs + 1, epochs + 2]
    for g in (2, 3):
        assert [r.idx for r in by_gen[g]] == [0, 1, 2, 3]
        assert all(r.status == "ok" and REWARD_METRIC in r.metrics and r.params > 0 for r in by_gen[g])
    derivation = by_gen[epochs + 1]
    assert len(derivation) == LOOP["derive_samples"]
    best = max(derivation, key=lambda r: r.metrics[REWARD_METRIC])  # the objectives reward: the PSNR itself
    derived = results["derived"]
    assert derived["genome"] == best.genome and derived["key"] == best.key
    assert derived["generation"] == epochs + 1 and derived["reward"] == pytest.approx(best.metrics[REWARD_METRIC])
    (retrained,) = by_gen[epochs + 2]
    assert retrained.status == "ok" and retrained.key == best.key
    assert {"psnr", "ssim"} <= set(retrained.metrics) and REWARD_METRIC not in retrained.metrics
    # the last checkpoint is recorded with the checksum of its file; older ones are gone
    assert ck.epoch == epochs
    path = run_dir / ck.path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ck.sha256
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == [path.name]


def test_show_prints_the_derived_genome_and_the_front_of_the_derivation(run_dir, capsys):
    from nasengine.report import RunReport

    with _store(run_dir) as store:
        derived = store.results()["derived"]
    capsys.readouterr()
    assert run_cli(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    genome_text = '{"masks":[' + ",".join(map(str, derived["genome"]["masks"])) + "]}"
    assert f"derived architecture (sample): {genome_text}" in out
    assert "retrained from scratch #1: ok" in out and "psnr" in out
    rep = RunReport.load(run_dir)
    assert rep.front and {r.generation for r in rep.front} == {derived["generation"]}


def test_retraining_keeps_its_model_which_show_export_and_evaluate_use(run_dir, tmp_path, capsys):
    """The retraining's trained model stays in RUN/retrained/top1-KEY/ (the store says where); `show --json`
    has it, `export RUN` exports the derived architecture first with those weights, `evaluate --model RUN`
    scores them (the retraining's own Set5 PSNR)."""
    import json

    import torch

    from nasengine.checkpoints import load_trained_module
    from nasengine.report import RunReport
    from tests.oneshot_method import LOOP

    with _store(run_dir) as store:
        results = store.results()
        (row,) = store.candidates(generation=LOOP["epochs"] + 2)
    derived, (entry,) = results["derived"], results["retrained"]
    folder = f"retrained/top1-{derived['key'][:10]}"
    assert entry["model"] == derived["model"] == f"{folder}/model.pt"
    assert (run_dir / folder / "checkpoints" / "last.pt").is_file()
    arch, module = load_trained_module(run_dir / entry["model"])
    assert arch.name == f"top1-{derived['key'][:10]}" and arch.space_name == "tiny-dense"
    assert arch.graph.key() == derived["key"] and arch.space.to_json(arch.genome) == derived["genome"]
    capsys.readouterr()
    assert run_cli(["show", str(run_dir), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["results"]
    assert shown["derived"]["model"] == shown["retrained"][0]["model"] == entry["model"]
    assert run_cli(["export", str(run_dir), "-o", str(tmp_path / "exp")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"derived: trained -> {tmp_path / 'exp' / 'derived.pt'}")
    front = {r.key for r in RunReport.load(run_dir).front}  # here the one-objective front is the derived one
    assert len(lines) == len(front | {derived["key"]})  # then the rest of the front, genomes only
    assert all(": untrained (architecture only)" in line for line in lines[1:])
    x = torch.rand(1, arch.graph.input_channels, 6, 6)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(tmp_path / "exp" / "derived.pt"))(x), module(x))
    assert run_cli(["evaluate", "--model", str(run_dir), "--json", "-q"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    # the same weights and images; float sums may differ in the last bits with another thread count
    assert report["sets"]["Set5"]["psnr"] == pytest.approx(row.metrics["psnr"], abs=1e-4)


def test_plan_says_what_the_loop_runs(oneshot_plugins, capsys):
    assert run_cli(["search", "tiny-oneshot", "--plan", "--set", "loop.epochs=200", "--set", "loop.child_steps=1000",
                    "--set", "loop.controller_steps=100", "--set", "loop.controller_start=6",
                    "--set", "loop.derive_samples=100", "--set", "loop.derive_batches=5"]) == 0
    out = capsys.readouterr().out
    # METHODS.md §1.6: 200 epochs x 1,000 steps; 100 controller steps per epoch after epoch 5: 195 x 100 updates
    assert "200 epochs x 1,000 supernet steps; 100 controller steps of 2 per epoch from epoch 6 (19,500 updates)" in out
    assert "derivation: 100 samples x 5 validation batch(es)" in out
    assert "retrain the top 1 from scratch with sr-train" in out
    assert "ms per supernet step" in out and "ms per controller update (ask 2, score, tell)" in out
    assert "the search about" in out


@pytest.mark.parametrize("override, message", [
    ("budget.generations=2", "budget.generations: the one-shot loop is bounded by loop.epochs"),
    ("budget.candidates=5", "budget.candidates: the one-shot loop is bounded by loop.epochs"),
    ("loop.epoch=2", "loop.epoch: unknown option of loop 'one-shot'; did you mean 'epochs'?"),
    ("loop.derive=best", "loop.derive:"),
    ("loop.derive=argmax", "loop.derive: controller 'reinforce' has no argmax(); use derive: sample"),
    ("retrain.stepz=3", "retrain.stepz: unknown option"),
])
def test_config_errors_are_one_line(oneshot_plugins, capsys, tmp_path, override, message):
    assert run_cli(["search", "tiny-oneshot", "--out", str(tmp_path / "r"), "--set", override]) != 0
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_the_generational_loop_declares_no_loop_options_and_retrains_nothing(oneshot_plugins, capsys):
    assert run_cli(["search", "simple", "--plan", "--set", "loop.epochs=3"]) != 0
    assert "loop.epochs: unknown option of loop 'generational'" in capsys.readouterr().err
    assert run_cli(["search", "simple", "--plan", "--set", "retrain.steps=3"]) != 0
    assert "retrain: the generational loop retrains nothing" in capsys.readouterr().err


def test_torn_checkpoint_is_a_clear_error(run_dir, tmp_path, oneshot_plugins):
    from nasengine.search import resume_search
    from nasengine.store import StoreError

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    with _store(copy) as store:
        ck = store.load_checkpoint("oneshot")
    path = copy / ck.path
    path.write_bytes(path.read_bytes()[:-7])
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreError) as err:
        resume_search(copy, progress=False)
    text = str(err.value)
    assert str(path) in text and actual in text and ck.sha256 in text


def test_retry_failed_is_refused(run_dir, oneshot_plugins):
    from nasengine.errors import ConfigError
    from nasengine.search import resume_search

    with pytest.raises(ConfigError, match="--retry-failed: the one-shot loop"):
        resume_search(run_dir, progress=False, retry_failed=True)


def _policy(store) -> dict:
    _, state = store.load_controller_state()
    return state["policy_gradient"]["parameters"]


def test_resume_after_sigkill_ends_as_an_uninterrupted_run(oneshot_plugins, tmp_path):
    """Kill a search subprocess with SIGKILL in epoch 3 (after epoch 2's checkpoint, with one row of epoch 3
    recorded: the subprocess stalls before the second, see tests/oneshot_method.py), resume it: the controller's
    parameters, every row and the derived genome equal those of an uninterrupted run with the same seed."""
    import torch

    from nasengine.search import resume_search, run_search

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = run_search(tmp_path / "ref", method="tiny-oneshot", seed=3, progress=False)
        assert ref.status == "done"
        killed = tmp_path / "killed"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "NASENGINE_PLUGINS_EXTRA": EXTRA,
               "NASENGINE_TEST_ONESHOT_STALL": "3:1",
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen([sys.executable, "-m", "nasengine", "search", "tiny-oneshot", "--out", str(killed),
                                 "--seed", "3", "-q"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        try:
            while True:  # kill once epoch 3 has recorded its first row (it stalls before the second)
                assert proc.poll() is None, f"the search ended before it was killed: {proc.stderr.read().decode()}"
                assert time.monotonic() < deadline, "the search never reached epoch 3"
                if (killed / "run.sqlite").exists():
                    with _store(killed) as store:
                        if store.get(3, 0) is not None:
                            break
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        with _store(killed) as store:
            assert store.run.status == "running"  # killed, not finished
            assert store.load_checkpoint("oneshot").epoch == 2 and store.get(3, 1) is None
        out = resume_search(killed, progress=False)
        assert out.status == "done"
    finally:
        torch.set_num_threads(before)
    with _store(tmp_path / "ref") as a, _store(killed) as b:
        pa, pb = _policy(a), _policy(b)
        assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)
        assert a.results()["derived"] == b.results()["derived"]
        rows_a, rows_b = _rows(a), _rows(b)
        assert len(rows_a) == 13 and rows_a == rows_b


def _rows(store) -> list:
    """Each row's place, genome and metrics, its timings left out."""
    return [(r.generation, r.idx, r.genome, {k: v for k, v in r.metrics.items() if not k.endswith("_seconds")})
            for r in store.candidates()]


def test_seconds_budget_stops_at_an_epoch_boundary_and_resume_goes_on(oneshot_plugins, tmp_path, monkeypatch,
                                                                      capsys):
    from nasengine.search import resume_search, run_search
    from nasengine.search.context import SearchContext
    from nasengine.search.oneshot import OneShotLoop

    epochs_done = []
    train = OneShotLoop._train_supernet

    def counted(self, epoch):
        epochs_done.append(epoch)
        return train(self, epoch)

    with monkeypatch.context() as m:  # each epoch takes 10 s of search time
        m.setattr(OneShotLoop, "_train_supernet", counted)
        m.setattr(SearchContext, "elapsed", lambda self: 10.0 * len(epochs_done))
        out = run_search(tmp_path / "r", method="tiny-oneshot", seed=0, progress=False,
                         overrides={"budget": {"seconds": 15}, "loop": {"retrain_top": 0}})
    assert out.stop_reason.startswith("seconds budget reached (20.0/15 s) after epoch 2")
    with _store(tmp_path / "r") as store:
        assert store.load_checkpoint("oneshot").epoch == 2 and "derived" not in store.results()
    out = resume_search(tmp_path / "r", progress=False, overrides={"budget": {"seconds": 3600}})
    assert out.status == "done" and "derived" in out.stop_reason
    with _store(tmp_path / "r") as store:
        assert store.load_checkpoint("oneshot").epoch == 3 and "derived" in store.results()
    # retrain_top 0: no trained model; export RUN gives the derived architecture alone, evaluate says why not
    assert run_cli(["export", str(tmp_path / "r"), "-o", str(tmp_path / "exp")]) == 0
    assert run_cli(["evaluate", "--model", str(tmp_path / "r"), "-q"]) != 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("derived: untrained (architecture only)")
    assert f"{tmp_path / 'r'}: the derived architecture was not retrained (loop.retrain_top: 0" in err
