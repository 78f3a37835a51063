"""How close the plan's time estimate lands to the measured search (issue goal: within 2x on the smoke presets).

For each case, the plan (``nasengine search ... --plan``: the evaluator times a few training steps and one
validation of the median sampled architecture with the executor's threads per worker; the loop turns that into
the run's wall time on the executor's workers) is made, then the search itself runs in a temporary folder, and
the ratio estimate / measured loop time is printed. One run each, interleaved, on the same machine state.

    .venv/bin/python benchmarks/plan_accuracy.py                 # simple smoke, simple steady-state, falsr smoke
    .venv/bin/python benchmarks/plan_accuracy.py --cases simple  # only some
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

CASES = {
    "simple": ("simple", "smoke", {}),
    "simple-steady": ("simple", "smoke", {"controller": {"name": "evolution", "in_flight": 4}}),
    "falsr": ("falsr", "smoke", {}),
}


def main() -> None:
    from nasengine.plan import search_plan
    from nasengine.plugins import get_plugins
    from nasengine.search import run_search

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = p.parse_args()
    plugins = get_plugins()
    rows = []
    for name in args.cases:
        method_name, preset, overrides = CASES[name]
        method = plugins.methods.get(method_name)
        t0 = time.perf_counter()
        plan = search_plan(method, method.config(preset, overrides), plugins=plugins)
        plan_seconds = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            out = run_search(Path(tmp) / "run", method=method_name, preset=preset, overrides=overrides, seed=0,
                             progress=False)
        est, real = plan["seconds_here"], out.seconds
        rows.append((name, plan["candidates"], est, real, est / real, plan_seconds))
        print(f"{name}: plan {est:.1f} s for {plan['candidates']} models (per model {plan['seconds_per_candidate_here']:.2f} s,"
              f" planning took {plan_seconds:.1f} s); measured {real:.1f} s for {sum(out.counts.values())} records"
              f" -> estimate / measured = {est / real:.2f}", flush=True)
    print("\ncase            models  plan s  measured s  ratio")
    for name, n, est, real, ratio, _ in rows:
        print(f"{name:<15} {n:>6} {est:>7.1f} {real:>11.1f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
