#!/usr/bin/env python3
"""Evaluation throughput of the executors on CPU-bound evaluations of about a second each.

    .venv/bin/python benchmarks/executors.py [--seconds 1.0] [--per-worker 2] [--rounds 8] [--no-ray] [--json]

Every evaluation is a real :class:`nasengine.executors.EvalTask` (a genome of the built-in ``simple`` space,
decoded and validated by :func:`~nasengine.executors.run_task` in the worker) whose evaluator, ``bench-burn``
(registered by this module, which the workers load through ``NASENGINE_PLUGINS_EXTRA``), burns a fixed amount
of pure-Python CPU work, calibrated in the driver to take ``--seconds`` on one core.

Configurations, all measured in one run:

* ``machine`` x1 / x2 — the same work in a plain ``multiprocessing`` pool, no nasengine: what the hardware
  itself gives, the ceiling of any executor;
* ``process`` x1 / x2 — the local process executor with 1 and 2 workers;
* ``ray`` x1 / x2 — when ``nasengine-ray`` is installed, the ray executor with 1 and 2 evaluations in flight,
  both on one local Ray instance of 2 CPUs (without Ray, only the local rows).

Every configuration is started and warmed up first (workers started, plugins and torch loaded: a long search
amortises that). Then each of ``--rounds`` rounds runs, for each executor, one timed batch with 1 worker and
one with 2 back to back (``--per-worker`` x workers evaluations through ``executor.imap``; the order alternates
between rounds). Throughput = evaluations / wall time of a batch. The CPU speed of a shared or throttled machine
drifts by tens of percent within seconds, so the 2-vs-1 ratio of an executor is the median over the rounds of
the ratio of its two back-to-back batches (paired, so that slow drift cancels); the table also shows the
median throughputs and their range.

Goal: 2 workers >= 1.8x one — where the machine allows it: on a machine whose two CPUs do not double the
throughput of one (SMT siblings, CPU quotas, other load), no executor can, so the exit status is 1 only when an
executor's ratio is below both the goal and 90% of the machine's own ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import nasengine  # noqa: E402
from nasengine.evaluator import Evaluator  # noqa: E402

#: This module, as the workers import it (a plugin module named in NASENGINE_PLUGINS_EXTRA).
PLUGIN_MODULE = "benchmarks.executors"


def burn(iterations: int) -> int:
    """Fixed pure-Python CPU work (a linear congruential generator)."""
    x = 1
    for _ in range(iterations):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


class BurnEvaluator(Evaluator):
    """Burns ``iterations`` steps of :func:`burn`; reports the work done (not a real metric)."""

    def __init__(self, iterations: int = 1_000_000):
        self.iterations = int(iterations)

    def evaluate(self, graph, ctx):
        return {"psnr": float(burn(self.iterations) % 1000), "iterations": float(self.iterations)}


@nasengine.hookimpl
def nasengine_register_evaluators(registry):
    if "bench-burn" not in registry:
        registry.add("bench-burn", BurnEvaluator)


def _timed(n: int) -> float:
    t0 = time.perf_counter()
    burn(n)
    return time.perf_counter() - t0


def calibrate(seconds: float) -> int:
    """Iterations of :func:`burn` that take ``seconds`` on one core of this machine (best of three)."""
    n = 200_000
    while _timed(n) < 0.1:
        n *= 2
    n = int(n * 0.5 / _timed(n))  # about half a second
    best = min(_timed(n) for _ in range(3))
    return max(1, int(n * seconds / best))


def make_tasks(count: int, iterations: int, prefix: str) -> list:
    import numpy as np

    from nasengine.executors import EvalTask
    from nasengine.plugins import get_plugins

    space = get_plugins().spaces.get("simple")()
    rng = np.random.default_rng(0)
    return [EvalTask(task_id=f"{prefix}{i}", space="simple", genome=json.dumps(space.to_json(space.sample(rng))),
                     evaluator="bench-burn", evaluator_options={"iterations": iterations}, seed=i, device="cpu",
                     threads=1)
            for i in range(count)]


class MachinePool:
    """A plain spawned process pool running :func:`burn` (no nasengine): the hardware's own throughput."""

    def __init__(self, workers: int):
        import multiprocessing

        self.pool = multiprocessing.get_context("spawn").Pool(workers)

    def warm_up(self, workers: int) -> None:
        self.pool.map(_timed, [1000] * (2 * workers), chunksize=1)

    def batch(self, count: int, iterations: int, label: str) -> list[float]:
        return self.pool.map(_timed, [iterations] * count, chunksize=1)

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


class ExecutorRunner:
    """Batches of ``bench-burn`` evaluations through an executor's ``imap``."""

    def __init__(self, executor):
        self.executor = executor
        self.n = 0

    def batch(self, count: int, iterations: int, label: str) -> list[float]:
        self.n += 1
        outcomes = list(self.executor.imap(make_tasks(count, iterations, f"{label}-{self.n}-")))
        bad = [o for o in outcomes if not o.ok]
        if bad:
            raise SystemExit(f"{label}: evaluation failed: {bad[0].error}")
        return [o.wall_seconds for o in outcomes]

    def warm_up(self, workers: int) -> None:
        self.batch(2 * workers, 1000, "warm")

    def close(self) -> None:
        self.executor.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=1.0, help="single-core length of one evaluation (default 1)")
    p.add_argument("--per-worker", type=int, default=2, help="evaluations per worker in each timed batch (default 2)")
    p.add_argument("--rounds", type=int, default=8, help="timed batches per configuration, interleaved (default 8)")
    p.add_argument("--goal", type=float, default=1.8, help="lowest acceptable 2-vs-1 worker ratio (default 1.8)")
    p.add_argument("--no-ray", action="store_true", help="only the local rows")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = p.parse_args(argv)

    # Every worker (spawned process, Ray worker) must import this module as a plugin.
    extra = [m for m in os.environ.get("NASENGINE_PLUGINS_EXTRA", "").split(",") if m.strip()]
    os.environ["NASENGINE_PLUGINS_EXTRA"] = ",".join(extra + [PLUGIN_MODULE])
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [x for x in [os.environ.get("PYTHONPATH")] if x])

    from nasengine.executors import ProcessExecutor, usable_cpus

    iterations = calibrate(args.seconds)
    print(f"evaluation: {iterations:,} iterations of pure-Python work (~{args.seconds:g} s on one core here); "
          f"{usable_cpus()} usable CPU(s); {args.rounds} round(s) of {args.per_worker} evaluations per worker",
          flush=True)

    configs: list[tuple[str, int, object]] = []  # (executor, workers, runner)
    owner = None
    ray_note = ""
    try:
        for workers in (1, 2):
            configs.append(("machine", workers, MachinePool(workers)))
        for workers in (1, 2):
            configs.append(("process", workers,
                            ExecutorRunner(ProcessExecutor(workers=workers, devices=["cpu"], threads=1))))
        if not args.no_ray:
            try:
                import ray  # noqa: F401

                from nasengine_ray import RayExecutor
            except ImportError as exc:
                ray_note = f"ray rows skipped: {exc}"
            else:
                owner = RayExecutor(workers=2)  # one local Ray instance with 2 CPUs for both rows
                owner.start()
                for workers in (1, 2):
                    configs.append(("ray", workers, ExecutorRunner(RayExecutor(workers=workers))))
        for name, workers, runner in configs:
            runner.warm_up(workers)

        results: dict[tuple[str, int], list[dict]] = {(n, w): [] for n, w, _ in configs}
        paired: dict[str, list[float]] = {}
        names = list(dict.fromkeys(n for n, _, _ in configs))
        for rnd in range(args.rounds):
            for name in names:
                pair = [(w, r) for n, w, r in configs if n == name]
                if rnd % 2:
                    pair.reverse()
                rates = {}
                for workers, runner in pair:
                    count = args.per_worker * workers
                    t0 = time.perf_counter()
                    times = runner.batch(count, iterations, f"{name}{workers}")
                    wall = time.perf_counter() - t0
                    rates[workers] = count / wall
                    results[(name, workers)].append({"seconds": wall, "per_second": count / wall,
                                                     "mean_eval_seconds": sum(times) / len(times)})
                paired.setdefault(name, []).append(rates[2] / rates[1])
            line = ", ".join(f"{n} {paired[n][-1]:.2f}x" for n in names)
            print(f"  round {rnd + 1}: 2-vs-1 {line}", flush=True)
    finally:
        for _, _, runner in configs:
            try:
                runner.close()
            except Exception:
                pass
        if owner is not None:
            owner.close()

    rows = []
    for (name, workers), batches in results.items():
        rates = [b["per_second"] for b in batches]
        rows.append({"executor": name, "workers": workers, "evaluations": args.per_worker * workers,
                     "per_second": statistics.median(rates), "min": min(rates), "max": max(rates),
                     "mean_eval_seconds": statistics.median(b["mean_eval_seconds"] for b in batches),
                     "rounds": batches})
    print()
    print(f"{'executor':<9} {'workers':>7} {'evals/batch':>11} {'evals/s':>8} {'range':>13} {'s/eval':>7} {'2 vs 1':>7}")
    ratios = {name: statistics.median(values) for name, values in paired.items()}
    for row in rows:
        ratio = f"{ratios[row['executor']]:.2f}x" if row["workers"] == 2 else ""
        print(f"{row['executor']:<9} {row['workers']:>7} {row['evaluations']:>11} {row['per_second']:>8.3f} "
              f"{row['min']:>6.3f}-{row['max']:<6.3f} {row['mean_eval_seconds']:>7.2f} {ratio:>7}")
    print()
    machine = ratios.get("machine", args.goal)
    ok = True
    for name, ratio in ratios.items():
        verdict = "meets" if ratio >= args.goal else "below"
        spread = f"{min(paired[name]):.2f}-{max(paired[name]):.2f}"
        line = (f"{name}: 2 workers / 1 worker = {ratio:.2f}x (median of {len(paired[name])} paired rounds, range "
                f"{spread}; {verdict} the {args.goal:g}x goal")
        if name != "machine":
            line += f"; {ratio / machine:.0%} of the machine's own {machine:.2f}x"
            ok &= ratio >= min(args.goal, 0.9 * machine)
        print(line + ")")
    if machine < args.goal:
        print(f"note: two plain processes give only {machine:.2f}x the throughput of one here, so no executor can "
              f"reach {args.goal:g}x on this machine now (shared or throttled CPUs)")
    if ray_note:
        print(ray_note)
    if args.json:
        print(json.dumps({"rows": rows, "ratios": ratios, "paired": paired, "iterations": iterations}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
