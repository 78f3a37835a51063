#!/usr/bin/env python3
"""Engine overhead of the generational search loop: the share of wall time spent outside evaluation.

    python benchmarks/engine_overhead.py                       # method `simple`, preset `smoke`
    python benchmarks/engine_overhead.py falsr --preset smoke --executor inline
    python benchmarks/engine_overhead.py simple --set budget.generations=2 --keep runs/bench

It runs one search into a fresh run folder and prints

* ``overhead share`` = (loop wall time - summed evaluation wall time / parallel workers) / loop wall time:
  everything in the loop that is not an evaluation — asking and telling the controller, decoding, keying and
  costing candidates, the store's transactions, waiting for worker processes to get ready, shipping tasks and
  outcomes, closing the pool (the setup before the loop — loading plugins, recording the environment — is
  printed on its own line);
* ``steady-state``   = the same once the first task has started (without the one-off wait for workers to
  load the plugins, which a long run amortises);
* ``driver share``   = time the loop was busy itself (not waiting for an executor) / wall time.

The goal is an overhead share of at most 1% (``--goal``; the exit status is 1 above it). With one worker (or
the inline executor) the first number is exact; with several, workers idling at the end of a generation (the
slowest candidate sets its length) count as overhead too.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("method", nargs="?", default="simple", help="a registered method (default: simple)")
    p.add_argument("--preset", default=None, help="preset (default: the method's default; `smoke` for simple)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--executor", default=None, help="executor name (default: the preset's)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--keep", metavar="RUN_DIR", help="write the run here and keep it (default: a temporary folder)")
    p.add_argument("--goal", type=float, default=0.01, help="largest acceptable overhead share (default 0.01)")
    p.add_argument("--progress", action="store_true", help="show the progress bar")
    p.add_argument("--json", action="store_true", help="print the numbers as one JSON line too")
    args = p.parse_args(argv)

    from nasengine.method import deep_merge, parse_override
    from nasengine.search import run_search

    overrides: dict = {}
    for text in args.overrides:
        overrides = deep_merge(overrides, parse_override(text))
    tmp = None
    if args.keep:
        run_dir = Path(args.keep)
    else:
        tmp = tempfile.mkdtemp(prefix="nasengine-overhead-")
        run_dir = Path(tmp) / "run"
    from nasengine.errors import NasengineError

    try:
        out = run_search(run_dir, method=args.method, preset=args.preset, overrides=overrides or None,
                         seed=args.seed, executor=args.executor, workers=args.workers, progress=args.progress)
    except NasengineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    evaluated = sum(out.counts.get(s, 0) for s in ("ok", "failed"))
    print(f"method {args.method} ({args.preset or 'default preset'}), executor {out.executor}")
    print(f"candidates: {out.counts} in {out.generations} generation(s); {out.stop_reason}")
    print(f"setup {out.setup_seconds:.2f} s before the loop (plugins, config, environment, store; workers start "
          "meanwhile)")
    print(f"loop wall {out.seconds:.2f} s; evaluations {out.eval_seconds:.2f} s summed over {evaluated} "
          f"(x{out.parallelism} in parallel); loop waiting {out.wait_seconds:.2f} s")
    print(f"overhead share: {out.overhead_share:.2%} ({out.overhead_seconds:.3f} s outside evaluation, of which "
          f"{out.first_task_seconds:.3f} s before the first task started: worker start-up, first costing)")
    steady = max(0.0, out.overhead_seconds - out.first_task_seconds) / max(1e-9, out.seconds - out.first_task_seconds)
    print(f"steady-state:   {steady:.2%} (the same, once the first task has started)")
    print(f"driver share:   {out.driver_seconds / out.seconds:.2%} ({out.driver_seconds:.3f} s of the loop's own work)")
    if args.json:
        print(json.dumps({"method": args.method, "preset": args.preset, "executor": out.executor,
                          "seconds": out.seconds, "setup_seconds": out.setup_seconds,
                          "eval_seconds": out.eval_seconds,
                          "overhead_share": out.overhead_share, "steady_state_share": steady,
                          "first_task_seconds": out.first_task_seconds, "driver_seconds": out.driver_seconds,
                          "counts": out.counts}))
    ok = out.overhead_share <= args.goal
    print(f"goal <= {args.goal:.0%}: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
