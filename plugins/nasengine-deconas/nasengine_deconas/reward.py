"""The ``deconas-cb`` reward (METHODS.md §1.5): ``R = PSNR_valid - alpha * cb``.

``cb`` is the complexity-based penalty the space computes for every genome (``DeconasSpace.genome_metrics``,
merged into a candidate's metrics by the search loops): ``cb_code`` (the released code's per-bit op weights,
0.40172 for DeCoNASNet) or ``cb_paper`` (params of the child / params of the densest model, 0.48160). The
released code also adds ``1e-4 * entropy`` of the sampled string to the reward: that term is the controller's
(``deconas-lstm``'s ``entropy_weight``), not this reward's, since only the controller knows the entropy.
"""
from __future__ import annotations

from typing import Any, Mapping

import attrs

from nasengine.errors import ConfigError
from nasengine.options import choice, option, optional, read_options, real, string
from nasengine.reward import Reward, RewardOptions

__all__ = ["DeconasCbReward", "deconas_cb_reward", "DeconasCbOptions"]


@attrs.define
class DeconasCbReward(Reward):
    """A :class:`~nasengine.reward.Reward` whose scalar is ``metrics[psnr_metric] - alpha * metrics["cb_" + cb]``
    (minus ``penalty`` times any constraint violation); its objectives (for fronts and multi-objective
    controllers) are the reward's own."""

    alpha: float = 2.0
    cb: str = "code"
    psnr_metric: str = "psnr_y_float_nocrop"

    @property
    def cb_metric(self) -> str:
        return f"cb_{self.cb}"

    def scalar(self, metrics: Mapping[str, float]) -> float:
        missing = [m for m in (self.psnr_metric, self.cb_metric) if m not in metrics]
        if missing:
            raise ConfigError(
                f"reward deconas-cb: the candidate's metrics lack {', '.join(map(repr, missing))} (have: "
                f"{', '.join(sorted(metrics)) or 'none'}); the PSNR comes from the evaluator (reward.psnr_metric), "
                "cb_code/cb_paper from the deconas space's genome_metrics")
        value = float(metrics[self.psnr_metric]) - self.alpha * float(metrics[self.cb_metric])
        return value - self.penalty * self.violation(metrics)


_REWARD_FIELDS = attrs.fields(RewardOptions)


@attrs.frozen(kw_only=True)
class DeconasCbOptions:
    """The options of the ``deconas-cb`` reward (a preset's ``reward`` section)."""

    alpha: float = option(2.0, real(0.0), help="weight of the complexity penalty (cb_rate; 2 in the paper, §1.5)")
    cb: str = option("code", choice("code", "paper"),
                     help="code: the released code's per-bit op weights; paper: params / params of the densest "
                          "model (§1.5, §1.8 #5)")
    psnr_metric: str = option("psnr_y_float_nocrop", string(),
                              help="the evaluator's reward PSNR (float Y, no crop, unclipped: §1.5)")
    objectives: tuple | None = option(None, optional(_REWARD_FIELDS.objectives.metadata["check"]),
                                      help="objectives of the front, each [metric, max|min] (default: "
                                           "[[psnr_metric, max], [params, min]])")
    constraints: tuple = option((), _REWARD_FIELDS.constraints.metadata["check"],
                                help="constraints, each [metric, max|min, bound]")
    penalty: float = option(1.0, real(), help="weight of the constraint violation in the scalar reward")


def deconas_cb_reward(**options: Any) -> DeconasCbReward:
    """The ``deconas-cb`` reward with its options checked (``reward.KEY`` errors)."""
    o = read_options("reward", DeconasCbOptions, options, name="deconas-cb")
    # [E] the paper's reward is one scalar; a front needs objectives: the reward PSNR and params.
    objectives = o.objectives if o.objectives is not None else ([o.psnr_metric, "max"], ["params", "min"])
    base = Reward.from_config(objectives, o.constraints, o.penalty)
    return DeconasCbReward(base.objectives, base.constraints, base.penalty, alpha=o.alpha, cb=o.cb,
                           psnr_metric=o.psnr_metric)


deconas_cb_reward.Options = DeconasCbOptions  # type: ignore[attr-defined]
