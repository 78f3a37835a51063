"""The steady-state search loop (a controller with ``in_flight`` = K: random search, aging evolution).

Candidate n is asked right after candidate n - K is told, results are told one at a time in ask order, and a
worker that finishes takes the next candidate at once (no generation barrier). Candidate n is stored as
generation ``n // P``, idx ``n % P`` (P = ``population_size``); the stall and failure budgets count P
candidates as a generation. The controller is kept K genomes ahead of the told ones whatever the budget, which
decides only what is evaluated. After each tell the controller state and the genomes asked but not yet told
are saved, so a resume (or a finished run extended) asks exactly what an uninterrupted run asks.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict, deque
from typing import Any, Iterator

import attrs

from nasengine.errors import ConfigError
from nasengine.executors import EvalTask
from nasengine.search.loop import Loop, LoopPlan, _evaluations
from nasengine.search.records import LoopEnd, Repeat, TaskInfo
from nasengine.store import CandidateRecord

__all__ = ["SteadyLoop"]

log = logging.getLogger("nasengine.search")


@attrs.define
class Entry:
    """Candidate ``n`` asked and not yet told: its genome, its record once there is one, and whether the
    budget admitted it (it is being evaluated or recorded)."""

    n: int
    genome: Any
    record: CandidateRecord | None = None
    admitted: bool = False


@attrs.define
class Runs:
    """The trailing run of repeats (``stalled``) and of failed evaluations (``failing``) among the told
    candidates, and the last of those errors."""

    stalled: int = 0
    failing: int = 0
    last_error: str = ""

    def tally(self, rec: CandidateRecord) -> None:
        """``rec`` is told."""
        self.stalled = self.stalled + 1 if rec.status == "duplicate" else 0
        if rec.evaluated:
            if rec.status == "failed":
                self.failing, self.last_error = self.failing + 1, rec.error or ""
            else:
                self.failing = 0

    def fresh(self, budget, size: int) -> "Runs":
        """For a resume: a run that stopped the last session (the space looked exhausted, every evaluation
        failed) starts afresh, so that a resume after fixing the cause goes on; a shorter one (a killed
        session) carries on, as an uninterrupted run would."""
        if self.stalled // size >= budget.stall_generations:
            self.stalled = 0
        if self.failing // size >= budget.failed_generations:
            self.failing = 0
        return self

    @classmethod
    def of(cls, records: list[CandidateRecord], told: int, size: int) -> "Runs":
        """For a resume: the runs among the first ``told`` candidates (in ask order)."""
        runs = cls()
        for rec in sorted((r for r in records if r.generation * size + r.idx < told),
                          key=lambda r: (r.generation, r.idx)):
            runs.tally(rec)
        return runs


class SteadyLoop(Loop):
    """One candidate at a time, K in flight (see the module docstring)."""

    @classmethod
    def check(cls, spec, plugins, controller: Any) -> None:
        if not getattr(spec.factory("executor", plugins), "can_wait", False):
            raise ConfigError(f"controller.in_flight (a steady-state search) needs an executor that can wait for "
                              f"tasks; executor {spec.executor.name!r} cannot (inline and process can)")

    @classmethod
    def plan(cls, spec, controller: Any, eval_seconds: float | None, parallelism: int, **context: Any) -> LoopPlan:
        """No generation barrier: ``in_flight`` evaluations at a time on the workers."""
        population = max(1, int(getattr(controller, "population_size", 1) or 1))
        _, evaluations = _evaluations(spec.budget, population)
        width = max(1, min(parallelism, int(controller.in_flight)))
        seconds = None
        if eval_seconds is not None:
            if evaluations is not None:
                seconds = math.ceil(evaluations / width) * eval_seconds
            if spec.budget.seconds is not None:
                seconds = min(seconds, spec.budget.seconds) if seconds is not None else spec.budget.seconds
        return LoopPlan(evaluations, f"steady-state, {controller.in_flight} in flight", seconds)

    @staticmethod
    def start_generation(latest: tuple[int, dict] | None) -> int:
        # a steady-state run saves its state within a generation
        return 0 if latest is None else latest[0]

    def describe(self) -> str:
        return f"; steady-state, {self.ctx.controller.in_flight} in flight"

    def run(self, latest: tuple[int, dict] | None, records: list[CandidateRecord]) -> LoopEnd:
        ctx = self.ctx
        ctl = ctx.controller
        self.size = max(1, int(getattr(ctl, "population_size", 1) or 1))
        self.k = int(ctl.in_flight)
        self.told, pending_json = 0, []
        if latest is not None:
            snap = latest[1]
            ctl.load_state_dict(snap["controller"])
            self.told, pending_json = int(snap["told"]), list(snap["pending"])
        self.queue: deque[Entry] = deque(Entry(self.told + j, ctx.space.from_json(gj))
                                         for j, gj in enumerate(pending_json))
        self.next_n = self.told + len(self.queue)
        self.ready: deque[EvalTask] = deque()
        self.infos: dict[str, TaskInfo] = {}
        self.entry_of: dict[Any, Entry] = {}  # task id or (generation, idx) of a waiting repeat -> its entry
        self.waiting: dict[str, list[Repeat]] = defaultdict(list)
        self.in_eval: set[str] = set()  # keys whose evaluation is under way
        self.runs = Runs.of(records, self.told, self.size).fresh(self.ctx.budget, self.size)
        self.outstanding = 0  # tasks sent, not returned
        self.why = ""  # why admitting stopped
        self.exhausted = False  # the controller has no more to ask

        self.fill()
        self.admit()
        self.advance()
        for task_id, rec, repeats in ctx.run_tasks(self.source(), self.infos, self.waiting):
            self.outstanding -= 1
            self.entry_of.pop(task_id).record = rec
            self.in_eval.discard(rec.key)
            for dup in repeats:
                self.entry_of.pop((dup.generation, dup.idx)).record = dup
            self.advance()
        return self._end()

    def _end(self) -> LoopEnd:
        generations = -(-self.told // self.size)
        unfinished = sum(1 for e in self.queue if e.admitted and e.record is None)
        why = self.why or "nothing more to evaluate"
        if why.startswith("every evaluation failed"):
            why += f" (last error: {self.runs.last_error}); fix the cause and resume the run"
            log.error("stopping: %s", why)
        if unfinished:
            why = (f"{self.ctx.budget.reached(candidates=0, generations=0, seconds=self.ctx.elapsed()) or why} "
                   f"with {unfinished} candidate(s) not evaluated (resume with a larger budget to finish them)")
        return LoopEnd(generations, why)

    def prepare(self, entry: Entry) -> None:
        g, i = divmod(entry.n, self.size)
        p = self.ctx.prepare(g, i, entry.genome, self.in_eval)
        if p.record is not None:
            entry.record = p.record
        elif p.repeat is not None:
            self.waiting[p.repeat.key].append(p.repeat)
            self.entry_of[(g, i)] = entry
        else:
            self.ready.append(p.task)
            self.infos[p.task.task_id] = p.info
            self.entry_of[p.task.task_id] = entry

    def fill(self) -> None:
        """Keep K genomes asked ahead of the told ones, whatever the budget: a run extended later then asks
        exactly what an uninterrupted longer run asks."""
        while len(self.queue) < self.k and not self.exhausted:
            genomes = list(self.ctx.controller.ask(1))
            if not genomes:
                self.exhausted = True
                return
            self.queue.append(Entry(self.next_n, genomes[0]))
            self.next_n += 1

    def admit(self) -> None:
        """Evaluate (or record) the asked genomes, in order, while the budget allows."""
        ctx, size = self.ctx, self.size
        admitted = 0
        for entry in self.queue:
            if entry.admitted:
                admitted += entry.record is None
                continue
            stop = ctx.budget.reached(candidates=ctx.counted + admitted, generations=entry.n // size,
                                      seconds=ctx.elapsed(), stalled=self.runs.stalled // size,
                                      failing=self.runs.failing // size)
            if stop:
                self.why = stop
                return
            entry.admitted = True
            self.prepare(entry)
            admitted += entry.record is None
        if self.exhausted and not self.queue:
            self.why = "the controller has nothing more to ask"

    def advance(self) -> None:
        """Tell the recorded candidates at the head of the queue, in ask order, and save the state."""
        ctx, size = self.ctx, self.size
        while self.queue and self.queue[0].record is not None:
            entry = self.queue.popleft()
            ctx.controller.tell([ctx.result(entry.genome, entry.record)])
            self.told += 1
            self.runs.tally(entry.record)
            self.fill()
            self.admit()
            ctx.store.save_controller_state((self.told - 1) // size, {
                "steady": True, "told": self.told, "controller": ctx.controller.state_dict(),
                "pending": [ctx.space.to_json(e.genome) for e in self.queue]})
            if self.told % size == 0:
                ctx.store.set_elapsed(ctx.elapsed())
                ctx.store.checkpoint()
                ctx.progress.line(f"gen {self.told // size - 1}: {self.told} candidates told | best "
                                  f"{ctx.best_text()}")
            ctx.show_best((self.told - 1) // size)

    def source(self) -> Iterator[EvalTask | None]:
        """The tasks for the executor: the next ready one, ``None`` (wait) while some are out, then the end."""
        seconds = self.ctx.budget.seconds
        while True:
            if self.ready and (seconds is None or self.ctx.elapsed() < seconds):
                self.outstanding += 1
                yield self.ctx.submit(self.ready.popleft())
            elif self.outstanding > 0:
                yield None
            else:
                return
