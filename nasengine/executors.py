"""Where candidate evaluations run.

An evaluation is a small, picklable :class:`EvalTask` (space name + options, genome JSON, evaluator name +
options, seed, device) that :func:`run_task` turns into an :class:`EvalOutcome` in whatever process runs it;
it loads the plugins there, so a task means the same thing in the driver, in a local worker process or on a
remote machine. An :class:`Executor` runs many tasks and yields outcomes as each completes:

* ``inline`` (:class:`InlineExecutor`) — in the calling process, one at a time (debugging, tiny runs);
* ``process`` (:class:`ProcessExecutor`) — a pool of local worker processes: one per GPU when CUDA is
  available, each worker pinned to its own ``cuda:i``; otherwise ``max(1, cpus // 2)`` CPU workers.

Third-party executors (``nasengine-ray``) subclass :class:`Executor` and register through the
``nasengine_register_executors`` hook. The contract of :meth:`Executor.imap`: tasks are pulled from the
iterable lazily (when there is room to run one), outcomes are yielded in completion order, a task that cannot
be evaluated (the evaluation raised, or the worker died more often than the executor retries) yields a
``failed`` outcome — an executor never loses a task silently — while an executor whose backend is gone
raises :class:`ExecutorLost` (the tasks it could not run stay unrecorded, for a resume).

Spawned worker processes load plugins like any process does (entry points of the ``nasengine`` group, and
the modules named in ``NASENGINE_PLUGINS_EXTRA``), not the plugin objects installed in the driver; forked
ones (CPU workers on Linux, see :class:`ProcessExecutor`) start with the driver's.
"""
from __future__ import annotations

import abc
import atexit
import contextlib
import json
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
import traceback
import weakref
from collections import OrderedDict, deque
from typing import Any, ClassVar, Iterable, Iterator

import attrs

from nasengine.errors import ConfigError, NasengineError
from nasengine.options import OptionError, choice, option, optional, positive, read_options, sequence, string, whole

log = logging.getLogger("nasengine.executors")

__all__ = [
    "EvalTask",
    "EvalOutcome",
    "TaskSource",
    "run_task",
    "TaskRunner",
    "Executor",
    "InlineExecutor",
    "ProcessExecutor",
    "ExecutorError",
    "ExecutorLost",
    "BUILTIN_EXECUTORS",
    "usable_cpus",
    "fork_hazard",
]


class ExecutorError(NasengineError):
    """An executor that cannot run anything (workers that die on start, a bad option)."""


class ExecutorLost(ExecutorError):
    """The executor's backend went away mid-run (a local Ray instance that died, a lost cluster connection): an
    infrastructure failure, not a candidate's. :meth:`Executor.imap` raises it instead of yielding ``failed``
    outcomes for the tasks it can no longer run; the search stops (the run is marked ``failed``, the CLI exits
    with 1) without recording those tasks, so that ``nasengine resume`` evaluates them."""

    #: The CLI's exit status: failed work, not bad input.
    exit_code = 1


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@attrs.frozen
class EvalTask:
    """One candidate evaluation, as sent to wherever it runs (small and picklable).

    ``genome`` is the genome's JSON text (the space's ``to_json``); ``device`` a torch device string, or
    ``"auto"`` to let the executor choose (a worker's own GPU, else CUDA when available, else the CPU);
    ``workdir`` a folder the evaluator may use (``None``: keep nothing); ``threads`` the torch CPU threads
    (``None``: the executor's choice); ``keep_model``: the evaluator should leave its trained model in
    ``workdir`` (see :class:`nasengine.evaluator.EvalContext`).
    """

    task_id: str
    space: str
    genome: str
    evaluator: str
    space_options: dict = attrs.field(factory=dict)
    evaluator_options: dict = attrs.field(factory=dict)
    seed: int = 0
    device: str = "auto"
    workdir: str | None = None
    threads: int | None = None
    keep_model: bool = False


@attrs.frozen
class EvalOutcome:
    """The result of one :class:`EvalTask`.

    ``status`` is ``"ok"`` (``metrics`` is a dict of finite floats) or ``"failed"`` (``error`` says why:
    the exception type and message, plus where it was raised). ``wall_seconds`` and ``cpu_seconds`` (CPU time
    of the process, all its threads) cover the whole evaluation; ``worker`` is ``"host:pid device"``.
    """

    task_id: str
    status: str
    metrics: dict = attrs.field(factory=dict)
    error: str | None = None
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    worker: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ---------------------------------------------------------------------------------------------------------
# run_task: one evaluation, in any process
# ---------------------------------------------------------------------------------------------------------
_HOST = socket.gethostname()


def _options_key(options: dict) -> str:
    try:
        return json.dumps(options, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return repr(sorted(options.items()))


class TaskRunner:
    """Runs tasks in this process (:meth:`run`, what :func:`run_task` does) and owns what they share: the
    plugins the space and evaluator come from (``plugins``, default: :func:`nasengine.plugins.get_plugins`
    when first needed) and a cache of the last ``cache_size`` constructed spaces and evaluators (an
    evaluator may load its data when constructed, and a worker evaluates many candidates with the same
    options). An executor or worker keeps one for its life."""

    def __init__(self, plugins: Any = None, cache_size: int = 4):
        self._plugins = plugins
        self.cache_size = cache_size
        self._instances: OrderedDict = OrderedDict()

    @property
    def plugins(self) -> Any:
        if self._plugins is None:
            from nasengine.plugins import get_plugins

            return get_plugins()
        return self._plugins

    def instance(self, role: str, cls: Any, options: dict) -> Any:
        """``cls(**options)``, cached by role, class and options."""
        key = (role, cls, _options_key(options))
        try:
            obj = self._instances[key]
            self._instances.move_to_end(key)
            return obj
        except KeyError:
            pass
        except TypeError:  # an unhashable class object: do not cache
            return cls(**options)
        obj = cls(**options)
        self._instances[key] = obj
        while len(self._instances) > self.cache_size:
            self._instances.popitem(last=False)
        return obj

    def clear(self) -> None:
        """Forget the cached spaces and evaluators."""
        self._instances.clear()

    def run(self, task: "EvalTask") -> "EvalOutcome":
        """Evaluate one task and never raise (but for ``KeyboardInterrupt``); see :func:`run_task`."""
        wall0, cpu0 = time.perf_counter(), time.process_time()
        device = task.device
        try:
            device = _resolve_device(task.device)
            if task.threads:
                _set_threads(int(task.threads))
            if device.startswith("cuda:"):
                _set_cuda_device(device)
            from nasengine.evaluator import EvalContext

            plugins = self.plugins
            space = self.instance("space", plugins.spaces.get(task.space), dict(task.space_options))
            genome = space.from_json(json.loads(task.genome))
            graph = space.decode(genome)
            graph.validate(plugins.ops)
            evaluator = self.instance("evaluator", plugins.evaluators.get(task.evaluator),
                                      dict(task.evaluator_options))
            _seed_everything(task.seed)
            architecture = None
            if task.keep_model and task.workdir:
                from nasengine.genomefile import Architecture

                architecture = Architecture(graph=graph, name=os.path.basename(os.path.normpath(task.workdir)),
                                            space=space, space_name=task.space,
                                            space_options=dict(task.space_options), genome=genome,
                                            source=f"trained in {task.workdir}")
            ctx = EvalContext(seed=task.seed, device=device, workdir=task.workdir, threads=task.threads,
                              genome=genome, keep_model=bool(task.keep_model and task.workdir),
                              architecture=architecture)
            metrics = _check_metrics(evaluator.evaluate(graph, ctx))
            status, error = "ok", None
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit from an evaluator fails the candidate too
            metrics, status, error = {}, "failed", describe_exception(exc)
        return EvalOutcome(
            task_id=task.task_id,
            status=status,
            metrics=metrics,
            error=error,
            wall_seconds=time.perf_counter() - wall0,
            cpu_seconds=time.process_time() - cpu0,
            worker=f"{_HOST}:{os.getpid()} {device}",
        )


def _facade_runner() -> TaskRunner:
    """The task runner of the process's plugin facade (made with it, dropped with it)."""
    from nasengine.plugins import get_plugins

    plugins = get_plugins()
    return plugins.shared("nasengine.executors.TaskRunner", lambda: TaskRunner(plugins))


def clear_instance_cache() -> None:
    """Forget the cached spaces and evaluators of the plugin facade's task runner (tests)."""
    _facade_runner().clear()


def describe_exception(exc: BaseException) -> str:
    """``"Type: message (at file:line in function)"`` — what a failed candidate records as its error."""
    text = f"{type(exc).__name__}: {exc}".rstrip(": ") if str(exc) else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {last.filename}:{last.lineno} in {last.name})"
    return text


def _resolve_device(device: str | None) -> str:
    """``auto`` resolved (:func:`nasengine.device.resolve_device`); an explicit device is passed on as it is
    (whatever uses it, e.g. the trainer, checks it)."""
    if device in (None, "", "auto"):
        from nasengine.device import device_name

        return device_name("auto")
    return device


def _set_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _set_cuda_device(device: str) -> None:
    """Make ``device`` the current CUDA device, so that code allocating on "the" GPU uses the worker's own."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(torch.device(device))


def _check_metrics(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, dict):
        raise TypeError(f"evaluator returned {type(metrics).__name__}, expected a dict of metrics")
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise TypeError(f"metric name {name!r} is not a string")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"metric {name!r} is {type(value).__name__} {value!r}, not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"metric {name!r} is {number} (not finite)")
        out[name] = number
    return out


def run_task(task: EvalTask, runner: TaskRunner | None = None) -> EvalOutcome:
    """Evaluate one task in this process and never raise (but for ``KeyboardInterrupt``).

    Takes the plugins (``runner``'s, default: the task runner of :func:`nasengine.plugins.get_plugins`'s
    facade), builds the space and parses the genome, decodes and validates the graph, builds the evaluator
    and calls ``evaluate(graph, EvalContext(...))``. Any exception, a non-dict result or a non-finite metric
    gives a ``failed`` outcome naming the reason.
    """
    return (runner or _facade_runner()).run(task)


def _seed_everything(seed: int) -> None:
    """Seed the global RNGs too, for evaluators that (wrongly) use them; real ones use ``ctx.seed``."""
    import random

    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------------------
class TaskSource:
    """An executor's end of :meth:`Executor.imap`'s task iterable.

    :meth:`take` returns the next task, or ``None`` when there is none now (the iterable yielded ``None``: it
    waits for an outcome) or ever (:attr:`exhausted`). :meth:`finished` tells ``imap`` when to return.
    """

    def __init__(self, tasks: Iterable[EvalTask | None]):
        self._tasks = iter(tasks)
        self.exhausted = False
        self.waiting = False  # the last take() got None from the iterable

    def take(self) -> EvalTask | None:
        if self.exhausted:
            return None
        try:
            task = next(self._tasks)
        except StopIteration:
            self.exhausted = True
            return None
        self.waiting = task is None
        return task

    def finished(self, running: int, asked: bool = True) -> bool:
        """Whether ``imap`` is done, with ``running`` evaluations under way: nothing runs and nothing more will
        come. ``asked``: whether the source was asked since the last outcome (an executor whose workers were
        all busy starting did not ask). A source asked that waits for an outcome while nothing runs is an
        :class:`ExecutorError`: no outcome would come."""
        if running:
            return False
        if self.exhausted:
            return True
        if self.waiting and asked:
            raise ExecutorError("the task source waits for an outcome while no evaluation runs")
        return False


class Executor(abc.ABC):
    """Runs :class:`EvalTask` s somewhere and yields their :class:`EvalOutcome` s.

    ``workers`` is the number of parallel evaluations (``None``: the executor's default); other keyword
    options come from the config's ``executor`` section. Use as a context manager or call :meth:`close`.
    """

    #: Registry name (informative).
    name: ClassVar[str] = ""
    #: Whether evaluations see the driver's files (same machine): then the driver checks the evaluator's data
    #: before the search starts (:meth:`nasengine.evaluator.Evaluator.check`); a remote executor sets False.
    shares_driver_files: ClassVar[bool] = True
    #: Whether :meth:`imap` accepts ``None`` from the task iterable ("no task yet"), which the steady-state
    #: search needs (it asks a new candidate only when an earlier one is told).
    can_wait: ClassVar[bool] = False

    @attrs.frozen(kw_only=True)
    class Options:
        """The executor's own options (none here); a subclass extends them and reads them as attributes."""

    def __init__(self, workers: int | None = None, **options):
        try:
            self.workers = optional(whole(1)).value("workers", workers)
        except OptionError as exc:
            raise exc.under("executor") from None
        declared = read_options("executor", type(self).Options, options, name=self.name or type(self).__name__)
        for field in attrs.fields(type(declared)):
            setattr(self, field.name, getattr(declared, field.name))

    def start(self) -> None:
        """Get ready (start workers) ahead of the first :meth:`imap`; optional, :meth:`imap` starts them too."""

    @abc.abstractmethod
    def imap(self, tasks: Iterable[EvalTask]) -> Iterator[EvalOutcome]:
        """Run ``tasks`` and yield one outcome per task as each completes (in any order).

        ``tasks`` is consumed lazily: the next task is taken only when it can start, so a caller that stops
        yielding tasks (a time budget) stops submitting work while the running tasks finish. An executor whose
        :attr:`can_wait` is true also accepts ``None`` from ``tasks``: nothing to start now, take the next
        task after yielding the next outcome (``None`` while nothing runs is an error: nothing would come).
        :class:`TaskSource` implements this pulling.
        """

    def close(self) -> None:
        """Stop the workers (running evaluations are abandoned)."""

    def describe(self) -> str:
        """One line: what runs where."""
        return self.name or type(self).__name__

    @property
    def parallelism(self) -> int:
        """How many evaluations run at once."""
        return self.workers or 1

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InlineExecutor(Executor):
    """Evaluates in the calling process, one task at a time (``workers`` is ignored)."""

    name = "inline"
    can_wait = True
    #: this executor's task runner (its cache of constructed evaluators), made on first use
    runner: TaskRunner | None = None

    @attrs.frozen(kw_only=True)
    class Options(Executor.Options):
        threads: int | None = option(None, optional(whole(1)), help="torch threads of an evaluation")

    def imap(self, tasks: Iterable[EvalTask]) -> Iterator[EvalOutcome]:
        if self.runner is None:
            self.runner = TaskRunner()
        source = TaskSource(tasks)
        while (task := source.take()) is not None:
            if self.threads and task.threads is None:
                task = attrs.evolve(task, threads=self.threads)
            yield run_task(task, self.runner)
        source.finished(0)  # one task at a time: a source that waits now would wait forever

    def describe(self) -> str:
        return f"inline (in process {os.getpid()})"

    @property
    def parallelism(self) -> int:
        return 1


# ---- local worker processes -------------------------------------------------------------------------------
#: What a worker sends once it has loaded the plugins and can start a task at once.
_READY = "ready"


def _watch_parent(parent_pid: int) -> None:  # pragma: no cover - runs in the worker
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)


def _warm_up(threads: int | None, explicit: bool) -> None:  # pragma: no cover - runs in the worker
    """Load the plugins before the first task arrives, so that a fresh worker gets ready while the driver is
    still preparing work (errors surface with the first task instead). torch is left to the evaluators (it
    reads ``OMP_NUM_THREADS``, already set, when they import it; a worker that never needs it stays light),
    unless the thread count was given explicitly: torch caps that variable at the core count."""
    try:
        from nasengine.plugins import get_plugins

        get_plugins()
        if threads and explicit:
            _set_threads(threads)
    except Exception:
        pass


def _no_process_shared_locks() -> None:  # pragma: no cover - runs in the worker
    """tqdm makes a multiprocessing lock (a named semaphore) for its first bar, even a disabled one; a worker
    leaves with ``os._exit``, so the semaphore would never be unregistered and Python's resource tracker
    warns about "leaked semaphore objects" when the search ends. A worker draws no bars: a thread lock does."""
    try:
        from tqdm import tqdm
    except ImportError:
        return
    tqdm.set_lock(threading.RLock())


def _worker_main(conn, parent_pid: int, threads: int | None,
                 explicit_threads: bool = False) -> None:  # pragma: no cover - runs in the worker
    """A worker process: evaluate the tasks that arrive on ``conn`` until ``None`` or EOF."""
    # Ctrl-C reaches the whole process group: the driver decides what to do, the worker carries on until told.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
        if "torch" in sys.modules:  # forked from a driver that imported torch: the variables come too late
            _set_threads(threads)
    if hasattr(os, "getppid"):
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    _no_process_shared_locks()
    _warm_up(threads, explicit_threads)
    try:
        conn.send(_READY)
    except (OSError, EOFError):
        os._exit(0)
    runner = TaskRunner()  # the worker's cache of constructed spaces and evaluators
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            break
        if task is None:
            break
        outcome = runner.run(task)
        try:
            conn.send(outcome)
        except (OSError, EOFError):
            break
    conn.close()
    # Leave without the interpreter's teardown (a second or more once torch is loaded): nothing is left to
    # save, and the driver waits for this exit when it closes the pool.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(0)


class _Worker:
    """One worker process and the driver's end of its pipe."""

    def __init__(self, ctx, slot: int, device: str, threads: int | None, explicit_threads: bool = False):
        self.slot = slot
        self.device = device
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main,
            args=(child_conn, os.getpid(), threads, explicit_threads),
            name=f"nasengine-worker-{slot}",
            # Not a daemon: evaluators may start their own processes (DataLoader workers). Cleanup is ours
            # (close(), an atexit hook, and the worker's own watch on its parent).
            daemon=False,
        )
        self.process.start()
        child_conn.close()
        self.conn = parent_conn
        self.task: EvalTask | None = None
        self.ready = False  # set when the worker says it has warmed up
        self.started = 0.0
        self.completed = 0

    @property
    def label(self) -> str:
        return f"{_HOST}:{self.process.pid} {self.device}"

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Wait for the worker to exit (after it was sent ``None``), terminating it if it does not."""
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)
        self.conn.close()


_LIVE_EXECUTORS: "weakref.WeakSet[ProcessExecutor]" = weakref.WeakSet()


@atexit.register
def _close_live_executors() -> None:  # pragma: no cover - interpreter exit
    for ex in list(_LIVE_EXECUTORS):
        try:
            ex.close()
        except Exception:
            pass


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "unknown exit status"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def fork_hazard(threads: int | None, devices: Iterable[str] = ("cpu",)) -> str | None:
    """Why forking a worker from this process now would be unsafe (a sentence), or ``None`` when it is safe.

    Forking copies only the calling thread, so it needs: Linux (macOS system libraries are not fork-safe),
    workers without CUDA (a forked child cannot use a CUDA the parent initialised), no other Python thread
    (a lock it holds would stay locked in the child), and either torch not imported yet or one torch thread
    per worker: GNU OpenMP, once it has run a parallel region here, hangs in a forked child that runs one too
    (single-threaded torch runs none).
    """
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return f"{sys.platform} is not Linux"
    cuda = sorted({str(d) for d in devices if str(d).startswith("cuda")})
    if cuda:
        return f"the workers use CUDA ({', '.join(cuda)})"
    if threading.active_count() > 1:
        return f"the driver runs {threading.active_count()} threads"
    if "torch" in sys.modules and (threads or 1) > 1:
        return f"torch is loaded and each worker runs {threads} threads (OpenMP is not fork-safe)"
    return None


#: ``executor.start_method`` values: ``auto`` forks where :func:`fork_hazard` finds nothing, else spawns.
START_METHODS = ("auto", "fork", "spawn", "forkserver")


class ProcessExecutor(Executor):
    """A pool of local worker processes.

    * With CUDA: one worker per visible GPU (``workers`` more or fewer are spread round-robin over them);
      each task whose device is ``"auto"`` or ``"cuda"`` runs on its worker's own ``cuda:i``.
    * Without: ``max(1, cpus // 2)`` workers by default — half the logical CPUs, i.e. one per physical core on
      the usual 2-way SMT machines, each training with ``cpus // workers`` (>= 2) torch threads, which keeps
      the convolution kernels efficient while still evaluating several candidates at once.

    ``devices`` (a list such as ``["cuda:0", "cuda:2"]`` or ``["cpu"]``) and ``threads`` (torch threads per
    worker) override the automatic choices. A worker that dies (SIGKILL, segfault, out of memory) is replaced
    and the task it was running is retried on a fresh worker, up to ``retries`` times (default 1, like Ray's
    ``max_retries``); a task whose every attempt died fails — ``"worker died (killed by SIGKILL) while
    evaluating task ... (2 attempt(s), retries 1)"``; the other tasks go on. An evaluation that raises or times
    out is not retried.
    ``task_timeout`` (seconds, default none) fails an evaluation that runs longer, killing its worker.

    ``start_method`` ``auto`` (the default) forks each worker from the driver when that is safe
    (:func:`fork_hazard`: CPU workers on Linux, the usual case on a CPU machine) — a forked worker is ready
    in milliseconds with torch and the plugins already loaded, where a spawned one spends a second or more
    importing them — and spawns otherwise (GPU workers, macOS, a threaded driver). ``spawn``, ``fork`` and
    ``forkserver`` force one.
    """

    name = "process"
    can_wait = True
    #: Workers that die before completing any task this many times in a row mean a broken setup: give up.
    MAX_START_FAILURES = 3

    @attrs.frozen(kw_only=True)
    class Options(Executor.Options):
        devices: tuple | None = option(None, optional(sequence(string())),
                                       help="devices of the workers, e.g. [cuda:0, cuda:2] or [cpu] (none: every "
                                            "visible GPU, else the CPU; [] the CPU)")
        threads: int | None = option(None, optional(whole(1)),
                                     help="torch threads per worker (none: the CPUs shared out)")
        start_method: str = option("auto", choice(*START_METHODS),
                                   help="how workers start (auto: fork where safe, else spawn)")
        task_timeout: float | None = option(None, optional(positive),
                                            help="seconds after which an evaluation fails (none: no limit)")
        retries: int = option(1, whole(0), help="retries of an evaluation whose worker process died")

    def __init__(self, workers: int | None = None, **options: Any):
        super().__init__(workers, **options)
        workers, devices, threads, start_method = self.workers, self.devices, self.threads, self.start_method
        if devices is None:
            devices = self._cuda_devices()
        self.devices = [str(d) for d in devices] or ["cpu"]
        on_gpu = any(d and str(d).startswith("cuda") for d in self.devices)
        cpus = usable_cpus()
        if workers is None:
            workers = len(self.devices) if on_gpu else max(1, cpus // 2)
        self.n_workers = int(workers)
        self._explicit_threads = threads is not None
        self.threads = threads or max(1, cpus // self.n_workers)
        if start_method != "auto" and start_method not in multiprocessing.get_all_start_methods():
            raise ConfigError(f"executor.start_method {start_method!r} is not available here") from None
        self.started_by: set[str] = set()  # the start methods used so far (describe())
        self._slots: list[_Worker | None] = [None] * self.n_workers
        self._start_failures = 0
        self._closed = False
        _LIVE_EXECUTORS.add(self)

    @staticmethod
    def _cuda_devices() -> list[str]:
        try:
            import torch

            if torch.cuda.is_available():
                return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        except Exception:  # pragma: no cover - a broken CUDA setup means CPU workers
            pass
        return []

    @property
    def parallelism(self) -> int:
        return self.n_workers

    def describe(self) -> str:
        where = ", ".join(sorted(set(self.devices)))
        how = "/".join(sorted(self.started_by)) or (self.start_method if self.start_method != "auto" else "")
        how = {"fork": ", forked", "spawn": ", spawned"}.get(how, f", started by {how}" if how else "")
        return f"process: {self.n_workers} worker(s) on {where}, {self.threads} torch thread(s) each{how}"

    # ---- workers -----------------------------------------------------------------------------------------
    def _device_of(self, slot: int) -> str:
        return self.devices[slot % len(self.devices)]

    def _context(self, device: str):
        method = self.start_method
        if method == "auto":
            method = "spawn" if fork_hazard(self.threads, [device]) else "fork"
        if method == "fork":  # what the driver has buffered must not be written twice (by the child too)
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
        self.started_by.add(method)
        return multiprocessing.get_context(method)

    def _spawn(self, slot: int) -> _Worker:
        device = self._device_of(slot)
        worker = _Worker(self._context(device), slot, device, self.threads, self._explicit_threads)
        self._slots[slot] = worker
        return worker

    def start(self) -> None:
        if self._closed:
            raise ExecutorError("the process executor is closed")
        for slot, worker in enumerate(self._slots):
            if worker is None:
                self._spawn(slot)

    def wait_ready(self, timeout: float | None = 60.0) -> bool:
        """Start the workers and block until each has loaded the plugins (or ``timeout`` seconds passed);
        whether all are ready. Optional: :meth:`imap` hands out tasks to workers as they get ready."""
        self.start()
        deadline = None if timeout is None else time.perf_counter() + timeout
        while True:
            waiting = [w for w in self._slots if w is not None and not w.ready and w.task is None]
            if not waiting:
                return True
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0:
                return False
            waitables: dict[Any, _Worker] = {}
            for w in waiting:
                waitables[w.conn] = w
                waitables[w.process.sentinel] = w
            for obj in multiprocessing.connection.wait(list(waitables), left):
                worker = waitables[obj]
                if worker.ready or self._slots[worker.slot] is not worker:
                    continue
                try:
                    if worker.conn.poll() and worker.conn.recv() == _READY:
                        worker.ready = True
                        continue
                except Exception:
                    pass
                if not worker.process.is_alive():
                    self._died(worker)

    def _place(self, task: EvalTask, worker: _Worker) -> EvalTask:
        if task.device in ("auto", None, "") or (task.device == "cuda" and worker.device.startswith("cuda")):
            return attrs.evolve(task, device=worker.device)
        return task

    def _died(self, worker: _Worker, reason: str | None = None,
              retry: "tuple[deque, dict[str, EvalTask], dict[str, int]] | None" = None) -> EvalOutcome | None:
        """Handle a dead worker: replace it; a failed outcome for its task, if it had one. ``retry`` (the retry
        queue, the tasks as given, the deaths so far by task id): a task whose worker died (``reason`` None, not
        a timeout) goes back to the queue while it has retries left (then ``None``)."""
        worker.process.join(5)
        died = reason is None
        if died:
            reason = f"worker died ({_exit_reason(worker.process.exitcode)})"
        task, started, label = worker.task, worker.started, worker.label
        worker.task = None
        worker.kill()
        if task is None and worker.completed == 0:
            self._start_failures += 1
            if self._start_failures >= self.MAX_START_FAILURES:
                self._slots[worker.slot] = None
                raise ExecutorError(
                    f"worker processes die on start ({reason}, {self._start_failures} times in a row); "
                    "run with the inline executor to see the error"
                )
        self._spawn(worker.slot)
        if task is None:
            return None
        error = f"{reason} while evaluating task {task.task_id}"
        if died and retry is not None:
            queue, given, deaths = retry
            deaths[task.task_id] = deaths.get(task.task_id, 0) + 1
            if deaths[task.task_id] <= self.retries:
                log.warning("%s; retrying it (%d of %d)", error, deaths[task.task_id], self.retries)
                queue.append(given.get(task.task_id, task))
                return None
            error += f" ({deaths[task.task_id]} attempt(s), retries {self.retries})"
        return EvalOutcome(
            task_id=task.task_id,
            status="failed",
            error=error,
            wall_seconds=time.perf_counter() - started,
            worker=label,
        )

    def imap(self, tasks: Iterable[EvalTask]) -> Iterator[EvalOutcome]:
        self.start()
        source = TaskSource(tasks)
        retry: deque[EvalTask] = deque()
        given: dict[str, EvalTask] = {}  # tasks in flight as the source gave them (a retry is placed afresh)
        deaths: dict[str, int] = {}  # task id -> how many workers died running it
        try:
            while True:
                # Hand a task to every worker that is ready and idle.
                asked = False
                for worker in list(self._slots):
                    if worker is None or not worker.ready or worker.task is not None:
                        continue
                    asked = asked or not retry
                    task = retry.popleft() if retry else source.take()
                    if task is None:  # none now (the source waits for an outcome) or none ever
                        break
                    given[task.task_id] = task
                    task = self._place(task, worker)
                    try:
                        worker.conn.send(task)
                    except (OSError, EOFError):  # died while idle: the task never started, give it to another
                        retry.appendleft(task)
                        self._died(worker)
                        continue
                    worker.task, worker.started = task, time.perf_counter()
                busy = [w for w in self._slots if w is not None and w.task is not None]
                if not retry and source.finished(len(busy), asked):
                    return
                # Wait for an outcome, a worker getting ready, a death, or the next timeout.
                timeout = None
                if self.task_timeout is not None and busy:
                    now = time.perf_counter()
                    late = [w for w in busy if now - w.started >= self.task_timeout]
                    for w in late:
                        w.process.kill()
                        yield self._died(w, f"timed out after {self.task_timeout:g} s")  # type: ignore[misc]
                    if late:
                        continue
                    timeout = max(0.0, min(w.started for w in busy) + self.task_timeout - now)
                waitables: dict[Any, _Worker] = {}
                for w in self._slots:
                    if w is not None:
                        waitables[w.conn] = w
                        waitables[w.process.sentinel] = w
                seen: set[int] = set()
                for obj in multiprocessing.connection.wait(list(waitables), timeout):
                    worker = waitables[obj]
                    if worker.slot in seen or self._slots[worker.slot] is not worker:
                        continue
                    seen.add(worker.slot)
                    message, broken = None, False
                    try:
                        if worker.conn.poll():
                            message = worker.conn.recv()
                            broken = not (message == _READY or isinstance(message, EvalOutcome))
                    except Exception:  # EOF, or a message cut short by the worker's death
                        broken = True
                    if message == _READY:
                        worker.ready = True
                    elif isinstance(message, EvalOutcome) and worker.task is not None:
                        worker.task = None
                        worker.completed += 1
                        self._start_failures = 0
                        given.pop(message.task_id, None)
                        deaths.pop(message.task_id, None)
                        yield message
                    elif broken or not worker.process.is_alive():
                        if worker.process.is_alive():  # a broken pipe to a live worker: it is of no use
                            worker.process.kill()
                        died = self._died(worker, retry=(retry, given, deaths))
                        if died is not None:
                            given.pop(died.task_id, None)
                            yield died
        finally:
            # Abandoned mid-way (an exception, Ctrl-C, the caller stopped iterating): running evaluations are
            # of no use any more, and their late outcomes must not reach the next imap.
            for slot, worker in enumerate(self._slots):
                if worker is not None and worker.task is not None:
                    worker.kill()
                    self._slots[slot] = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        workers = [w for w in self._slots if w is not None]
        self._slots = [None] * self.n_workers
        for worker in workers:  # tell every idle worker first, so that they exit in parallel
            if worker.task is None:
                try:
                    worker.conn.send(None)
                except (OSError, EOFError):
                    pass
            else:  # a running evaluation is of no use any more
                worker.process.kill()
        for worker in workers:
            worker.stop()
        _LIVE_EXECUTORS.discard(self)


#: Registered by the built-in plugin (``nasengine.builtin``).
BUILTIN_EXECUTORS = {"inline": InlineExecutor, "process": ProcessExecutor}
