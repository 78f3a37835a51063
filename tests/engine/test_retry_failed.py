"""Fix the cause and resume (issue 11 item 4): a run stopped because every evaluation failed goes on when
resumed, and ``resume --retry-failed`` evaluates the failed candidates again, keeping their first attempts as
history. Through the CLI, with an evaluator that fails while a flag file exists."""
from __future__ import annotations

import pytest

from nasengine.cli import EXIT_FAILED, EXIT_OK, main
from nasengine.store import ExperimentStore

pytestmark = pytest.mark.usefixtures("fake_plugins")


def _cli(capsys, argv):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def failed_run(tmp_path, capsys):
    """A run stopped after 2 generations in which every evaluation failed (the flag file exists)."""
    flag = tmp_path / "broken"
    flag.write_text("")
    run = tmp_path / "run"
    code, text = _cli(capsys, ["search", "fake", "--out", str(run), "--executor", "inline",
                               "--set", f"evaluator.fail_while={flag}", "--set", "budget.generations=5",
                               "--set", "budget.failed_generations=2"])
    assert code == EXIT_FAILED, text
    assert "every evaluation failed in the last 2 generations" in text
    with ExperimentStore.open(run) as store:
        assert {r.generation for r in store.candidates()} == {0, 1}
        assert store.count("ok") == 0 and store.count("failed") > 0
    return run, flag


def test_resume_after_fixing_the_cause_goes_on(capsys, failed_run):
    run, flag = failed_run
    flag.unlink()  # the cause is fixed
    code, text = _cli(capsys, ["resume", str(run)])
    assert code == EXIT_OK, text
    assert "generations budget reached (5/5)" in text
    with ExperimentStore.open(run) as store:
        assert {r.generation for r in store.candidates()} == {0, 1, 2, 3, 4}
        assert store.count("ok") > 0
        assert all(r.status != "failed" for r in store.candidates() if r.generation >= 2)
        assert store.attempts() == []  # nothing was evaluated again
        assert store.run.status == "done"


def test_resume_without_a_fix_stops_again_after_as_many_generations(capsys, failed_run):
    run, _flag = failed_run
    code, text = _cli(capsys, ["resume", str(run)])
    assert code == EXIT_FAILED
    assert "every evaluation failed in the last 2 generations" in text
    with ExperimentStore.open(run) as store:
        assert {r.generation for r in store.candidates()} == {0, 1, 2, 3}


def test_retry_failed_evaluates_the_failed_candidates_again_and_keeps_their_history(capsys, failed_run):
    run, flag = failed_run
    with ExperimentStore.open(run) as store:
        first = {(r.generation, r.idx): r for r in store.candidates()}
    failed = {k for k, r in first.items() if r.status == "failed"}
    flag.unlink()
    code, text = _cli(capsys, ["resume", str(run), "--retry-failed", "--set", "budget.generations=2"])
    assert code == EXIT_OK, text
    assert f"evaluating {len(failed)} failed candidate(s) again" in text
    with ExperimentStore.open(run) as store:
        now = {(r.generation, r.idx): r for r in store.candidates()}
        history = store.attempts()
    assert set(now) == set(first)  # the same candidates, no new generation (the budget is reached)
    for k in failed:
        assert now[k].status == "ok" and now[k].attempt == 2 and now[k].id == first[k].id
        assert now[k].seed == first[k].seed and now[k].key == first[k].key
    assert {(r.generation, r.idx) for r in history} == failed
    assert all(r.attempt == 1 and r.status == "failed" and "broken exists" in r.error for r in history)
    for r in now.values():  # a duplicate carries the new results of the candidate it repeats
        if r.status == "duplicate":
            assert r.error is None and r.metrics
    # the front uses the latest attempts; `show --all` lists the earlier ones
    code, text = _cli(capsys, ["show", str(run), "--all"])
    assert code == EXIT_OK
    assert "Pareto front: 0 architecture(s)" not in text and "earlier attempts" in text
    g, i = sorted(failed)[0]
    assert f"gen {g} idx {i} attempt 1: failed: " in text and f"{flag} exists" in text
    assert "failed: gen" not in text  # no candidate is failed now


def test_a_retry_that_fails_again_is_a_third_attempt_later(capsys, failed_run):
    run, flag = failed_run
    code, _ = _cli(capsys, ["resume", str(run), "--retry-failed", "--set", "budget.generations=2"])
    assert code == EXIT_FAILED
    flag.unlink()
    code, text = _cli(capsys, ["resume", str(run), "--retry-failed", "--set", "budget.generations=2"])
    assert code == EXIT_OK, text
    with ExperimentStore.open(run) as store:
        assert store.count("failed") == 0
        attempts = store.attempts()
        assert {r.attempt for r in store.candidates() if r.status == "ok"} == {3}
    assert sorted({r.attempt for r in attempts}) == [1, 2]


def test_a_resume_after_a_stalled_stop_counts_afresh(tmp_path, capsys):
    """A space looked exhausted (no new architecture in 2 generations): a resume goes on for 2 more."""
    run = tmp_path / "run"
    argv = ["--set", "controller.name=fake-random", "--set", "budget.generations=500",
            "--set", "budget.stall_generations=2"]
    code, text = _cli(capsys, ["search", "fake", "--out", str(run), "--executor", "inline", "-q", *argv])
    assert code == EXIT_OK and "no new architecture in the last 2 generations" in text, text
    with ExperimentStore.open(run) as store:
        before = max(r.generation for r in store.candidates())
    code, text = _cli(capsys, ["resume", str(run), "-q"])
    assert code == EXIT_OK and "no new architecture in the last 2 generations" in text, text
    with ExperimentStore.open(run) as store:
        assert max(r.generation for r in store.candidates()) == before + 2


def test_a_store_made_before_attempts_existed_takes_a_retry(tmp_path, capsys):
    """The history table is added by the first retry to a store that has none (no schema-version change)."""
    import sqlite3

    flag = tmp_path / "broken"
    flag.write_text("")
    run = tmp_path / "run"
    code, _ = _cli(capsys, ["search", "fake", "--out", str(run), "--executor", "inline", "-q",
                            "--set", f"evaluator.fail_while={flag}", "--set", "budget.generations=1"])
    assert code == EXIT_FAILED
    with sqlite3.connect(run / "run.sqlite") as conn:
        conn.execute("DROP TABLE candidate_attempts")
    with ExperimentStore.open(run) as store:
        assert store.attempts() == [] and {r.attempt for r in store.candidates()} == {1}
    flag.unlink()
    code, text = _cli(capsys, ["resume", str(run), "--retry-failed", "-q"])
    assert code == EXIT_OK, text
    with ExperimentStore.open(run) as store:
        assert store.count("failed") == 0 and len(store.attempts()) == store.count("ok")


def test_a_retry_gets_its_own_working_folder(tmp_path, capsys):
    """With executor.workdirs, a retried evaluation does not find (and resume from) the failed attempt's files."""
    flag = tmp_path / "broken"
    flag.write_text("")
    run = tmp_path / "run"
    code, _ = _cli(capsys, ["search", "fake", "--out", str(run), "--executor", "inline", "-q",
                            "--set", f"evaluator.fail_while={flag}", "--set", "budget.generations=1",
                            "--set", "executor.workdirs=true"])
    assert code == EXIT_FAILED
    first = {p.name for p in (run / "work").iterdir()}
    flag.unlink()
    assert _cli(capsys, ["resume", str(run), "--retry-failed", "-q"])[0] == EXIT_OK
    again = {p.name for p in (run / "work").iterdir()} - first
    assert again and again == {f"{name}-a2" for name in first}
