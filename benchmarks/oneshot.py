#!/usr/bin/env python3
"""One-shot figures: a supernet child's train step vs the same child built on its own, and the controller
updates' share of an epoch of the one-shot loop.

1. **Child step.** A child genome is sampled from the space; one train step (Adam, L1 loss) is timed on the
   supernet's child (:meth:`nasengine.supernet.Supernet.child`, looked up in the child cache every step as a
   one-shot loop does; its weights are the bank's, sliced where the child reads part of a slot's input) and on
   the standalone module that :func:`nasengine.builder.build` makes of the same graph, holding the same (sliced)
   weights. Same batch, steps interleaved (alternating which goes first); the script prints the median per-step
   times and the median of the per-repetition ratios supernet/standalone. Goal: <= 1.3x.
2. **Controller share** (with a one-shot method; the default is the tests' ``tiny-oneshot``): what one epoch of
   the loop (:mod:`nasengine.search.oneshot`) does with the preset's settings, timed piece by piece as the loop
   runs it: ``--steps`` supernet steps (``controller.sample(1)``, the child, ``evaluator.train_step``) and
   ``--updates`` controller updates (``ask``; per child: decode, cost model and ``genome_metrics``,
   ``evaluator.score`` on one validation batch, the reward; ``tell``), each after one warm-up. The epoch's
   share is ``controller_steps x update / (child_steps x step + controller_steps x update)``, and that of the
   policy network alone (``ask`` + ``tell``, the scoring left out). A preset whose data is not on this machine
   (``paper``: DIV2K) is timed on the embedded images, with its widths, batches and patch sizes unchanged.

    .venv/bin/python benchmarks/oneshot.py [--method deconas] [--preset smoke] [--set KEY=VALUE ...]
        [--space tiny-dense] [--genome JSON] [--seed 0] [--reps 40] [--warmup 5] [--batch 16] [--patch 32]
        [--steps 5] [--updates 5] [--device cpu] [--threads N]

``--set KEY=VALUE`` (JSON value): a space option (``M=3``), or with ``--method`` a config override
(``evaluator.batch_size=8``; a key without a section is the space's). Without ``--method`` the child step runs
on ``--space`` (default the tests' ``tiny-dense``, M = 3, C = 16; any registered space with ``densest()``
works) and the share on ``tiny-oneshot``; with it, both on the method's space with the preset's options, the
child step at the evaluator's batch and LR patch unless ``--batch`` / ``--patch`` say otherwise, e.g.
``--method deconas --preset paper --steps 2 --updates 2`` (the paper's C = 64, N = M = 4, batch 16, LR 64).
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
    m for m in (os.environ.get("NASENGINE_PLUGINS_EXTRA", ""), "tests.supernet_space", "tests.oneshot_method") if m)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.interleave import interleaved  # noqa: E402
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


def _sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def child_step(space, options: dict, args, dev, batch: int, patch: int) -> None:
    """Figure 1: a supernet child's train step vs the standalone child's (module docstring)."""
    torch.manual_seed(args.seed)
    genome = space.from_json(json.loads(args.genome)) if args.genome else space.sample(np.random.default_rng(args.seed))
    graph = space.decode(genome)
    sn = Supernet(space).to(dev)
    standalone = build(graph).to(dev)
    standalone.load_state_dict(sn.standalone_state_dict(graph))
    opts = {"supernet": torch.optim.Adam(sn.parameters(), lr=1e-4),
            "standalone": torch.optim.Adam(standalone.parameters(), lr=1e-4)}
    c_in, c_out, scale = graph.input_channels, graph.output_channels, graph.scale
    lr = torch.rand(batch, c_in, patch, patch, device=dev)
    hr = torch.rand(batch, c_out, patch * scale, patch * scale, device=dev)

    def model(name: str):
        return sn.child(genome) if name == "supernet" else standalone

    def step(name: str) -> float:
        opt = opts[name]
        _sync(dev)
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.l1_loss(model(name)(lr), hr)
        loss.backward()
        opt.step()
        _sync(dev)
        return time.perf_counter() - start

    with torch.no_grad():
        diff = (model("supernet")(lr) - standalone(lr)).abs().max().item()
    assert diff <= 1e-4, f"the two models must compute the same function (max difference {diff})"
    times, ratios = interleaved(step, "supernet", "standalone", reps=args.reps, warmup=args.warmup)

    child = sn.child(genome)
    wrapped = sum(1 for m in child.children() if type(m).__name__.startswith("Shared"))
    n_child = sum(p.numel() for p in standalone.parameters())
    n_bank = sum(p.numel() for p in sn.parameters())
    describe = getattr(space, "describe", None)
    print(f"[child step] space {type(space).__name__} {json.dumps(options)}; child "
          f"{describe(genome) if callable(describe) else json.dumps(space.to_json(genome))}")
    print(f"child: {n_child:,} params ({wrapped} sliced slots); bank {n_bank:,} params; Adam + L1, batch "
          f"{batch}, LR {patch}x{patch}; {args.reps} interleaved repetitions after {args.warmup} "
          "warm-up steps each")
    for name in ("standalone", "supernet"):
        t = times[name]
        print(f"  {name:<10}  median {statistics.median(t) * 1e3:8.2f} ms/step   min {min(t) * 1e3:8.2f}   "
              f"max {max(t) * 1e3:8.2f}")
    med = statistics.median(ratios)
    print(f"supernet/standalone: median of per-repetition ratios {med:.3f}x, ratio of medians "
          f"{statistics.median(times['supernet']) / statistics.median(times['standalone']):.3f}x "
          f"(goal <= 1.3x: {'met' if med <= 1.3 else 'NOT met'})")


def _spec(plugins, method, preset: str | None, overrides: dict):
    """The run spec of ``method`` / ``preset`` with ``overrides``; a preset whose evaluator data does not
    resolve here gets the embedded images (its widths, batches and patch sizes unchanged)."""
    from nasengine.errors import NasengineError
    from nasengine.method import deep_merge
    from nasengine.spec import RunSpec

    spec = RunSpec.from_config(plugins, method.config(preset, overrides), method=method)
    try:
        spec.instantiate("evaluator", plugins).check()
        return spec, None
    except NasengineError:
        ev = spec.evaluator.kwargs()
        local = {"evaluator": {"train_data": "default", "val_data": "default", "train_images": None,
                               "val_images": None}}
        spec = RunSpec.from_config(plugins, method.config(preset, deep_merge(overrides, local)), method=method)
        return spec, (f"its data ({ev.get('train_data')} / {ev.get('val_data')}) is not on this machine: timed on "
                      "the embedded images")


def controller_share(plugins, method, preset, overrides: dict, args, dev) -> None:
    """Figure 2: the controller updates' share of an epoch of the one-shot loop (module docstring)."""
    from nasengine.search.oneshot import OneShotLoop
    from nasengine.controller import Result

    spec, note = _spec(plugins, method, preset, overrides)
    loop = OneShotLoop.options(spec)
    space = spec.instantiate("space", plugins)
    reward = spec.instantiate("reward", plugins)
    controller = spec.instantiate("controller", plugins, space, reward, seed=args.seed)
    evaluator = spec.instantiate("evaluator", plugins)
    cost_model = spec.instantiate("cost", plugins)
    torch.manual_seed(args.seed)
    sn = Supernet(space).to(dev)
    # the run's number of shared-weights steps, for a learning-rate schedule (HNAS's cosine)
    evaluator.setup(sn, scale=int(space.decode(space.densest()).scale), seed=args.seed, device=str(dev),
                    total_steps=loop.epochs * loop.child_steps)
    parts: dict[str, list[float]] = {"step": [], "update": [], "policy": [], "score": [], "costs": []}
    try:
        for i in range(args.steps + 1):  # the first is a warm-up
            _sync(dev)
            t0 = time.perf_counter()
            evaluator.train_step(sn.child(controller.sample(1)[0]))
            _sync(dev)
            if i:
                parts["step"].append(time.perf_counter() - t0)
        for i in range(args.updates + 1):
            policy = score = costs = 0.0
            _sync(dev)
            t0 = time.perf_counter()
            genomes = list(controller.ask())
            policy += time.perf_counter() - t0
            results = []
            for genome in genomes:
                t1 = time.perf_counter()
                graph = space.decode(genome)
                metrics = {k: float(v) for k, v in cost_model.metrics(graph).items()}
                metrics.update({k: float(v) for k, v in space.genome_metrics(genome).items()})
                t2 = time.perf_counter()
                metrics.update(evaluator.score(sn.child_of_graph(graph), batches=1))
                _sync(dev)
                t3 = time.perf_counter()
                costs += t2 - t1
                score += t3 - t2
                results.append(Result(genome=genome, key=graph.key(), status="ok", metrics=metrics,
                                      reward=float(reward.scalar(metrics))))
            t4 = time.perf_counter()
            controller.tell(results)
            policy += time.perf_counter() - t4
            if i:
                parts["update"].append(time.perf_counter() - t0)
                parts["policy"].append(policy)
                parts["score"].append(score)
                parts["costs"].append(costs)
    finally:
        close = getattr(evaluator, "close", None)
        if callable(close):
            close()
    med = {k: statistics.median(v) for k, v in parts.items()}
    ev = spec.evaluator.kwargs()
    pop = len(genomes)
    print(f"[controller share] method {method.name}, preset {preset or method.default_preset}"
          + (f"; {note}" if note else ""))
    print(f"space {spec.space.name} {json.dumps(spec.space.kwargs(), sort_keys=True)}; controller "
          f"{spec.controller.name} ({pop} child(ren) per update); evaluator {spec.evaluator.name}: batch "
          f"{ev.get('batch_size')}, HR patch {ev.get('patch_size')}, validation batch {ev.get('val_batch')} x "
          f"{ev.get('val_patch_size')} px")
    print(f"  supernet step      median {med['step'] * 1e3:9.1f} ms   ({args.steps} timed)")
    print(f"  controller update  median {med['update'] * 1e3:9.1f} ms   ({args.updates} timed): policy (ask + tell) "
          f"{med['policy'] * 1e3:.1f} ms, scoring {med['score'] * 1e3:.1f} ms, decode + costs "
          f"{med['costs'] * 1e3:.1f} ms")
    supernet = loop.child_steps * med["step"]
    updates = loop.controller_steps * med["update"]
    policy = loop.controller_steps * med["policy"]
    epoch = supernet + updates
    print(f"an epoch with controller updates ({loop.child_steps:,} supernet steps + {loop.controller_steps:,} "
          f"updates): {epoch:.1f} s; the controller updates' share {updates / epoch:.1%} (the policy network "
          f"alone {policy / epoch:.2%})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", help="a one-shot method (default: child step on --space, share on tiny-oneshot)")
    ap.add_argument("--preset", help="the method's preset (default: its default)")
    ap.add_argument("--space", default="tiny-dense", help="without --method: the child step's space (tiny-dense)")
    ap.add_argument("--set", dest="options", type=_option, action="append", default=[], metavar="KEY=VALUE",
                    help="space option (JSON value), e.g. --set M=3; with --method, SECTION.KEY=VALUE too")
    ap.add_argument("--genome", help="the child's genome as JSON (default: sampled with --seed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, help="child step: batch (default 16, or the method's evaluator's)")
    ap.add_argument("--patch", type=int, help="child step: LR patch side (default 32, or the method's evaluator's)")
    ap.add_argument("--steps", type=int, default=5, help="share: supernet steps timed (after one warm-up)")
    ap.add_argument("--updates", type=int, default=5, help="share: controller updates timed (after one warm-up)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    plugins = get_plugins()
    print(f"torch {torch.__version__}, device {dev}, {torch.get_num_threads()} threads")
    if args.method is None:
        options = dict(args.options) or ({"M": 3, "channels": 16} if args.space == "tiny-dense" else {})
        space = plugins.spaces.get(args.space)(**options)
        child_step(space, options, args, dev, args.batch or 16, args.patch or 32)
        controller_share(plugins, plugins.methods.get("tiny-oneshot"), None, {}, args, dev)
        return 0
    from nasengine.method import deep_merge

    overrides: dict = {}
    for key, value in args.options:
        section, _, name = key.rpartition(".")
        node = {name: value}
        for part in reversed((section or "space").split(".")):
            node = {part: node}
        overrides = deep_merge(overrides, node)
    method = plugins.methods.get(args.method)
    spec, _ = _spec(plugins, method, args.preset, overrides)
    space = spec.instantiate("space", plugins)
    ev = spec.evaluator.kwargs()
    scale = int(space.decode(space.densest()).scale)
    child_step(space, spec.space.kwargs(), args, dev, args.batch or int(ev.get("batch_size", 16)),
               args.patch or int(ev.get("patch_size", 64)) // scale)
    controller_share(plugins, method, args.preset, overrides, args, dev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
