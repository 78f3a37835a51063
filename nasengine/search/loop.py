"""The contract between a run session and its loop, and the table that picks a loop for a method."""
from __future__ import annotations

from typing import Any

from nasengine.search.context import SearchContext
from nasengine.search.records import LoopEnd

__all__ = ["Loop"]


class Loop:
    """A search loop: runs on the session's :class:`~nasengine.search.context.SearchContext` until a budget
    stops it. A loop never opens the store, parses config or owns a lock."""

    #: whether the loop's generations end with a barrier (all evaluations of a generation before the next)
    barrier = False

    def __init__(self, ctx: SearchContext):
        self.ctx = ctx

    @classmethod
    def for_controller(cls, controller: Any) -> type["Loop"]:
        """The loop class that runs ``controller`` (a variant of this one, or this one)."""
        return cls

    @classmethod
    def check(cls, spec, plugins, controller: Any) -> None:
        """Refuse (a one-line ConfigError) what this loop cannot run, before any run folder exists."""

    @staticmethod
    def start_generation(latest: tuple[int, dict] | None) -> int:
        """The generation a session starts in, given the controller state saved last (``None``: a new run)."""
        return 0 if latest is None else latest[0] + 1

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
