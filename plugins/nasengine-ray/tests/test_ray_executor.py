"""The ray executor on a local Ray instance with 2 CPUs (started once for the module).

Searches use the engine's fake plugin (``tests.engine.fake_plugin``: a tiny space, an instant evaluator that can
sleep, log its evaluations with their pid, or SIGKILL its own process). The Ray instance is started before
``NASENGINE_PLUGINS_EXTRA`` is set, so its workers only load the fake plugin because the executor forwards the
driver's ``NASENGINE_*`` variables with every task (as it must on a real cluster).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[3]
if not (REPO / "tests" / "engine" / "fake_plugin.py").is_file():  # pragma: no cover - an installed copy
    pytest.skip("needs the engine's tests/engine/fake_plugin.py (a source checkout)", allow_module_level=True)
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nasengine.errors import ConfigError  # noqa: E402
from nasengine.executors import EvalTask, ExecutorError  # noqa: E402
from nasengine.testing import sigkill_when_stored, stored_candidates  # noqa: E402
from nasengine.method import deep_merge  # noqa: E402
from nasengine.search import resume_search, run_search  # noqa: E402
from nasengine.store import ExperimentStore  # noqa: E402
from nasengine_ray import RayExecutor  # noqa: E402
from nasengine_ray.executor import forwarded_env  # noqa: E402

EXTRA = "tests.engine.fake_plugin,nasengine_ray.plugin"
#: A space large enough for a few generations of mostly new architectures.
WIDE = {"space": {"depths": [1, 2, 3, 4], "widths": [4, 6, 8, 10, 12, 16], "kernels": [1, 3, 5]}}
GENES = ("depth", "width", "kernel", "tag")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance of 2 CPUs started by a RayExecutor (which owns it and stops it at the end), with
    the fake plugin installed in this process and named in NASENGINE_PLUGINS_EXTRA for the evaluations."""
    import nasengine.plugins as np_plugins
    from nasengine.executors import clear_instance_cache

    import nasengine_ray.plugin as ray_plugin
    from tests.engine import fake_plugin

    mp = pytest.MonkeyPatch()
    auth_mode = os.environ.get("RAY_AUTH_MODE")
    was_initialised = ray.is_initialized()
    mp.setenv("NASENGINE_DISABLE_PLUGIN_AUTOLOAD", "1")
    mp.setenv("PYTHONPATH", os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    mp.delenv("NASENGINE_PLUGINS_EXTRA", raising=False)
    mp.delenv("RAY_ADDRESS", raising=False)
    owner = RayExecutor(workers=2)
    owner.start()  # the raylet (and so every worker) inherits this environment: no NASENGINE_PLUGINS_EXTRA
    mp.setenv("NASENGINE_PLUGINS_EXTRA", EXTRA)
    plugins = np_plugins.Plugins(autoload=False, extra=(fake_plugin, ray_plugin))
    previous = np_plugins.reset_plugins(plugins)
    clear_instance_cache()
    try:
        assert owner.owns_instance != was_initialised
        if owner.owns_instance:  # the instance it started listens on the loopback interface only
            assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        yield ray.get_runtime_context().gcs_address
    finally:
        owner.close()
        clear_instance_cache()
        np_plugins.reset_plugins(previous)
        mp.undo()
        if auth_mode is None:  # ray.init turned token authentication on for this process
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth_mode
    if not was_initialised:
        assert not ray.is_initialized()  # the executor stopped the instance it started


def search(path, overrides=None, seed=0, **kw):
    return run_search(path, method="fake", overrides=overrides, seed=seed, progress=False, **kw)


def essence(records) -> list[tuple]:
    """What must not depend on the executor or on interruptions (not ids, timings, workers)."""
    by_id = {r.id: r for r in records}
    return sorted(
        (r.generation, r.idx, r.key, r.status, json.dumps(r.genome, sort_keys=True), r.metrics, r.costs, r.error,
         r.seed, by_id[r.duplicate_of].key if r.duplicate_of else None)
        for r in records
    )


def genome_repr(genome: dict) -> str:
    """How the fake evaluator writes a genome in its log."""
    return repr({g: genome[g] for g in GENES})


def log_lines(log: Path, genome: dict | None = None) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [ln for ln in lines if genome is None or ln.startswith(genome_repr(genome) + " ")]


def pid_of(line: str) -> int:
    return int(line.rsplit(" ", 1)[1])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # pragma: no cover - no /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


# ---- without a Ray instance ------------------------------------------------------------------------------
def test_options_are_checked():
    for bad, msg in [({"workers": 0}, "workers: must be"), ({"num_cpus": 0}, "num_cpus: must be"),
                     ({"gpus_per_task": -1}, "gpus_per_task: must be"), ({"gpus_per_task": "two"}, "gpus_per_task"),
                     ({"max_retries": -1}, "max_retries: must be"), ({"max_retries": 1.5}, "max_retries: must be"),
                     ({"task_timeout": 0}, "task_timeout: must be"), ({"threads": 0}, "threads: must be"),
                     ({"address": ""}, "address: must be"), ({"resources": {"a100": -1}}, "resources: .*'a100'"),
                     ({"env_vars": ["A=1"]}, "env_vars: must be"), ({"forward_env": "yes"}, "forward_env")]:
        with pytest.raises(ConfigError, match=r"^executor\." + msg):
            RayExecutor(**bad)
    with pytest.raises(ConfigError, match=r"^executor\.adress: unknown option of executor 'ray'; did you mean 'address'"):
        RayExecutor(adress="h:1")
    ex = RayExecutor(num_cpus=2, gpus_per_task=0.5, max_retries=0, env_vars={"A": "1"})
    assert ex.describe() == "ray (not started)" and ex.task_threads == 2 and not ex.owns_instance
    ex.close()
    ex.close()  # idempotent, also when never started
    with pytest.raises(ExecutorError, match="closed"):
        ex.start()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ray_address_option_fails_fast_on_a_dead_address_and_leaves_no_folder(tmp_path):
    from nasengine.cli import EXIT_USAGE

    nasengine_bin = Path(sys.executable).with_name("nasengine")
    out = tmp_path / "run"
    t0 = time.perf_counter()
    proc = subprocess.run([str(nasengine_bin), "search", "simple", "--ray-address", f"127.0.0.1:{_free_port()}",
                           "--out", str(out), "-q", "--set", "budget.candidates=1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "cannot connect to the Ray cluster at 127.0.0.1:" in proc.stderr and "nothing answers" in proc.stderr
    assert time.perf_counter() - t0 < 60 and not out.exists()
    proc = subprocess.run([str(nasengine_bin), "search", "simple", "--ray-address", "h:1", "--executor", "process",
                           "--plan"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_USAGE and "--ray-address belongs to the 'ray' executor" in proc.stderr
    with pytest.raises(ConfigError, match="connect_timeout: must be"):
        RayExecutor(connect_timeout=0)


def test_forwarded_environment(monkeypatch):
    monkeypatch.setenv("NASENGINE_DATA", "/shared/data")
    monkeypatch.setenv("NOT_NASENGINE", "x")
    env = forwarded_env({"OMP_PROC_BIND": "close"})
    assert env["NASENGINE_DATA"] == "/shared/data" and env["OMP_PROC_BIND"] == "close" and "NOT_NASENGINE" not in env
    assert forwarded_env({"A": 1}, forward=False) == {"A": "1"}


# ---- on the local Ray instance -----------------------------------------------------------------------------
def test_smoke_search_matches_the_local_executors(cluster, tmp_path):
    cfg = deep_merge(WIDE, {"budget": {"generations": 3}, "controller": {"population_size": 4},
                            "evaluator": {"fail_if": [{"width": 16}]}})
    inline = search(tmp_path / "inline", cfg, seed=6, executor="inline")
    on_ray = search(tmp_path / "ray", cfg, seed=6, executor="ray")
    assert essence(on_ray.records) == essence(inline.records)
    statuses = {r.status for r in on_ray.records}
    assert "ok" in statuses and "failed" in statuses and on_ray.generations == 3
    assert on_ray.executor.startswith("ray: existing connection") and "2 evaluation(s) at once" in on_ray.executor
    assert on_ray.parallelism == 2
    evaluated = [r for r in on_ray.records if r.evaluated]
    pids = {int(r.worker.split(" ")[0].rsplit(":", 1)[1]) for r in evaluated}
    assert os.getpid() not in pids and all(r.worker.endswith(" cpu") for r in evaluated)
    assert ExperimentStore.open(tmp_path / "ray").run.config["executor"] == {"name": "ray"}
    assert ray.is_initialized()  # a connection the caller made is left alone


def test_steady_state_search_matches_the_local_executors(cluster, tmp_path):
    """Steady-state (controller.in_flight): the task source waits (None) between outcomes."""
    cfg = deep_merge(WIDE, {"budget": {"generations": 2}, "evaluator": {"sleep": 0.1, "sleep_if": [{"width": 4}]},
                            "controller": {"name": "evolution", "population_size": 4, "in_flight": 3}})
    inline = search(tmp_path / "inline", cfg, seed=2, executor="inline")
    on_ray = search(tmp_path / "ray", cfg, seed=2, executor="ray")
    assert essence(on_ray.records) == essence(inline.records) and on_ray.generations == 2


def test_the_simple_method_trains_the_same_on_ray(cluster, tmp_path):
    over = {"budget": {"generations": 2}, "controller": {"population_size": 3},
            "evaluator": {"steps": 5, "patch_size": 32, "batch_size": 4}}
    inline = run_search(tmp_path / "inline", method="simple", seed=1, progress=False,
                        overrides=deep_merge(over, {"executor": {"name": "inline", "threads": 1}}))
    on_ray = run_search(tmp_path / "ray", method="simple", overrides=over, seed=1, progress=False, executor="ray")

    def trained(out):  # all but the timings
        return sorted((r.generation, r.idx, r.key, r.status, r.seed,
                       {k: v for k, v in r.metrics.items() if not k.endswith("seconds")}) for r in out.records)

    assert trained(on_ray) == trained(inline)
    assert sum(r.status == "ok" for r in on_ray.records) >= 3 and "1 torch thread(s)" in on_ray.executor


def _first_evaluated(reference, n: int) -> dict:
    return [r for r in reference.records if r.evaluated][n].genome


def test_a_worker_that_keeps_dying_is_retried_then_failed(cluster, tmp_path):
    base = deep_merge(WIDE, {"budget": {"generations": 1}})
    ref = search(tmp_path / "ref", base, seed=11, executor="inline")
    victim = _first_evaluated(ref, 2)
    log = tmp_path / "evals.log"
    cfg = deep_merge(base, {"evaluator": {"die_if": [victim], "log": str(log)},
                            "executor": {"name": "ray", "max_retries": 1}})
    out = search(tmp_path / "run", cfg, seed=11)
    assert len(out.records) == len(ref.records) == 6  # every candidate recorded
    dead = [r for r in out.records if r.genome == victim]
    assert len(dead) == 1 and dead[0].status == "failed"
    assert dead[0].error.startswith("worker died: WorkerCrashedError") and "2 attempt(s), max_retries 1" in dead[0].error
    attempts = log_lines(log, victim)
    assert len(attempts) == 2 and len({pid_of(a) for a in attempts}) == 2  # retried once, in a new process
    assert all(len(log_lines(log, r.genome)) == 1 for r in out.records if r.evaluated and r.genome != victim)
    others = [e for e in essence(out.records) if e[4] != json.dumps(victim, sort_keys=True)]
    assert others == [e for e in essence(ref.records) if e[4] != json.dumps(victim, sort_keys=True)]


def test_a_worker_killed_mid_evaluation_is_retried_and_succeeds(cluster, tmp_path):
    base = deep_merge(WIDE, {"budget": {"generations": 2}})
    ref = search(tmp_path / "ref", base, seed=12, executor="inline")
    victim = _first_evaluated(ref, 1)
    log = tmp_path / "evals.log"
    cfg = deep_merge(base, {"evaluator": {"sleep": 2.0, "sleep_if": [victim], "log": str(log)}})
    killed: list[int] = []

    def killer():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            lines = log_lines(log, victim)
            if lines:
                time.sleep(0.2)  # well inside its 2 s sleep
                killed.append(pid_of(lines[0]))
                os.kill(killed[0], signal.SIGKILL)
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    out = search(tmp_path / "run", cfg, seed=12, executor="ray")
    thread.join(5)
    assert killed, "the victim never started"
    attempts = log_lines(log, victim)
    assert len(attempts) == 2 and pid_of(attempts[0]) == killed[0] and pid_of(attempts[1]) != killed[0]
    rec = next(r for r in out.records if r.genome == victim)
    assert rec.status == "ok" and rec.worker.split(" ")[0].endswith(f":{pid_of(attempts[1])}")
    assert essence(out.records) == essence(ref.records)  # as if nothing had happened


def test_driver_killed_then_resumed_on_ray(cluster, tmp_path):
    base = deep_merge(WIDE, {"budget": {"generations": 4}, "evaluator": {"sleep": 0.25}})
    run_dir = tmp_path / "run"
    sets = ["budget.generations=4", "evaluator.sleep=0.25", "space.depths=[1,2,3,4]",
            "space.widths=[4,6,8,10,12,16]", "space.kernels=[1,3,5]", "executor.name=ray",
            f"executor.address={cluster}"]
    cmd = [sys.executable, "-m", "nasengine", "search", "fake", "--out", str(run_dir), "--quiet",
           "--seed", "13"] + [a for s in sets for a in ("--set", s)]
    sigkill_when_stored(cmd, run_dir, 8, timeout=90, cwd=REPO)
    store = ExperimentStore.open(run_dir)
    first = store.candidates()
    assert store.run.status == "running" and store.run.config["executor"] == {"name": "ray", "address": cluster}
    store.close()
    assert 8 <= len(first) < 24
    out = resume_search(run_dir, executor="ray", progress=False)
    assert out.executor.startswith("ray:") and all(r in out.records for r in first)  # nothing rewritten or lost
    ref = search(tmp_path / "ref", deep_merge(base, {"evaluator": {"sleep": 0}}), seed=13, executor="inline")
    assert essence(out.records) == essence(ref.records)
    assert ExperimentStore.open(run_dir).controller_generations() == list(range(4))


def _children(pid: int) -> dict[int, str]:
    """The child processes of ``pid``: {pid: command name} (from /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if int(rest[1]) == pid:
            out[int(entry.name)] = name
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the local instance's raylet through /proc")
def test_losing_the_local_instance_stops_the_search_and_resume_finishes_it(cluster, tmp_path):
    """The raylet of the local instance a search started is SIGKILLed mid-search: the search stops at once with
    exit 1 and one line naming the lost instance, the run is marked failed, no candidate is recorded as failed
    for it, and a resume evaluates the rest, ending as an undisturbed run does."""
    cfg = deep_merge(WIDE, {"budget": {"generations": 3}, "evaluator": {"sleep": 0.5}})
    run_dir = tmp_path / "run"
    sets = ["budget.generations=3", "evaluator.sleep=0.5", "space.depths=[1,2,3,4]",
            "space.widths=[4,6,8,10,12,16]", "space.kernels=[1,3,5]", "executor.name=ray", "executor.workers=2"]
    cmd = [sys.executable, "-m", "nasengine", "search", "fake", "--out", str(run_dir), "--quiet",
           "--seed", "16"] + [a for s in sets for a in ("--set", s)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while stored_candidates(run_dir) < 3:
            assert proc.poll() is None, f"the search ended before its instance was killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "the search made no progress"
            time.sleep(0.02)
        raylets = [pid for pid, name in _children(proc.pid).items() if name == "raylet"]
        assert len(raylets) == 1, _children(proc.pid)
        os.kill(raylets[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    ours = [line for line in err.splitlines() if line.startswith("nasengine")]
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err and len(ours) == 1, err[-3000:]
    assert ours[0].startswith("nasengine search: error: lost the local Ray instance at 127.0.0.1:"), ours
    assert "its raylet process exited; the search stopped with" in ours[0]
    assert ours[0].endswith(f"`nasengine resume {run_dir}` evaluates the rest")
    store = ExperimentStore.open(run_dir)
    kept = store.candidates()
    assert store.run.status == "failed" and 3 <= len(kept) < 18
    assert not [r for r in kept if r.status == "failed"]  # nothing burnt by the lost instance
    store.close()
    out = resume_search(run_dir, executor="ray", progress=False)
    assert all(r in out.records for r in kept)
    ref = search(tmp_path / "ref", deep_merge(cfg, {"evaluator": {"sleep": 0}}), seed=16, executor="inline")
    assert essence(out.records) == essence(ref.records)
    assert ExperimentStore.open(run_dir).run.status == "done"


def test_tasks_are_pulled_lazily_and_timeouts_cancel(cluster):
    def task(n: int, **options) -> EvalTask:
        genome = {"depth": 1 + n % 3, "width": (4, 8, 16)[n % 3], "kernel": (1, 3)[n % 2], "tag": 0}
        return EvalTask(task_id=f"t{n}", space="fake-tiny", genome=json.dumps(genome), evaluator="fake-eval",
                        evaluator_options=options, seed=1000 + n)

    pulled: list[int] = []

    def source():
        for n in range(6):
            pulled.append(n)
            yield task(n, sleep=0.2)

    with RayExecutor() as ex:  # attached to the module's instance; workers default to its CPUs
        it = ex.imap(source())
        first = next(it)
        assert first.ok and ex.parallelism == 2 and len(pulled) <= 3  # two in flight + the one just handed out
        it.close()  # abandoned: the evaluations in flight are cancelled (their workers killed)
        # Workers again before the timed part: on a loaded machine a fresh Ray worker takes seconds to start.
        assert all(o.ok for o in ex.imap([task(3), task(4)]))
        slow = {"depth": 1, "width": 4, "kernel": 1, "tag": 1}
        tasks = [EvalTask(task_id="slow", space="fake-tiny", genome=json.dumps(slow), evaluator="fake-eval",
                          evaluator_options={"sleep": 600}), task(1), task(2)]
    # The timeout is far above what the quick tasks need even with a worker to start, far below the slow one.
    with RayExecutor(task_timeout=15) as ex:
        t0 = time.perf_counter()
        outcomes = {o.task_id: o for o in ex.imap(tasks)}
        assert time.perf_counter() - t0 < 300  # well before the 600 s evaluation would end
    assert outcomes["slow"].status == "failed" and outcomes["slow"].error == "timed out after 15 s while evaluating task slow"
    assert outcomes["t1"].ok and outcomes["t2"].ok
    assert ray.is_initialized()


def test_ctrl_c_cancels_the_evaluations_and_keeps_the_store(cluster, tmp_path):
    base = deep_merge(WIDE, {"budget": {"generations": 2}})
    ref = search(tmp_path / "ref", base, seed=14, executor="inline")
    # The victim is the generation's last task (parallel executors take the costliest first), so the others are
    # recorded before it starts however many CPUs the cluster has free.
    gen0 = [r for r in ref.records if r.generation == 0 and r.evaluated]
    victim = sorted(gen0, key=lambda r: (-(r.mult_adds or 0.0), r.idx))[-1].genome
    victim_key = next(r.key for r in ref.records if r.genome == victim)
    expected = sum(1 for r in ref.records if r.generation == 0 and r.key != victim_key)  # all but the victim's
    log = tmp_path / "evals.log"
    # The victim sleeps far longer than a loaded CI machine can need to get there, so the search cannot end
    # on its own before the Ctrl-C.
    cfg = deep_merge(base, {"evaluator": {"sleep": 600, "sleep_if": [victim], "log": str(log)}})
    run_dir = tmp_path / "run"
    main = threading.main_thread()

    def interrupt():  # Ctrl-C once the victim is running and the others are recorded
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if log_lines(log, victim) and stored_candidates(run_dir) >= expected:
                signal.pthread_kill(main.ident, signal.SIGINT)
                return
            time.sleep(0.02)

    # A shell starts background jobs with SIGINT ignored, and Python then keeps it ignored: give Ctrl-C its
    # usual meaning for this test, whatever started the test run.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            search(run_dir, cfg, seed=14, executor="ray")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.perf_counter() - t0 < 300  # the 600 s evaluation was not waited for
    thread.join(5)
    store = ExperimentStore.open(run_dir)
    kept = store.candidates()
    assert store.run.status == "interrupted"
    assert len(kept) == expected and victim_key not in [r.key for r in kept]
    ref_rows = {(r.generation, r.idx): r for r in ref.records}
    assert all(essence([r]) == essence([ref_rows[(r.generation, r.idx)]]) for r in kept if r.status != "duplicate")
    store.close()
    victim_pid = pid_of(log_lines(log, victim)[0])
    deadline = time.monotonic() + 15
    while alive(victim_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(victim_pid)  # its worker was killed, not left computing
    assert ray.is_initialized()
