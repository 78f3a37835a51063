"""The nasengine hooks of the DeCoNAS plugin: the ``deconas`` space, the ``deconas-cb`` reward, the ``deconas``
method (presets ``paper`` and ``smoke``), the ``deconas-generational`` method (the space under the generational
loop, for controllers without a supernet) and the published architecture ``deconas:DeCoNASNet``. (The
``deconas-lstm`` controller and the ``tf_reshape`` weight layout are registered here too, from their modules.)"""
from __future__ import annotations

from pathlib import Path

from nasengine import hookimpl

#: Genome files of the published models (package data).
GENOMES_DIR = Path(__file__).resolve().parent / "genomes"
PUBLISHED = ("DeCoNASNet",)


@hookimpl
def nasengine_register_search_spaces(registry):
    from nasengine_deconas.space import DeconasSpace

    registry.add("deconas", DeconasSpace)


@hookimpl
def nasengine_register_architectures(registry):
    for name in PUBLISHED:
        registry.add(f"deconas:{name}", str(GENOMES_DIR / f"{name}.json"))


@hookimpl
def nasengine_register_rewards(registry):
    from nasengine_deconas.reward import deconas_cb_reward

    registry.add("deconas-cb", deconas_cb_reward, description="DeCoNAS: reward PSNR - alpha * cb (cb_code or cb_paper)")


def deconas_method():
    """DeCoNAS's search (METHODS.md §1): an ENAS-style one-shot search over the dense DNB space; the LSTM
    controller samples children of a weight-sharing supernet, learns from ``PSNR - alpha * cb`` on validation
    patches, and the best of the derived samples is retrained from scratch."""
    from nasengine.method import Method

    return Method(
        name="deconas",
        description="DeCoNAS (Ahn & Cho 2021): densely connected blocks, ENAS-style one-shot search with a "
                    "2-layer LSTM controller, reward PSNR - 2*cb",
        paper="Ahn & Cho, Neural architecture search for image super-resolution using densely constructed "
              "search space: DeCoNAS (ICPR 2020)",
        space="deconas",
        controller="deconas-lstm",
        evaluator="sr-supernet",
        reward="deconas-cb",
        loop="one-shot",
        base={
            # §1.1-1.2: N = M = 4, K = 3, C = 64, CA reduction 4, x2, no feature-fusion search (FF0, the paper's
            # chosen setting, §1.8 #5); the per_slot weight layout ([E] default, §1.3; tf_reshape selectable).
            # Ops: the search's supernet uses the released search's ops (no pre-activation ReLU, no conv bias,
            # §1.3 #1-2: [E] follow the code), the retraining the released final net's (pre-activation ReLU + bias,
            # §1.2) through loop.retrain_space.
            "space": {"N": 4, "M": 4, "channels": 64, "scale": 2, "fusion": False, "reduction": 4,
                      "op_variant": "released_supernet", "weight_layout": "per_slot"},
            "loop": {"retrain_space": {"op_variant": "fixed"}},
            # §1.4-1.5: LSTM 2 x 64, tanh 1.10 / 2.5, U(-0.1, 0.1), Adam 3e-4, baseline EMA 0.99 of the PSNR only,
            # entropy 1e-4 in the reward; one sampled child per update.
            "controller": {"population_size": 1, "hidden_size": 64, "num_layers": 2, "tanh_constant": 1.10,
                           "op_tanh_reduce": 2.5, "init_range": 0.1, "lr": 3e-4, "baseline_decay": 0.99,
                           "baseline_metric": "psnr_y_float_nocrop", "entropy_weight": 1e-4},
            # §1.5: R = PSNR_valid - 2 * cb with the code's cb (cb=paper selectable, §1.8 #5).
            "reward": {"alpha": 2.0, "cb": "code", "psnr_metric": "psnr_y_float_nocrop"},
            # Costs quoted at LR 480x480 (METHODS.md counting convention).
            "cost": {"lr_size": [480, 480]},
            # §1.6: Adam 1e-4 (TF defaults), constant within the search, batch 16, LR 64 (HR 128), L1, the repo's
            # MATLAB-style resize of the HR patch in float, rounded once (matlab_float), rot90 + flip, grad filter 51.065; §1.5: float-Y reward PSNR, no crop,
            # 10-patch batches of 96 HR.
            "evaluator": {"lr": 1e-4, "betas": [0.9, 0.999], "batch_size": 16, "patch_size": 128, "loss": "l1",
                          "lr_kernel": "matlab_float", "augment": True, "grad_filter": 51.065,
                          "val_patch_size": 96, "val_batch": 10, "reward_psnr": "y_float_nocrop"},
        },
        presets={
            # §1.9 paper: DIV2K (not shipped: resolves under $NASENGINE_DATA). 200 epochs x 1,000 supernet steps,
            # 100 controller steps per epoch from epoch 6 (§1.6: `epoch > 5`, epochs numbered from 1); derive 100
            # samples, each scored on 50 batches x 10 patches (§1.7 [E]); reward patches cut from DIV2K 801-900
            # (the paper's validation images, §1.5 [E]); final training 1,000 epochs x 1,000 steps, Adam 1e-4
            # halved every 200 epochs, batch 16, LR patch 64 (§1.7).
            "paper": {
                "evaluator": {"train_data": "DIV2K", "train_images": "1-800", "val_data": "DIV2K",
                              "val_images": "801-900", "val_patches": 500},
                "loop": {"epochs": 200, "child_steps": 1000, "controller_steps": 100, "controller_start": 6,
                         "derive_samples": 100, "derive_batches": 50, "derive": "sample", "retrain_top": 1},
                "retrain": {"name": "sr-train", "train_data": "DIV2K", "val_data": "Set5", "patch_size": 128,
                            "batch_size": 16, "steps": 1_000_000, "lr": 1e-4, "schedule": "step",
                            "step_size": 200_000, "gamma": 0.5, "lr_kernel": "matlab", "augment": True},
            },
            # §1.9 smoke (2 CPU cores, a few minutes, embedded data only): N = 2, M = 3, C = 8 (2^18 space);
            # 8 training images of the embedded T91 subset, LR patch 16 (HR 32), batch 4, grad filter off;
            # child Adam 1e-3 (raised), 30 steps x 8 epochs; controller from epoch 2 (after epoch 1), 10 steps
            # per epoch, reward batches of 4 patches 16 -> 32 from 2 held-out images; derive 10 samples x 3
            # batches; final training (below), evaluated on Set5.
            "smoke": {
                "space": {"N": 2, "M": 3, "channels": 8},
                "evaluator": {"train_data": "default", "train_images": "1-8", "val_data": "default",
                              "val_images": "29-30", "val_patches": 12, "patch_size": 32, "batch_size": 4,
                              "lr": 1e-3, "grad_filter": None, "val_patch_size": 32, "val_batch": 4},
                "loop": {"epochs": 8, "child_steps": 30, "controller_steps": 10, "controller_start": 2,
                         "derive_samples": 10, "derive_batches": 3, "derive": "sample", "retrain_top": 1},
                # final training: 1,000 steps of batch 16 at HR patch 48 (§1.9 says 300 steps; at 300 the derived
                # network stays ~2 dB below bicubic on Set5, at 1,000 it passes it: measured, about a minute here)
                "retrain": {"name": "sr-train", "train_data": "default", "val_data": "Set5", "patch_size": 48,
                            "batch_size": 16, "steps": 1000, "lr": 1e-3, "lr_kernel": "matlab"},
            },
        },
        default_preset="smoke",
    )


@hookimpl
def nasengine_register_methods(registry):
    registry.add("deconas", deconas_method())
    registry.add("deconas-generational", deconas_generational_method())


# ---- controller: deconas-lstm (nasengine_deconas/controller.py: the LSTM policy and REINFORCE, §1.4-1.5) ------
@hookimpl
def nasengine_register_controllers(registry):
    from nasengine_deconas.controller import DeconasController

    registry.add("deconas-lstm", DeconasController)


def deconas_generational_method():
    """The DeCoNAS space under the generational loop, each candidate trained from scratch briefly (the
    incomplete-training evaluator ``sr-train``): for controllers that need no supernet (``nsga2``, ``random``,
    ``evolution``, ``reinforce``, ``deconas-lstm``), to compare search strategies on the same space (issue 12,
    item 8). Not a method of the paper: a method's loop is fixed, so this is the space's second method."""
    from nasengine.method import Method

    return Method(
        name="deconas-generational",
        description="the DeCoNAS dense space searched by a generational controller (NSGA-II by default), each "
                    "candidate trained briefly; objectives PSNR, Mult-Adds (not the paper's search)",
        paper="Ahn & Cho, Neural architecture search for image super-resolution using densely constructed "
              "search space: DeCoNAS (ICPR 2020)",
        space="deconas",
        controller="nsga2",
        evaluator="sr-train",
        base={
            # the paper's space (§1.1-1.2) with the released final net's ops
            "space": {"N": 4, "M": 4, "channels": 64, "scale": 2, "fusion": False},
            "reward": {"objectives": [["psnr", "max"], ["mult_adds", "min"]], "constraints": []},
            "cost": {"lr_size": [480, 480]},
        },
        presets={
            # A CPU proxy: the smoke preset's space (N = 2, M = 3, C = 8; §1.9), 3 generations of 6, 100 steps
            # per candidate on the embedded data.
            "smoke": {
                "space": {"N": 2, "M": 3, "channels": 8},
                "controller": {"population_size": 6},
                "evaluator": {"train_data": "default", "val_data": "Set5", "patch_size": 32, "batch_size": 4,
                              "steps": 100, "lr": 1e-3},
                "budget": {"generations": 3},
                "executor": {"name": "process", "workers": 2},
            },
        },
        default_preset="smoke",
    )


# ---- weight layout: tf_reshape (nasengine_deconas/layouts.py: the released search's row reshape, METHODS §1.3) --
@hookimpl
def nasengine_register_weight_layouts(registry):
    from nasengine_deconas.layouts import TfReshapeLayout

    registry.add("tf_reshape", TfReshapeLayout)
