#!/usr/bin/env python3
"""FALSR's hybrid controller against random search and regularised evolution on the FALSR space.

    python benchmarks/falsr_search.py                       # smoke preset, 18 candidates, seeds 0 1 2
    python benchmarks/falsr_search.py --candidates 30 --seeds 0 1 2 3 4
    python benchmarks/falsr_search.py --controllers falsr-hybrid nsga2 --set evaluator.steps=50

Every controller gets the same candidate budget (``budget.candidates``; the generations budget of the preset
is lifted; a run's last generation may overshoot it, so only its first N counted candidates are compared) with the ``falsr`` method's preset (default ``smoke``: 3 cells, 100 training steps per candidate on
the embedded data, candidates over 60G Mult-Adds recorded infeasible untrained) and the same seeds. For each run
it records the front over (PSNR max, Mult-Adds min, params min) and prints

* ``HV``: the hypervolume of the run's front, every objective normalised to [0, 1] over the evaluated candidates
  of *all* runs (so the numbers compare across controllers), reference point 1.1 per objective
  (``nasengine.report``); mean and spread (sample standard deviation) over the seeds;
* ``best PSNR`` of the run, ``front`` size, ``ok/infeasible/failed`` counts;
* ``overhead``: the workers' idle capacity, the share of workers x wall time not spent evaluating (see
  ``benchmarks/engine_overhead.py``): with 2 workers it includes a worker idling at the end of a generation
  while the other trains the generation's slowest candidate (NSGA-II needs the whole generation);
  ``driver``: the share the engine's own work took (asking, costing, storing, telling), and the wall time.

Runs go to a temporary folder (``--keep DIR`` keeps them: ``nasengine show DIR/<controller>-s<seed>``;
``--keep DIR --reuse`` analyses them again without searching).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CONTROLLERS = ("falsr-hybrid", "random", "evolution")


def within_budget(records, candidates: int) -> list:
    """The records of a run up to its ``candidates``-th counted one (ok, failed or infeasible; duplicates are
    free), in the order they were asked: what every controller got for the same budget."""
    from nasengine.search import COUNTED_STATUSES

    out, counted = [], 0
    for rec in sorted(records, key=lambda r: (r.generation, r.idx)):
        if counted >= candidates:
            break
        out.append(rec)
        if rec.status in COUNTED_STATUSES:
            counted += 1
    return out


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="smoke", help="preset of the falsr method (default smoke)")
    p.add_argument("--candidates", type=int, default=18, help="candidate budget of every run (default 18)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--controllers", nargs="+", default=list(DEFAULT_CONTROLLERS))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="more config overrides for every run")
    p.add_argument("--executor", default=None, help="executor (default: the preset's)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--keep", metavar="DIR", help="keep the runs in DIR (default: a temporary folder)")
    p.add_argument("--reuse", action="store_true",
                   help="with --keep: analyse the runs already in DIR instead of searching again")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = p.parse_args(argv)

    from nasengine.errors import NasengineError
    from nasengine.method import deep_merge, parse_override
    from nasengine.report import RunReport, front_of, normalised_hypervolume, objective_matrix
    from nasengine.search import run_search

    common: dict = {"budget": {"candidates": args.candidates, "generations": None}}
    for text in args.overrides:
        common = deep_merge(common, parse_override(text))

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nasengine-falsr-bench-"))
    runs: list[dict] = []
    records: dict = {}
    reward = None
    try:
        for controller in args.controllers:
            for seed in args.seeds:
                run_dir = root / f"{controller}-s{seed}"
                timing_file = run_dir / "bench-timing.json"
                if args.reuse and timing_file.is_file():
                    timing = json.loads(timing_file.read_text())
                else:
                    overrides = deep_merge(common, {"controller": {"name": controller}})
                    t0 = time.perf_counter()
                    try:
                        out = run_search(run_dir, method="falsr", preset=args.preset, overrides=overrides,
                                         seed=seed, executor=args.executor, workers=args.workers, progress=False)
                    except NasengineError as exc:
                        print(f"error ({controller}, seed {seed}): {exc}", file=sys.stderr)
                        return 2
                    timing = {"overhead_share": out.idle_capacity_share,
                              "driver_share": out.driver_seconds / max(1e-9, out.seconds),
                              "seconds": time.perf_counter() - t0}
                    timing_file.write_text(json.dumps(timing))
                rep = RunReport.load(run_dir)
                reward = rep.reward
                # Equal budgets: the first N counted candidates of every run (a generation may overshoot N).
                kept = within_budget(rep.records, args.candidates)
                records[(controller, seed)] = kept
                ok = [r for r in kept if r.status == "ok"]
                counts = {st: sum(1 for r in kept if r.status == st) for st in ("ok", "infeasible", "failed",
                                                                               "duplicate")}
                runs.append({"controller": controller, "seed": seed, "counts": counts,
                             "best_psnr": max((r.metrics_all()["psnr"] for r in ok), default=float("nan")),
                             "front": len(front_of(kept, reward)), **timing})
                print(f"  {controller:<13} seed {seed}: {counts} front {runs[-1]['front']} "
                      f"best PSNR {runs[-1]['best_psnr']:.3f} overhead {timing['overhead_share']:.2%} "
                      f"(driver {timing['driver_share']:.2%}) {timing['seconds']:.0f} s", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    # One normalisation for all runs: the bounds of every evaluated candidate of every run.
    import numpy as np

    ok_sets = [[r for r in recs if r.status == "ok"] for recs in records.values()]
    if not any(ok_sets):
        print("no run evaluated a candidate: no hypervolume to compare", file=sys.stderr)
        return 1
    allf = np.vstack([objective_matrix(recs, reward) for recs in ok_sets if recs])
    ideal, nadir = allf.min(axis=0), allf.max(axis=0)
    for run in runs:
        run["hv"] = normalised_hypervolume(records[(run["controller"], run["seed"])], reward, ideal=ideal,
                                           nadir=nadir)

    print(f"\nfalsr/{args.preset}: {args.candidates} candidates per run, seeds {args.seeds}; "
          f"HV normalised over all runs (objectives {', '.join(f'{o.metric} {o.direction}' for o in reward.objectives)})")
    header = (f"{'controller':<14} {'HV mean':>8} {'HV sd':>7} {'best PSNR':>10} {'front':>6} {'overhead':>9} "
              f"{'driver':>7} {'wall s':>7}")
    print(header)
    print("-" * len(header))
    summary = {}
    for controller in args.controllers:
        rows = [r for r in runs if r["controller"] == controller]
        hv = [r["hv"] for r in rows]
        summary[controller] = {
            "hv_mean": statistics.fmean(hv), "hv_sd": _spread(hv),
            "best_psnr_mean": statistics.fmean(r["best_psnr"] for r in rows),
            "front_mean": statistics.fmean(r["front"] for r in rows),
            "overhead_share_mean": statistics.fmean(r["overhead_share"] for r in rows),
            "driver_share_mean": statistics.fmean(r["driver_share"] for r in rows),
            "seconds_mean": statistics.fmean(r["seconds"] for r in rows),
        }
        s = summary[controller]
        print(f"{controller:<14} {s['hv_mean']:>8.4f} {s['hv_sd']:>7.4f} {s['best_psnr_mean']:>10.3f} "
              f"{s['front_mean']:>6.1f} {s['overhead_share_mean']:>8.2%} {s['driver_share_mean']:>7.2%} "
              f"{s['seconds_mean']:>7.0f}")
    if args.json:
        print(json.dumps({"preset": args.preset, "candidates": args.candidates, "seeds": args.seeds,
                          "summary": summary, "runs": runs}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
