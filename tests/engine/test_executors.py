"""Executors: run_task's contract, inline vs process equivalence, and surviving a worker that dies."""
from __future__ import annotations

import json
import pickle
import re

import pytest

from nasengine.errors import ConfigError
from nasengine.executors import (
    BUILTIN_EXECUTORS,
    EvalOutcome,
    EvalTask,
    InlineExecutor,
    ProcessExecutor,
    run_task,
)

pytestmark = pytest.mark.usefixtures("fake_plugins")


def task(n: int, genome: dict | None = None, **evaluator_options) -> EvalTask:
    genome = genome or {"depth": 1 + n % 3, "width": (4, 8, 16)[n % 3], "kernel": (1, 3)[n % 2], "tag": 0}
    return EvalTask(task_id=f"t{n}", space="fake-tiny", genome=json.dumps(genome), evaluator="fake-eval",
                    evaluator_options=evaluator_options, seed=1000 + n, device="cpu")


def essence(outcomes) -> dict:
    return {o.task_id: (o.status, o.metrics, o.error) for o in outcomes}


def test_run_task_ok():
    out = run_task(task(0))
    assert out.status == "ok" and out.ok and out.error is None
    assert set(out.metrics) == {"psnr", "ssim"} and all(isinstance(v, float) for v in out.metrics.values())
    assert out.wall_seconds > 0 and out.cpu_seconds >= 0 and out.worker.endswith(" cpu")
    assert run_task(task(0)).metrics == out.metrics  # deterministic given the seed
    assert run_task(attrs_evolve(task(0), seed=5)).metrics != out.metrics


def attrs_evolve(t, **kw):
    import attrs

    return attrs.evolve(t, **kw)


@pytest.mark.parametrize(
    "options, genome, expected",
    [
        ({"fail_if": [{"width": 4}]}, None, r"^RuntimeError: told to fail on .* \(at .*fake_plugin\.py:\d+ in evaluate\)$"),
        ({"nan_if": [{"width": 4}]}, None, r"^ValueError: metric 'psnr' is nan \(not finite\)"),
        ({}, {"depth": 9, "width": 4, "kernel": 1, "tag": 0}, r"^ValidationError: depth: 9 not in \[1, 2, 3\]"),
        ({}, {"depth": 1}, r"^ValidationError: genome: expected an object with keys"),
        ({"no_such_option": 1}, None, r"^TypeError: .*no_such_option"),
    ],
)
def test_run_task_failures_never_raise(options, genome, expected):
    out = run_task(task(0, genome, **options))
    assert out.status == "failed" and out.metrics == {}
    assert re.search(expected, out.error), out.error


def test_run_task_unknown_names():
    out = run_task(attrs_evolve(task(0), evaluator="nope"))
    assert out.status == "failed" and "unknown evaluator 'nope'" in out.error and "fake-eval" in out.error
    out = run_task(attrs_evolve(task(0), space="nope"))
    assert out.status == "failed" and "unknown search space 'nope'" in out.error
    out = run_task(attrs_evolve(task(0), genome="{not json"))
    assert out.status == "failed" and out.error.startswith("JSONDecodeError")


def test_run_task_lets_ctrl_c_through():
    with pytest.raises(KeyboardInterrupt):
        run_task(task(0, interrupt_if=[{"width": 4}]))


def test_run_task_sets_threads():
    import torch

    before = torch.get_num_threads()
    try:
        assert run_task(attrs_evolve(task(0), threads=1)).ok
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_tasks_and_outcomes_pickle():
    t = task(3, fail_if=[{"width": 4}])
    assert pickle.loads(pickle.dumps(t)) == t
    o = run_task(t)
    assert pickle.loads(pickle.dumps(o)) == o and isinstance(o, EvalOutcome)


def test_executor_options_are_checked():
    assert BUILTIN_EXECUTORS == {"inline": InlineExecutor, "process": ProcessExecutor}
    with pytest.raises(ConfigError, match=r"^executor\.workers: must be none or a whole number >= 1, got 0$"):
        ProcessExecutor(workers=0)
    with pytest.raises(ConfigError, match=r"^executor\.bogus: unknown option of executor 'inline'; known: threads$"):
        InlineExecutor(bogus=1)
    with ProcessExecutor(workers=3, devices=["cpu"], threads=2) as ex:
        assert ex.parallelism == 3 and "3 worker(s)" in ex.describe() and "2 torch thread" in ex.describe()
    assert InlineExecutor().parallelism == 1 and "inline" in InlineExecutor().describe()


def test_inline_and_process_give_the_same_outcomes():
    tasks = [task(n, fail_if=[{"width": 16}], nan_if=[{"depth": 2, "kernel": 1}]) for n in range(9)]
    with InlineExecutor() as ex:
        inline = list(ex.imap(tasks))
    assert [o.task_id for o in inline] == [t.task_id for t in tasks]  # inline: in order
    with ProcessExecutor(workers=2) as ex:
        assert ex.wait_ready()
        process = list(ex.imap(attrs_evolve(t, evaluator_options={**t.evaluator_options, "sleep": 0.05})
                               for t in tasks))
        again = list(ex.imap(tasks[:2]))  # the pool is reused
    assert sorted(o.task_id for o in process) == sorted(t.task_id for t in tasks)
    assert essence(process) == essence(inline)
    assert {o.status for o in inline} == {"ok", "failed"}
    assert essence(again) == {k: v for k, v in essence(inline).items() if k in ("t0", "t1")}
    assert len({o.worker for o in process}) == 2  # both workers took part


def test_a_dying_worker_fails_only_its_task():
    victims = {"t2": {"depth": 3, "width": 4, "kernel": 3, "tag": 1}, "t5": {"depth": 3, "width": 8, "kernel": 3, "tag": 1}}
    tasks = []
    for n in range(8):
        genome = victims.get(f"t{n}")
        tasks.append(task(n, genome, sleep=0.05, die_if=[victims["t2"]], exit_if=[victims["t5"]]))
    with ProcessExecutor(workers=2) as ex:
        outcomes = {o.task_id: o for o in ex.imap(tasks)}
        assert set(outcomes) == {t.task_id for t in tasks}
        assert outcomes["t2"].status == "failed"
        assert outcomes["t2"].error.startswith("worker died (killed by SIGKILL) while evaluating task t2")
        assert outcomes["t2"].error.endswith("(2 attempt(s), retries 1)")  # it kills its worker every time
        assert outcomes["t5"].status == "failed" and "worker died (exit code 3)" in outcomes["t5"].error
        assert all(o.ok for k, o in outcomes.items() if k not in victims), outcomes
        # the replacement workers keep serving
        assert all(o.ok for o in ex.imap([task(20), task(21)]))


def test_a_worker_killed_mid_evaluation_is_retried(tmp_path):
    """A worker SIGKILLed from outside while it evaluates (not the evaluation's fault): the task runs again on a
    fresh worker and succeeds; ``retries: 0`` fails it as before; a task that kills its worker every time fails
    after ``retries`` + 1 attempts."""
    import os
    import signal
    import threading
    import time

    victim = {"depth": 2, "width": 8, "kernel": 3, "tag": 1}
    reference = run_task(task(0, victim)).metrics

    def run(retries: int, log):
        tasks = [task(0, victim, sleep=8, sleep_if=[victim], log=str(log))] + [task(n, sleep=0.05) for n in (1, 2)]
        killed: list[int] = []

        def killer():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                lines = log.read_text().splitlines() if log.exists() else []
                if lines:
                    killed.append(int(lines[0].rsplit(" ", 1)[1]))
                    os.kill(killed[0], signal.SIGKILL)
                time.sleep(0.02)

        thread = threading.Thread(target=killer, daemon=True)
        with ProcessExecutor(workers=2, retries=retries) as ex:
            assert ex.wait_ready()  # (forked before the killer thread exists)
            thread.start()
            outcomes = {o.task_id: o for o in ex.imap(tasks)}
        thread.join(5)
        assert killed and set(outcomes) == {"t0", "t1", "t2"}, outcomes
        assert outcomes["t1"].ok and outcomes["t2"].ok
        return outcomes["t0"], killed[0], log.read_text().splitlines()

    out, pid, lines = run(1, tmp_path / "retried.log")
    assert out.ok and out.metrics == reference, out.error
    assert len(lines) == 2 and int(lines[1].rsplit(" ", 1)[1]) != pid  # ran again, in a fresh worker
    assert not out.worker.split(" ")[0].endswith(f":{pid}")
    out, pid, lines = run(0, tmp_path / "no-retry.log")
    assert out.status == "failed" and out.error.startswith("worker died (killed by SIGKILL) while evaluating task t0")
    assert out.error.endswith("(1 attempt(s), retries 0)") and len(lines) == 1


def test_each_worker_gets_its_share_of_the_cpus():
    from nasengine.executors import usable_cpus

    with ProcessExecutor(workers=2) as ex:
        outcomes = list(ex.imap([task(n, report_threads=True) for n in range(2)]))
    assert [o.metrics["torch_threads"] for o in outcomes] == [max(1, usable_cpus() // 2)] * 2
    with ProcessExecutor(workers=1, threads=3) as ex:  # explicit: honoured even above the core count
        assert next(ex.imap([task(0, report_threads=True)])).metrics["torch_threads"] == 3


def test_task_timeout_kills_the_worker():
    slow = {"depth": 1, "width": 4, "kernel": 1, "tag": 1}
    tasks = [task(0, slow, sleep=30, sleep_if=[slow]), task(1), task(2)]
    with ProcessExecutor(workers=1, task_timeout=1.5) as ex:
        outcomes = {o.task_id: o for o in ex.imap(tasks)}
    assert outcomes["t0"].status == "failed" and outcomes["t0"].error == "timed out after 1.5 s while evaluating task t0"
    assert outcomes["t1"].ok and outcomes["t2"].ok
    with pytest.raises(ConfigError, match="task_timeout"):
        ProcessExecutor(task_timeout=0)


def test_process_pins_each_worker_to_its_device():
    tasks = [attrs_evolve(task(n, sleep=0.1), device="auto") for n in range(4)]
    with ProcessExecutor(workers=2, devices=["cuda:0", "cuda:1"]) as ex:
        assert ex.wait_ready()
        outcomes = list(ex.imap(tasks))
        explicit = list(ex.imap([attrs_evolve(task(9), device="cpu")]))
    # the fake evaluator ignores the device, so this runs on a CPU machine too
    assert {o.worker.rsplit(" ", 1)[1] for o in outcomes} == {"cuda:0", "cuda:1"}
    assert all(o.ok for o in outcomes)
    assert explicit[0].worker.endswith(" cpu")  # an explicit device is respected


def test_tasks_are_pulled_lazily_and_abandoning_is_safe():
    pulled = []

    def source():
        for n in range(6):
            pulled.append(n)
            yield task(n, sleep=0.05)

    with ProcessExecutor(workers=2) as ex:
        assert ex.wait_ready()
        it = ex.imap(source())
        first = next(it)
        assert first.ok and len(pulled) <= 3  # two running + at most the one just handed out
        it.close()  # abandon: busy workers are stopped, nothing leaks into the next imap
        outcomes = list(ex.imap([task(10), task(11)]))
        assert sorted(o.task_id for o in outcomes) == ["t10", "t11"]

    with InlineExecutor() as ex:
        pulled.clear()
        it = ex.imap(source())
        next(it)
        assert pulled == [0]


def test_close_stops_the_workers():
    ex = ProcessExecutor(workers=2)
    ex.start()
    procs = [w.process for w in ex._slots]
    assert all(p.is_alive() for p in procs)
    assert ex.wait_ready() and all(w.ready for w in ex._slots)
    ex.close()
    assert not any(p.is_alive() for p in procs)
    ex.close()  # idempotent


# ---- how workers start -----------------------------------------------------------------------------------
def test_fork_hazards_are_named(monkeypatch):
    import sys
    import threading

    from nasengine.executors import fork_hazard

    if not sys.platform.startswith("linux"):
        assert "not Linux" in fork_hazard(1)
        return
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert fork_hazard(1) is None  # one thread, torch loaded, one torch thread per worker: safe
    assert "OpenMP" in fork_hazard(2)  # torch is loaded here: multi-threaded forked workers could hang
    assert "CUDA (cuda:1)" in fork_hazard(1, ["cpu", "cuda:1"])
    monkeypatch.setattr(threading, "active_count", lambda: 3)
    assert "the driver runs 3 threads" == fork_hazard(1)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert "darwin is not Linux" in fork_hazard(1)


def test_forked_and_spawned_workers_give_the_same_outcomes():
    import sys

    tasks = [task(n, fail_if=[{"width": 16}], report_threads=True) for n in range(6)]
    if not sys.platform.startswith("linux"):
        pytest.skip("forked workers: Linux only")
    with ProcessExecutor(workers=2, threads=1, start_method="fork") as ex:
        forked = list(ex.imap(tasks))
        assert ex.describe().endswith(", forked")
    with ProcessExecutor(workers=2, threads=1, start_method="spawn") as ex:
        spawned = list(ex.imap(tasks))
        assert ex.describe().endswith(", spawned")
    assert essence(forked) == essence(spawned)
    # a forked worker sets its torch threads itself (the driver's torch read OMP_NUM_THREADS long ago)
    assert {o.metrics["torch_threads"] for o in forked if o.ok} == {1}
    with ProcessExecutor(workers=1, threads=2) as ex:  # several torch threads each, torch loaded: spawned
        assert next(ex.imap([task(0)])).ok and ex.describe().endswith(", spawned")
    with pytest.raises(ConfigError, match="start_method: must be one of 'auto', 'fork', 'spawn', 'forkserver', got 'vfork'"):
        ProcessExecutor(start_method="vfork")


# ---- who owns the plugins and the instance cache ----------------------------------------------------------------
def test_a_task_runner_uses_the_plugins_it_was_handed(fake_plugins):
    """A runner handed a facade builds from it, whatever facade the process has installed."""
    import warnings

    import nasengine.plugins as np_plugins
    from nasengine.executors import TaskRunner

    runner = TaskRunner(fake_plugins)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        builtin_only = np_plugins.Plugins(autoload=False)
    previous = np_plugins.reset_plugins(builtin_only)
    try:
        assert runner.run(task(0)).ok
        out = run_task(task(0))  # the process facade's runner: no fake plugin there
        assert out.status == "failed" and "unknown search space 'fake-tiny'" in out.error
    finally:
        np_plugins.reset_plugins(previous)


def test_the_instance_cache_belongs_to_its_runner_and_the_facade(fake_plugins):
    from nasengine.executors import TaskRunner

    cls = fake_plugins.spaces.get("fake-tiny")
    a, b = TaskRunner(fake_plugins), TaskRunner(fake_plugins, cache_size=1)
    space = a.instance("space", cls, {"scale": 2})
    assert a.instance("space", cls, {"scale": 2}) is space
    in_b = b.instance("space", cls, {"scale": 2})
    assert in_b is not space and b.instance("space", cls, {"scale": 2}) is in_b
    b.instance("space", cls, {"scale": 3})  # cache_size=1: evicts the other
    assert b.instance("space", cls, {"scale": 2}) is not in_b
    a.clear()
    assert a.instance("space", cls, {"scale": 2}) is not space
    # run_task's default runner lives on the facade (a new facade starts with an empty cache)
    made = []
    runner = fake_plugins.shared("nasengine.executors.TaskRunner", lambda: made.append(1))
    assert isinstance(runner, TaskRunner) and made == [] and runner.plugins is fake_plugins
