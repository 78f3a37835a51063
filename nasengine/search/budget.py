"""The budget of a search: when it stops (``budget`` section of a method config)."""
from __future__ import annotations

from typing import Any, Mapping

import attrs

from nasengine.errors import ConfigError

__all__ = ["Budget"]


def _positive(name: str, value: Any, kind=int) -> Any:
    if value is None:
        return None
    ok_types = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types) or value <= 0:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"budget.{name} must be {what} > 0, got {value!r}")
    return kind(value)


@attrs.frozen
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

    candidates: int | None = None
    generations: int | None = None
    seconds: float | None = None
    stall_generations: int = 10
    failed_generations: int = 3

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> "Budget":
        section = dict(section or {})
        known = {"candidates", "generations", "seconds", "stall_generations", "failed_generations"}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"budget: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        budget = cls(
            candidates=_positive("candidates", section.get("candidates")),
            generations=_positive("generations", section.get("generations")),
            seconds=_positive("seconds", section.get("seconds"), float),
            stall_generations=_positive("stall_generations", section.get("stall_generations", 10)),
            failed_generations=_positive("failed_generations", section.get("failed_generations", 3)),
        )
        if budget.candidates is None and budget.generations is None and budget.seconds is None:
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
        return ", ".join(parts)
