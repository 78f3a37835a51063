"""The Evaluator role: turns an architecture into metrics (PSNR, SSIM, ...).

An evaluator is constructed from a method preset's ``evaluator`` section (keyword options) in whatever
process runs the evaluation, so its options must be plain data. ``evaluate`` receives the decoded graph and
an :class:`EvalContext`; it returns a flat dict of float metrics or raises (any exception marks the
candidate failed; :class:`nasengine.sr.trainer.TrainingDiverged` is the usual one for a NaN loss).
Evaluations must be deterministic given ``ctx.seed`` so that a resumed search is exact. The engine's own
evaluators (``sr-train``: incomplete training) are in :mod:`nasengine.evaluators`.
"""
from __future__ import annotations

import abc
from typing import Any, Callable, Mapping

import attrs

__all__ = ["Evaluator", "EvalContext", "build_evaluator"]


@attrs.frozen
class EvalContext:
    """Where and how one evaluation runs.

    ``seed`` is derived from the run seed and the candidate, ``device`` is a torch device string chosen by
    the executor (``"cuda:1"`` on a GPU worker), ``workdir`` a folder the evaluator may use for checkpoints
    (``None``: keep nothing), ``threads`` the CPU threads it may use, ``report`` an optional callback for
    progress (``report(step, total)``).
    """

    seed: int = 0
    device: str = "cpu"
    workdir: str | None = None
    threads: int | None = None
    genome: Any = None
    report: Callable[[int, int], None] | None = None


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


def build_evaluator(plugins, name: str, options: Mapping[str, Any]) -> Evaluator:
    """The registered evaluator ``name`` made with ``options`` in this process; options it does not take are a
    :class:`~nasengine.errors.ConfigError` naming it."""
    from nasengine.options import construct

    return construct("evaluator", name, plugins.evaluators.get(name), options)
