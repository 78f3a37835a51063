#!/usr/bin/env python3
"""The released FALSR-A/B/C with their official weights: PSNR on Set5 / Set14 / B100 x2 against the reference.

Each model is built from its genome (``falsr:FALSR-A`` ...), the frozen TensorFlow graph
``shared/reference/falsr/FALSR-?.pb`` is loaded into it (``nasengine_falsr.weights``), and it is scored with
the official pipeline (:class:`~nasengine_falsr.weights.FalsrUpscaler`) on two LR versions:

* ``protocol``: :func:`nasengine.sr.evaluate.evaluate` as is, i.e. the project's MATLAB-exact LR (symmetric
  borders, PROTOCOL.md);
* ``official``: the LR the official repository evaluates on (SelfExSR's images: the same bicubic with
  *replicate* borders, ``evaluate(..., lr_border="replicate")``); the reference figures
  (shared/reference/README.md) were measured on these.

Prints one row per model and set: the reference, both PSNRs with their deltas, and the seconds each took
(network, colour stage and metrics; the LR images are made before the clock starts). Needs the ``weights`` extra.

    .venv/bin/python benchmarks/falsr_weights.py [--models A,B,C] [--sets Set5,Set14,B100]
                                                  [--lr protocol,official] [--threads N] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

import nasengine
from nasengine.builder import build
from nasengine.genomefile import load_architecture
from nasengine.sr.data import resolve_benchmark
from nasengine.sr.evaluate import evaluate, prepare_pair
from nasengine_falsr.weights import FalsrUpscaler, load_official_weights

#: shared/reference/README.md, FALSR section (official graphs, official script and data).
REFERENCE = {
    "FALSR-A": {"Set5": 37.8219, "Set14": 33.5484, "B100": 32.1150},
    "FALSR-B": {"Set5": 37.6140, "Set14": 33.2916, "B100": 31.9690},
    "FALSR-C": {"Set5": 37.6604, "Set14": 33.2593, "B100": 31.9601},
}


def shared_dir() -> Path:
    """The checkout's ``shared`` folder (beside the repository), or the parent of ``$NASENGINE_DATA``."""
    cands = [Path(nasengine.__file__).resolve().parents[2] / "shared"]
    cands += [Path(p).parent for p in os.environ.get("NASENGINE_DATA", "").split(os.pathsep) if p]
    for c in cands:
        if (c / "reference" / "falsr").is_dir():
            return c
    sys.exit("shared/reference/falsr not found: place ../shared beside the checkout or set NASENGINE_DATA")


#: --lr value -> the LR's border handling (``evaluate(..., lr_border=...)``)
LR_BORDER = {"protocol": "symmetric", "official": "replicate"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="A,B,C")
    ap.add_argument("--sets", default="Set5,Set14,B100")
    ap.add_argument("--lr", default="protocol,official", help="protocol, official or both (comma-separated)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    shared = shared_dir()
    lrs = [v.strip() for v in args.lr.split(",") if v.strip()]
    if any(v not in LR_BORDER for v in lrs):
        ap.error(f"--lr: each value must be one of {', '.join(LR_BORDER)}, got {args.lr!r}")
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    header = f"{'model':<8} {'set':<6} {'reference':>9}"
    for v in lrs:
        header += f"  {v + ' LR':>12} {'delta':>8} {'s':>6}"
    print(header)
    print("-" * len(header))
    worst = {v: 0.0 for v in lrs}
    for letter in (m.strip() for m in args.models.split(",") if m.strip()):
        model = f"FALSR-{letter}"
        arch = load_architecture(f"falsr:{model}")
        module = build(arch.graph)
        report = load_official_weights(module, arch.graph, shared / "reference" / "falsr" / f"{model}.pb")
        up = FalsrUpscaler(module, name=model, device=args.device, colour=report.colour)
        for s in sets:
            ref = REFERENCE[model][s]
            row = f"{model:<8} {s:<6} {ref:>9.4f}"
            for v in lrs:
                for path in resolve_benchmark(s)[1]:
                    prepare_pair(path, 2, lr_border=LR_BORDER[v])  # LR made (and cached) before the clock starts
                t = time.perf_counter()
                value = evaluate(up, [s], scale=2, lr_border=LR_BORDER[v]).sets[0].psnr
                sec = time.perf_counter() - t
                worst[v] = max(worst[v], abs(value - ref))
                row += f"  {value:>12.4f} {value - ref:>+8.4f} {sec:>6.1f}"
            print(row, flush=True)
    for v in lrs:
        print(f"largest |delta| with the {v} LR: {worst[v]:.4f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
