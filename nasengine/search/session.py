"""A run session: everything that makes a run except the loop body.

The session reads the resolved spec (:class:`~nasengine.spec.RunSpec`), builds the roles, checks what would
fail every evaluation, creates the run folder's store (which holds the folder's lock; an empty folder made
here is removed again if that fails) or reopens it to resume, records the environment, runs the executor,
shows progress, marks the run's final status (``done``, ``interrupted`` on Ctrl-C or SIGTERM, ``failed`` on an error,
among them an executor whose backend went away: :class:`~nasengine.executors.ExecutorLost`, whose tasks stay
unrecorded for ``resume``),
and calls the method's loop, picked from :data:`LOOPS` by ``Method.loop``::

    out = run_search("runs/simple", method="simple", preset="smoke", seed=0)
    resume_search("runs/simple", overrides={"budget": {"generations": 6}})   # continue / extend
"""
from __future__ import annotations

import contextlib
import difflib
import logging
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import attrs

from nasengine.errors import ConfigError, DataError
from nasengine.executors import Executor, ExecutorLost
from nasengine.method import apply_overrides
from nasengine.search.context import SearchContext
from nasengine.search.differentiable import DifferentiableLoop
from nasengine.search.generational import GenerationalLoop
from nasengine.search.loop import Loop
from nasengine.search.oneshot import OneShotLoop
from nasengine.search.progress import Progress
from nasengine.search.records import SearchOutcome
from nasengine.spec import RunSpec
from nasengine.store import LOCK_FILE, ExperimentStore, StoreError

__all__ = ["LOOPS", "RESUMABLE_SECTIONS", "RunSession", "Roles", "loop_class", "run_search", "resume_search",
           "environment", "apply_executor_args", "Terminated", "sigterm_as_interrupt"]

log = logging.getLogger("nasengine.search")

#: The loop of each ``Method.loop`` (a loop class may pick a variant for its controller: steady-state).
LOOPS: dict[str, type[Loop]] = {"generational": GenerationalLoop, "one-shot": OneShotLoop,
                                 "differentiable": DifferentiableLoop}
#: Sections a resume may change (the others would make the run something else).
RESUMABLE_SECTIONS = ("budget", "executor")


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


class Terminated(KeyboardInterrupt):
    """The search process got SIGTERM (``kill PID``, a batch system's stop): handled like Ctrl-C (the run is
    marked ``interrupted``, everything recorded stays); ``signum`` is the signal (the CLI exits 128 + it)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"terminated by signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While inside: SIGTERM raises :class:`Terminated` in this (the main) thread, as Ctrl-C raises
    ``KeyboardInterrupt``. A process forked from this one meanwhile (a worker) keeps SIGTERM's default
    action. Does nothing outside the main thread."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def handler(signum, _frame):
        if os.getpid() != owner:  # a forked worker: die as SIGTERM would have made it
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def loop_class(spec: RunSpec) -> type[Loop]:
    """The loop of ``spec.loop``; a loop this engine does not have yet is a one-line error."""
    try:
        return LOOPS[spec.loop]
    except KeyError:
        raise ConfigError(f"method {spec.method!r} uses the {spec.loop} loop, which this engine does not have "
                          f"yet (loops: {', '.join(LOOPS)})") from None


@attrs.frozen
class Roles:
    """The roles of a run, built in the driver from its spec (checked before any run folder exists)."""

    space: Any
    reward: Any
    cost_model: Any
    controller: Any
    loop: type[Loop]
    evaluator: Any = None

    @classmethod
    def build(cls, plugins, spec: RunSpec) -> "Roles":
        base = loop_class(spec)
        space = spec.instantiate("space", plugins)
        reward = spec.instantiate("reward", plugins)
        cost_model = spec.instantiate("cost", plugins)
        evaluator = spec.instantiate("evaluator", plugins)
        controller = spec.instantiate("controller", plugins, space, reward, seed=spec.seed)
        loop = base.for_controller(controller)
        loop.check(spec, plugins, controller)
        _check_evaluator(plugins, spec, evaluator)
        return cls(space, reward, cost_model, controller, loop, evaluator)


def _check_evaluator(plugins, spec: RunSpec, evaluator: Any) -> None:
    """What would fail every evaluation (missing data) fails here, before any run folder exists; with an
    executor whose workers do not share the driver's files it is only a warning."""
    try:
        evaluator.check()
    except DataError as exc:
        if getattr(spec.factory("executor", plugins), "shares_driver_files", True):
            raise
        log.warning("evaluator %s: %s (the %s executor's workers must find it)", spec.evaluator.name, exc,
                    spec.executor.name)


def apply_executor_args(cfg: dict, executor: str | None, workers: int | None,
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


class RunSession:
    """One session of a run: ``store`` (open, holding the run's lock), ``spec``, the built ``roles`` and a
    started or startable ``executor``. :meth:`run` calls the loop and marks the run's final status."""

    def __init__(self, plugins, spec: RunSpec, store: ExperimentStore, roles: Roles, executor: Executor, *,
                 progress: bool = True, setup_seconds: float = 0.0):
        self.plugins = plugins
        self.spec = spec
        self.store = store
        self.roles = roles
        self.executor = executor
        self.show_progress = progress
        self.setup_seconds = setup_seconds
        self.ctx = SearchContext(store=store, spec=spec, space=roles.space, reward=roles.reward,
                                 cost_model=roles.cost_model, controller=roles.controller, executor=executor,
                                 evaluator=roles.evaluator)

    def _total(self) -> int | None:
        return self.roles.loop.total(self.spec, self.roles.controller)

    def run(self, resumed: bool, *, retry_failed: bool = False) -> SearchOutcome:
        """Run the loop (``resumed``: from the stored state; ``retry_failed``: first evaluate the run's failed
        candidates again, see :meth:`SearchContext.retry`) and mark the run's final status."""
        ctx, store, spec = self.ctx, self.store, self.spec
        ctx.t_start = time.perf_counter()
        ctx.elapsed_before = store.run.elapsed_seconds
        records = store.candidates()
        ctx.load(records)
        loop = self.roles.loop(ctx)
        latest = store.load_controller_state()  # (generation, state) saved last
        start_gen = loop.start_generation(latest)
        total = self._total()
        try:
            self.executor.start()  # before the progress bar's thread exists: workers may then be forked
            with sigterm_as_interrupt():  # after: the workers keep SIGTERM's default action
                ctx.progress = Progress(self.show_progress, total, len(records))
                store.set_status("running")
                verb = "resuming" if resumed else "starting"
                ctx.progress.line(
                    f"{verb} {spec.method} ({store.run.preset}) seed {spec.seed} in {store.run_dir} at generation "
                    f"{start_gen}: budget {spec.budget.describe()}; executor {self.executor.describe()}"
                    + loop.describe())
                if retry_failed:
                    records = self._retry_failed(records)
                end = loop.run(latest, records)
        except KeyboardInterrupt:
            self._finish("interrupted")
            raise
        except ExecutorLost as exc:  # an infrastructure failure: the unevaluated candidates stay unrecorded
            self._finish("failed")
            raise ExecutorLost(f"{exc}; the search stopped with {ctx.counted} candidate(s) recorded; "
                               f"`nasengine resume {store.run_dir}` evaluates the rest") from exc
        except BaseException:
            self._finish("failed")
            raise
        self._finish("done")
        ctx.progress.line(f"done: {end.reason}; {ctx.counted} candidates, {end.generations} generations, "
                          f"{time.perf_counter() - ctx.t_start:.1f} s")
        return SearchOutcome(
            run_dir=store.run_dir, status="done", stop_reason=end.reason, counts=store.counts(),
            generations=end.generations, seconds=time.perf_counter() - ctx.t_start, eval_seconds=ctx.eval_seconds,
            wait_seconds=ctx.wait_seconds, parallelism=self.executor.parallelism,
            executor=self.executor.describe(), records=store.candidates(), setup_seconds=self.setup_seconds,
            first_task_seconds=ctx.first_task or 0.0, busy_seconds=ctx.busy_seconds(),
            generation_idle_seconds=loop.generation_idle_seconds(),
        )

    def _retry_failed(self, records: list) -> list:
        failed = self.ctx.retryable(records)
        if not failed:
            self.ctx.progress.line("no failed candidate to evaluate again")
            return records
        self.ctx.progress.line(f"evaluating {len(failed)} failed candidate(s) again")
        new = self.ctx.retry(failed)
        ok = sum(1 for r in new if r.status == "ok")
        self.ctx.progress.line(f"retried {len(new)} candidate(s): {ok} ok, {len(new) - ok} failed again")
        return self.store.candidates()

    def _finish(self, status: str) -> None:
        try:
            self.executor.close()
        finally:
            self.ctx.progress.close()
            try:
                self.store.set_elapsed(self.ctx.elapsed())
                self.store.set_status(status)
            except Exception as exc:  # pragma: no cover - the store itself broke; keep the original error
                log.error("could not mark the run %s: %s", status, exc)


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
    plugins=None,
) -> SearchOutcome:
    """Search with ``method`` (its ``preset`` plus ``overrides``) into a new run folder ``run_dir``.

    ``executor`` / ``workers`` override the config's ``executor`` section; ``plugins`` (default: the loaded
    plugins) provide every role. Returns when a budget is reached; Ctrl-C marks the run ``interrupted``
    (everything recorded stays) and re-raises ``KeyboardInterrupt``.
    """
    from nasengine.plugins import get_plugins

    t0 = time.perf_counter()
    plugins = plugins or get_plugins()
    m = plugins.methods.get(method)
    cfg = apply_executor_args(m.config(preset, overrides), executor, workers, overrides)
    run_dir = Path(run_dir)
    if ExperimentStore.exists(run_dir):
        raise StoreError(f"{run_dir} already holds a run; resume it or choose another folder")
    spec = RunSpec.from_config(plugins, cfg, seed=seed, method=m)
    loop_class(spec)
    # The workers start first: they load torch and the plugins while the driver resolves the rest of the
    # config and creates the store. Every config error still surfaces before the run folder is made.
    with spec.instantiate("executor", plugins) as ex:
        ex.start()
        roles = Roles.build(plugins, spec)
        made = not run_dir.exists()
        try:
            store = ExperimentStore.create(run_dir, method=m.name, preset=cfg.get("preset"), seed=int(seed),
                                           config=cfg, plugins=plugins.versions(), environment=environment(),
                                           lock=True)
        except BaseException:
            if made:  # the store could not be created: leave no empty run folder behind
                (run_dir / LOCK_FILE).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    run_dir.rmdir()
            raise
        try:
            return RunSession(plugins, spec, store, roles, ex, progress=progress,
                              setup_seconds=time.perf_counter() - t0).run(resumed=False)
        finally:
            store.close()


def resume_search(
    run_dir: str | os.PathLike,
    *,
    executor: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    overrides: Mapping | None = None,
    plugins=None,
    trust_run: bool = False,
    retry_failed: bool = False,
) -> SearchOutcome:
    """Continue the run in ``run_dir`` exactly where it stopped (or was killed).

    The stored config, seed and controller state are used; ``executor`` / ``workers`` and ``overrides`` of
    the ``budget`` and ``executor`` sections (to extend a finished run) may change. ``trust_run``: read a
    controller state that an older nasengine stored as a pickle (which can run any code; otherwise such a
    run is refused with :class:`nasengine.store.UntrustedStateError`). A run that stopped because every
    evaluation failed in ``budget.failed_generations`` generations (or none was new in
    ``budget.stall_generations``) starts that count afresh. ``retry_failed``: first evaluate the run's failed
    candidates again (their earlier attempts stay in the store as history; the front uses the new results).
    """
    from nasengine.plugins import get_plugins

    t0 = time.perf_counter()
    store = ExperimentStore.open(run_dir, lock=True, trust_pickles=trust_run)  # a clear error if not a run / running
    try:
        run = store.run
        plugins = plugins or get_plugins()
        m = plugins.methods.get(run.method)
        cfg = dict(run.config)
        if overrides:
            bad = sorted(set(overrides) - set(RESUMABLE_SECTIONS))
            if bad:
                near = difflib.get_close_matches(str(bad[0]), RESUMABLE_SECTIONS, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise ConfigError(f"{bad[0]}: a resume may only change {', '.join(RESUMABLE_SECTIONS)}{hint}")
            cfg = apply_overrides(cfg, overrides)
        cfg = apply_executor_args(cfg, executor, workers, overrides)
        missing = sorted(set(run.plugins) - set(plugins.versions()))
        if missing:
            log.warning("run %s was made with plugin(s) %s that are not loaded now", run_dir, ", ".join(missing))
        spec = RunSpec.from_config(plugins, cfg, seed=run.seed, method=m)
        roles = Roles.build(plugins, spec)
        if retry_failed and not roles.loop.retries:
            raise ConfigError(f"--retry-failed: the {spec.loop} loop's candidates are not evaluated on their own; "
                              "it has nothing to evaluate again (resume without --retry-failed)")
        spec.check("executor", plugins)  # before the new config is stored
        if cfg != run.config:
            store.update_config(cfg)
        with spec.instantiate("executor", plugins) as ex:
            return RunSession(plugins, spec, store, roles, ex, progress=progress,
                              setup_seconds=time.perf_counter() - t0).run(resumed=True, retry_failed=retry_failed)
    finally:
        store.close()
