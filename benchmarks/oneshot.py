#!/usr/bin/env python3
"""Train-step time of a supernet child (shared weights) vs the same child built on its own.

A child genome is sampled from the space; one train step (Adam, L1 loss) is timed on the supernet's child
(:meth:`nasengine.supernet.Supernet.child`, looked up in the child cache every step as a one-shot loop does; its
weights are the bank's, sliced where the child reads part of a slot's input) and on the standalone module
that :func:`nasengine.builder.build` makes of the same graph, holding the same (sliced) weights. Same batch,
steps interleaved (alternating which goes first); the script prints the median per-step times and the median
of the per-repetition ratios supernet/standalone. Goal: <= 1.3x.

    .venv/bin/python benchmarks/oneshot.py [--space tiny-dense] [--set M=3 --set channels=16]
        [--genome JSON] [--seed 0] [--reps 40] [--warmup 5] [--batch 16] [--patch 32] [--device cpu] [--threads N]

The default space is the tests' ``tiny-dense`` (tests/supernet_space.py, loaded here as an extra plugin); any
registered space with ``densest()`` works, e.g. ``--space deconas --set N=2 --set M=3 --set channels=16``.
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
sys.path.insert(0, str(ROOT))
os.environ["NASENGINE_PLUGINS_EXTRA"] = ",".join(
    m for m in (os.environ.get("NASENGINE_PLUGINS_EXTRA", ""), "tests.supernet_space") if m)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nasengine.builder import build  # noqa: E402
from nasengine.plugins import get_plugins  # noqa: E402
from nasengine.supernet import Supernet  # noqa: E402


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="tiny-dense", help="registered search space (default: tiny-dense)")
    ap.add_argument("--set", dest="options", type=_option, action="append", default=[], metavar="KEY=VALUE",
                    help="space option (JSON value), e.g. --set M=3")
    ap.add_argument("--genome", help="the child's genome as JSON (default: sampled with --seed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=32, help="LR patch size")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)

    options = dict(args.options) or ({"M": 3, "channels": 16} if args.space == "tiny-dense" else {})
    space = get_plugins().spaces.get(args.space)(**options)
    genome = space.from_json(json.loads(args.genome)) if args.genome else space.sample(np.random.default_rng(args.seed))
    graph = space.decode(genome)
    sn = Supernet(space).to(dev)
    standalone = build(graph).to(dev)
    standalone.load_state_dict(sn.standalone_state_dict(graph))
    opts = {"supernet": torch.optim.Adam(sn.parameters(), lr=1e-4),
            "standalone": torch.optim.Adam(standalone.parameters(), lr=1e-4)}
    c_in, c_out, scale = graph.input_channels, graph.output_channels, graph.scale
    lr = torch.rand(args.batch, c_in, args.patch, args.patch, device=dev)
    hr = torch.rand(args.batch, c_out, args.patch * scale, args.patch * scale, device=dev)

    def model(name: str):
        return sn.child(genome) if name == "supernet" else standalone

    def step(name: str) -> float:
        opt = opts[name]
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.l1_loss(model(name)(lr), hr)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    with torch.no_grad():
        diff = (model("supernet")(lr) - standalone(lr)).abs().max().item()
    assert diff <= 1e-4, f"the two models must compute the same function (max difference {diff})"
    for _ in range(args.warmup):
        step("supernet")
        step("standalone")
    times: dict[str, list[float]] = {"supernet": [], "standalone": []}
    ratios = []
    for rep in range(args.reps):
        order = ("supernet", "standalone") if rep % 2 == 0 else ("standalone", "supernet")
        for name in order:
            times[name].append(step(name))
        ratios.append(times["supernet"][-1] / times["standalone"][-1])

    child = sn.child(genome)
    wrapped = sum(1 for m in child.children() if type(m).__name__.startswith("Shared"))
    n_child = sum(p.numel() for p in standalone.parameters())
    n_bank = sum(p.numel() for p in sn.parameters())
    print(f"torch {torch.__version__}, device {dev}, {torch.get_num_threads()} threads")
    print(f"space {args.space} {json.dumps(options)}; child {space.describe(genome)}")
    print(f"child: {n_child:,} params ({wrapped} sliced slots); bank {n_bank:,} params; Adam + L1, batch "
          f"{args.batch}, LR {args.patch}x{args.patch}; {args.reps} interleaved repetitions after {args.warmup} "
          "warm-up steps each")
    for name in ("standalone", "supernet"):
        t = times[name]
        print(f"  {name:<10}  median {statistics.median(t) * 1e3:8.2f} ms/step   min {min(t) * 1e3:8.2f}   "
              f"max {max(t) * 1e3:8.2f}")
    med = statistics.median(ratios)
    print(f"supernet/standalone: median of per-repetition ratios {med:.3f}x, ratio of medians "
          f"{statistics.median(times['supernet']) / statistics.median(times['standalone']):.3f}x "
          f"(goal <= 1.3x: {'met' if med <= 1.3 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
