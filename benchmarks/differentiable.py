#!/usr/bin/env python3
"""Gate overhead of the differentiable loop: the training-step time of an FGNAS supernet trained by the loop's
step (straight-through gates in the forward pass + the differentiable Mult-Adds term R + the ψ parameter group)
vs the same supernet's plain training step (its densest graph built as an ordinary network, L1 only), and the
gated supernet without the cost term in between. :func:`nasengine.search.differentiable.time_steps` measures
the three (median of ``--reps`` steps after ``--warmup`` steps, Adam, random patches), interleaved: one step of
each in turn. (The first version timed them one after the other with a single warm-up step, so the machine's
warm-up -- allocator growth, page faults of multi-GB activations at the paper's width, clocks -- and any other
load fell on the plain step timed first: the likely cause of its 937 ms against 145 ms for the heavier
differentiable step; not reproduced at the full paper width here.)

    .venv/bin/python benchmarks/differentiable.py [--blocks 4] [--channels 16] [--batch 4] [--patch 32]
                                                  [--reps 20] [--warmup 2] [--device cpu] [--threads 2]

Defaults: the ``fgnas`` smoke preset's supernet and batch (METHODS §3.8). ``--blocks 16 --channels 64 --batch 16
--patch 192`` is the paper's (§3.5; slow on a CPU).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins" / "nasengine-fgnas"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, default=32, help="HR patch side")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()

    from nasengine.search.differentiable import DifferentiableOptions, time_steps
    from nasengine.sr.trainer import TrainConfig
    from nasengine.train import TrainRecipe
    from nasengine_fgnas import FgnasSpace

    space = FgnasSpace(blocks=a.blocks, channels=a.channels, scale=2)
    recipe = TrainRecipe(config=TrainConfig(steps=1, batch_size=a.batch, lr=1e-3), patch_size=a.patch)
    t = time_steps(space, recipe, DifferentiableOptions(), device=a.device, threads=a.threads, steps=a.reps,
                   warmup=a.warmup)
    print(f"fgnas supernet B={a.blocks} C={a.channels}, batch {a.batch}, HR patch {a.patch}, {a.device}, "
          f"median of {a.reps} steps:")
    for name, what in (("plain", "plain step (densest graph, L1)"),
                       ("gated", "gated supernet, L1 only"),
                       ("differentiable", "differentiable step (gates + L1 + lambda*R)")):
        print(f"  {what:45s} {t[name] * 1000:8.1f} ms  ({t[name] / t['plain']:.2f}x plain)")


if __name__ == "__main__":
    main()
