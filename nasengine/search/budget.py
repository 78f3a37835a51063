"""The budget of a search: when it stops (``budget`` section of a method config)."""
from __future__ import annotations

from typing import Any, Mapping

import attrs

from nasengine.errors import ConfigError
from nasengine.options import option, optional, positive, read_options, whole

__all__ = ["Budget"]


@attrs.frozen(kw_only=True)
class Budget:
    """When a search stops: after ``candidates`` new architectures (ok + failed + infeasible; duplicates are
    free), after ``generations`` generations, or after ``seconds`` of search time (summed over resumed
    sessions) — whichever comes first; at least one must be set.

    The candidates and generations budgets are checked between generations (a started generation is
    finished, so the candidates budget may be exceeded by up to one generation). The seconds budget also stops
    submitting new evaluations mid-generation; the running ones finish and are recorded, and the unfinished
    generation is completed by a resume with a larger budget. ``stall_generations`` consecutive generations
    without any new architecture (an exhausted space) stop the search too, and so do ``failed_generations``
    consecutive generations in which every evaluation failed (missing data, a broken evaluator: the same error
    for every candidate, which more candidates would only repeat).
    """

    candidates: int | None = option(None, optional(whole(1)), help="stop after this many new architectures")
    generations: int | None = option(None, optional(whole(1)), help="stop after this many generations")
    seconds: float | None = option(None, optional(positive), help="stop after this much search time (s)")
    stall_generations: int = option(10, whole(1), help="stop after this many generations without a new architecture")
    failed_generations: int = option(3, whole(1),
                                     help="stop after this many generations in which every evaluation failed")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None, *, bounded: bool = True) -> "Budget":
        """The ``budget`` section; ``bounded``: at least one of candidates, generations, seconds must be set
        (a loop with its own end, the one-shot loop's ``loop.epochs``, needs none)."""
        budget = read_options("budget", cls, dict(section or {}), name="budget")
        if bounded and budget.candidates is None and budget.generations is None and budget.seconds is None:
            raise ConfigError("budget: set at least one of budget.candidates, budget.generations, budget.seconds")
        return budget

    def reached(self, *, candidates: int, generations: int, seconds: float, stalled: int = 0,
                failing: int = 0) -> str | None:
        """Why the search must stop now (a sentence), or ``None`` to go on."""
        if self.generations is not None and generations >= self.generations:
            return f"generations budget reached ({generations}/{self.generations})"
        if self.candidates is not None and candidates >= self.candidates:
            return f"candidates budget reached ({candidates}/{self.candidates})"
        if self.seconds is not None and seconds >= self.seconds:
            return f"seconds budget reached ({seconds:.1f}/{self.seconds:g} s)"
        if stalled >= self.stall_generations:
            return f"no new architecture in the last {stalled} generations (the space looks exhausted)"
        if failing >= self.failed_generations:
            return f"every evaluation failed in the last {failing} generations"
        return None

    def describe(self) -> str:
        parts = []
        if self.candidates is not None:
            parts.append(f"{self.candidates} candidates")
        if self.generations is not None:
            parts.append(f"{self.generations} generations")
        if self.seconds is not None:
            parts.append(f"{self.seconds:g} s")
        return ", ".join(parts) or "none"
