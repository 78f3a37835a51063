"""The Evaluator role: turns an architecture into metrics (PSNR, SSIM, ...).

An evaluator is constructed from a method preset's ``evaluator`` section (keyword options) in whatever
process runs the evaluation, so its options must be plain data. ``evaluate`` receives the decoded graph and
an :class:`EvalContext`; it returns a flat dict of float metrics or raises (any exception marks the
candidate failed; :class:`nasengine.sr.trainer.TrainingDiverged` is the usual one for a NaN loss).
Evaluations must be deterministic given ``ctx.seed`` so that a resumed search is exact. The engine's own
evaluators (``sr-train``: incomplete training; ``sr-supernet``: shared-weights training and reward scoring of a
one-shot method's supernet children, which refuses ``evaluate``) are in :mod:`nasengine.evaluators`.
"""
from __future__ import annotations

import abc
from typing import Any, Callable, Mapping

import attrs

__all__ = ["Evaluator", "EvalContext", "EvalPlan", "build_evaluator"]


@attrs.frozen
class EvalContext:
    """Where and how one evaluation runs.

    ``seed`` is derived from the run seed and the candidate, ``device`` is a torch device string chosen by
    the executor (``"cuda:1"`` on a GPU worker), ``workdir`` a folder the evaluator may use for checkpoints
    (``None``: keep nothing), ``threads`` the CPU threads it may use, ``report`` an optional callback for
    progress (``report(step, total)``).

    ``keep_model`` (with a ``workdir``; a one-shot run's retraining): an evaluator that trains a model should
    leave it in ``workdir`` as ``model.pt`` (:data:`nasengine.train.MODEL_FILE`, the format of
    :func:`nasengine.checkpoints.save_trained_model`, holding ``architecture``: the evaluated genome's
    :class:`~nasengine.genomefile.Architecture`, named after the workdir) and continue its checkpoints there
    when the evaluation is run again after a kill. An evaluator that keeps no model ignores it.
    """

    seed: int = 0
    device: str = "cpu"
    workdir: str | None = None
    threads: int | None = None
    genome: Any = None
    report: Callable[[int, int], None] | None = None
    keep_model: bool = False
    architecture: Any = None


@attrs.frozen
class EvalPlan:
    """What one evaluation of an architecture will do and cost, before it runs (:meth:`Evaluator.plan`).

    ``work``: a phrase for the plan ("150 steps, batch 16, HR patch 64, data default"); ``train_macs``: the
    multiply-adds the evaluation spends training (``None``: unknown); ``seconds``: its estimated wall time on
    this machine (``None``: not measured); ``parts``: a breakdown of ``seconds`` (name -> seconds) for the plan's
    text; ``data``: the data it reads (a phrase, ``None`` when it reads none)."""

    work: str
    train_macs: float | None = None
    seconds: float | None = None
    parts: dict = attrs.field(factory=dict)
    data: str | None = None


class Evaluator(abc.ABC):
    """Base class of evaluators. Subclasses accept their preset options as keyword arguments."""

    @abc.abstractmethod
    def evaluate(self, graph, ctx: EvalContext) -> dict[str, float]:
        """Metrics of the architecture ``graph`` (a validated :class:`nasengine.graph.ArchGraph`)."""

    def check(self) -> None:
        """Called once in the driver before a search starts: raise a :class:`nasengine.errors.NasengineError`
        (``DataError``, ``ConfigError``) for what would make every evaluation fail, e.g. missing data.
        The default checks nothing."""

    def describe(self) -> str:
        return type(self).__name__

    def plan(self, graph, *, cost=None, measure: bool = True, device: str = "cpu",
             threads: int | None = None) -> EvalPlan:
        """What evaluating ``graph`` (a typical architecture of the space) will do and cost: ``cost`` is its
        :class:`nasengine.cost.Cost` at the run's ``cost.lr_size``; ``measure``: time it on this machine
        (``device``, ``threads`` torch threads, as the executor will run it). The default knows nothing."""
        return EvalPlan(work=self.describe())


def build_evaluator(plugins, name: str, options: Mapping[str, Any]) -> Evaluator:
    """The registered evaluator ``name`` made with ``options`` in this process; options it does not take are a
    :class:`~nasengine.errors.ConfigError` naming it."""
    from nasengine.options import construct

    return construct("evaluator", name, plugins.evaluators.get(name), options)
