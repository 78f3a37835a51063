"""An executor whose backend is gone (:class:`~nasengine.executors.ExecutorLost`) stops the search: exit 1, a
one-line error, the run marked failed, the candidates it could not evaluate left unrecorded, and ``resume``
evaluates them, ending with the same records as an undisturbed run."""
from __future__ import annotations

import json

import pytest

from nasengine.cli import EXIT_FAILED, EXIT_OK, main
from nasengine.store import ExperimentStore

pytestmark = pytest.mark.usefixtures("fake_plugins")


def essence(records) -> list[tuple]:
    by_id = {r.id: r for r in records}
    return sorted((r.generation, r.idx, r.key, r.status, json.dumps(r.genome, sort_keys=True), r.metrics, r.error,
                   by_id[r.duplicate_of].key if r.duplicate_of else None) for r in records)


def test_a_lost_executor_stops_the_search_and_resume_finishes_it(tmp_path, capsys):
    common = ["--preset", "smoke", "--seed", "4", "-q"]
    assert main(["search", "fake", "--out", str(tmp_path / "ref"), "--executor", "inline", *common]) == EXIT_OK
    capsys.readouterr()
    run = tmp_path / "run"
    code = main(["search", "fake", "--out", str(run), "--executor", "fake-lost", "--set", "executor.lose_after=5",
                 *common])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_FAILED, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("nasengine search: error: the fake backend at 127.0.0.1:1 went away; the search stopped")
    assert f"nasengine resume {run}" in err
    store = ExperimentStore.open(run)
    kept = store.candidates()
    assert store.run.status == "failed"
    assert sum(r.evaluated for r in kept) == 5 and all(r.status != "failed" for r in kept)  # none burnt
    store.close()
    assert main(["resume", str(run), "--executor", "inline", "-q"]) == EXIT_OK
    done, ref = ExperimentStore.open(run), ExperimentStore.open(tmp_path / "ref")
    assert done.run.status == "done"
    assert essence(done.candidates()) == essence(ref.candidates())
