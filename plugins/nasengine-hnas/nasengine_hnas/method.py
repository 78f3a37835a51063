"""The HNAS plugin's methods and the registration of its controller and reward (plugin.py's hooks call
:func:`register_methods`, :func:`register_controllers` and :func:`register_rewards`):

* ``hnas`` — HNAS-SR's search (METHODS.md §2): the engine's one-shot loop over the ``hnas`` space's weight-sharing
  supernet, the ``hnas-hierarchical`` controller, the ``sr-supernet`` evaluator with the released reward PSNR
  (``reward_psnr: rgb_shave``) and the ``hnas-joint`` reward; presets ``paper`` (§2.6–2.7, 2.10) and ``smoke``;
* ``hnas-generational`` — the same space under the generational loop, each candidate trained briefly from scratch
  (``sr-train``): for the controllers that need no supernet (``nsga2`` by default, ``reinforce``, ``random``,
  ``evolution``), to compare search strategies on the HNAS space (issue 13, item 8). Not a method of the paper.
"""
from __future__ import annotations

__all__ = ["hnas_method", "hnas_generational_method", "LAMBDAS", "register_methods", "register_controllers",
           "register_rewards"]

#: λ of the joint reward that gave each published model (§2.5)
LAMBDAS = {"HNAS-A": 0.2, "HNAS-B": 0.6, "HNAS-C": 0.9}


def hnas_method():
    """HNAS-SR's search (module docstring)."""
    from nasengine.method import Method

    return Method(
        name="hnas",
        description="HNAS-SR (Guo et al. 2020): a normal cell, an upsampling cell and its position, searched "
                    "ENAS-style by a three-LSTM hierarchical controller with reward lambda*PSNR - (1-lambda)*Cost",
        paper="Guo, Luo, He, Chen, Tan, Wang, Huang: Hierarchical Neural Architecture Search for Single Image "
              "Super-Resolution (IEEE SPL 2020)",
        space="hnas",
        controller="hnas-hierarchical",
        evaluator="sr-supernet",
        reward="hnas-joint",
        loop="one-shot",
        base={
            # §2.1-2.2: L = 12 cells, 4 nodes, x2, the code's 6 normal ops (§2.9 #1), C = 64 (the retrained width;
            # the presets search at C = 8), per_slot weights (§2.3). The search supernet's BatchNorms (§2.3,
            # §2.9 #11) are the space's search_bn option: the presets turn it on for the search and off again for
            # the retrained architecture (loop.retrain_space), which has none.
            "space": {"L": 12, "nodes": 4, "channels": 64, "scale": 2, "paper_ops": False, "search_bn": False},
            # §2.4-2.5: LSTMCells of 100, U(-0.1, 0.1), Adam 3e-4 betas (0.5, 0.999) wd 5e-4, x0.5 at epoch 100,
            # EMA 0.95 of the reward reset every epoch, entropy 1 (position x10), position log-prob x10; one
            # architecture per update.
            "controller": {"population_size": 1, "hidden_size": 100, "init_range": 0.1, "lr": 3e-4,
                           "betas": [0.5, 0.999], "weight_decay": 5e-4, "lr_milestones": [100], "lr_gamma": 0.5,
                           "baseline_decay": 0.95, "baseline_reset": True, "entropy_weight": 1.0,
                           "position_weight": 10.0},
            # §2.5: lambda 0.6 (HNAS-B; 0.2 / 0.9 give A / C), the cost of the sampled genome [E] in the repo's
            # units (0.5 x the paper's "FLOPs": cost_mode repo_accumulating is the released behaviour).
            "reward": {"lam": 0.6, "cost_mode": "sampled", "psnr_metric": "psnr_rgb_shave"},
            # Costs quoted at LR 480x480 (the paper's "3x480x480", §2.8): true Mult-Adds, as executed (the
            # upsampling cell twice, §2.9 #13) and the repo's count (conv2d_48px_x10 = the paper's "FLOPs", which the
            # reward's Cost reads: §2.5).
            "cost": {"lr_size": [480, 480], "convention": "true", "also": ["executed", "conv2d_48px_x10"]},
            # §2.6: Adam 1e-3 (betas 0.9/0.999), batch 16, HR patch 96, L1 on 0-255, MATLAB bicubic LR, the 8
            # dihedral augmentations; §2.5: the reward PSNR is RGB, shave 8, one MSE over a batch of 16 HR-96
            # patches. §2.6: the shared weights' rate anneals (cosine) from 1e-3 to 1e-5 over the whole search
            # (per weight step here; the code steps its scheduler once per epoch, 400 steps of the same curve [E]).
            "evaluator": {"lr": 1e-3, "betas": [0.9, 0.999], "batch_size": 16, "patch_size": 96, "loss": "l1",
                          "lr_kernel": "matlab", "augment": True, "grad_filter": None, "val_patch_size": 96,
                          "val_batch": 16, "reward_psnr": "rgb_shave", "schedule": "cosine", "min_lr": 1e-5},
        },
        presets={
            # §2.6-2.7, §2.10 paper: search at C = 8 on DIV2K 1-320 (shared weights) / 321-800 (controller);
            # 400 epochs of 200 weight steps + 300 controller steps, the controller from epoch 1 (the code's
            # epoch 0); derive 10 samples (no self-ensemble, §2.7 [E]); retrain at C = 64 for 300 epochs x 1,000
            # steps (the README; the paper says 400), Adam 1e-3 cosine, batch 16, HR patch 96, test Set5.
            # The derivation scores the 10 samples on the whole Set5 images (§2.7: the code's derive runs its
            # Set5 test loader), with the reward PSNR (RGB, shave 8), not on the controller's DIV2K patches.
            # The search supernet has BatchNorms (§2.3, §2.9 #11), the retrained network none.
            "paper": {
                "space": {"channels": 8, "search_bn": True},
                "evaluator": {"train_data": "DIV2K", "train_images": "1-320", "val_data": "DIV2K",
                              "val_images": "321-800", "val_patches": 4800,  # 480 images x 10 (§2.6)
                              "derive_data": "Set5"},
                "loop": {"epochs": 400, "child_steps": 200, "controller_steps": 300, "controller_start": 1,
                         "derive_samples": 10, "derive_batches": 1, "derive": "sample", "retrain_top": 1,
                         "retrain_space": {"channels": 64, "search_bn": False}},
                "retrain": {"name": "sr-train", "train_data": "DIV2K", "val_data": "Set5", "patch_size": 96,
                            "batch_size": 16, "steps": 300_000, "lr": 1e-3, "schedule": "cosine",
                            "lr_kernel": "matlab", "augment": True},
            },
            # §2.10 smoke (2 CPU cores, embedded data only): L = 4, C = 4 (cell output 16), positions 0..3; HR
            # patch 32, batch 4; 6 training + 4 controller images; 4 epochs x (15 weight + 15 controller steps),
            # Adam 1e-3 (cosine to 1e-5) / 3e-4; derive 5 samples on 2 whole Set5 images; search BatchNorms on;
            # retrain the best at C = 8 without them for 300 steps, evaluated on Set5.
            "smoke": {
                "space": {"L": 4, "channels": 4, "search_bn": True},
                "evaluator": {"train_data": "default", "train_images": "1-6", "val_data": "default",
                              "val_images": "27-30", "val_patches": 16, "patch_size": 32, "batch_size": 4,
                              "val_patch_size": 32, "val_batch": 4, "prefetch": 0, "derive_data": "Set5",
                              "derive_images": "1-2"},
                "loop": {"epochs": 4, "child_steps": 15, "controller_steps": 15, "controller_start": 1,
                         "derive_samples": 5, "derive_batches": 2, "derive": "sample", "retrain_top": 1,
                         "retrain_space": {"channels": 8, "search_bn": False}},
                # a short retraining at C = 8 (a network whose cells run at HR costs ~0.2 s a step here): 300 steps
                # of batch 16 at HR patch 32; it shows the machinery, not a result (the network stays below bicubic)
                "retrain": {"name": "sr-train", "train_data": "default", "val_data": "Set5", "patch_size": 32,
                            "batch_size": 16, "steps": 300, "lr": 1e-3, "lr_kernel": "matlab"},
            },
        },
        default_preset="smoke",
    )


def hnas_generational_method():
    """The HNAS space under the generational loop (module docstring)."""
    from nasengine.method import Method

    return Method(
        name="hnas-generational",
        description="the HNAS hierarchical space searched by a generational controller (NSGA-II by default), each "
                    "candidate trained briefly; objectives PSNR, Mult-Adds (not the paper's search)",
        paper="Guo et al.: Hierarchical Neural Architecture Search for Single Image Super-Resolution (IEEE SPL 2020)",
        space="hnas",
        controller="nsga2",
        evaluator="sr-train",
        base={
            # the paper's space (§2.1-2.2) at the retrained width
            "space": {"L": 12, "nodes": 4, "channels": 64, "scale": 2},
            "reward": {"objectives": [["psnr", "max"], ["mult_adds", "min"]], "constraints": []},
            "cost": {"lr_size": [480, 480], "convention": "true", "also": ["executed", "conv2d_48px_x10"]},
        },
        presets={
            # A CPU proxy: the smoke preset's space (L = 4, C = 4; §2.10), 3 generations of 6, 100 steps per
            # candidate on the embedded data.
            "smoke": {
                "space": {"L": 4, "channels": 4},
                "controller": {"population_size": 6},
                "evaluator": {"train_data": "default", "val_data": "Set5", "patch_size": 32, "batch_size": 4,
                              "steps": 100, "lr": 1e-3},
                "budget": {"generations": 3},
                "executor": {"name": "process", "workers": 2},
            },
        },
        default_preset="smoke",
    )


def register_methods(registry):
    registry.add("hnas", hnas_method())
    registry.add("hnas-generational", hnas_generational_method())


def register_controllers(registry):
    from nasengine_hnas.controller import HierarchicalController

    registry.add("hnas-hierarchical", HierarchicalController)


def register_rewards(registry):
    from nasengine_hnas.reward import hnas_joint_reward

    registry.add("hnas-joint", hnas_joint_reward,
                 description="HNAS: lambda * reward PSNR - (1 - lambda) * Cost (sampled or repo_accumulating)")
