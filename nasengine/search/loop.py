"""The contract between a run session and its loop, and the table that picks a loop for a method."""
from __future__ import annotations

import math
from typing import Any

import attrs

from nasengine.search.context import SearchContext
from nasengine.search.records import LoopEnd

__all__ = ["Loop", "LoopPlan"]


@attrs.frozen
class LoopPlan:
    """What a loop will run under a budget: ``evaluations`` (architectures evaluated; ``None``: only a
    seconds budget bounds them), ``rounds`` (a phrase: "3 generations of 6"), ``seconds`` (its estimated wall
    time here, ``None`` when the evaluation's time is unknown), ``details`` (lines the plan prints: what a
    one-shot loop runs and what each part costs)."""

    evaluations: int | None
    rounds: str
    seconds: float | None = None
    details: tuple = ()


def _evaluations(budget, population: int) -> tuple[int | None, int | None]:
    """``(generations, evaluations)`` a generational budget runs (a started generation is finished)."""
    if budget.generations is not None:
        gens = budget.generations
        if budget.candidates is not None:
            gens = min(gens, math.ceil(budget.candidates / population))
        return gens, gens * population
    if budget.candidates is not None:
        gens = math.ceil(budget.candidates / population)
        return gens, gens * population
    return None, None


@attrs.frozen(kw_only=True)
class NoOptions:
    """The options of a loop that declares none (the generational loop): a ``loop`` section must be empty."""


class Loop:
    """A search loop: runs on the session's :class:`~nasengine.search.context.SearchContext` until a budget
    stops it. A loop never opens the store, parses config or owns a lock."""

    #: whether the loop's generations end with a barrier (all evaluations of a generation before the next)
    barrier = False
    #: whether :meth:`plan` turns the evaluator's time per evaluation into the run's time (a loop that trains
    #: weights itself times its own steps instead, so the plan does not time an evaluation for it)
    uses_evaluation_time = True
    #: the options the loop declares (an attrs class of :func:`nasengine.options.option` fields), read from
    #: the config's ``loop`` section: an unknown one is a one-line ``loop.X`` error
    Options: type = NoOptions
    #: whether the loop uses a ``retrain`` section
    retrains = False
    #: whether ``resume --retry-failed`` can evaluate the loop's failed candidates again (through the executor)
    retries = True

    def __init__(self, ctx: SearchContext):
        self.ctx = ctx

    @classmethod
    def for_controller(cls, controller: Any) -> type["Loop"]:
        """The loop class that runs ``controller`` (a variant of this one, or this one)."""
        return cls

    @classmethod
    def options(cls, spec) -> Any:
        """The loop's options read from ``spec.loop_options`` (one-line ``loop.X`` errors)."""
        from nasengine.options import read_options

        return read_options("loop", cls.Options, dict(spec.loop_options), name=spec.loop)

    @classmethod
    def check(cls, spec, plugins, controller: Any) -> None:
        """Refuse (a one-line ConfigError) what this loop cannot run, before any run folder exists: by
        default, options it does not declare and a ``retrain`` section it does not use."""
        cls.options(spec)
        if spec.retrain is not None and not cls.retrains:
            from nasengine.errors import ConfigError

            raise ConfigError(f"retrain: the {spec.loop} loop retrains nothing (only the one-shot loop has a "
                              "retrain section)")

    @classmethod
    def total(cls, spec, controller: Any) -> int | None:
        """The candidates the run will record (the progress bar's total; ``None``: unknown)."""
        budget, pop = spec.budget, getattr(controller, "population_size", None)
        if budget.generations is not None and pop:
            return budget.generations * pop
        return budget.candidates

    @staticmethod
    def start_generation(latest: tuple[int, dict] | None) -> int:
        """The generation a session starts in, given the controller state saved last (``None``: a new run)."""
        return 0 if latest is None else latest[0] + 1

    @classmethod
    def plan(cls, spec, controller: Any, eval_seconds: float | None, parallelism: int, **context: Any) -> LoopPlan:
        """What this loop runs under ``spec.budget`` with ``controller``, each evaluation taking
        ``eval_seconds`` on one of ``parallelism`` workers: generation after generation of
        ``controller.population_size``, each waiting for its slowest evaluation. ``context``: what else the
        plan knows (``space``, ``evaluator``, ``plugins``, ``measure``, ``device``, ``threads``), for a loop
        that estimates its time itself (the one-shot loop)."""
        population = max(1, int(getattr(controller, "population_size", 1) or 1))
        gens, evaluations = _evaluations(spec.budget, population)
        seconds = None
        if eval_seconds is not None:
            if gens is not None:
                seconds = gens * math.ceil(population / max(1, parallelism)) * eval_seconds
            if spec.budget.seconds is not None:
                seconds = min(seconds, spec.budget.seconds) if seconds is not None else spec.budget.seconds
        rounds = f"{gens} generations of {population}" if gens is not None else f"generations of {population}"
        return LoopPlan(evaluations, rounds, seconds)

    def describe(self) -> str:
        """Extra words for the session's first line (e.g. ``"; steady-state, 4 in flight"``)."""
        return ""

    def run(self, latest: tuple[int, dict] | None, records: list) -> LoopEnd:
        raise NotImplementedError

    def generation_idle_seconds(self) -> float:
        """Worker-seconds idle inside a generation while others still evaluated it (0 without a barrier)."""
        if not self.barrier:
            return 0.0
        width = max(1, self.ctx.executor.parallelism)
        idle = 0.0
        for spans in self.ctx.spans.values():
            start, end = min(a for a, _ in spans), max(b for _, b in spans)
            idle += max(0.0, width * (end - start) - sum(b - a for a, b in spans))
        return idle
