"""The plan of a search: what a preset will do and what it will cost, before anything is trained.

``nasengine search METHOD --preset P --plan`` prints it and exits; every search prints it first. The
estimate samples architectures from the space, costs them analytically, and (unless ``measure=False``)
times a few real training steps of a typical one on this machine.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from nasengine.errors import NasengineError
from nasengine.spec import RunSpec

__all__ = ["search_plan", "format_plan", "time_steps"]


def _steps_per_candidate(ev: dict) -> tuple[float | None, str]:
    batch = int(ev.get("batch_size", 16))
    if ev.get("steps") is not None:
        return float(ev["steps"]), f"{ev['steps']} steps"
    if ev.get("epochs") is not None:
        from nasengine.sr.data import DEFAULT_LENGTH

        per_epoch = int(ev.get("patches_per_epoch") or DEFAULT_LENGTH)
        return float(ev["epochs"]) * per_epoch / batch, f"{ev['epochs']} epochs of {per_epoch} patches"
    if ev.get("seconds") is not None:
        return None, f"{ev['seconds']} s"
    return 100.0, "100 steps (default)"


def _budget_count(budget: dict, key: str) -> int:
    try:
        return whole(1).value(key, budget[key])
    except OptionError as exc:
        raise exc.under("budget") from None


def search_plan(method, cfg: dict, *, plugins, samples: int = 16, measure: bool = True) -> dict[str, Any]:
    """A dict describing the search ``cfg`` of ``method`` would run (see :func:`format_plan`)."""
    from nasengine.cost import analytic_cost

    spec = RunSpec.from_config(plugins, cfg, method=method)
    space = spec.instantiate("space", plugins)
    reward = spec.instantiate("reward", plugins)
    controller = spec.instantiate("controller", plugins, space, reward, seed=0)
    lr_size = tuple(spec.instantiate("cost", plugins).lr_size)
    evaluator = spec.instantiate("evaluator", plugins)  # checks its options before the numbers are read below
    spec.check("executor", plugins)  # its options, without starting any worker
    space_name, ctrl_name = spec.space.name, spec.controller.name
    ev, ev_name = spec.evaluator.kwargs(), spec.evaluator.name
    budget = dict(spec.config.get("budget") or {})
    population = int(controller.population_size)
    if spec.budget.candidates:
        candidates = int(spec.budget.candidates)
    elif spec.budget.generations:
        candidates = int(spec.budget.generations) * population
    else:
        candidates = None
    rng = np.random.default_rng(0)
    genomes = [space.sample(rng) for _ in range(samples)]
    costs = [analytic_cost(space.decode(g), lr_size=lr_size) for g in genomes]
    mult_adds = np.array([c.mult_adds for c in costs], dtype=float)
    params = np.array([c.params for c in costs], dtype=float)
    steps, budget_text = _steps_per_candidate(ev)
    batch = int(ev.get("batch_size", 16))
    patch = int(ev.get("patch_size", 64))
    scale = int(getattr(space, "scale", 2))
    lr_pixels = (patch // scale) ** 2
    per_pixel = float(np.median(mult_adds)) / (lr_size[0] * lr_size[1])
    train_macs = 3.0 * per_pixel * lr_pixels * batch * steps if steps else None  # forward + backward ~ 3x
    plan: dict[str, Any] = {
        "method": method.name, "preset": cfg.get("preset"), "loop": method.loop,
        "space": space_name, "space_size": int(space.size()), "controller": ctrl_name, "population": population,
        "evaluator": ev_name, "training": budget_text, "batch_size": batch, "patch_size": patch,
        "train_data": ev.get("train_data"), "budget": budget, "candidates": candidates,
        "lr_size": list(lr_size), "median_mult_adds": float(np.median(mult_adds)),
        "median_params": float(np.median(params)),
        "train_macs_per_candidate": train_macs,
        "train_macs_total": train_macs * candidates if train_macs and candidates else None,
    }
    try:  # what the evaluator would need (data) and this machine lacks: a note, the search may run elsewhere
        evaluator.check()
        plan["data_problem"] = None
    except NasengineError as exc:
        plan["data_problem"] = str(exc)
    if measure and steps:
        plan["seconds_per_step_here"] = time_steps(space, genomes, mult_adds, batch, patch, scale)
        plan["hours_here"] = (plan["seconds_per_step_here"] * steps * candidates / 3600.0) if candidates else None
    return plan


def time_steps(space, genomes, mult_adds, batch: int, patch: int, scale: int, steps: int = 3) -> float:
    """Seconds per Adam step of the median-cost sampled architecture on this machine (CPU or the default GPU).
    :func:`search_plan` looks it up here at call time, so a test may replace it (a plan's numbers, not this
    machine's speed)."""
    import torch

    from nasengine.builder import build

    g = genomes[int(np.argsort(mult_adds)[len(mult_adds) // 2])]
    graph = space.decode(g)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build(graph).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    c = graph.input_channels
    x = torch.rand(batch, c, patch // scale, patch // scale, device=device)
    y = torch.rand(batch, c, patch, patch, device=device)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.l1_loss(model(x), y).backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def _g(x: float | None) -> str:
    if x is None:
        return "?"
    for unit, div in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if x >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def format_plan(plan: dict) -> str:
    size = plan["space_size"]
    size_text = f"10^{math.log10(size):.1f}" if size > 1e6 else f"{size:,}"
    lines = [
        f"plan: method {plan['method']} (preset {plan['preset']}, {plan['loop']} loop)",
        f"  space {plan['space']} ({size_text} architectures); controller {plan['controller']}, "
        f"population {plan['population']}",
        f"  budget {plan['budget']}: about {plan['candidates'] if plan['candidates'] else '?'} models",
        f"  each trained by {plan['evaluator']}: {plan['training']}, batch {plan['batch_size']}, "
        f"HR patch {plan['patch_size']}, data {plan['train_data']}",
        f"  sampled architectures: median {_g(plan['median_mult_adds'])} Mult-Adds at LR "
        f"{plan['lr_size'][1]}x{plan['lr_size'][0]}, {plan['median_params']:,.0f} params",
        f"  estimated training compute: {_g(plan['train_macs_per_candidate'])} MACs per model, "
        f"{_g(plan['train_macs_total'])} MACs in all",
    ]
    if plan.get("seconds_per_step_here") is not None:
        hours = plan.get("hours_here")
        lines.append(f"  on this machine: {plan['seconds_per_step_here'] * 1000:.0f} ms per step -> "
                     f"{'?' if hours is None else f'{hours:,.1f}'} hours of training (one worker)")
    if plan.get("data_problem"):
        lines.append(f"  note: not runnable on this machine as configured: {plan['data_problem']}")
    return "\n".join(lines)
