"""The nasengine hooks of the FGNAS plugin: the ``fgnas`` space, the ops ``channel_scatter_add`` and
``bias_map``, the supernets as published architectures ``fgnas:supernet-S`` / ``-M`` / ``-L``, and the ``fgnas``
method (the engine's differentiable loop; presets ``paper`` and ``smoke``)."""
from __future__ import annotations

from pathlib import Path

from nasengine import hookimpl

#: Genome files of the published supernets (package data).
GENOMES_DIR = Path(__file__).resolve().parent / "genomes"
#: The supernets of FGNAS-S / M / L (all gates on; C = 64, x2) by name -> blocks B (METHODS §3.1).
SUPERNETS = {"supernet-S": 16, "supernet-M": 32, "supernet-L": 64}


@hookimpl
def nasengine_register_ops(registry):
    from nasengine_fgnas.ops import FGNAS_OPS

    for spec in FGNAS_OPS:
        registry.add(spec)


@hookimpl
def nasengine_register_search_spaces(registry):
    from nasengine_fgnas.space import FgnasSpace

    registry.add("fgnas", FgnasSpace)


@hookimpl
def nasengine_register_architectures(registry):
    for name in SUPERNETS:
        registry.add(f"fgnas:{name}", str(GENOMES_DIR / f"{name}.json"))


def fgnas_method():
    """FGNAS's search (METHODS §3): the gated supernet's weights and gates ψ trained together by the engine's
    differentiable loop under L1 + λ·R(ψ), then the pruned network derived with its weights."""
    from nasengine.method import Method

    return Method(
        name="fgnas",
        description="FGNAS (Kim et al. 2022): per-channel gates on channels and activations, trained with the "
                    "weights under L1 + lambda * differentiable Mult-Adds, then pruned",
        paper="Kim et al., Fine-grained neural architecture search for image super-resolution (JVCIR 2022)",
        space="fgnas",
        controller="random",  # unused: the differentiable loop follows the gradient, it asks no controller
        evaluator="sr-train",  # its section is the search's training: data, Adam, steps, schedule
        loop="differentiable",
        base={
            # §3.1-3.3: B = 16 (S; 32 M, 64 L), C = 64, x2, body end gated [I], threshold 0.5 on ψ, ψ0 = 1.0 [E]
            "space": {"blocks": 16, "channels": 64, "scale": 2, "gate_body_end": True, "threshold": 0.5,
                      "psi0": 1.0},
            "reward": {"objectives": [["psnr", "max"], ["mult_adds", "min"]], "constraints": []},
            # §3.6: Mult-Adds quoted for a 1280x720 output (LR 640x360 at x2)
            "cost": {"lr_size": [360, 640]},
        },
        presets={
            # §3.5 / §3.8 paper: DIV2K (resolves under $NASENGINE_DATA), Adam β (0.9, 0.999), lr 1e-4 for θ and
            # ψ ([I] one optimiser), batch 16, HR patch 192 ([I] LR 96 at x2), 2M iterations halved after 1M,
            # MATLAB-bicubic LR and flips/rot90 ([E] EDSR); L1 + 1e-9·R with R at the training LR patch and L1 on
            # 0-255 ([I] §3.4: the only reading where λ = 1e-9 makes sense). x2: the pruned network with its
            # trained weights is the final model (§3.6 [I]): derived/model.pt, no retraining.
            "paper": {
                "evaluator": {"train_data": "DIV2K", "val_data": "Set5", "patch_size": 192, "batch_size": 16,
                              "steps": 2_000_000, "lr": 1e-4, "betas": [0.9, 0.999], "schedule": "step",
                              "step_size": 1_000_000, "gamma": 0.5, "lr_kernel": "matlab", "augment": True},
                "loop": {"arch_lr": 1e-4, "lam": 1e-9, "lam_mode": "fixed", "pixel_range": 255,
                         "cost_lr_size": None, "record_every": 10_000, "log_every": 1_000,
                         "checkpoint_every": 10_000, "retrain": False},
            },
            # §3.8 smoke (2 CPU cores, about a minute, embedded data): B = 4, C = 16; HR patch 32 (LR 16), batch 4,
            # 1,000 steps; θ lr 1e-3, ψ lr 5e-3 (at 1e-4 a gate needs >= 5,000 steps to cross 0.5, §3.4); λ chosen
            # so that λR = 0.02·L1 at step 0 ([E]: at 0.5 (and 0.1, 0.05) Adam drives every gate of blocks 2-4 to 0
            # within ~150 steps, before the weights tell the channels apart; at 0.02 all four blocks keep channels and
            # the hard Mult-Adds fall about 3x); L1 on [0, 1] ([E]: with the λ ratio the pixel range does not change
            # the balance); the derived network then fine-tuned from its supernet weights for 1,000 steps (§3.6
            # [I]: x2 keeps the trained weights; fine-tuning beats a from-scratch retraining at this budget), on Set5.
            "smoke": {
                "space": {"blocks": 4, "channels": 16},
                "evaluator": {"train_data": "default", "val_data": "Set5", "patch_size": 32, "batch_size": 4,
                              "steps": 1000, "lr": 1e-3},
                "loop": {"arch_lr": 5e-3, "lam_ratio": 0.02, "pixel_range": 1, "record_every": 100, "log_every": 100,
                         "checkpoint_every": 500, "retrain": True, "retrain_from": "derived"},
                # the fine-tuning at a tenth of the search's weight lr: at 1e-3 it lost 0.5 dB of the derived
                # network's Set5 PSNR (34.21 -> 33.72), at 1e-4 it gains 0.4 dB (-> 34.58; measured, seed 0)
                "retrain": {"name": "sr-train", "train_data": "default", "val_data": "Set5", "patch_size": 32,
                            "batch_size": 4, "steps": 1000, "lr": 1e-4},
                "executor": {"name": "inline"},
            },
        },
        default_preset="smoke",
    )


@hookimpl
def nasengine_register_methods(registry):
    registry.add("fgnas", fgnas_method())
