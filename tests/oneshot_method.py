"""A tiny one-shot method for the one-shot loop's tests (``tiny-oneshot``), loadable as an extra plugin.

The ``tiny-dense`` space (:mod:`tests.supernet_space`, M = 2, C = 4), the engine's ``reinforce`` controller (it
has ``sample`` / ``ask`` / ``tell``), the engine's shared-weights evaluator ``sr-supernet`` on the embedded
training images with 16-px HR patches, the ``objectives`` reward on the shared-weight PSNR, and a loop of 3
epochs x 3 supernet steps with 2 controller updates of 2 children from epoch 2, a derivation of 4 samples and
a retraining of the best one for 2 ``sr-train`` steps. Load it with
``NASENGINE_PLUGINS_EXTRA=tests.supernet_space,tests.oneshot_method`` (from the repository root).

With ``NASENGINE_TEST_ONESHOT_STALL=G:I`` in the environment, a process that imports this module stalls (sleeps
10 minutes) before it scores the child at generation G, index I: the resume test kills it there, a moment that
does not depend on the machine's speed.
"""
from __future__ import annotations

import os
import time

import nasengine
from nasengine.method import Method

__all__ = ["tiny_oneshot_method", "LOOP", "REWARD_METRIC"]

REWARD_METRIC = "psnr_y_float_nocrop"
#: The loop section of the smoke preset.
LOOP = {"epochs": 3, "child_steps": 3, "controller_steps": 2, "controller_start": 2, "derive_samples": 4,
        "derive_batches": 1, "retrain_top": 1}


def tiny_oneshot_method() -> Method:
    return Method(
        name="tiny-oneshot",
        space="tiny-dense",
        controller="reinforce",
        evaluator="sr-supernet",
        loop="one-shot",
        description="tests: the one-shot loop on a tiny dense space",
        base={
            "space": {"M": 2, "channels": 4},
            "controller": {"population_size": 2, "hidden_size": 8, "embedding_dim": 8},
            "reward": {"objectives": [[REWARD_METRIC, "max"]], "constraints": []},
            "cost": {"lr_size": [32, 32]},
            "evaluator": {"patch_size": 16, "batch_size": 2, "lr": 1e-3, "val_patches": 4, "val_patch_size": 16,
                          "val_batch": 2},
            "retrain": {"name": "sr-train", "steps": 2, "patch_size": 16, "batch_size": 2},
            "executor": {"name": "inline", "device": "cpu"},
        },
        presets={"smoke": {"loop": dict(LOOP)}},
    )


def _stall_for_tests() -> None:
    at = os.environ.get("NASENGINE_TEST_ONESHOT_STALL")
    if not at:
        return
    from nasengine.search.oneshot import OneShotLoop

    where = tuple(int(v) for v in at.split(":"))
    score = OneShotLoop._score

    def stalled(self, g, i, genome, batches, **kw):
        if (g, i) == where:
            time.sleep(600)
        return score(self, g, i, genome, batches, **kw)

    OneShotLoop._score = stalled


_stall_for_tests()


@nasengine.hookimpl
def nasengine_register_methods(registry):
    registry.add("tiny-oneshot", tiny_oneshot_method())
