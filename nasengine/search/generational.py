"""The generational search loop (FALSR's NSGA-II loop, and every generic controller's).

Each generation: the controller asks a population; each genome is decoded and keyed; a key already seen in
this run is recorded as a ``duplicate`` carrying the earlier results (not trained again, not counted against
the candidates budget); the others are costed (cost model at ``cost.lr_size``), and those violating a
cost-stage constraint are recorded ``infeasible`` without training; the rest go to the executor, and every
outcome is recorded in the experiment store as it arrives (one transaction each). Then the controller is told
the results in ask order and its state is stored. A run killed at any moment resumes where it stopped and
ends with exactly the candidates and front of an uninterrupted run: every evaluation seed is a function of the
run seed and the architecture key, the controller state is restored, and the stored candidates of the
unfinished generation are reused.

A controller with ``in_flight`` = K (random search, aging evolution) runs steady-state instead
(:mod:`nasengine.search.steady`).
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any, Iterator

import attrs

from nasengine.executors import EvalTask
from nasengine.search.loop import Loop
from nasengine.search.records import LoopEnd, Repeat, TaskInfo
from nasengine.store import CANDIDATE_STATUSES, CandidateRecord

__all__ = ["GenerationalLoop"]

log = logging.getLogger("nasengine.search")


@attrs.define
class Generation:
    """One generation under way: a slot per asked genome (its record once there is one), the tasks to
    evaluate with what is kept of each, and the repeats waiting for an evaluation, by key."""

    number: int
    slots: list
    tasks: list[EvalTask] = attrs.field(factory=list)
    infos: dict[str, TaskInfo] = attrs.field(factory=dict)
    waiting: dict[str, list[Repeat]] = attrs.field(factory=lambda: defaultdict(list))


class GenerationalLoop(Loop):
    """Generation after generation until a budget stops it."""

    barrier = True

    @classmethod
    def for_controller(cls, controller: Any) -> type[Loop]:
        if getattr(controller, "in_flight", None) is not None:
            from nasengine.search.steady import SteadyLoop

            return SteadyLoop
        return cls

    def run(self, latest: tuple[int, dict] | None, records: list[CandidateRecord]) -> LoopEnd:
        ctx = self.ctx
        ctl, budget = ctx.controller, ctx.budget
        g = 0
        if latest is not None:
            ctl.load_state_dict(latest[1])
            g = latest[0] + 1
        stalled = _stalled(records, g)
        failing, last_error = _failing(records, g)
        # A count that stopped the last session starts afresh, so that a resume after fixing the cause goes on
        # (a shorter one, of a killed session, carries on as in an uninterrupted run).
        if stalled >= budget.stall_generations:
            stalled = 0
        if failing >= budget.failed_generations:
            failing = 0
        while True:
            reason = budget.reached(candidates=ctx.counted, generations=g, seconds=ctx.elapsed(),
                                    stalled=stalled, failing=failing) or ""
            if reason:
                if reason.startswith("every evaluation failed"):
                    reason += f" (last error: {last_error}); fix the cause and resume the run"
                    log.error("stopping: %s", reason)
                return LoopEnd(g, reason)
            t_gen = time.perf_counter()
            genomes = list(ctl.ask())
            if not genomes:
                return LoopEnd(g, "the controller has nothing more to ask")
            gen = self._prepare(g, genomes)
            if gen.tasks:
                self._evaluate(gen)
            slots = gen.slots
            if any(rec is None for rec in slots):
                return LoopEnd(g, f"seconds budget reached during generation {g} "
                                  f"({sum(r is not None for r in slots)}/{len(slots)} recorded; resume with a "
                                  "larger budget to finish it)")
            ctl.tell([ctx.result(genome, rec) for genome, rec in zip(genomes, slots)])
            ctx.store.save_controller_state(g, ctl.state_dict())
            ctx.store.set_elapsed(ctx.elapsed())
            ctx.store.checkpoint()  # run.sqlite alone then holds every finished generation
            new = sum(1 for r in slots if r.status != "duplicate" and r.generation == g)
            stalled = 0 if new else stalled + 1
            counts = {st: sum(1 for r in slots if r.status == st) for st in CANDIDATE_STATUSES}
            line = (f"gen {g}: " + ", ".join(f"{n} {st}" for st, n in counts.items() if n)
                    + f" | best {ctx.best_text()} | {time.perf_counter() - t_gen:.1f} s")
            evaluated = [r for r in slots if r.generation == g and r.evaluated]
            if evaluated and all(r.status == "failed" for r in evaluated):
                line += f" | every evaluation failed, e.g. {evaluated[0].error}"
                failing, last_error = failing + 1, evaluated[-1].error
            elif evaluated:
                failing = 0
            ctx.progress.line(line)
            ctx.show_best(g)
            g += 1

    def _prepare(self, g: int, genomes: list) -> Generation:
        """Reuse stored rows, record duplicates / infeasible / undecodable ones, and make the tasks."""
        gen = Generation(g, [None] * len(genomes))
        in_eval: set[str] = set()
        for i, genome in enumerate(genomes):
            p = self.ctx.prepare(g, i, genome, in_eval)
            if p.record is not None:
                gen.slots[i] = p.record
            elif p.repeat is not None:
                gen.waiting[p.repeat.key].append(p.repeat)
            else:
                gen.tasks.append(p.task)
                gen.infos[p.task.task_id] = p.info
        if self.ctx.executor.parallelism > 1:
            # Longest first (Mult-Adds predict training time): the generation's last evaluation is then a short
            # one, so fewer workers idle at the generation's end. Results do not depend on the order.
            gen.tasks.sort(key=lambda t: -(gen.infos[t.task_id].costs.get("mult_adds") or 0.0))
        return gen

    def _source(self, tasks: list[EvalTask]) -> Iterator[EvalTask]:
        seconds = self.ctx.budget.seconds
        for task in tasks:
            if seconds is not None and self.ctx.elapsed() >= seconds:
                return
            yield self.ctx.submit(task)

    def _evaluate(self, gen: Generation) -> None:
        for _, rec, repeats in self.ctx.run_tasks(self._source(gen.tasks), gen.infos, gen.waiting):
            for r in [rec, *repeats]:
                gen.slots[r.idx] = r
            self.ctx.show_best(gen.number)


def _failing(records: list[CandidateRecord], start_gen: int) -> tuple[int, str]:
    """Consecutive finished generations, counting back from the last, in which every evaluation failed
    (generations that evaluated nothing do not count either way), and the last of their errors."""
    by_gen: dict[int, list[CandidateRecord]] = defaultdict(list)
    for rec in records:
        if rec.generation < start_gen and rec.evaluated:
            by_gen[rec.generation].append(rec)
    failing, last_error = 0, ""
    for g in range(start_gen - 1, -1, -1):
        evaluated = by_gen.get(g)
        if not evaluated:
            continue
        if any(r.status != "failed" for r in evaluated):
            break
        if not last_error:
            last_error = evaluated[-1].error or ""
        failing += 1
    return failing, last_error


def _stalled(records: list[CandidateRecord], start_gen: int) -> int:
    """Consecutive finished generations, counting back from the last, with no new architecture."""
    new_in: dict[int, bool] = defaultdict(bool)
    for rec in records:
        if rec.generation < start_gen:
            new_in[rec.generation] |= rec.status != "duplicate"
    stalled = 0
    for g in range(start_gen - 1, -1, -1):
        if new_in.get(g, False):
            break
        stalled += 1
    return stalled
