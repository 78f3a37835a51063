"""The nasengine hooks of the FALSR plugin: the ``falsr`` space, the ``falsr`` method and the published
architectures ``falsr:FALSR-A``, ``falsr:FALSR-B``, ``falsr:FALSR-C`` and ``falsr:FALSR-C-paper``."""
from __future__ import annotations

from pathlib import Path

from nasengine import hookimpl

#: Genome files of the published models (package data).
GENOMES_DIR = Path(__file__).resolve().parent / "genomes"
#: The models released with official weights (xiaomi-automl/FALSR): the one list of their names (this module
#: imports no torch; ``weights.RELEASED_MODELS`` and ``tools/make_genomes.py`` take it from here).
RELEASED_MODELS = ("FALSR-A", "FALSR-B", "FALSR-C")
#: The released graphs, and FALSR-C without node 2 in the tail concat (the paper's 93.7G / 408K).
PUBLISHED = RELEASED_MODELS + ("FALSR-C-paper",)


@hookimpl
def nasengine_register_search_spaces(registry):
    from nasengine_falsr.space import FalsrSpace

    registry.add("falsr", FalsrSpace)


@hookimpl
def nasengine_register_architectures(registry):
    for name in PUBLISHED:
        registry.add(f"falsr:{name}", str(GENOMES_DIR / f"{name}.json"))


def falsr_method():
    """FALSR's search: NSGA-II with the hybrid controller over the elastic space, each candidate trained
    briefly (incomplete training, §5) and scored on PSNR, with Mult-Adds and params as further objectives."""
    from nasengine.method import Method

    return Method(
        name="falsr",
        description="FALSR (Chu et al. 2019): elastic micro+macro space, NSGA-II with a hybrid RL/EA controller, "
                    "incomplete training; objectives PSNR, Mult-Adds, params",
        paper="Chu et al., Fast, Accurate and Lightweight Super-Resolution with Neural Architecture Search (2019)",
        space="falsr",
        controller="falsr-hybrid",
        evaluator="sr-train",
        base={
            "space": {"n_cells": 7, "scale": 2},
            # §2: three objectives. The constraints (min PSNR, max Mult-Adds) are named but the paper gives no
            # bounds; add them with --set reward.constraints='[["psnr","min",X],["mult_adds","max",Y]]'.
            "reward": {"objectives": [["psnr", "max"], ["mult_adds", "min"], ["params", "min"]],
                       "constraints": []},
            # §6.2: all Mult-Adds at a 480x480 input.
            "cost": {"lr_size": [480, 480]},
            # §6.1: L1 loss (the trainer's default), Adam (0.9, 0.999), lr 1e-4 kept constant, batch 16,
            # weights N(0, 0.02) and zero biases. The network reads the LR Y channel (released models).
            "evaluator": {"lr": 1e-4, "betas": [0.9, 0.999], "batch_size": 16, "schedule": "constant",
                          "init_std": 0.02, "val_data": "Set5"},
            # §4.2 Eq. (3) and §4.5 Eq. (5) name these probabilities but the paper gives no values: equal splits.
            "controller": {
                "p_r": 1 / 3,   # initial connections: random (p_r), dense (p_den), none (the rest)
                "p_den": 1 / 3,
                "p_mr": 1 / 3,  # exploration mutation: random (p_mr), RWS on FLOPS (p_mf), RWS on params (the rest)
                "p_mf": 1 / 3,
            },
        },
        presets={
            # §6.1: population 64, about 10k models, 200 epochs of DIV2K at batch 16 per candidate. DIV2K is
            # not shipped: it resolves under $NASENGINE_DATA (e.g. $NASENGINE_DATA/train/DIV2K).
            # An epoch is 800 patches (one per DIV2K training image): 10k candidates x 200 epochs must fit the
            # paper's "< 3 days on 8 V100s" (~3.5 GPU-min per candidate, 10,000 steps), which 1,000-step
            # EDSR epochs would not. Patch size: neither the paper nor the reference gives one; 96 HR
            # (48 LR), the EDSR convention and the HNAS search code's (reference README).
            "paper": {
                "controller": {"population_size": 64},
                "evaluator": {"train_data": "DIV2K", "patch_size": 96, "epochs": 200, "patches_per_epoch": 800},
                "budget": {"candidates": 10_000},
                "executor": {"name": "process"},
            },
            # A CPU proxy, ~2-3 min on an idle 2-core machine (6 min measured with the two cores shared): 3 cells
            # with every cell choice of the paper, 3 generations of 6, 100 steps each on the embedded data,
            # patch 64. lr 1e-3 instead of 1e-4: at 1e-4 a N(0, 0.02) network is still far below bicubic after
            # 100 steps (no ranking signal). The paper's max-Mult-Adds constraint doubles as the CPU budget: a
            # candidate over 60G (at 480x480; ~30 s of training on one core) is recorded infeasible untrained.
            "smoke": {
                "space": {"n_cells": 3},
                "controller": {"population_size": 6},
                "evaluator": {"train_data": "default", "patch_size": 64, "steps": 100, "lr": 1e-3},
                "reward": {"constraints": [["mult_adds", "max", 60e9]]},
                "budget": {"generations": 3},
                "executor": {"name": "process", "workers": 2},
            },
        },
        default_preset="smoke",
    )


@hookimpl
def nasengine_register_methods(registry):
    registry.add("falsr", falsr_method())


# ---- controller: falsr-hybrid (nasengine_falsr/controller.py: the hybrid NSGA-II / RWS / RL controller, §4) --
@hookimpl
def nasengine_register_controllers(registry):
    from nasengine_falsr.controller import FalsrHybridController

    registry.add("falsr-hybrid", FalsrHybridController)


# ---- models: the released FALSR-A/B/C with their official weights ----------------------------------------
# (nasengine_falsr/weights.py: `--model falsr:FALSR-A --weights FALSR-A.pb`; reading the frozen TensorFlow
# graphs needs the `weights` extra)
@hookimpl
def nasengine_register_models(registry):
    from nasengine_falsr.weights import register_models

    register_models(registry)
