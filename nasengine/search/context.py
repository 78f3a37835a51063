"""What a session hands its loop: the store, the spec, the built roles, the executor and the progress, plus the
candidate pipeline every loop shares (decode, key, dedupe, cost, constraints, tasks, records, timings).

A loop never opens the store, parses config or owns a lock: it asks the controller, turns each genome into a
record or a task through :meth:`SearchContext.prepare`, runs tasks through :meth:`SearchContext.run_tasks`,
and tells the controller :meth:`SearchContext.result` of each record.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any, Iterable, Iterator

from nasengine.controller import Result
from nasengine.errors import ConfigError
from nasengine.executors import EvalTask, Executor, describe_exception
from nasengine.search.progress import Progress, fmt
from nasengine.search.records import (
    COUNTED_STATUSES,
    Prepared,
    Repeat,
    TaskInfo,
    candidate_seed,
    union_length,
)
from nasengine.space import canonical_json
from nasengine.spec import RunSpec
from nasengine.store import CandidateRecord, ExperimentStore, StoreError

__all__ = ["SearchContext"]


class SearchContext:
    """The run a loop works on (built by the session). ``known`` maps each architecture key of the run to its
    first record; ``counted`` is the number of records counted by the candidates budget. ``evaluator`` is the
    run's evaluator made in the driver (a loop that evaluates there itself uses it: the one-shot loop)."""

    def __init__(self, *, store: ExperimentStore, spec: RunSpec, space: Any, reward: Any, cost_model: Any,
                 controller: Any, executor: Executor, evaluator: Any = None):
        self.store = store
        self.spec = spec
        self.space = space
        self.reward = reward
        self.cost_model = cost_model
        self.controller = controller
        self.executor = executor
        self.evaluator = evaluator
        self.progress = Progress(False, None, 0)
        self.known: dict[str, CandidateRecord] = {}
        self.counted = 0
        self.eval_seconds = 0.0
        self.wait_seconds = 0.0
        self.first_task: float | None = None
        self.spans: dict[int, list[tuple[float, float]]] = defaultdict(list)  # generation -> evaluation intervals
        self._submitted: dict[str, float] = {}  # task id -> when it went to the executor
        self.t_start = time.perf_counter()
        self.elapsed_before = 0.0

    @property
    def budget(self):
        return self.spec.budget

    def elapsed(self) -> float:
        """Search time of the run so far (earlier sessions included)."""
        return self.elapsed_before + (time.perf_counter() - self.t_start)

    def load(self, records: list[CandidateRecord]) -> None:
        """Know the records of earlier sessions."""
        for rec in records:
            if rec.status != "duplicate" and rec.key not in self.known:
                self.known[rec.key] = rec
        self.counted = sum(1 for r in records if r.status in COUNTED_STATUSES)

    # ---- records -------------------------------------------------------------------------------------
    def record(self, rec: CandidateRecord) -> CandidateRecord:
        rec = self.store.record(rec)
        if rec.status != "duplicate" and rec.key not in self.known:
            self.known[rec.key] = rec
        if rec.status in COUNTED_STATUSES:
            self.counted += 1
        self.progress.update()
        return rec

    def duplicate(self, g: int, i: int, genome_json: Any, original: CandidateRecord) -> CandidateRecord:
        return self.record(CandidateRecord(
            generation=g, idx=i, key=original.key, genome=genome_json, status="duplicate",
            params=original.params, mult_adds=original.mult_adds, costs=original.costs, metrics=original.metrics,
            error=original.error, seed=original.seed, duplicate_of=original.id,
        ))

    def _required_metrics(self) -> list[str]:
        names = list(self.reward.metrics)
        names += [c.metric for c in getattr(self.reward, "constraints", ()) if c.stage != "cost"]
        return list(dict.fromkeys(names))

    def result(self, genome: Any, rec: CandidateRecord) -> Result:
        """What the controller is told of ``genome``, recorded as ``rec``."""
        original = self.known.get(rec.key, rec) if rec.status == "duplicate" else rec
        status = original.status
        metrics = rec.metrics_all()
        reward = self.reward
        if status == "ok":
            return Result(genome=genome, key=rec.key, status="ok", metrics=metrics,
                          objectives=tuple(float(v) for v in reward.vector(metrics)),
                          violation=float(reward.violation(metrics)), reward=float(reward.scalar(metrics)))
        if status == "infeasible":
            return Result(genome=genome, key=rec.key, status="infeasible", metrics=metrics,
                          violation=float(reward.violation(metrics, stage="cost")))
        return Result(genome=genome, key=rec.key, status="failed", metrics=metrics)

    # ---- one candidate -------------------------------------------------------------------------------
    def prepare(self, g: int, i: int, genome: Any, in_eval: set[str]) -> Prepared:
        """One asked genome as candidate ``(g, i)``: its stored row (a resumed run), or a record made now
        (duplicate, undecodable, costing failed, infeasible), or a :class:`Repeat` of a key in ``in_eval`` (one
        whose evaluation is under way), or a task (its key is added to ``in_eval``)."""
        space, reward = self.space, self.reward
        genome_json = json.loads(canonical_json(space.to_json(genome)))
        stored = self.store.get(g, i)
        if stored is not None:
            if canonical_json(stored.genome) != canonical_json(genome_json):
                raise StoreError(
                    f"{self.store.path}: resuming generation {g}, the controller asked a different genome at "
                    f"idx {i} than the stored one; the controller is not deterministic given its state_dict "
                    f"(stored {canonical_json(stored.genome)}, asked {canonical_json(genome_json)})"
                )
            return Prepared(record=stored)
        try:
            graph = space.decode(genome)
            key = graph.key()  # validates the graph too
        except Exception as exc:  # an undecodable genome is the space's bug; record it, go on
            key = "genome:" + space.genome_key(genome)
            if key in self.known:
                return Prepared(record=self.duplicate(g, i, genome_json, self.known[key]))
            return Prepared(record=self.record(CandidateRecord(
                generation=g, idx=i, key=key, genome=genome_json, status="failed",
                error="decode: " + describe_exception(exc))))
        if key in self.known:
            return Prepared(record=self.duplicate(g, i, genome_json, self.known[key]))
        if key in in_eval:
            return Prepared(repeat=Repeat(key, g, i, genome_json))
        seed = candidate_seed(self.spec.seed, key)
        try:
            costs = {k: float(v) for k, v in self.cost_model.metrics(graph).items()}
        except Exception as exc:
            return Prepared(record=self.record(CandidateRecord(
                generation=g, idx=i, key=key, genome=genome_json, status="failed", seed=seed,
                error="cost: " + describe_exception(exc))))
        try:
            violation = reward.violation(costs, stage="cost")
        except KeyError as exc:
            raise ConfigError(f"a cost-stage constraint needs metric {exc} that the cost model does not "
                              f"provide (it gives {', '.join(sorted(costs))})") from None
        params, mult_adds = costs.get("params"), costs.get("mult_adds")
        if violation > 0:
            return Prepared(record=self.record(CandidateRecord(
                generation=g, idx=i, key=key, genome=genome_json, status="infeasible", params=params,
                mult_adds=mult_adds, costs=costs, seed=seed,
                error="violates " + "; ".join(c.describe() for c in reward.constraints
                                               if c.stage == "cost" and c.violation(costs) > 0))))
        in_eval.add(key)
        return Prepared(task=self._task(g, i, genome_json, seed), info=TaskInfo(g, i, key, genome_json, costs, seed))

    def _task(self, g: int, i: int, genome_json: Any, seed: int, attempt: int = 1) -> EvalTask:
        spec = self.spec
        name = f"g{g:04d}-i{i:03d}" + (f"-a{attempt}" if attempt > 1 else "")  # a retry starts afresh
        workdir = str(self.store.run_dir / "work" / name) if spec.workdirs else None
        return EvalTask(
            task_id=f"{g}:{i}", space=spec.space.name, space_options=spec.space.kwargs(),
            genome=canonical_json(genome_json), evaluator=spec.evaluator.name,
            evaluator_options=spec.evaluator.kwargs(), seed=seed, device=spec.device, workdir=workdir,
        )

    # ---- retries -------------------------------------------------------------------------------------
    @staticmethod
    def retryable(records: Iterable[CandidateRecord]) -> list[CandidateRecord]:
        """The failed candidates another evaluation may fix: every ``failed`` one except those that failed
        before any evaluation (an undecodable genome, a cost model error: the same again)."""
        return [r for r in records if r.status == "failed" and not (r.error or "").startswith(("decode: ", "cost: "))]

    def retry(self, records: Iterable[CandidateRecord]) -> list[CandidateRecord]:
        """Evaluate ``records`` (failed candidates) again through the executor, with their own seeds; each
        outcome replaces its candidate's row (the earlier attempt stays as history, see
        :meth:`ExperimentStore.replace`) and is what a later repeat of the architecture carries. The controller
        was told the failures and is not told again. Returns the new records."""
        tasks, infos = [], {}
        for rec in records:
            seed = candidate_seed(self.spec.seed, rec.key)
            task = self._task(rec.generation, rec.idx, rec.genome, seed, rec.attempt + 1)
            tasks.append(task)
            infos[task.task_id] = TaskInfo(rec.generation, rec.idx, rec.key, rec.genome, dict(rec.costs), seed)
        source = (self.submit(t) for t in tasks)
        return [rec for _, rec, _ in self.run_tasks(source, infos, {}, replace=True)]

    def _replace(self, rec: CandidateRecord) -> CandidateRecord:
        rec = self.store.replace(rec)
        self.known[rec.key] = rec
        return rec

    def flush_repeats(self, key: str, waiting: dict[str, list[Repeat]]) -> list[CandidateRecord]:
        """Record the repeats of ``key`` that waited for its evaluation, now that it is recorded."""
        return [self.duplicate(r.generation, r.idx, r.genome, self.known[key]) for r in waiting.pop(key, [])]

    def _outcome_record(self, outcome, info: TaskInfo) -> CandidateRecord:
        costs = info.costs
        status, error, metrics = outcome.status, outcome.error, dict(outcome.metrics)
        if status == "ok":
            have = {**costs, **metrics}
            missing = [m for m in self._required_metrics() if m not in have]
            if missing:
                status = "failed"
                error = (f"evaluator {self.spec.evaluator.name!r} returned no {', '.join(map(repr, missing))} "
                         f"(needed by the reward); it returned: {', '.join(sorted(metrics)) or 'nothing'}")
        return CandidateRecord(
            generation=info.generation, idx=info.idx, key=info.key, genome=info.genome, status=status,
            params=costs.get("params"), mult_adds=costs.get("mult_adds"), costs=costs, metrics=metrics,
            error=error, wall_seconds=outcome.wall_seconds, cpu_seconds=outcome.cpu_seconds,
            worker=outcome.worker, seed=info.seed, created=self._submitted.get(outcome.task_id),
        )

    # ---- tasks ---------------------------------------------------------------------------------------
    def submit(self, task: EvalTask) -> EvalTask:
        """Note that ``task`` goes to the executor now (its record's ``created``; the first task's time)."""
        self._submitted[task.task_id] = time.time()
        if self.first_task is None:
            self.first_task = time.perf_counter() - self.t_start
        return task

    def run_tasks(self, source: Iterable, infos: dict[str, TaskInfo], waiting: dict[str, list[Repeat]], *,
                  replace: bool = False) -> Iterator[tuple[str, CandidateRecord, list]]:
        """Send ``source``'s tasks to the executor; record each outcome as it arrives (and the repeats of its
        key that waited for it), timing the waits, and yield ``(task_id, record, repeats' records)``.
        ``replace``: each outcome is a new attempt of a stored candidate (:meth:`retry`)."""
        outcomes = self.executor.imap(source)
        while True:
            t0 = time.perf_counter()
            try:
                outcome = next(outcomes)
            except StopIteration:
                self.wait_seconds += time.perf_counter() - t0
                return
            received = time.perf_counter()
            self.wait_seconds += received - t0
            self.eval_seconds += outcome.wall_seconds
            info = infos.pop(outcome.task_id)
            self.spans[info.generation].append((max(self.t_start, received - outcome.wall_seconds), received))
            rec = (self._replace if replace else self.record)(self._outcome_record(outcome, info))
            yield outcome.task_id, rec, self.flush_repeats(rec.key, waiting)

    # ---- reporting -----------------------------------------------------------------------------------
    def best(self) -> dict[str, float]:
        """The best value of each objective among the feasible evaluated architectures."""
        best: dict[str, float] = {}
        reward = self.reward
        for rec in self.known.values():
            if rec.status != "ok":
                continue
            m = rec.metrics_all()
            try:
                if reward.violation(m) > 0:
                    continue
            except KeyError:
                continue
            for obj in reward.objectives:
                if obj.metric in m:
                    v = m[obj.metric]
                    cur = best.get(obj.metric)
                    if cur is None or (v > cur if obj.direction == "max" else v < cur):
                        best[obj.metric] = v
        return best

    def best_text(self) -> str:
        return ", ".join(f"{k} {fmt(v)}" for k, v in self.best().items()) or "none yet"

    def show_best(self, g: int) -> None:
        if self.progress.bar is not None:
            self.progress.postfix(f"gen {g}, best: {self.best_text()}")

    def busy_seconds(self) -> float:
        return union_length(span for spans in self.spans.values() for span in spans)
