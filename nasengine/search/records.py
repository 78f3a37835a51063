"""What a search records and returns: the outcome of a session, and the small state the loops pass around."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Iterable

import attrs

from nasengine.executors import EvalTask
from nasengine.store import CandidateRecord

__all__ = ["COUNTED_STATUSES", "SearchOutcome", "TaskInfo", "Repeat", "Prepared", "LoopEnd", "union_length",
           "candidate_seed"]

#: Statuses that count against the ``candidates`` budget (every new architecture; duplicates do not).
COUNTED_STATUSES = ("ok", "failed", "infeasible")


@attrs.frozen
class SearchOutcome:
    """What a search session did.

    ``counts`` (per candidate status) and ``records`` cover the whole run; the timings cover this session:
    ``seconds`` the wall time of the loop (first ask to last record, closing the executor included),
    ``eval_seconds`` the summed wall time of the evaluations it ran (as measured inside the evaluating
    process), ``wait_seconds`` the time the loop spent waiting for the executor, ``setup_seconds`` the time
    before the loop (loading plugins, checking the config, recording the environment, opening the store; the
    executor's workers start meanwhile), ``first_task_seconds`` the time from the loop's start until the
    executor took the first task (mostly waiting for workers to start), ``busy_seconds`` the wall time during
    which at least one evaluation ran (the union of the evaluations' intervals), ``generation_idle_seconds``
    the worker-seconds that workers idled inside a generation while others still evaluated it (a generation
    lasts as long as its slowest evaluation: the barrier of a generational controller).
    """

    run_dir: Path
    status: str
    stop_reason: str
    counts: dict
    generations: int
    seconds: float
    eval_seconds: float
    wait_seconds: float
    parallelism: int
    executor: str
    records: list = attrs.field(repr=False)
    setup_seconds: float = 0.0
    first_task_seconds: float = 0.0
    busy_seconds: float = 0.0
    generation_idle_seconds: float = 0.0

    @property
    def outside_seconds(self) -> float:
        """Wall time of the loop during which no evaluation ran (``seconds - busy_seconds``): starting the
        workers, asking, costing, storing, telling, shipping tasks, closing the pool."""
        return max(0.0, self.seconds - self.busy_seconds)

    @property
    def outside_share(self) -> float:
        """:attr:`outside_seconds` over :attr:`seconds` (the engine-overhead benchmark's goal)."""
        return self.outside_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def idle_capacity_share(self) -> float:
        """The share of the workers' capacity (``parallelism * seconds``) not spent evaluating: the time
        outside evaluation on every worker, plus the generation barrier (:attr:`generation_idle_seconds`)."""
        capacity = self.seconds * max(1, self.parallelism)
        return max(0.0, capacity - self.eval_seconds) / capacity if capacity > 0 else 0.0

    @property
    def driver_seconds(self) -> float:
        """Time the loop spent on its own work (asking, costing, storing, telling), not waiting on workers."""
        return max(0.0, self.seconds - self.wait_seconds)


def union_length(intervals: Iterable[tuple[float, float]]) -> float:
    """The total length covered by ``(start, end)`` intervals (overlaps counted once)."""
    covered, end = 0.0, -math.inf
    for a, b in sorted(intervals):
        if b <= end:
            continue
        covered += b - max(a, end)
        end = b
    return covered


def candidate_seed(run_seed: int, key: str) -> int:
    """The evaluation seed of architecture ``key`` in a run seeded ``run_seed`` (independent of order and
    executor): the first 31 bits of ``sha256("{run_seed}:{key}")``."""
    digest = hashlib.sha256(f"{int(run_seed)}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@attrs.frozen
class TaskInfo:
    """What the driver keeps of a candidate sent to the executor, to record its outcome."""

    generation: int
    idx: int
    key: str
    genome: Any  # its JSON form
    costs: dict
    seed: int


@attrs.frozen
class Repeat:
    """A candidate whose architecture ``key`` is under evaluation for an earlier one: recorded as its
    duplicate once that evaluation is recorded."""

    key: str
    generation: int
    idx: int
    genome: Any  # its JSON form


@attrs.frozen
class Prepared:
    """What became of one asked genome: exactly one of ``record`` (stored by an earlier session, or recorded
    now: duplicate, undecodable, costing failed, infeasible), ``repeat`` (waiting for an evaluation under way)
    or ``task`` with its ``info`` (to evaluate)."""

    record: CandidateRecord | None = None
    repeat: Repeat | None = None
    task: EvalTask | None = None
    info: TaskInfo | None = None


@attrs.frozen
class LoopEnd:
    """How a loop ended: the generations it reached and why it stopped (a sentence)."""

    generations: int
    reason: str
