"""The generational search loop (FALSR's NSGA-II loop, and every generic controller's).

Each generation: the controller asks a population; each genome is decoded and keyed; a key already seen in
this run is recorded as a ``duplicate`` carrying the earlier results (not trained again, not counted against
the candidates budget); the others are costed (cost model at ``cost.lr_size``), and those violating a
cost-stage constraint are recorded ``infeasible`` without training; the rest go to the executor, and every
outcome is recorded in the experiment store as it arrives (one transaction each). Then the controller is told
the results in ask order and its state is stored. A run killed at any moment resumes where it stopped
(:func:`resume_search`) and ends with exactly the candidates and front of an uninterrupted run: every
evaluation seed is a function of the run seed and the architecture key, the controller state is restored, and
the stored candidates of the unfinished generation are reused.

A controller with ``in_flight`` = K (random search, aging evolution) runs the same pipeline steady-state
instead: one genome at a time, each result told alone in ask order, genome n asked right after genome n - K
is told, so that a worker that finishes takes the next candidate at once rather than waiting for the
generation's slowest (see :meth:`_Search._steady`).

Config sections (``Method.config(preset, overrides)``)::

    space:      {name?, **options}            # name defaults to method.space
    controller: {name?, population_size, ...} # name defaults to method.controller
    evaluator:  {name?, **options}            # name defaults to method.evaluator
    reward:     {name?, objectives, constraints, penalty}
    cost:       {model?, lr_size: [480, 480], ...}
    budget:     {candidates?, generations?, seconds?, stall_generations: 10}   # at least one of the first three
    executor:   {name: inline|process|..., workers?, device: auto, workdirs: false, ...executor options}

Run it from Python (:func:`run_search`, :func:`resume_search`), from the CLI, or as
``python -m nasengine.search RUN_DIR --method NAME [--preset P] [--seed S] [--set k=v]...``
(``--resume`` to continue a run).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import socket
import sys
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import attrs

from nasengine.controller import Result
from nasengine.errors import ConfigError, DataError, NasengineError
from nasengine.evaluator import build_evaluator
from nasengine.executors import EvalTask, Executor, describe_exception
from nasengine.method import DEFAULT_EXECUTOR, Method, apply_overrides, deep_merge
from nasengine.options import check_options, construct
from nasengine.space import canonical_json
from nasengine.store import CANDIDATE_STATUSES, CandidateRecord, ExperimentStore, StoreError

__all__ = [
    "Budget",
    "SearchOutcome",
    "run_search",
    "resume_search",
    "candidate_seed",
    "environment",
    "RunLockedError",
]

log = logging.getLogger("nasengine.search")

#: Statuses that count against the ``candidates`` budget (every new architecture; duplicates do not).
COUNTED_STATUSES = ("ok", "failed", "infeasible")
#: Sections a resume may change (the others would make the run something else).
RESUMABLE_SECTIONS = ("budget", "executor")


class RunLockedError(StoreError):
    """Another process is running this run folder."""


# ---------------------------------------------------------------------------------------------------------
# Budget and outcome
# ---------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------
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


def environment() -> dict[str, Any]:
    """Where a run ran: Python, torch, numpy versions, platform, CUDA, host, command line."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "command": list(sys.argv),
        "cwd": os.getcwd(),
        "pid": os.getpid(),
    }
    try:
        from nasengine import __version__

        env["nasengine"] = __version__
    except ImportError:  # pragma: no cover
        pass
    try:
        import numpy

        env["numpy"] = numpy.__version__
    except ImportError:  # pragma: no cover
        env["numpy"] = None
    try:
        import torch

        env["torch"] = torch.__version__
        env["cuda_available"] = bool(torch.cuda.is_available())
        if env["cuda_available"]:
            env["cuda"] = torch.version.cuda
            env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # pragma: no cover - torch missing or a broken CUDA setup
        env.setdefault("torch", None)
        env["cuda_available"] = False
    return env


def _split_name(section: Mapping[str, Any] | None, default: str) -> tuple[str, dict]:
    options = dict(section or {})
    name = options.pop("name", None) or default
    return name, options


def _check_options(kind: str, name: str, factory: Any, options: dict, **fixed: Any) -> None:
    """Catch a misspelt option in the driver, not once per candidate in the workers."""
    check_options(kind, name, factory, options, **fixed)


#: File descriptors of the run-folder locks this process holds (closed in a forked child, see below).
_LOCK_FDS: set[int] = set()


def _close_lock_fds_in_child() -> None:  # pragma: no cover - runs in a forked worker
    """A forked worker shares the driver's lock (``flock`` belongs to the open file): if the driver died, a
    worker finishing its evaluation would keep the run locked. Closing the child's copy leaves the driver's."""
    for fd in list(_LOCK_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _LOCK_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_lock_fds_in_child)


class _Lock:
    """An exclusive lock on a run folder (POSIX ``flock``), released by the OS if the holder dies."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunLockedError(f"{self.path.parent} is being searched by another process (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        _LOCK_FDS.add(fd)

    def release(self) -> None:
        if self.fd is not None:
            _LOCK_FDS.discard(self.fd)
            os.close(self.fd)
            self.fd = None


def _executor_section(plugins, cfg: Mapping) -> tuple[str, int | None, dict, str, bool]:
    """``(name, workers, options, device, workdirs)`` of the config's executor section, checked: an unknown name
    or option fails here (listing the known ones), before any run folder exists."""
    ex = dict(cfg.get("executor") or {})
    name = ex.pop("name", None) or DEFAULT_EXECUTOR
    workers = ex.pop("workers", None)
    device = str(ex.pop("device", "auto"))
    workdirs = bool(ex.pop("workdirs", False))
    _check_options("executor", name, plugins.executors.get(name), ex, workers=workers)
    return name, workers, ex, device, workdirs


def _new_executor(plugins, name: str, workers: int | None, options: Mapping) -> Executor:
    return construct("executor", name, plugins.executors.get(name), options, workers=workers)


def _check_evaluator(plugins, name: str, options: dict, executor_name: str) -> None:
    """What would fail every evaluation (missing data) fails here, before any run folder exists; with an
    executor whose workers do not share the driver's files it is only a warning."""
    evaluator = build_evaluator(plugins, name, options)
    try:
        evaluator.check()
    except DataError as exc:
        if getattr(plugins.executors.get(executor_name), "shares_driver_files", True):
            raise
        log.warning("evaluator %s: %s (the %s executor's workers must find it)", name, exc, executor_name)


@attrs.define
class _Setup:
    """Everything a session needs, resolved from a config (validated before a run folder is created)."""

    method: Method
    config: dict
    seed: int
    space_name: str
    space_options: dict
    space: Any
    reward: Any
    controller: Any
    evaluator_name: str
    evaluator_options: dict
    cost_model: Any
    budget: Budget
    executor_name: str
    executor_workers: int | None
    executor_options: dict
    device: str
    workdirs: bool

    @classmethod
    def resolve(cls, plugins, method: Method, cfg: dict, seed: int) -> "_Setup":
        if method.loop != "generational":
            raise ConfigError(
                f"method {method.name!r} uses the {method.loop} loop; the generational loop cannot run it"
            )
        space_name, space_options = _split_name(cfg.get("space"), method.space)
        space = construct("space", space_name, plugins.spaces.get(space_name), space_options)

        reward_name, reward_options = _split_name(cfg.get("reward"), method.reward)
        reward = construct("reward", reward_name, plugins.rewards.get(reward_name), reward_options)

        cost_cfg = dict(cfg.get("cost") or {})
        cost_name = cost_cfg.pop("model", None) or method.cost_model
        cost_model = construct("cost", cost_name, plugins.cost_models.get(cost_name), cost_cfg)

        evaluator_name, evaluator_options = _split_name(cfg.get("evaluator"), method.evaluator)
        _check_options("evaluator", evaluator_name, plugins.evaluators.get(evaluator_name), evaluator_options)

        controller_name, controller_options = _split_name(cfg.get("controller"), method.controller)
        controller = construct("controller", controller_name, plugins.controllers.get(controller_name),
                               controller_options, space, reward, seed=seed)

        budget = Budget.from_config(cfg.get("budget"))

        executor_name, workers, ex, device, workdirs = _executor_section(plugins, cfg)
        steady = getattr(controller, "in_flight", None) is not None
        if steady and not getattr(plugins.executors.get(executor_name), "can_wait", False):
            raise ConfigError(f"controller.in_flight (a steady-state search) needs an executor that can wait for "
                              f"tasks; executor {executor_name!r} cannot (inline and process can)")
        _check_evaluator(plugins, evaluator_name, evaluator_options, executor_name)
        return cls(method, cfg, int(seed), space_name, space_options, space, reward, controller, evaluator_name,
                   evaluator_options, cost_model, budget, executor_name, workers, ex, device, workdirs)

    def make_executor(self, plugins) -> Executor:
        return _new_executor(plugins, self.executor_name, self.executor_workers, self.executor_options)


# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------
class _Progress:
    """A tqdm bar over recorded candidates plus one log line per generation."""

    def __init__(self, enabled: bool, total: int | None, initial: int):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="cand", dynamic_ncols=True, file=sys.stderr,
                            desc="search")

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def postfix(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            log.info(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fmt(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3g}"


class _Search:
    def __init__(self, store: ExperimentStore, setup: _Setup, executor: Executor, *, progress: bool,
                 setup_seconds: float = 0.0):
        self.store = store
        self.s = setup
        self.executor = executor
        self.setup_seconds = setup_seconds
        self.show_progress = progress
        self.known: dict[str, CandidateRecord] = {}
        self.counted = 0
        self.eval_seconds = 0.0
        self.wait_seconds = 0.0
        self.first_task: float | None = None
        self.spans: dict[int, list[tuple[float, float]]] = defaultdict(list)  # generation -> evaluation intervals
        self._submitted: dict[str, float] = {}  # task id -> when it went to the executor

    # ---- records -------------------------------------------------------------------------------------
    def _record(self, rec: CandidateRecord) -> CandidateRecord:
        rec = self.store.record(rec)
        if rec.status != "duplicate" and rec.key not in self.known:
            self.known[rec.key] = rec
        if rec.status in COUNTED_STATUSES:
            self.counted += 1
        self.progress.update()
        return rec

    def _duplicate(self, g: int, i: int, genome_json: Any, original: CandidateRecord) -> CandidateRecord:
        return self._record(CandidateRecord(
            generation=g, idx=i, key=original.key, genome=genome_json, status="duplicate",
            params=original.params, mult_adds=original.mult_adds, costs=original.costs, metrics=original.metrics,
            error=original.error, seed=original.seed, duplicate_of=original.id,
        ))

    def _required_metrics(self) -> list[str]:
        names = list(self.s.reward.metrics)
        names += [c.metric for c in getattr(self.s.reward, "constraints", ()) if c.stage != "cost"]
        return list(dict.fromkeys(names))

    def _result(self, genome: Any, rec: CandidateRecord) -> Result:
        original = self.known.get(rec.key, rec) if rec.status == "duplicate" else rec
        status = original.status
        metrics = rec.metrics_all()
        reward = self.s.reward
        if status == "ok":
            return Result(genome=genome, key=rec.key, status="ok", metrics=metrics,
                          objectives=tuple(float(v) for v in reward.vector(metrics)),
                          violation=float(reward.violation(metrics)), reward=float(reward.scalar(metrics)))
        if status == "infeasible":
            return Result(genome=genome, key=rec.key, status="infeasible", metrics=metrics,
                          violation=float(reward.violation(metrics, stage="cost")))
        return Result(genome=genome, key=rec.key, status="failed", metrics=metrics)

    # ---- one candidate, one generation --------------------------------------------------------------
    def _prepare_one(self, g: int, i: int, genome: Any, first_here: set[str]) -> tuple:
        """One asked genome: its stored row (a resumed run), or a record made now (duplicate, undecodable,
        costing failed, infeasible), or ``("wait", key, genome_json)`` for a repeat of ``first_here`` (a key
        whose evaluation is under way), or ``("task", task, meta)`` (``key`` is added to ``first_here``)."""
        s = self.s
        genome_json = json.loads(canonical_json(s.space.to_json(genome)))
        stored = self.store.get(g, i)
        if stored is not None:
            if canonical_json(stored.genome) != canonical_json(genome_json):
                raise StoreError(
                    f"{self.store.path}: resuming generation {g}, the controller asked a different genome at "
                    f"idx {i} than the stored one; the controller is not deterministic given its state_dict "
                    f"(stored {canonical_json(stored.genome)}, asked {canonical_json(genome_json)})"
                )
            return ("record", stored)
        try:
            graph = s.space.decode(genome)
            key = graph.key()  # validates the graph too
        except Exception as exc:  # an undecodable genome is the space's bug; record it, go on
            key = "genome:" + s.space.genome_key(genome)
            if key in self.known:
                return ("record", self._duplicate(g, i, genome_json, self.known[key]))
            return ("record", self._record(CandidateRecord(
                generation=g, idx=i, key=key, genome=genome_json, status="failed",
                error="decode: " + describe_exception(exc))))
        if key in self.known:
            return ("record", self._duplicate(g, i, genome_json, self.known[key]))
        if key in first_here:
            return ("wait", key, genome_json)
        seed = candidate_seed(s.seed, key)
        try:
            costs = {k: float(v) for k, v in s.cost_model.metrics(graph).items()}
        except Exception as exc:
            return ("record", self._record(CandidateRecord(
                generation=g, idx=i, key=key, genome=genome_json, status="failed", seed=seed,
                error="cost: " + describe_exception(exc))))
        try:
            violation = s.reward.violation(costs, stage="cost")
        except KeyError as exc:
            raise ConfigError(f"a cost-stage constraint needs metric {exc} that the cost model does not "
                              f"provide (it gives {', '.join(sorted(costs))})") from None
        params, mult_adds = costs.get("params"), costs.get("mult_adds")
        if violation > 0:
            return ("record", self._record(CandidateRecord(
                generation=g, idx=i, key=key, genome=genome_json, status="infeasible", params=params,
                mult_adds=mult_adds, costs=costs, seed=seed,
                error="violates " + "; ".join(c.describe() for c in s.reward.constraints
                                               if c.stage == "cost" and c.violation(costs) > 0))))
        first_here.add(key)
        task_id = f"{g}:{i}"
        workdir = None
        if s.workdirs:
            workdir = str(self.store.run_dir / "work" / f"g{g:04d}-i{i:03d}")
        task = EvalTask(
            task_id=task_id, space=s.space_name, space_options=s.space_options,
            genome=canonical_json(genome_json), evaluator=s.evaluator_name,
            evaluator_options=s.evaluator_options, seed=seed, device=s.device, workdir=workdir,
        )
        return ("task", task, (g, i, key, genome_json, costs, seed))

    def _prepare(self, g: int, genomes: list) -> tuple[list, list[EvalTask], dict, dict]:
        """Reuse stored rows, record duplicates / infeasible / undecodable ones, and make the tasks."""
        slots: list[CandidateRecord | None] = [None] * len(genomes)
        tasks: list[EvalTask] = []
        meta: dict[str, tuple] = {}
        waiting: dict[str, list[tuple[int, int, Any]]] = defaultdict(list)
        first_here: set[str] = set()
        for i, genome in enumerate(genomes):
            kind, *rest = self._prepare_one(g, i, genome, first_here)
            if kind == "record":
                slots[i] = rest[0]
            elif kind == "wait":
                waiting[rest[0]].append((g, i, rest[1]))
            else:
                tasks.append(rest[0])
                meta[rest[0].task_id] = rest[1]
        if self.executor.parallelism > 1:
            # Longest first (Mult-Adds predict training time): the generation's last evaluation is then a short
            # one, so fewer workers idle at the generation's end. Results do not depend on the order.
            tasks.sort(key=lambda t: -(meta[t.task_id][4].get("mult_adds") or 0.0))
        return slots, tasks, meta, waiting

    def _flush_waiting(self, key: str, waiting: dict) -> list[CandidateRecord]:
        """Record the repeats of ``key`` that waited for its evaluation, now that it is recorded."""
        return [self._duplicate(g, j, genome_json, self.known[key]) for g, j, genome_json in waiting.pop(key, [])]

    def _outcome_record(self, outcome, meta: tuple) -> CandidateRecord:
        g, i, key, genome_json, costs, seed = meta
        status, error, metrics = outcome.status, outcome.error, dict(outcome.metrics)
        if status == "ok":
            have = {**costs, **metrics}
            missing = [m for m in self._required_metrics() if m not in have]
            if missing:
                status = "failed"
                error = (f"evaluator {self.s.evaluator_name!r} returned no {', '.join(map(repr, missing))} (needed "
                         f"by the reward); it returned: {', '.join(sorted(metrics)) or 'nothing'}")
        return CandidateRecord(
            generation=g, idx=i, key=key, genome=genome_json, status=status, params=costs.get("params"),
            mult_adds=costs.get("mult_adds"), costs=costs, metrics=metrics, error=error,
            wall_seconds=outcome.wall_seconds, cpu_seconds=outcome.cpu_seconds, worker=outcome.worker, seed=seed,
            created=self._submitted.get(outcome.task_id),
        )

    def _submit(self, task: EvalTask) -> EvalTask:
        """Note that ``task`` goes to the executor now (its record's ``created``; the first task's time)."""
        self._submitted[task.task_id] = time.time()
        if self.first_task is None:
            self.first_task = time.perf_counter() - self.t_start
        return task

    def _run_tasks(self, source: Iterable, meta: dict, waiting: dict) -> Iterator[tuple[str, CandidateRecord, list]]:
        """Send ``source``'s tasks to the executor; record each outcome as it arrives (and the repeats of its
        key that waited for it), timing the waits, and yield ``(task_id, record, repeats' records)``."""
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
            m = meta.pop(outcome.task_id)
            self.spans[m[0]].append((max(self.t_start, received - outcome.wall_seconds), received))
            rec = self._record(self._outcome_record(outcome, m))
            yield outcome.task_id, rec, self._flush_waiting(rec.key, waiting)

    def _evaluate(self, g: int, tasks: list[EvalTask], meta: dict, waiting: dict, slots: list) -> None:
        def source() -> Iterator[EvalTask]:
            for task in tasks:
                if self.s.budget.seconds is not None and self._elapsed() >= self.s.budget.seconds:
                    return
                yield self._submit(task)

        for _, rec, repeats in self._run_tasks(source(), meta, waiting):
            for r in [rec, *repeats]:
                slots[r.idx] = r
            self._show_best(g)

    # ---- reporting -----------------------------------------------------------------------------------
    def _best(self) -> dict[str, float]:
        best: dict[str, float] = {}
        reward = self.s.reward
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

    def _best_text(self) -> str:
        best = self._best()
        return ", ".join(f"{k} {_fmt(v)}" for k, v in best.items()) or "none yet"

    def _show_best(self, g: int) -> None:
        if self.progress.bar is not None:
            self.progress.postfix(f"gen {g}, best: {self._best_text()}")

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.t_start)

    # ---- the session -----------------------------------------------------------------------------------
    def run(self, resumed: bool) -> SearchOutcome:
        s, store = self.s, self.store
        self.t_start = time.perf_counter()
        run = store.run
        self.elapsed_before = run.elapsed_seconds
        records = store.candidates()
        for rec in records:
            if rec.status != "duplicate" and rec.key not in self.known:
                self.known[rec.key] = rec
        self.counted = sum(1 for r in records if r.status in COUNTED_STATUSES)
        steady = getattr(s.controller, "in_flight", None) is not None
        latest = store.load_controller_state()  # (generation, state) saved last
        # the generation the session starts in (a steady-state run saves its state within a generation)
        start_gen = 0 if latest is None else latest[0] + (not steady)

        total = None
        pop = getattr(s.controller, "population_size", None)
        if s.budget.generations is not None and pop:
            total = s.budget.generations * pop
        elif s.budget.candidates is not None:
            total = s.budget.candidates
        self.progress = _Progress(False, total, len(records))
        try:
            self.executor.start()  # before the progress bar's thread exists: workers may then be forked
            self.progress = _Progress(self.show_progress, total, len(records))
            store.set_status("running")
            verb = "resuming" if resumed else "starting"
            self.progress.line(
                f"{verb} {s.method.name} ({store.run.preset}) seed {s.seed} in {store.run_dir} at generation "
                f"{start_gen}: budget {s.budget.describe()}; executor {self.executor.describe()}"
                + (f"; steady-state, {s.controller.in_flight} in flight" if steady else ""))
            if steady:
                g, reason = self._steady(latest, records)
            else:
                g, reason = self._generational(latest, records)
        except KeyboardInterrupt:
            self._finish("interrupted")
            raise
        except BaseException:
            self._finish("failed")
            raise
        self._finish("done")
        self.progress.line(f"done: {reason}; {self.counted} candidates, {g} generations, "
                           f"{time.perf_counter() - self.t_start:.1f} s")
        return SearchOutcome(
            run_dir=store.run_dir, status="done", stop_reason=reason, counts=store.counts(), generations=g,
            seconds=time.perf_counter() - self.t_start, eval_seconds=self.eval_seconds,
            wait_seconds=self.wait_seconds, parallelism=self.executor.parallelism,
            executor=self.executor.describe(), records=store.candidates(), setup_seconds=self.setup_seconds,
            first_task_seconds=self.first_task or 0.0, busy_seconds=self._busy_seconds(),
            generation_idle_seconds=0.0 if steady else self._generation_idle_seconds(),
        )

    # ---- the generational loop ------------------------------------------------------------------------
    def _generational(self, latest: tuple[int, dict] | None, records: list[CandidateRecord]) -> tuple[int, str]:
        """Generation after generation until a budget stops it. Returns ``(generations, stop reason)``."""
        s, store = self.s, self.store
        g = 0
        if latest is not None:
            s.controller.load_state_dict(latest[1])
            g = latest[0] + 1
        stalled = self._stalled(records, g)
        failing, last_error = self._failing(records, g)
        while True:
            reason = s.budget.reached(candidates=self.counted, generations=g, seconds=self._elapsed(),
                                      stalled=stalled, failing=failing) or ""
            if reason:
                if reason.startswith("every evaluation failed"):
                    reason += f" (last error: {last_error}); fix the cause and resume the run"
                    log.error("stopping: %s", reason)
                return g, reason
            t_gen = time.perf_counter()
            genomes = list(s.controller.ask())
            if not genomes:
                return g, "the controller has nothing more to ask"
            slots, tasks, meta, waiting = self._prepare(g, genomes)
            if tasks:
                self._evaluate(g, tasks, meta, waiting, slots)
            if any(rec is None for rec in slots):
                reason = (f"seconds budget reached during generation {g} "
                          f"({sum(r is not None for r in slots)}/{len(slots)} recorded; resume with a larger "
                          "budget to finish it)")
                return g, reason
            results = [self._result(genome, rec) for genome, rec in zip(genomes, slots)]
            s.controller.tell(results)
            store.save_controller_state(g, s.controller.state_dict())
            store.set_elapsed(self._elapsed())
            new = sum(1 for r in slots if r.status != "duplicate" and r.generation == g)
            stalled = 0 if new else stalled + 1
            counts = {st: sum(1 for r in slots if r.status == st) for st in CANDIDATE_STATUSES}
            line = (f"gen {g}: " + ", ".join(f"{n} {st}" for st, n in counts.items() if n)
                    + f" | best {self._best_text()} | {time.perf_counter() - t_gen:.1f} s")
            evaluated = [r for r in slots if r.generation == g and r.evaluated]
            if evaluated and all(r.status == "failed" for r in evaluated):
                line += f" | every evaluation failed, e.g. {evaluated[0].error}"
                failing, last_error = failing + 1, evaluated[-1].error
            elif evaluated:
                failing = 0
            self.progress.line(line)
            self._show_best(g)
            g += 1

    def _busy_seconds(self) -> float:
        return union_length(span for spans in self.spans.values() for span in spans)

    def _generation_idle_seconds(self) -> float:
        """Worker-seconds idle between a generation's first evaluation start and its last end."""
        width = max(1, self.executor.parallelism)
        idle = 0.0
        for spans in self.spans.values():
            start, end = min(a for a, _ in spans), max(b for _, b in spans)
            idle += max(0.0, width * (end - start) - sum(b - a for a, b in spans))
        return idle

    # ---- the steady-state loop ----------------------------------------------------------------------
    def _steady(self, latest: tuple[int, dict] | None, records: list[CandidateRecord]) -> tuple[int, str]:
        """Steady-state search (``controller.in_flight`` = K): candidate n is asked right after candidate
        n - K is told, results are told one at a time in ask order, and a worker that finishes takes the next
        candidate at once (no generation barrier). Candidate n is stored as generation ``n // P``, idx
        ``n % P`` (P = ``population_size``); the stall and failure budgets count P candidates as a generation.
        The controller is kept K genomes ahead of the told ones whatever the budget, which decides only what
        is evaluated. After each tell the controller state and the genomes asked but not yet told are saved,
        so a resume (or a finished run extended) asks exactly what an uninterrupted run asks. Returns
        ``(generations, stop reason)``."""
        s, store, ctl = self.s, self.store, self.s.controller
        size, k = max(1, int(getattr(ctl, "population_size", 1) or 1)), int(ctl.in_flight)
        told, pending_json = 0, []
        if latest is not None:
            snap = latest[1]
            ctl.load_state_dict(snap["controller"])
            told, pending_json = int(snap["told"]), list(snap["pending"])
        # [n, genome, record or None, admitted by the budget]
        queue: deque[list] = deque([told + j, s.space.from_json(gj), None, False] for j, gj in enumerate(pending_json))
        next_n = told + len(queue)
        ready: deque[EvalTask] = deque()
        meta: dict[str, tuple] = {}
        entry_of: dict[Any, list] = {}  # task id or (generation, idx) of a waiting repeat -> its queue entry
        waiting: dict[str, list[tuple[int, int, Any]]] = defaultdict(list)
        in_eval: set[str] = set()  # keys whose evaluation is under way
        stalled, failing, last_error = _steady_runs(records, told, size)
        outstanding, why, exhausted = 0, "", False  # tasks sent, not returned; why admitting stopped; no more asks

        def prepare(entry: list) -> None:
            g, i = divmod(entry[0], size)
            kind, *rest = self._prepare_one(g, i, entry[1], in_eval)
            if kind == "record":
                entry[2] = rest[0]
            elif kind == "wait":
                waiting[rest[0]].append((g, i, rest[1]))
                entry_of[(g, i)] = entry
            else:
                ready.append(rest[0])
                meta[rest[0].task_id] = rest[1]
                entry_of[rest[0].task_id] = entry

        def fill() -> None:
            """Keep K genomes asked ahead of the told ones, whatever the budget: a run extended later then asks
            exactly what an uninterrupted longer run asks."""
            nonlocal next_n, exhausted
            while len(queue) < k and not exhausted:
                genomes = list(ctl.ask(1))
                if not genomes:
                    exhausted = True
                    return
                queue.append([next_n, genomes[0], None, False])
                next_n += 1

        def admit() -> None:
            """Evaluate (or record) the asked genomes, in order, while the budget allows."""
            nonlocal why
            admitted = 0
            for entry in queue:
                if entry[3]:
                    admitted += entry[2] is None
                    continue
                stop = s.budget.reached(candidates=self.counted + admitted, generations=entry[0] // size,
                                        seconds=self._elapsed(), stalled=stalled // size, failing=failing // size)
                if stop:
                    why = stop
                    return
                entry[3] = True
                prepare(entry)
                admitted += entry[2] is None
            if exhausted and not queue:
                why = "the controller has nothing more to ask"

        def advance() -> None:
            nonlocal told, stalled, failing, last_error
            while queue and queue[0][2] is not None:
                _, genome, rec, _ = queue.popleft()
                ctl.tell([self._result(genome, rec)])
                told += 1
                stalled, failing, last_error = _tally(rec, stalled, failing, last_error)
                fill()
                admit()
                store.save_controller_state((told - 1) // size, {
                    "steady": True, "told": told, "controller": ctl.state_dict(),
                    "pending": [s.space.to_json(e[1]) for e in queue]})
                if told % size == 0:
                    store.set_elapsed(self._elapsed())
                    self.progress.line(f"gen {told // size - 1}: {told} candidates told | best {self._best_text()}")
                self._show_best((told - 1) // size)

        def source() -> Iterator[EvalTask | None]:
            nonlocal outstanding
            while True:
                if ready and (s.budget.seconds is None or self._elapsed() < s.budget.seconds):
                    outstanding += 1
                    yield self._submit(ready.popleft())
                elif outstanding > 0:
                    yield None
                else:
                    return

        fill()
        admit()
        advance()
        for task_id, rec, repeats in self._run_tasks(source(), meta, waiting):
            outstanding -= 1
            entry_of.pop(task_id)[2] = rec
            in_eval.discard(rec.key)
            for dup in repeats:
                entry_of.pop((dup.generation, dup.idx))[2] = dup
            advance()
        generations = -(-told // size)
        unfinished = sum(1 for e in queue if e[3] and e[2] is None)
        why = why or "nothing more to evaluate"
        if why.startswith("every evaluation failed"):
            why += f" (last error: {last_error}); fix the cause and resume the run"
            log.error("stopping: %s", why)
        if unfinished:
            why = (f"{s.budget.reached(candidates=0, generations=0, seconds=self._elapsed()) or why} with "
                   f"{unfinished} candidate(s) not evaluated (resume with a larger budget to finish them)")
        return generations, why

    def _finish(self, status: str) -> None:
        try:
            self.executor.close()
        finally:
            self.progress.close()
            try:
                self.store.set_elapsed(self._elapsed())
                self.store.set_status(status)
            except Exception as exc:  # pragma: no cover - the store itself broke; keep the original error
                log.error("could not mark the run %s: %s", status, exc)

    @staticmethod
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

    @staticmethod
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


def _steady_runs(records: list[CandidateRecord], told: int, size: int) -> tuple[int, int, str]:
    """For a steady-state resume: the trailing run of duplicates and the trailing run of failed evaluations
    among the first ``told`` candidates (in ask order), and the last of those errors."""
    firsts = sorted((r for r in records if r.generation * size + r.idx < told), key=lambda r: (r.generation, r.idx))
    runs = (0, 0, "")
    for rec in firsts:
        runs = _tally(rec, *runs)
    return runs


def _tally(rec: CandidateRecord, stalled: int, failing: int, last_error: str) -> tuple[int, int, str]:
    """The trailing runs of repeats and of failed evaluations, and the last error, once ``rec`` is told."""
    stalled = stalled + 1 if rec.status == "duplicate" else 0
    if rec.evaluated:
        failing, last_error = (failing + 1, rec.error or "") if rec.status == "failed" else (0, last_error)
    return stalled, failing, last_error


# ---------------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------------
def _apply_executor_args(cfg: dict, executor: str | None, workers: int | None,
                         overrides: Mapping | None = None) -> dict:
    """``--executor`` / ``--workers`` applied to ``cfg`` (which already holds ``overrides``): another executor
    keeps only the generic options and those the user set in ``overrides`` (:func:`apply_overrides`)."""
    given: dict = {}
    if executor is not None:
        given["name"] = executor
    if workers is not None:
        given["workers"] = workers
    if not given:
        return dict(cfg)
    user = dict((overrides or {}).get("executor") or {})
    return apply_overrides(cfg, {"executor": {**user, **given}})


def run_search(
    run_dir: str | os.PathLike,
    *,
    method: str,
    preset: str | None = None,
    overrides: Mapping | None = None,
    seed: int = 0,
    executor: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> SearchOutcome:
    """Search with ``method`` (its ``preset`` plus ``overrides``) into a new run folder ``run_dir``.

    ``executor`` / ``workers`` override the config's ``executor`` section. Returns when a budget is reached;
    Ctrl-C marks the run ``interrupted`` (everything recorded stays) and re-raises ``KeyboardInterrupt``.
    """
    from nasengine.plugins import get_plugins

    t0 = time.perf_counter()
    plugins = get_plugins()
    m = plugins.methods.get(method)
    cfg = _apply_executor_args(m.config(preset, overrides), executor, workers, overrides)
    run_dir = Path(run_dir)
    if ExperimentStore.exists(run_dir):
        raise StoreError(f"{run_dir} already holds a run; resume it or choose another folder")
    ex_name, ex_workers, ex_options, _device, _workdirs = _executor_section(plugins, cfg)
    # The workers start first: they load torch and the plugins while the driver resolves the rest of the
    # config and creates the store. Every config error still surfaces before the run folder is made.
    with _new_executor(plugins, ex_name, ex_workers, ex_options) as ex:
        ex.start()
        setup = _Setup.resolve(plugins, m, cfg, seed)
        made = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = _Lock(run_dir)
        lock.acquire()
        store_made = False
        try:
            store = ExperimentStore.create(run_dir, method=m.name, preset=cfg.get("preset"), seed=int(seed),
                                           config=cfg, plugins=plugins.versions(), environment=environment())
            store_made = True
            try:
                return _Search(store, setup, ex, progress=progress,
                               setup_seconds=time.perf_counter() - t0).run(resumed=False)
            finally:
                store.close()
        finally:
            lock.release()
            if made and not store_made:  # the store could not be created: leave no empty run folder behind
                (run_dir / ".lock").unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    run_dir.rmdir()


def resume_search(
    run_dir: str | os.PathLike,
    *,
    executor: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    overrides: Mapping | None = None,
) -> SearchOutcome:
    """Continue the run in ``run_dir`` exactly where it stopped (or was killed).

    The stored config, seed and controller state are used; ``executor`` / ``workers`` and ``overrides`` of
    the ``budget`` and ``executor`` sections (to extend a finished run) may change.
    """
    from nasengine.plugins import get_plugins

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    lock_store = ExperimentStore.open(run_dir)  # a clear error if it is not a run
    lock_store.close()
    lock = _Lock(run_dir)
    lock.acquire()
    try:
        store = ExperimentStore.open(run_dir)
        try:
            run = store.run
            plugins = get_plugins()
            m = plugins.methods.get(run.method)
            cfg = dict(run.config)
            if overrides:
                bad = sorted(set(overrides) - set(RESUMABLE_SECTIONS))
                if bad:
                    raise ConfigError(f"a resume may only change {', '.join(RESUMABLE_SECTIONS)}; "
                                      f"not {', '.join(bad)}")
                cfg = apply_overrides(cfg, overrides)
            cfg = _apply_executor_args(cfg, executor, workers, overrides)
            missing = sorted(set(run.plugins) - set(plugins.versions()))
            if missing:
                log.warning("run %s was made with plugin(s) %s that are not loaded now", run_dir, ", ".join(missing))
            setup = _Setup.resolve(plugins, m, cfg, run.seed)
            if cfg != run.config:
                store.update_config(cfg)
            with setup.make_executor(plugins) as ex:
                return _Search(store, setup, ex, progress=progress,
                               setup_seconds=time.perf_counter() - t0).run(resumed=True)
        finally:
            store.close()
    finally:
        lock.release()


def main(argv: list[str] | None = None) -> int:
    """``python -m nasengine.search RUN_DIR --method NAME [...]`` (or ``--resume``)."""
    import argparse

    from nasengine.method import parse_override

    p = argparse.ArgumentParser(prog="python -m nasengine.search", description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--method")
    p.add_argument("--preset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--executor")
    p.add_argument("--workers", type=int)
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    overrides: dict = {}
    try:
        for text in args.overrides:
            overrides = deep_merge(overrides, parse_override(text))
        if args.resume:
            out = resume_search(args.run_dir, executor=args.executor, workers=args.workers,
                                progress=not args.no_progress, overrides=overrides or None)
        else:
            if not args.method:
                p.error("--method is required (or --resume)")
            out = run_search(args.run_dir, method=args.method, preset=args.preset, overrides=overrides or None,
                             seed=args.seed, executor=args.executor, workers=args.workers,
                             progress=not args.no_progress)
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130
    except NasengineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"run_dir": str(out.run_dir), "counts": out.counts, "generations": out.generations,
                      "stop_reason": out.stop_reason, "seconds": round(out.seconds, 3)}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
