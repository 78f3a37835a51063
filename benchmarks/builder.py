#!/usr/bin/env python3
"""Train-step time of a graph-built model vs the same architecture written by hand.

The model is the ~10-layer, 32-channel residual SR net of ``tests/engine/zoo.py`` (head conv, 4 residual
blocks of conv-ReLU-conv + skip, global skip, conv to 3*s^2 channels, pixel shuffle; x2), once built from its
graph by :func:`nasengine.builder.build` and once as the hand-written ``ResidualSR`` with the same weights.
One train step = Adam, L1 loss, batch 16 of 32x32 LR patches (64x64 HR targets). Steps of the two models are
interleaved (alternating which goes first) in one run; the script prints the median per-step times and the
median of the per-repetition ratios graph/hand. Goal: <= 1.05x.

    .venv/bin/python benchmarks/builder.py [--reps 40] [--warmup 5] [--batch 16] [--patch 32] [--device cpu]
                                           [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.interleave import interleaved  # noqa: E402
from nasengine.builder import build  # noqa: E402
from tests.engine.zoo import ResidualSR, copy_weights, residual_sr  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=32, help="LR patch size")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)

    hand = ResidualSR(channels=3, width=32, blocks=4, scale=args.scale).to(dev)
    graph = build(residual_sr(channels=3, width=32, blocks=4, scale=args.scale)).to(dev)
    copy_weights(hand, graph)
    models = {"graph": graph, "hand": hand}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}
    lr = torch.rand(args.batch, 3, args.patch, args.patch, device=dev)
    hr = torch.rand(args.batch, 3, args.patch * args.scale, args.patch * args.scale, device=dev)

    def step(name: str) -> float:
        model, opt = models[name], opts[name]
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.l1_loss(model(lr), hr)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    with torch.no_grad():
        assert torch.equal(graph(lr), hand(lr)), "the two models must compute the same function"
    times, ratios = interleaved(step, "graph", "hand", reps=args.reps, warmup=args.warmup)

    n_params = sum(p.numel() for p in hand.parameters())
    print(f"torch {torch.__version__}, device {dev}, {torch.get_num_threads()} threads")
    print(f"residual SR net: 10 convs, 32 channels, x{args.scale}, {n_params:,} params; Adam + L1, batch "
          f"{args.batch}, LR {args.patch}x{args.patch}; {args.reps} interleaved repetitions after {args.warmup} "
          "warm-up steps each")
    for name in ("hand", "graph"):
        t = times[name]
        print(f"  {name:<5}  median {statistics.median(t) * 1e3:8.2f} ms/step   min {min(t) * 1e3:8.2f}   "
              f"max {max(t) * 1e3:8.2f}")
    med = statistics.median(ratios)
    print(f"graph/hand: median of per-repetition ratios {med:.3f}x, ratio of medians "
          f"{statistics.median(times['graph']) / statistics.median(times['hand']):.3f}x, ratio of minima "
          f"{min(times['graph']) / min(times['hand']):.3f}x "
          f"(goal <= 1.05x: {'met' if med <= 1.05 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
