"""The built-in plugin: the engine's own implementations, registered through the ordinary hooks.

It brings the graph operations, the generic controllers (random search, regularised evolution, NSGA-II,
REINFORCE), the ``simple`` search space and method, the generic training evaluator, the shared-weights
evaluator of one-shot methods, the analytic cost model, the default multi-objective reward, the in-process and
local-process executors, the bicubic model and the supernet's ``per_slot`` weight layout.
Imports are local to each hook so that loading the plugin manager stays cheap.
"""
from __future__ import annotations

from nasengine import hookimpl


@hookimpl
def nasengine_register_ops(registry):
    from nasengine.ops import BUILTIN_OPS

    for spec in BUILTIN_OPS:
        registry.add(spec)


@hookimpl
def nasengine_register_search_spaces(registry):
    from nasengine.spaces import BUILTIN_SPACES

    for name, cls in BUILTIN_SPACES.items():
        registry.add(name, cls)


@hookimpl
def nasengine_register_controllers(registry):
    from nasengine.controllers import BUILTIN_CONTROLLERS

    for name, cls in BUILTIN_CONTROLLERS.items():
        registry.add(name, cls)


@hookimpl
def nasengine_register_evaluators(registry):
    from nasengine.evaluators import SupernetEvaluator, TrainingEvaluator

    registry.add("sr-train", TrainingEvaluator)
    registry.add("sr-supernet", SupernetEvaluator)


@hookimpl
def nasengine_register_cost_models(registry):
    from nasengine.cost import AnalyticCostModel

    registry.add("analytic", AnalyticCostModel)


@hookimpl
def nasengine_register_weight_layouts(registry):
    from nasengine.layouts import PerSlotLayout

    registry.add("per_slot", PerSlotLayout)


@hookimpl
def nasengine_register_rewards(registry):
    from nasengine.reward import objectives_reward

    registry.add("objectives", objectives_reward, description="objectives + constraints (multi-objective)")


def simple_method():
    """The built-in method: NSGA-II over the ``simple`` space, candidates trained briefly on real data."""
    from nasengine.method import Method

    objectives = [["psnr", "max"], ["mult_adds", "min"]]
    return Method(
        name="simple",
        description="NSGA-II over a small plain SR space (depth, width, kernel, activation, upsampler)",
        space="simple",
        controller="nsga2",
        evaluator="sr-train",
        base={
            "space": {"scale": 2, "channels": "y"},
            "reward": {"objectives": objectives, "constraints": []},
            "cost": {"lr_size": [480, 480]},
        },
        presets={
            # Finishes in a few minutes on 2 CPU cores: tiny nets, 32x32 LR patches, 150 Adam steps each.
            "smoke": {
                "space": {"max_depth": 5, "widths": [8, 12, 16]},
                "controller": {"population_size": 6},
                "evaluator": {"train_data": "default", "val_data": "Set5", "patch_size": 64, "batch_size": 16,
                              "steps": 150, "lr": 1e-3},
                "budget": {"generations": 3},
                "executor": {"name": "process", "workers": 2},
            },
            # A larger CPU/GPU run: 30 generations of 16, 2,000 steps per candidate.
            "full": {
                "space": {"max_depth": 10, "widths": [16, 32, 48, 64]},
                "controller": {"population_size": 16},
                "evaluator": {"train_data": "default", "val_data": "Set5", "patch_size": 96, "batch_size": 16,
                              "steps": 2000, "lr": 1e-3, "schedule": "cosine"},
                "budget": {"generations": 30},
                "executor": {"name": "process"},
            },
        },
        default_preset="smoke",
    )


@hookimpl
def nasengine_register_methods(registry):
    registry.add("simple", simple_method())


@hookimpl
def nasengine_register_executors(registry):
    from nasengine.executors import BUILTIN_EXECUTORS

    for name, cls in BUILTIN_EXECUTORS.items():
        registry.add(name, cls)


@hookimpl
def nasengine_register_models(registry):
    def bicubic(scale: int, weights=None, device: str = "auto"):
        """MATLAB-exact bicubic interpolation (the baseline)."""
        from nasengine.sr.models import BicubicUpscaler  # torch: imported when used, not when registered

        if weights:
            from nasengine.errors import InputError

            raise InputError("--weights makes no sense with --model bicubic")
        return BicubicUpscaler(scale=scale)

    registry.add("bicubic", bicubic)


def _seconds(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


@hookimpl
def nasengine_register_search_options(registry):
    from nasengine.options import SearchOption

    registry.add("task-timeout", SearchOption(
        key="executor.task_timeout", type=_seconds, metavar="SECONDS",
        help="fail an evaluation that runs longer than this (process executor and executors that support it)"))
