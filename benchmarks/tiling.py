#!/usr/bin/env python3
"""Whole-image vs tiled inference: time and peak memory of ``upscale_image`` (what ``nasengine upscale`` does,
without reading and writing the PNG) on a synthetic random RGB image, x2, for a small Y network and for FALSR-A
(``falsr:FALSR-A``, the architecture with untrained weights: the time does not depend on the weights).

Each case runs in its own subprocess, so peaks do not mix. What is measured:

* ``time``: wall clock of the one ``upscale_image`` call (perf_counter);
* ``peak``: the process's peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``): everything
  resident at its highest point, Python, numpy, torch's CPU allocator and libraries included; ``base``: the
  RSS after the imports, the model and the input image (before the call), so ``peak - base`` is what the
  upscale itself added;
* on CUDA (``--device cuda``) also ``gpu``: ``torch.cuda.max_memory_allocated``.

Cases (LR WIDTHxHEIGHT): the small net whole and tiled (default ``tile=auto``: 512-pixel tiles with its receptive
radius as overlap) at 2000x1500 and tiled at 6000x4000; FALSR-A whole vs tiled (``--tile 256``) at 600x400, and
one default 512-pixel tile plus its overlap (558x558, whole) — the activation peak of every tile of a tiled
6000x4000 run. FALSR-A costs 235 G Mult-Adds per 640x360 LR; at 6000x4000 that is 24.5 T Mult-Adds, about half
an hour on two CPU cores, so its 6000x4000 figure is **composed**: the small net's tiled 6000x4000 peak (the
full-size buffers: input, Y, chroma, output) plus FALSR-A's one-tile ``peak - base`` (its activations), an
upper bound since the two never peak together. ``--full`` also runs FALSR-A tiled at 6000x4000 for real.

    .venv/bin/python benchmarks/tiling.py [--threads N] [--device cpu] [--full] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


def small_graph():
    from nasengine.graph import ArchGraph

    g = ArchGraph()
    h = g.add("relu", g.add("conv", g.input(channels=1), out_channels=16, kernel=5))
    h = g.add("relu", g.add("conv", h, out_channels=16, kernel=3))
    g.output(g.add("pixel_shuffle", g.add("conv", h, out_channels=4, kernel=3), factor=2))
    return g


def run_case(model: str, width: int, height: int, tile: str, device: str, threads: int) -> dict:
    """In this (child) process: build the model, make the image, upscale once, report."""
    import numpy as np
    import torch

    from nasengine.builder import build
    from nasengine.receptive import overlap_for
    from nasengine.sr.models import TorchUpscaler, upscale_image

    torch.set_num_threads(threads)
    if model == "small":
        graph = small_graph()
    else:
        from nasengine.genomefile import load_architecture

        graph = load_architecture(model).graph
    torch.manual_seed(0)
    module = build(graph).eval()
    up = TorchUpscaler(module, scale=int(graph.scale), channels="y", device=device,
                       tile=tile if tile == "auto" else int(tile), receptive_radius=overlap_for(graph), progress=False)
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = upscale_image(up, rgb)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"model": model, "lr": f"{width}x{height}", "tile": tile, "overlap": up.overlap, "seconds": seconds,
              "base_mb": base, "peak_mb": peak, "out": list(out.shape)}
    if device.startswith("cuda"):
        result["gpu_mb"] = torch.cuda.max_memory_allocated() / MB
    return result


def spawn(case: tuple, device: str, threads: int) -> dict:
    model, w, h, tile = case
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(ROOT / "plugins" / "nasengine-falsr"), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, __file__, "--child", json.dumps([model, w, h, tile]), "--device", device,
           "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"model": model, "lr": f"{w}x{h}", "tile": tile, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--full", action="store_true", help="also FALSR-A tiled at 6000x4000 (long on a CPU)")
    ap.add_argument("--quick", action="store_true", help="the small net only, smaller images (a smoke run)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        model, w, h, tile = json.loads(args.child)
        print(json.dumps(run_case(model, w, h, tile, args.device, args.threads)))
        return 0
    falsr = "falsr:FALSR-A"
    if args.quick:
        cases = [("small", 600, 400, "0"), ("small", 600, 400, "128")]
    else:
        cases = [("small", 2000, 1500, "0"), ("small", 2000, 1500, "auto"), ("small", 6000, 4000, "auto"),
                 (falsr, 600, 400, "0"), (falsr, 600, 400, "256"), (falsr, 558, 558, "0")]
        if args.full:
            cases.append((falsr, 6000, 4000, "auto"))
    print(f"device {args.device}, {args.threads} torch threads; peak/base: process RSS (MB)")
    print(f"{'model':<14} {'LR':>10} {'tile':>5} {'ovl':>4} {'seconds':>8} {'base':>7} {'peak':>7} {'peak-base':>9}")
    rows = []
    for case in cases:
        r = spawn(case, args.device, args.threads)
        rows.append(r)
        if "error" in r:
            print(f"{r['model']:<14} {r['lr']:>10} {r['tile']:>5}  FAILED: {r['error']}")
            continue
        gpu = f"  gpu {r['gpu_mb']:.0f} MB" if "gpu_mb" in r else ""
        print(f"{r['model']:<14} {r['lr']:>10} {r['tile']:>5} {r['overlap']:>4} {r['seconds']:>8.1f} "
              f"{r['base_mb']:>7.0f} {r['peak_mb']:>7.0f} {r['peak_mb'] - r['base_mb']:>9.0f}{gpu}", flush=True)
    by = {(r["model"], r["lr"], r["tile"]): r for r in rows if "error" not in r}
    small_big, one_tile = by.get(("small", "6000x4000", "auto")), by.get((falsr, "558x558", "0"))
    if small_big and one_tile:
        est = small_big["peak_mb"] + one_tile["peak_mb"] - one_tile["base_mb"]
        print(f"\nFALSR-A tiled at 6000x4000 (composed upper bound): small-net tiled 6000x4000 peak "
              f"{small_big['peak_mb']:.0f} MB + FALSR-A one-tile activations {one_tile['peak_mb'] - one_tile['base_mb']:.0f} MB "
              f"= {est:.0f} MB; time ~ {one_tile['seconds'] * 12 * 8:.0f} s (96 tiles x one tile's time)")
    whole, tiled = by.get((falsr, "600x400", "0")), by.get((falsr, "600x400", "256"))
    if whole and tiled:
        print(f"FALSR-A 600x400: tiled/whole time {tiled['seconds'] / whole['seconds']:.2f}, "
              f"added memory {tiled['peak_mb'] - tiled['base_mb']:.0f} vs {whole['peak_mb'] - whole['base_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
