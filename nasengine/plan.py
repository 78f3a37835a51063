"""The plan of a search: what a preset will do and what it will cost, before anything is trained.

``nasengine search METHOD --preset P --plan`` prints it and exits; every search prints it first. The
estimate samples architectures from the space, costs them analytically, and (unless ``measure=False``)
times a few real training steps of a typical one on this machine.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from nasengine.errors import NasengineError
from nasengine.spec import RunSpec

__all__ = ["search_plan", "format_plan", "resolve_plan_device"]


def search_plan(method, cfg: dict, *, plugins, samples: int = 16, measure: bool = True) -> dict[str, Any]:
    """A dict describing the search ``cfg`` of ``method`` would run (see :func:`format_plan`).

    The evaluator describes one evaluation of the median-cost sampled architecture
    (:meth:`nasengine.evaluator.Evaluator.plan`: its work, training multiply-adds and, with ``measure``, its
    time here with the executor's torch threads per worker); the method's loop turns that into the run's
    evaluations and wall time with the executor's parallelism (:meth:`nasengine.search.loop.Loop.plan`)."""
    from nasengine.cost import analytic_cost
    from nasengine.search.session import loop_class

    spec = RunSpec.from_config(plugins, cfg, method=method)
    space = spec.instantiate("space", plugins)
    reward = spec.instantiate("reward", plugins)
    controller = spec.instantiate("controller", plugins, space, reward, seed=0)
    lr_size = tuple(spec.instantiate("cost", plugins).lr_size)
    evaluator = spec.instantiate("evaluator", plugins)  # checks its options before the numbers are read below
    loop = loop_class(spec).for_controller(controller)
    loop.check(spec, plugins, controller)
    with spec.instantiate("executor", plugins) as executor:  # made, not started: its width and threads
        parallelism, threads = executor.parallelism, getattr(executor, "threads", None)
        executor_text = executor.describe()
    rng = np.random.default_rng(0)
    genomes = [space.sample(rng) for _ in range(samples)]
    costs = [analytic_cost(space.decode(g), lr_size=lr_size) for g in genomes]
    order = np.argsort([c.mult_adds for c in costs])
    median = int(order[len(order) // 2])
    graph, cost = space.decode(genomes[median]), costs[median]
    device = resolve_plan_device(spec.device)
    evaluation = evaluator.plan(graph, cost=cost, measure=measure and loop.uses_evaluation_time, device=device,
                                threads=threads)
    # candidates a cost-stage constraint rejects are recorded untrained: the share of the samples that pass
    metrics = [{"params": float(c.params), "params_without_bias": float(c.params_without_bias),
                "mult_adds": float(c.mult_adds)} for c in costs]
    feasible = float(np.mean([_cost_feasible(reward, m) for m in metrics]))
    per_candidate = None if evaluation.seconds is None else evaluation.seconds * feasible
    runs = loop.plan(spec, controller, per_candidate, parallelism, space=space, evaluator=evaluator,
                     plugins=plugins, measure=measure, device=device, threads=threads,
                     graph=graph, cost=cost)
    plan: dict[str, Any] = {
        "method": method.name, "preset": cfg.get("preset"), "loop": method.loop,
        "space": spec.space.name, "space_size": int(space.size()), "controller": spec.controller.name,
        "population": int(controller.population_size), "evaluator": spec.evaluator.name,
        "evaluation": evaluation.work, "budget": dict(spec.config.get("budget") or {}),
        "candidates": runs.evaluations, "rounds": runs.rounds, "executor": executor_text,
        "parallelism": parallelism, "lr_size": list(lr_size),
        "median_mult_adds": float(cost.mult_adds), "median_params": float(cost.params),
        "train_macs_per_candidate": evaluation.train_macs,
        "train_macs_total": (evaluation.train_macs * runs.evaluations
                             if evaluation.train_macs and runs.evaluations else None),
        "seconds_per_candidate_here": evaluation.seconds, "seconds_parts": dict(evaluation.parts),
        "seconds_here": runs.seconds, "device": device, "feasible_share": feasible,
        "loop_details": list(runs.details),
    }
    try:  # what the evaluator would need (data) and this machine lacks: a note, the search may run elsewhere
        evaluator.check()
        plan["data_problem"] = None
    except NasengineError as exc:
        plan["data_problem"] = str(exc)
    return plan


def _cost_feasible(reward, metrics: dict) -> bool:
    try:
        return reward.violation(metrics, stage="cost") <= 0
    except KeyError:  # a constraint on a cost metric this count lacks: assume it passes
        return True


def resolve_plan_device(device: str) -> str:
    """The device the plan measures on: the executor section's ``device`` (``auto``: CUDA when available)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:,.1f} hours"
    return f"{seconds / 86400:,.1f} days"


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
        f"  budget {plan['budget']}: about {plan['candidates'] if plan['candidates'] else '?'} models "
        f"({plan['rounds']}); executor {plan['executor']}",
        f"  each trained by {plan['evaluator']}: {plan['evaluation']}",
        f"  sampled architectures: median {_g(plan['median_mult_adds'])} Mult-Adds at LR "
        f"{plan['lr_size'][1]}x{plan['lr_size'][0]}, {plan['median_params']:,.0f} params",
        f"  estimated training compute: {_g(plan['train_macs_per_candidate'])} MACs per model, "
        f"{_g(plan['train_macs_total'])} MACs in all",
    ]
    if plan.get("loop_details"):  # a loop that says itself what it runs (one-shot): its lines, its time
        if plan["loop"] == "differentiable":  # no controller: the architecture follows the gradient
            lines[1] = f"  space {plan['space']} ({size_text} architectures); architecture by gradient descent"
            lines[2:] = [f"  budget {plan['budget'] or 'evaluator.steps'}; {plan['candidates'] or '?':,} rows "
                         f"recorded in all; executor {plan['executor']}"]
        else:
            lines[2:] = [f"  budget {plan['budget'] or 'loop.epochs'}; {plan['candidates'] or '?':,} children "
                         f"scored in all; executor {plan['executor']}",
                         f"  shared weights trained and scored by {plan['evaluator']}: {plan['evaluation']}"]
        lines += [f"  {line}" for line in plan["loop_details"]]
        total = plan.get("seconds_here")
        lines.append(f"  on this machine ({plan['device']}): the search "
                     + ("? (not measured)" if total is None else f"about {_duration(total)}"))
        if plan.get("data_problem"):
            lines.append(f"  note: not runnable on this machine as configured: {plan['data_problem']}")
        return "\n".join(lines)
    per = plan.get("seconds_per_candidate_here")
    if per is not None:
        parts = plan.get("seconds_parts") or {}
        how = ""
        if "step" in parts:
            how = (f"{parts['step'] * 1000:.0f} ms per step, {_duration(parts.get('validation', 0.0))} "
                   "validation -> ")
        total = plan.get("seconds_here")
        share = plan.get("feasible_share", 1.0)
        rejected = f" ({1 - share:.0%} of sampled models fail a cost constraint: untrained)" if share < 1 else ""
        lines.append(f"  on this machine ({plan['device']}): {how}{_duration(per)} per model{rejected}; the search: "
                     f"{'?' if total is None else _duration(total)} on {plan['parallelism']} worker(s)")
    if plan.get("data_problem"):
        lines.append(f"  note: not runnable on this machine as configured: {plan['data_problem']}")
    return "\n".join(lines)
