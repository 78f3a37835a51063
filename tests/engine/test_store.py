"""The experiment store: round trips, schema versions, and durability under SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from nasengine.store import (
    SCHEMA_VERSION,
    STORE_FILE,
    CandidateRecord,
    ExperimentStore,
    SchemaVersionError,
    StoreError,
)

REPO = Path(__file__).resolve().parents[2]


def _new(tmp_path, name="run") -> ExperimentStore:
    return ExperimentStore.create(
        tmp_path / name, method="fake", preset="smoke", seed=7,
        config={"budget": {"generations": 2}, "space": {"widths": [4, 8]}},
        plugins={"builtin": "0.1.0", "fake": ""}, environment={"python": "3.x", "cuda_available": False},
    )


def _rec(g, i, key="k", status="ok", **kw) -> CandidateRecord:
    base = dict(generation=g, idx=i, key=key, genome={"depth": 1 + i, "width": 4}, status=status,
                params=100.0 + i, mult_adds=1e6 * (i + 1), costs={"params": 100.0 + i, "kernel_params": 90.0},
                metrics={"psnr": 30.0 + i} if status == "ok" else {}, seed=11)
    base.update(kw)
    return CandidateRecord(**base)


def test_round_trip(tmp_path):
    store = _new(tmp_path)
    run = store.run
    assert (run.method, run.preset, run.seed, run.status) == ("fake", "smoke", 7, "created")
    assert run.config["space"] == {"widths": [4, 8]} and run.plugins["builtin"] == "0.1.0"
    assert run.environment == {"python": "3.x", "cuda_available": False}
    assert run.created <= run.updated
    store.set_status("running")
    assert store.run.status == "running"

    a = store.record(_rec(0, 0, key="a"))
    b = store.record(_rec(0, 1, key="b", status="failed", error="RuntimeError: boom", wall_seconds=1.5,
                          cpu_seconds=2.5, worker="host:1 cpu"))
    c = store.record(_rec(0, 2, key="a", status="duplicate", metrics={"psnr": 30.0}, duplicate_of=a.id))
    d = store.record(_rec(1, 0, key="c", status="infeasible", error="violates params <= 10"))
    assert a.id and b.id and a.id != b.id and a.created is not None and a.finished is not None

    store.close()
    store = ExperimentStore.open(tmp_path / "run")
    assert store.run.status == "running"
    assert [(r.generation, r.idx) for r in store.candidates()] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    got = store.get(0, 1)
    assert got == b
    assert got.error == "RuntimeError: boom" and got.wall_seconds == 1.5 and got.cpu_seconds == 2.5
    assert store.get(5, 5) is None
    assert store.get(0, 0).genome == {"depth": 1, "width": 4}
    assert store.get(0, 0).metrics_all() == {"params": 100.0, "mult_adds": 1e6, "kernel_params": 90.0,
                                              "psnr": 30.0}
    assert [r.key for r in store.candidates(status="ok")] == ["a"]
    assert [r.idx for r in store.candidates(generation=0)] == [0, 1, 2]
    assert [r.key for r in store.candidates(status="infeasible", generation=1)] == ["c"]
    assert store.find_key("a") == a  # the original, never the duplicate
    assert store.find_key("zzz") is None
    assert store.get(0, 2).duplicate_of == a.id and d.status == "infeasible"
    assert store.count() == 4 and store.count("duplicate") == 1 and store.count("ok") == 1
    assert store.counts() == {"ok": 1, "failed": 1, "infeasible": 1, "duplicate": 1}
    store.close()


def test_controller_state(tmp_path):
    store = _new(tmp_path)
    assert store.load_controller_state() is None
    rng = np.random.default_rng(3)
    store.save_controller_state(0, {"rng": rng.bit_generator.state, "pop": np.arange(4)})
    rng.integers(10, size=5)
    store.save_controller_state(1, {"rng": rng.bit_generator.state, "pop": [("g", 1.0)]})
    gen, state = store.load_controller_state()
    assert gen == 1 and state["pop"] == [("g", 1.0)]
    gen0, state0 = store.load_controller_state(0)
    assert gen0 == 0 and np.array_equal(state0["pop"], np.arange(4))
    restored = np.random.default_rng()
    restored.bit_generator.state = state["rng"]
    assert restored.integers(1 << 30) == rng.integers(1 << 30)
    assert store.load_controller_state(7) is None
    store.save_controller_state(1, {"replaced": True})
    assert store.load_controller_state() == (1, {"replaced": True})
    assert store.controller_generations() == [0, 1]
    with pytest.raises(StoreError, match=r"generation 2 cannot be stored as data: state\['f'\]: a .*function"):
        store.save_controller_state(2, {"f": lambda: 0})


def test_wal_and_schema_version_recorded(tmp_path):
    store = _new(tmp_path)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    meta = dict(store.conn.execute("SELECT key, value FROM meta"))
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    # no temporary file is left behind by the atomic create
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")) == []


def test_schema_version_mismatch_is_refused(tmp_path):
    _new(tmp_path).close()
    path = tmp_path / "run" / STORE_FILE
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError) as err:
        ExperimentStore.open(tmp_path / "run")
    msg = str(err.value)
    assert str(path) in msg and "99" in msg and f"version {SCHEMA_VERSION}" in msg


def test_errors_name_the_folder(tmp_path):
    _new(tmp_path).close()
    with pytest.raises(StoreError, match="already holds a run") as err:
        _new(tmp_path)
    assert str(tmp_path / "run") in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a nasengine run folder") as err:
        ExperimentStore.open(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value)
    with pytest.raises(StoreError, match="no such run folder"):
        ExperimentStore.open(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / STORE_FILE).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a nasengine experiment store"):
        ExperimentStore.open(tmp_path / "junk")


def test_record_rejects_bad_input(tmp_path):
    store = _new(tmp_path)
    store.record(_rec(0, 0))
    with pytest.raises(StoreError, match=r"generation 0, idx 0\) is already recorded"):
        store.record(_rec(0, 0))
    with pytest.raises(StoreError, match="candidate status must be one of"):
        _rec(0, 1, status="weird")
    with pytest.raises(StoreError, match="run status must be one of"):
        store.set_status("paused")
    assert store.count() == 1


WRITER = textwrap.dedent("""
    import sys
    from nasengine.store import CandidateRecord, ExperimentStore
    store = ExperimentStore.open(sys.argv[1])
    big = {f"m{j}": float(j) for j in range(300)}   # rows span several pages
    i = 0
    while True:
        store.record(CandidateRecord(generation=i // 10, idx=i % 10, key=f"k{i}", genome={"i": i},
                                     status="ok", params=float(i), metrics=big, costs={"params": float(i)}))
        if i % 3 == 0:
            store.save_controller_state(i // 10, {"i": i, "blob": b"x" * 20000})
        print(i, flush=True)
        i += 1
""")


@pytest.mark.parametrize("kill_after", [1, 17, 40])
def test_sigkilled_writer_leaves_a_consistent_store(tmp_path, kill_after):
    _new(tmp_path).close()
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    committed = -1
    try:
        for line in proc.stdout:
            committed = int(line)
            if committed >= kill_after:
                break
        os.kill(proc.pid, signal.SIGKILL)  # somewhere inside the next record()/save (or between them)
    finally:
        proc.kill()
        proc.wait()
    assert committed >= kill_after, "the writer died on its own"
    store = ExperimentStore.open(run_dir)
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = store.candidates()
    # nothing committed is lost (at most one more, committed after the last line we read)...
    assert committed + 1 <= len(rows) <= committed + 2
    # ...and every row is complete, in order, with no gap
    for n, rec in enumerate(rows):
        assert (rec.generation, rec.idx, rec.key, rec.genome) == (n // 10, n % 10, f"k{n}", {"i": n})
        assert len(rec.metrics) == 300 and rec.costs == {"params": float(n)} and rec.params == float(n)
    gen, state = store.load_controller_state()
    assert state["blob"] == b"x" * 20000 and gen == state["i"] // 10
    # the store stays writable after the crash
    store.record(CandidateRecord(generation=999, idx=0, key="after", genome={}, status="failed"))
    assert store.find_key("after").status == "failed"
