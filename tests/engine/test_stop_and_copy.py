"""A search stopped by SIGTERM is marked interrupted like Ctrl-C, and a run's store can be copied (issue 11
item 8): ``run.sqlite`` alone holds every finished generation (the WAL is checkpointed at the end of each),
and ``nasengine show RUN --export-store FILE`` makes a consistent single-file copy, even while it runs.

The search runs as users start it (its default executor) in a child process, with the fake plugin's
evaluator slowed down so that it is stopped in the middle."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nasengine.cli import EXIT_USAGE, main
from nasengine.store import ExperimentStore

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _start(run: Path) -> subprocess.Popen:
    env = {**os.environ, "NASENGINE_PLUGINS_EXTRA": "tests.engine.fake_plugin",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "nasengine", "search", "fake", "--out", str(run), "-q",
                             "--set", "evaluator.sleep=0.2", "--set", "budget.generations=100"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, run: Path, what, deadline_s: float = 180.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        assert proc.poll() is None, proc.communicate()
        if ExperimentStore.exists(run):
            with ExperimentStore.open(run) as store:
                if what(store):
                    return
        time.sleep(0.2)
    raise AssertionError(f"the search did not get there in {deadline_s} s")


@pytest.fixture
def running(tmp_path):
    procs = []

    def start(run):
        procs.append(_start(run))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_sigterm_marks_the_run_interrupted_and_exits_143(tmp_path, running):
    run = tmp_path / "run"
    proc = running(run)
    _wait_for(proc, run, lambda s: s.count() >= 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "nasengine search: terminated (signal 15)" and "Traceback" not in err
    with ExperimentStore.open(run) as store:
        assert store.run.status == "interrupted"


def test_run_sqlite_alone_holds_every_finished_generation_and_export_store_copies_it(tmp_path, running, capsys):
    run = tmp_path / "run"
    proc = running(run)
    _wait_for(proc, run, lambda s: len(s.controller_generations()) >= 2)
    exported = tmp_path / "exported" / "run.sqlite"
    exported.parent.mkdir()
    assert main(["show", str(run), "--export-store", str(exported)]) == 0  # while the search writes
    assert capsys.readouterr().out.strip() == f"copied the store of {run} to {exported}"
    proc.kill()
    proc.communicate()
    # a copy of run.sqlite alone, as a user would copy a killed run
    copied = tmp_path / "copied.sqlite"
    shutil.copyfile(run / "run.sqlite", copied)
    with sqlite3.connect(copied) as conn:
        gens = [g for (g,) in conn.execute("SELECT generation FROM controller_state")]
        rows = conn.execute("SELECT generation, COUNT(*) FROM candidates GROUP BY generation").fetchall()
    assert len(gens) >= 2 and all(dict(rows).get(g) == 6 for g in gens), (gens, rows)
    # the export is one consistent file: a run folder holding only it is a whole run
    assert sorted(p.name for p in exported.parent.iterdir()) == ["run.sqlite"]
    with ExperimentStore.open(exported.parent) as store:
        kept = store.candidates()
        assert len(store.controller_generations()) >= 2 and len(kept) >= 12
        assert {(r.generation, r.idx) for r in kept} >= {(g, i) for g in store.controller_generations()
                                                         for i in range(6)}
    assert main(["show", str(exported.parent)]) == 0
    capsys.readouterr()
    # an existing file is not overwritten
    assert main(["show", str(run), "--export-store", str(exported)]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == (f"nasengine show: error: {exported} exists; give a new file name "
                                               "for the copy of the store")
