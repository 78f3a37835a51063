"""The training step of the differentiable loop (:mod:`nasengine.search.differentiable`): ``L1 + lambda * R`` on
the SR trainer's hook, and :func:`range_wrapper` for networks trained on 0-255 pixels. Imports torch."""
from __future__ import annotations

import math

import torch

from nasengine.sr.trainer import TrainStep

__all__ = ["DifferentiableStep", "range_wrapper", "mult_adds_of"]


def mult_adds_of(cost) -> torch.Tensor:
    """R as a tensor: a :class:`~nasengine.cost.SoftCost`'s ``mult_adds``, or the tensor itself."""
    return getattr(cost, "mult_adds", cost)


class _Ranged(torch.nn.Module):
    def __init__(self, net: torch.nn.Module, k: int):
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x):
        return self.net(x * self.k) / self.k


def range_wrapper(net: torch.nn.Module, k: int) -> torch.nn.Module:
    """``net`` for ``k == 1``; else a module computing ``net(x * k) / k``: a network trained on 0-``k`` pixels
    (the EDSR convention) fed and read in [0, 1]."""
    return net if k == 1 else _Ranged(net, k)


class DifferentiableStep(TrainStep):
    """One step of a differentiable search on a supernet of the loop's protocol (``param_groups(lr, arch_lr)``,
    ``cost_term(lr_size=...)``): loss ``L1 + lambda * R``.

    ``lr`` / ``arch_lr``: the base rates of the weights and of the architecture parameters (both follow the
    trainer's schedule). ``lr_size``: the LR size R is computed at. ``pixel_range``: 1 (the batches as they
    are, [0, 1]) or 255 (the network sees and makes 0-255 pixels and L1 is on that scale, METHODS §3.4).
    ``lam_mode``: ``fixed`` (``lam``; ``lam_ratio``: set lambda on the first batch so that
    ``lambda * R = lam_ratio * L1``, METHODS §3.8) or ``target`` (engine extension: every ``target_every`` steps
    ``lambda *= exp(target_eta * (R_hard / target_mult_adds - 1))``, R_hard at ``target_lr_size``).
    ``with_cost=False``: L1 only (to time the gates without the cost term).

    ``logs``: ``l1``, ``cost_term`` (R), ``lambda``, ``lambda_r_over_l1``. State: the lambda in force and whether
    the first batch set it (saved in the trainer's checkpoints).
    """

    def __init__(self, *, lr: float, arch_lr: float, lam: float, lr_size, pixel_range: int = 1,
                 lam_mode: str = "fixed", lam_ratio: float | None = None, target_mult_adds: float | None = None,
                 target_eta: float = 0.1, target_every: int = 100, target_lr_size=None, with_cost: bool = True):
        super().__init__("l1")
        self.lr, self.arch_lr, self.lam = float(lr), float(arch_lr), float(lam)
        self.lr_size = tuple(int(v) for v in lr_size)
        self.pixel_range, self.lam_mode, self.lam_ratio = int(pixel_range), lam_mode, lam_ratio
        self.target_mult_adds, self.target_eta, self.target_every = target_mult_adds, target_eta, target_every
        self.target_lr_size = tuple(int(v) for v in (target_lr_size or lr_size))
        self.with_cost = with_cost
        self.calibrated = False

    def param_groups(self, model) -> list[dict]:
        return [dict(g) for g in model.param_groups(self.lr, self.arch_lr)]

    def hard_mult_adds(self, model) -> float:
        """The architecture's Mult-Adds now at ``target_lr_size``: the cost term's forward value, which at
        straight-through gates is the hard architecture's."""
        with torch.no_grad():
            return float(mult_adds_of(model.cost_term(lr_size=self.target_lr_size)))

    def forward(self, model, lr, hr, step):
        k = self.pixel_range
        if self.lam_mode == "target" and step and step % self.target_every == 0:
            ratio = self.hard_mult_adds(model) / self.target_mult_adds
            self.lam *= math.exp(self.target_eta * (ratio - 1.0))
        out = model(lr * k) if k != 1 else model(lr)
        l1 = self.reconstruction_loss(out, hr * k if k != 1 else hr)
        if not self.with_cost:
            return l1, {"l1": float(l1.detach())}
        r = mult_adds_of(model.cost_term(lr_size=self.lr_size))
        l1v, rv = float(l1.detach()), float(r.detach())
        if self.lam_ratio is not None and not self.calibrated:
            # METHODS §3.8 (smoke): lambda chosen so that lambda * R = ratio * L1 at step 0, then kept
            self.lam = float(self.lam_ratio * l1v / max(rv, 1e-30))
            self.calibrated = True
        loss = l1 + self.lam * r.to(l1.dtype)
        return loss, {"l1": l1v, "cost_term": rv, "lambda": self.lam,
                      "lambda_r_over_l1": self.lam * rv / l1v if l1v else float("inf")}

    def state_dict(self) -> dict:
        return {"lam": float(self.lam), "calibrated": bool(self.calibrated)}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.lam = float(state["lam"])
            self.calibrated = bool(state["calibrated"])
