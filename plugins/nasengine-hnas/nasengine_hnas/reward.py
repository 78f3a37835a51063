"""The ``hnas-joint`` reward (METHODS.md §2.5): ``R = λ·PSNR − (1 − λ)·Cost``.

* ``PSNR`` is the reward PSNR the one-shot evaluator measures, as the released search computes it: RGB, shave
  8, one MSE over the whole batch of validation patches (``sr-supernet`` with ``reward_psnr: rgb_shave``, metric
  ``psnr_rgb_shave``, §2.9 #8); it is stored beside the protocol ``psnr`` of the retraining, each named.
* ``Cost`` is in the released code's units, ``0.5 · 1e-8 · (Conv2d Mult-Adds at a 48×48 LR input)`` = half
  the paper's "FLOPs" figure (§2.5, §2.8), rounded to 3 decimals as the code does (``cost_round``).
  ``cost_mode: sampled`` (default, [E]) takes it from the sampled genome's cost metric ``cost_metric`` (a figure
  of the run's cost model, times ``cost_scale``): by default the ``conv2d_48px_x10`` convention's figure at LR
  480×480 (Conv2d Mult-Adds / 10, transposed convs not counted, the upsampling cell once) times 5e-10 — exactly
  the code's ``0.5e-8 · compute_flops@48²`` for the sampled architecture. ``cost_mode: repo_accumulating`` reproduces the released code
  (§2.9 #2): its ``compute_flops`` sums every Conv2d that ran in *any* earlier ``compute_flops`` call, at the
  resolution it last ran at, over an architecture sampled anew for the call — a term that does not depend on
  the architecture being reinforced. That figure needs the sampler, so the ``hnas-hierarchical`` controller
  plays it (:class:`RepoFlopsCounter` in its state) and learns from :meth:`HnasJointReward.joint` with it; the
  reward's :meth:`~HnasJointReward.scalar` of a stored row (what the derivation ranks by) stays the sampled one.
* λ: 0.2 / 0.6 / 0.9 gave HNAS-A / B / C (§2.5).

The released code's entropy term is not this reward's: it is a loss regulariser of the controller
(``hnas-hierarchical``'s ``entropy_weight`` / ``position_weight``, §2.9 #4).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import attrs

from nasengine.errors import ConfigError
from nasengine.options import choice, option, optional, positive, read_options, real, sequence, string, whole
from nasengine.reward import Reward, RewardOptions

__all__ = ["HnasJointReward", "hnas_joint_reward", "HnasJointOptions", "RepoFlopsCounter", "REPO_UNIT",
           "COST_MODES"]

COST_MODES = ("sampled", "repo_accumulating")
#: the released code's cost unit per Conv2d Mult-Add at its 48×48 LR input: ``0.5 · 1e-8`` (§2.5)
REPO_UNIT = 0.5e-8
#: the LR input size the released ``compute_flops`` runs at (§2.5)
REPO_LR_SIZE = (48, 48)


@attrs.define
class HnasJointReward(Reward):
    """A :class:`~nasengine.reward.Reward` whose scalar is ``lam · metrics[psnr_metric] − (1 − lam) ·
    round(cost_scale · metrics[cost_metric], cost_round)`` (minus ``penalty`` times any constraint violation)."""

    lam: float = 0.6
    cost_mode: str = "sampled"
    psnr_metric: str = "psnr_rgb_shave"
    cost_metric: str = "mult_adds_conv2d_48px_x10"
    cost_scale: float = 5e-10
    cost_round: int | None = 3
    repo_lr_size: tuple = REPO_LR_SIZE

    def cost_of(self, metrics: Mapping[str, float]) -> float:
        """The sampled genome's cost in the reward's units (``cost_scale · metrics[cost_metric]``)."""
        if self.cost_metric not in metrics:
            raise ConfigError(
                f"reward hnas-joint: the candidate's metrics lack {self.cost_metric!r} (reward.cost_metric; have: "
                f"{', '.join(sorted(metrics)) or 'none'}); it comes from the cost model")
        return self.cost_scale * float(metrics[self.cost_metric])

    def joint(self, metrics: Mapping[str, float], cost: float) -> float:
        """``lam · PSNR − (1 − lam) · round(cost)`` with the PSNR of ``metrics`` and a given ``cost``."""
        if self.psnr_metric not in metrics:
            raise ConfigError(
                f"reward hnas-joint: the candidate's metrics lack {self.psnr_metric!r} (reward.psnr_metric; have: "
                f"{', '.join(sorted(metrics)) or 'none'}); the evaluator measures it (sr-supernet reward_psnr "
                "rgb_shave gives psnr_rgb_shave)")
        if self.cost_round is not None:
            cost = round(cost, self.cost_round)  # [C] round(cost, 3)
        return self.lam * float(metrics[self.psnr_metric]) - (1.0 - self.lam) * cost

    def scalar(self, metrics: Mapping[str, float]) -> float:
        cost = self.cost_of(metrics) if self.lam < 1.0 else 0.0
        return self.joint(metrics, cost) - self.penalty * self.violation(metrics)


class RepoFlopsCounter:
    """The released ``compute_flops`` (METHODS §2.5), bug-compatible: every call runs one architecture at the
    ``lr_size`` LR input and records, per Conv2d module, its Mult-Adds at the resolution it ran at; the total is
    over **every module recorded in any call so far** (the hooks' ``output_size`` attributes are never cleared),
    each at its latest resolution, times :data:`REPO_UNIT`.

    Modules are the graph's named slots (the supernet's modules: a slot name is one weight, so the two duplicate
    edges of a node that share a supernet module are one entry); an unnamed counted node (the fixed MeanShift
    convs) is keyed by its op and position. What a Conv2d is and costs is the cost model's ``conv2d_48px_x10``
    convention (transposed convs not counted, MeanShift counted as its fixed 1×1 conv)."""

    def __init__(self, lr_size: Sequence[int] = REPO_LR_SIZE, unit: float = REPO_UNIT):
        self.lr_size = (int(lr_size[0]), int(lr_size[1]))
        self.unit = float(unit)
        self.modules: dict[str, int] = {}

    @staticmethod
    def module_costs(graph, lr_size: Sequence[int] = REPO_LR_SIZE) -> dict[str, int]:
        """The Conv2d Mult-Adds of each module ``graph`` runs at ``lr_size`` (the ``conv2d_48px_x10`` convention's
        per-node figure before its divisor; a slot used twice counts once)."""
        from nasengine.cost import cost_breakdown

        out: dict[str, int] = {}
        for node in cost_breakdown(graph, lr_size, convention="conv2d_48px_x10"):
            if node.mult_adds:
                name = graph.name(node.node)
                out[name or f"#{node.node}.{node.op}"] = int(node.mult_adds)
        return out

    def run(self, graph) -> float:
        """Record the modules ``graph`` runs (their latest Mult-Adds replace earlier ones) and return
        :attr:`total`."""
        self.modules.update(self.module_costs(graph, self.lr_size))
        return self.total

    @property
    def total(self) -> float:
        """``unit ·`` the Mult-Adds of every module recorded so far."""
        return self.unit * sum(self.modules.values())

    def state_dict(self) -> dict[str, Any]:
        return {"lr_size": list(self.lr_size), "unit": self.unit, "modules": dict(self.modules)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.modules = {str(k): int(v) for k, v in state["modules"].items()}


_REWARD_FIELDS = attrs.fields(RewardOptions)


@attrs.frozen(kw_only=True)
class HnasJointOptions:
    """The options of the ``hnas-joint`` reward (a preset's ``reward`` section)."""

    lam: float = option(0.6, real(0.0, 1.0),
                        help="λ of λ·PSNR − (1−λ)·Cost (§2.5: 0.2 / 0.6 / 0.9 for HNAS-A / B / C)")
    cost_mode: str = option("sampled", choice(*COST_MODES),
                            help="sampled: the cost of the sampled genome [E]; repo_accumulating: the released "
                                 "code's accumulated conv count of earlier, separately sampled architectures "
                                 "(§2.5, §2.9 #2; needs the hnas-hierarchical controller)")
    psnr_metric: str = option("psnr_rgb_shave", string(),
                              help="the evaluator's reward PSNR (RGB, shave 8, batch MSE: §2.5)")
    cost_metric: str = option("mult_adds_conv2d_48px_x10", string(),
                              help="the cost model's figure of the sampled genome (cost_mode sampled; the "
                                   "default needs cost.also: [conv2d_48px_x10])")
    cost_scale: float = option(5e-10, positive,
                               help="Cost = cost_scale x cost_metric: 5e-10 = the code's 0.5 x 1e-8 at 48x48 for "
                                    "the conv2d_48px_x10 figure at cost.lr_size 480x480 (§2.5)")
    cost_round: int | None = option(3, optional(whole(0)), help="decimals the cost is rounded to (the code: 3)")
    repo_lr_size: tuple = option(REPO_LR_SIZE, sequence(whole(1), length=2),
                                 help="LR size of the released compute_flops (repo_accumulating; §2.5: 48x48)")
    objectives: tuple | None = option(None, optional(_REWARD_FIELDS.objectives.metadata["check"]),
                                      help="objectives of the front, each [metric, max|min] (default: "
                                           "[[psnr_metric, max], [cost_metric, min]])")
    constraints: tuple = option((), _REWARD_FIELDS.constraints.metadata["check"],
                                help="constraints, each [metric, max|min, bound]")
    penalty: float = option(1.0, real(), help="weight of the constraint violation in the scalar reward")


def hnas_joint_reward(**options: Any) -> HnasJointReward:
    """The ``hnas-joint`` reward with its options checked (``reward.KEY`` errors)."""
    o = read_options("reward", HnasJointOptions, options, name="hnas-joint")
    # [E] the paper's reward is one scalar; a front needs objectives: the reward PSNR and the cost figure.
    objectives = o.objectives if o.objectives is not None else ([o.psnr_metric, "max"], [o.cost_metric, "min"])
    base = Reward.from_config(objectives, o.constraints, o.penalty)
    return HnasJointReward(base.objectives, base.constraints, base.penalty, lam=o.lam, cost_mode=o.cost_mode,
                           psnr_metric=o.psnr_metric, cost_metric=o.cost_metric, cost_scale=o.cost_scale,
                           cost_round=o.cost_round, repo_lr_size=tuple(o.repo_lr_size))


hnas_joint_reward.Options = HnasJointOptions  # type: ignore[attr-defined]
