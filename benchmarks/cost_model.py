#!/usr/bin/env python3
"""Analytic cost model vs forward-hook counting: speed, and identical numbers.

For the zoo graphs (SRCNN, VDSR, FSRCNN; ``tests/engine/zoo.py``) and a few random graphs
(``nasengine.testing.random_arch_graph``) at one LR size (default 480x480, the x2 tables' budget), it times
``analytic_cost(graph)`` (repeated for ``--seconds`` per graph) and ``count_with_hooks(build(graph), ...)``
(one real forward pass on the already-built module; optionally also on the ``meta`` device), asserts that
both give identical costs, and prints both rates and their ratio. Goal: analytic >= 100x faster.

    .venv/bin/python benchmarks/cost_model.py [--lr-size 480 480] [--random 5] [--seconds 0.5] [--no-vdsr]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from nasengine.builder import build  # noqa: E402
from nasengine.cost import analytic_cost, count_with_hooks  # noqa: E402
from nasengine.testing import random_arch_graph  # noqa: E402
from tests.engine.zoo import ZOO  # noqa: E402


def rate(fn, seconds: float) -> tuple[float, int]:
    """Calls per second of ``fn`` over at least ``seconds`` (and at least 3 calls)."""
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= 3:
            return n / elapsed, n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr-size", type=int, nargs=2, default=(480, 480))
    ap.add_argument("--random", type=int, default=5, help="number of random graphs (seeds 0..N-1)")
    ap.add_argument("--seconds", type=float, default=0.5, help="time spent on analytic costings per graph")
    ap.add_argument("--no-vdsr", action="store_true", help="skip VDSR's real forward pass (the slowest)")
    args = ap.parse_args(argv)
    lr = tuple(args.lr_size)

    graphs = [(name, make()) for name, make in ZOO.items() if not (args.no_vdsr and name == "VDSR")]
    graphs += [(f"random-{s}", random_arch_graph(s, max_width=32, max_blocks=5)) for s in range(args.random)]

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"LR {lr[0]}x{lr[1]}; analytic: repeated >= {args.seconds}s per graph; hooks: one forward pass each\n")
    head = f"{'graph':<10} {'nodes':>5} {'scale':>5} {'GMult-Adds':>11} {'params':>9} {'analytic/s':>11} " \
           f"{'hooks/s':>9} {'ratio':>9} {'meta/s':>8} {'ratio':>7}"
    print(head)
    print("-" * len(head))
    t_analytic = t_hooks = t_meta = 0.0
    for name, g in graphs:
        a_rate, _ = rate(lambda: analytic_cost(g, lr), args.seconds)
        module = build(g).eval()
        start = time.perf_counter()
        hooked = count_with_hooks(module, g, lr)
        h_time = time.perf_counter() - start
        count_with_hooks(module, g, lr, meta=True)  # warm-up of the meta path
        m_rate, _ = rate(lambda: count_with_hooks(module, g, lr, meta=True), min(args.seconds, 0.3))
        analytic = analytic_cost(g, lr)
        assert hooked == analytic, (name, hooked, analytic)
        assert count_with_hooks(module, g, lr, meta=True) == analytic, name
        t_analytic += 1 / a_rate
        t_hooks += h_time
        t_meta += 1 / m_rate
        print(f"{name:<10} {len(g):>5} {g.scale:>5} {analytic.mult_adds / 1e9:>11.4f} {analytic.params:>9,} "
              f"{a_rate:>11,.0f} {1 / h_time:>9.3f} {a_rate * h_time:>8,.0f}x {m_rate:>8,.0f} "
              f"{a_rate / m_rate:>6,.1f}x")
    n = len(graphs)
    print("-" * len(head))
    print(f"{'all':<10} {'':>5} {'':>5} {'':>11} {'':>9} {n / t_analytic:>11,.0f} {n / t_hooks:>9.3f} "
          f"{t_hooks / t_analytic:>8,.0f}x {n / t_meta:>8,.0f} {t_meta / t_analytic:>6,.1f}x")
    print("\nidentical costs from analytic_cost and count_with_hooks (real and meta) on every graph")
    ratio = t_hooks / t_analytic
    print(f"analytic vs hooks (real forward): {ratio:,.0f}x faster (goal >= 100x: {'met' if ratio >= 100 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
