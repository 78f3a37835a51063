"""The ``ray`` executor: every candidate evaluation is one Ray task.

Where Ray comes from (:meth:`RayExecutor.start`):

* Ray already initialised in this process (``ray.init`` called by the caller): that connection is used, and
  left alone by :meth:`~RayExecutor.close`;
* ``address`` (the executor option, else the ``RAY_ADDRESS`` environment variable Ray itself reads): the
  existing cluster there (``"HEAD:6379"``, ``"auto"`` for one started on this machine with ``ray start``);
  :meth:`~RayExecutor.close` disconnects and the cluster keeps running;
* neither: a local Ray instance sized to the machine (the CPUs this process may use, or ``workers`` x
  ``num_cpus`` when ``workers`` is given), listening on 127.0.0.1 only, no dashboard; :meth:`~RayExecutor.close`
  stops it.

Each evaluation is ``ray.remote(nasengine.executors.run_task)`` called on the task's small, picklable
:class:`~nasengine.executors.EvalTask` (space name + options, genome JSON, evaluator name + options, seed), with
resource hints so that Ray places and isolates it: ``num_cpus`` CPUs (default 1) and ``gpus_per_task`` GPUs
(default ``"auto"``: one when the cluster has GPUs, none otherwise), plus optional custom ``resources``. The
worker builds the space and the evaluator itself (its plugins loaded from the environment, like a local worker
process) and reads the training data from a path it can reach; it only returns the
:class:`~nasengine.executors.EvalOutcome`, which the driver records: the driver's experiment store stays the
single source of truth.

Tasks are taken from the iterable lazily — at most ``workers`` in flight (default: what the cluster can run
at once, read again at every :meth:`~RayExecutor.imap`, so nodes that joined are used by the next
generation) — and outcomes are yielded as they complete (``ray.wait``), like the local process executor, so a
search's seconds budget still stops submitting work.

Faults: a worker process that dies mid-evaluation (SIGKILL, segfault, out of memory, a lost node) is retried by
Ray up to ``max_retries`` times (default 2); when every attempt died the driver yields a ``failed`` outcome
``"worker died: ..."``. Exceptions raised by an evaluation are not retried: ``run_task`` already turns them into
a ``failed`` outcome. Ray itself going away is no candidate's fault: when the local instance this executor started
loses its raylet or GCS process (checked every couple of seconds), or an evaluation fails and Ray turns out to
be gone (not initialised any more, no live node, a GCS that does not answer within :data:`HEALTH_TIMEOUT`
seconds, the driver's raylet died), :meth:`~RayExecutor.imap` raises
:class:`~nasengine.executors.ExecutorLost` naming the instance or cluster; the search stops (exit 1) without
recording the candidates it could not evaluate, and ``nasengine resume`` evaluates them. The executor does not
reconnect by itself (a restarted cluster may have another address: ``resume --ray-address``).
``task_timeout`` (seconds from submission) cancels an evaluation that runs longer. When
:meth:`~RayExecutor.imap` is abandoned (Ctrl-C, an exception, the caller stopped) the tasks in flight are
cancelled (their workers killed).

Environment: every ``NASENGINE_*`` variable of the driver (``NASENGINE_PLUGINS_EXTRA``, ``NASENGINE_DATA``,
...) is sent with each task through ``runtime_env={"env_vars": ...}`` (``forward_env: false`` turns that off),
plus the ``env_vars`` option's own variables, so that the workers load the same plugins and find the same data.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from typing import Any, Iterable, Iterator, Mapping

import attrs

from nasengine.executors import (
    EvalOutcome,
    EvalTask,
    Executor,
    ExecutorError,
    ExecutorLost,
    TaskSource,
    run_task,
    usable_cpus,
)
from nasengine.options import Check, anything, flag, mapping, option, optional, positive, real, string, whole

__all__ = ["RayExecutor", "FORWARDED_ENV_PREFIXES", "forwarded_env"]

log = logging.getLogger("nasengine.ray")

#: Variables of the driver sent to every evaluation (names starting with these).
FORWARDED_ENV_PREFIXES = ("NASENGINE_",)

#: ``ray.exceptions`` names that mean the process (or node) running the task died; Ray retries these.
_DEATH_ERRORS = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "ActorDiedError")
#: ``ray.exceptions`` names that mean the driver lost Ray itself (its raylet, the GCS): no task can run.
_LOST_ERRORS = ("LocalRayletDiedError", "RaySystemError")
#: Processes of a local instance without which it cannot run anything.
_VITAL_PROCESSES = ("raylet", "gcs_server")
#: Seconds the health check of a connected cluster may take before the cluster counts as lost.
HEALTH_TIMEOUT = 60.0
#: Longest ``ray.wait`` of a local instance between checks that its processes live.
_LOCAL_POLL = 2.0


def _is_loopback(address: str) -> bool:
    """Whether ``HOST:PORT`` (or ``ray://HOST:PORT``) names this machine's loopback interface."""
    import ipaddress

    host = address.split("://", 1)[-1].rpartition(":")[0].strip("[]") or address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _loopback_only(ray):
    """While a local instance starts: Ray's servers listen on 127.0.0.1 only. Ray binds its GCS, raylet and
    object manager to the node's address, which on Linux it resolves to the machine's outward address even
    when given ``127.0.0.1`` -- unless Ray clusters are off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the
    setting Ray uses on macOS and Windows): then that address is the loopback one and nothing listens outside
    this machine."""
    name = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    before_env, before_flag = os.environ.get(name), getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[name] = "0"
    if before_flag is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if before_env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before_env
        if before_flag is not None:
            constants.ENABLE_RAY_CLUSTER = before_flag


def forwarded_env(extra: Mapping[str, str] | None = None, *, forward: bool = True) -> dict[str, str]:
    """The environment variables each evaluation gets: the driver's ``NASENGINE_*`` ones (when ``forward``),
    then ``extra``."""
    env: dict[str, str] = {}
    if forward:
        env.update({k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)})
    env.update({str(k): str(v) for k, v in (extra or {}).items()})
    return env


def _import_ray():
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - the package depends on ray
        raise ExecutorError(f"the ray executor needs Ray: pip install nasengine-ray ({exc})") from None
    return ray


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _address(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(value)
    return value.strip()


def _gpus(value: Any) -> Any:
    return value if value == "auto" else real(0.0).test(value)


def _probe_head(address: str, timeout: float) -> None:
    """Fail fast (an :class:`ExecutorError` naming the address) when nothing listens at ``HOST:PORT``."""
    import socket

    if address == "auto" or "://" in address or ":" not in address:
        return  # Ray resolves these itself
    host, _, port = address.rpartition(":")
    try:
        port_number = int(port)
    except ValueError:
        raise ExecutorError(f"executor.address {address!r}: the port {port!r} is not a number") from None
    try:
        socket.create_connection((host.strip("[]"), port_number), timeout=timeout).close()
    except OSError as exc:
        raise ExecutorError(f"cannot connect to the Ray cluster at {address}: nothing answers there within "
                            f"{timeout:g} s ({exc.strerror or exc}); is `ray start --head` running, and is the "
                            "port open from this machine?") from None


class RayExecutor(Executor):
    """Evaluations as Ray tasks, on a local Ray instance or an existing cluster (see the module docstring).

    Options (the config's ``executor`` section; ``--set executor.KEY=VALUE``):

    * ``address`` — the Ray cluster (``"HEAD:6379"``, ``"auto"``); default ``$RAY_ADDRESS``, else a local
      instance;
    * ``workers`` — evaluations in flight (default: the cluster's CPUs / ``num_cpus``, or its GPUs /
      ``gpus_per_task`` when evaluations take GPUs); also sizes a local instance;
    * ``num_cpus`` — CPUs each evaluation reserves (default 1; fractions allowed);
    * ``gpus_per_task`` — GPUs each evaluation reserves: ``"auto"`` (default: 1 when the cluster has GPUs, else
      0) or a number (``0.5`` puts two evaluations on a GPU);
    * ``threads`` — torch CPU threads of an evaluation (default ``ceil(num_cpus)``);
    * ``max_retries`` — Ray's retries of an evaluation whose worker died (default 2; 0: none);
    * ``task_timeout`` — seconds from submission after which an evaluation is cancelled and failed;
    * ``resources`` — custom Ray resources each evaluation reserves (``{"a100": 1}``);
    * ``env_vars`` — more environment variables for the evaluations; ``forward_env`` (default true) — send the
      driver's ``NASENGINE_*`` variables;
    * ``max_calls`` — evaluations a Ray worker process runs before it is replaced (Ray's default: unlimited for
      CPU tasks, 1 for GPU tasks, which frees GPU memory between evaluations);
    * ``connect_timeout`` — seconds to wait for the head at ``HOST:PORT`` to answer before giving up with an error
      (default 15; Ray itself would retry for minutes).
    """

    name = "ray"
    can_wait = True
    # Workers may run elsewhere: data paths are theirs to resolve (the driver only warns when it cannot).
    shares_driver_files = False

    @attrs.frozen(kw_only=True)
    class Options(Executor.Options):
        address: str | None = option(None, optional(Check("a Ray address such as 'HEAD:6379' or 'auto'", _address)),
                                     help="the Ray cluster (HEAD:6379 or auto; none: $RAY_ADDRESS, else a local "
                                          "instance)")
        num_cpus: float = option(1, positive, help="CPUs each evaluation reserves (fractions allowed)")
        gpus_per_task: Any = option("auto", Check("'auto' or a number >= 0", _gpus),
                                    help="GPUs each evaluation reserves (auto: 1 when the cluster has GPUs, else 0)")
        threads: int | None = option(None, optional(whole(1)),
                                     help="torch CPU threads of an evaluation (none: ceil(num_cpus))")
        max_retries: int = option(2, whole(0), help="Ray's retries of an evaluation whose worker died")
        task_timeout: float | None = option(None, optional(positive),
                                            help="seconds from submission after which an evaluation is failed")
        resources: dict | None = option(None, optional(mapping(string(), real(0.0))),
                                        help="custom Ray resources each evaluation reserves, e.g. {a100: 1}")
        env_vars: dict | None = option(None, optional(mapping(string(), anything)),
                                       help="more environment variables for the evaluations")
        forward_env: bool = option(True, flag, help="send the driver's NASENGINE_* variables to the evaluations")
        max_calls: int | None = option(None, optional(whole(0)),
                                       help="evaluations a Ray worker runs before it is replaced (none: Ray's)")
        connect_timeout: float = option(15.0, positive,
                                        help="seconds to wait for the head at HOST:PORT to answer")

    def __init__(self, workers: int | None = None, **options: Any):
        super().__init__(workers, **options)
        self.env_vars = dict(self.env_vars or {})

        self._mode: str | None = None  # "local" (ours), "connected" (we connected), "attached" (the caller's)
        # The local Ray instance this executor started and the driver's NASENGINE_* variables then: its workers
        # inherited them, so evaluations need no runtime_env for those (a runtime_env makes Ray start a
        # separate pool of worker processes, seconds each). (gcs_address, env) or None.
        self._local_instance: tuple[str, dict[str, str]] | None = None
        self._closed = False
        self._gone = False  # Ray went away under this executor (ExecutorLost raised)
        self._parallelism = workers or 1
        self._gpus = 0.0
        self._where = ""

    # ---- lifecycle ---------------------------------------------------------------------------------------
    @property
    def owns_instance(self) -> bool:
        """Whether :meth:`close` stops a Ray instance this executor started."""
        return self._mode == "local" and not self._closed

    def start(self) -> None:
        """Start (or connect to) Ray; idempotent."""
        if self._closed:
            raise ExecutorError("the ray executor is closed")
        if self._mode is not None:
            return
        ray = _import_ray()
        if ray.is_initialized():
            self._mode = "attached"
            if self.address:
                log.info("ray is already initialised in this process; using that connection, not %s", self.address)
        else:
            address = self.address or os.environ.get("RAY_ADDRESS", "").strip() or None
            mode = "connected" if address else "local"
            try:
                if address:
                    _probe_head(address, self.connect_timeout)
                    # A head on a loopback address (a local instance of another process) is reached as one:
                    # this driver's node address must be the loopback one too, or Ray finds no raylet for it.
                    with _loopback_only(ray) if _is_loopback(address) else contextlib.nullcontext():
                        ray.init(address=address)
                else:
                    cpus = usable_cpus()
                    if self.workers is not None:
                        cpus = max(1, math.ceil(self.workers * self.num_cpus))
                    env_at_start = forwarded_env()
                    with _loopback_only(ray):
                        ray.init(num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1")
            except BaseException as exc:
                if ray.is_initialized():  # half-way (Ctrl-C during the start): do not leave it running
                    try:
                        ray.shutdown()
                    except Exception:  # pragma: no cover
                        pass
                if not isinstance(exc, Exception):
                    raise
                if isinstance(exc, ExecutorError):
                    raise
                if address:
                    hint = ""
                    chain, seen = [], exc
                    while seen is not None and len(chain) < 10:
                        chain.append(f"{type(seen).__name__} {seen}")
                        seen = seen.__cause__ or seen.__context__
                    if "auth" in " ".join(chain).lower():
                        hint = ("; the cluster uses token authentication: set RAY_AUTH_MODE=token and make its token "
                                "readable here (~/.ray/auth_token or RAY_AUTH_TOKEN)")
                    raise ExecutorError(f"cannot connect to the Ray cluster at {address}: {_one_line(exc)}{hint}") from exc
                raise ExecutorError(f"cannot start a local Ray instance: {_one_line(exc)}") from exc
            self._mode = mode
            if mode == "local":
                self._local_instance = (ray.get_runtime_context().gcs_address, env_at_start)
        self._refresh()
        if isinstance(self.gpus_per_task, (int, float)) and self.gpus_per_task > 0 and self._cluster_gpus == 0:
            log.warning("executor.gpus_per_task=%g but the Ray cluster has no GPU (yet): evaluations wait for one",
                        self.gpus_per_task)

    def close(self) -> None:
        """Stop a local instance this executor started, or disconnect from a cluster it connected to (the
        cluster keeps running); a connection the caller made is left alone. Idempotent."""
        if self._closed:
            return
        self._closed = True
        mode = self._mode  # kept: describe() still tells what ran where
        if mode in ("local", "connected"):
            ray = _import_ray()
            self._local_instance = None
            try:
                ray.shutdown()
            except Exception as exc:  # pragma: no cover - nothing left to save
                log.warning("ray.shutdown() failed: %s", exc)

    # ---- resources ---------------------------------------------------------------------------------------
    @staticmethod
    def _cluster() -> dict[str, float]:
        import ray

        try:
            return dict(ray.cluster_resources())
        except Exception:  # pragma: no cover - a cluster that went away fails the tasks instead
            return {}

    def _refresh(self) -> None:
        """Resolve ``gpus_per_task="auto"`` and the default parallelism from the cluster's resources now."""
        res = self._cluster()
        cpus, gpus = float(res.get("CPU", 0) or 0), float(res.get("GPU", 0) or 0)
        self._cluster_gpus = gpus
        self._gpus = (1.0 if gpus > 0 else 0.0) if self.gpus_per_task == "auto" else float(self.gpus_per_task)
        if self.workers is not None:
            self._parallelism = self.workers
        elif self._gpus > 0:
            self._parallelism = max(1, int(gpus // self._gpus)) if gpus else 1
        else:
            self._parallelism = max(1, int(cpus // self.num_cpus)) if cpus else 1
        nodes, gcs = 0, self.address or "?"
        try:
            import ray

            nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
            gcs = ray.get_runtime_context().gcs_address
        except Exception:  # pragma: no cover
            pass
        kind = {"local": "local instance", "connected": "cluster", "attached": "existing connection"}[self._mode]
        self._where = (f"{kind} {gcs} ({nodes} node(s), {cpus:g} CPU(s)" + (f", {gpus:g} GPU(s)" if gpus else "")
                       + ")")

    @property
    def parallelism(self) -> int:
        return self._parallelism

    @property
    def task_threads(self) -> int:
        """torch threads of an evaluation that does not set its own."""
        return self.threads or max(1, math.ceil(self.num_cpus))

    def describe(self) -> str:
        if self._mode is None:
            return "ray (not started)"
        per = f"{self.num_cpus:g} CPU" + (f" + {self._gpus:g} GPU" if self._gpus else "")
        timeout = f", timeout {self.task_timeout:g} s" if self.task_timeout else ""
        return (f"ray: {self._where}; {self._parallelism} evaluation(s) at once, {per} and "
                f"{self.task_threads} torch thread(s) each, max_retries {self.max_retries}{timeout}")

    # ---- evaluations -----------------------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "num_cpus": self.num_cpus,
            "num_gpus": self._gpus,
            "max_retries": self.max_retries,
            "retry_exceptions": False,  # run_task turns exceptions into failed outcomes; only deaths are retried
            "name": "nasengine-eval",
        }
        if self.resources:
            opts["resources"] = dict(self.resources)
        if self.max_calls is not None:
            opts["max_calls"] = self.max_calls
        env = forwarded_env(self.env_vars, forward=self.forward_env)
        if env and not self._inherited(env):
            opts["runtime_env"] = {"env_vars": env}
        return opts

    def _inherited(self, env: dict[str, str]) -> bool:
        """Whether the workers already have ``env``: the local instance this executor started with it."""
        if self._local_instance is None:
            return False
        import ray

        try:
            gcs = ray.get_runtime_context().gcs_address
        except Exception:  # pragma: no cover
            return False
        address, at_start = self._local_instance
        return gcs == address and all(at_start.get(k) == v for k, v in env.items())

    def _prepare(self, task: EvalTask) -> EvalTask:
        changes: dict[str, Any] = {}
        if task.threads is None:
            changes["threads"] = self.task_threads
        if task.device in ("auto", None, "") and not self._gpus:
            changes["device"] = "cpu"  # no GPU reserved: do not use one Ray did not give us
        return attrs.evolve(task, **changes) if changes else task

    def _failed(self, task: EvalTask, started: float, error: str) -> EvalOutcome:
        return EvalOutcome(task_id=task.task_id, status="failed", error=error,
                           wall_seconds=time.perf_counter() - started, worker="ray")

    def _collect(self, ref, task: EvalTask, started: float) -> EvalOutcome:
        import ray
        import ray.exceptions as rex

        deaths = tuple(getattr(rex, n) for n in _DEATH_ERRORS if hasattr(rex, n))
        lost = tuple(getattr(rex, n) for n in _LOST_ERRORS if hasattr(rex, n))
        try:
            outcome = ray.get(ref)
        except lost as exc:
            raise self._lost(exc) from exc
        except rex.TaskCancelledError as exc:
            return self._failed(task, started, f"cancelled ({_one_line(exc)}) while evaluating task {task.task_id}")
        except deaths as exc:
            reason = self._backend_lost()
            if reason is not None:  # not the evaluation's fault: Ray itself went away
                raise self._lost(exc, reason) from exc
            attempts = self.max_retries + 1
            return self._failed(task, started, f"worker died: {_one_line(exc)} ({attempts} attempt(s), "
                                               f"max_retries {self.max_retries}) while evaluating task {task.task_id}")
        except rex.RayTaskError as exc:  # run_task raised (KeyboardInterrupt in the worker, or a bug)
            cause = getattr(exc, "cause", None) or exc
            return self._failed(task, started, f"the Ray task raised {_one_line(cause)} while evaluating task "
                                               f"{task.task_id}")
        except rex.RayError as exc:
            reason = self._backend_lost()
            if reason is not None:
                raise self._lost(exc, reason) from exc
            return self._failed(task, started, f"ray: {_one_line(exc)} while evaluating task {task.task_id}")
        if not isinstance(outcome, EvalOutcome) or outcome.task_id != task.task_id:
            return self._failed(task, started, f"the Ray task returned {type(outcome).__name__}, not the outcome of "
                                               f"task {task.task_id}")
        return outcome

    # ---- health ------------------------------------------------------------------------------------------
    def _dead_local_processes(self) -> list[str]:
        """The vital processes of the local instance this executor started that exited (none otherwise)."""
        if self._mode != "local":
            return []
        try:
            import ray._private.worker as ray_worker

            node = ray_worker._global_node
            dead = node.dead_processes() if node is not None else []
        except Exception:  # pragma: no cover - another Ray version: the other checks remain
            return []
        return sorted({str(kind) for kind, _ in dead if str(kind) in _VITAL_PROCESSES})

    def _backend_lost(self) -> str | None:
        """Why Ray itself is gone (a sentence), or ``None`` while it is usable: Ray no longer initialised here,
        a vital process of our local instance exited, or the cluster has no live node / does not answer its
        health check within :data:`HEALTH_TIMEOUT` seconds."""
        import ray

        if not ray.is_initialized():
            return "Ray is no longer initialised in this process"
        dead = self._dead_local_processes()
        if dead:
            return f"its {' and '.join(dead)} process{'es' if len(dead) > 1 else ''} exited"
        answer: list = []

        def check():
            try:
                answer.append(sum(1 for n in ray.nodes() if n.get("Alive")))
            except Exception as exc:  # noqa: BLE001
                answer.append(exc)

        thread = threading.Thread(target=check, name="nasengine-ray-health", daemon=True)
        thread.start()
        thread.join(HEALTH_TIMEOUT)
        if not answer:
            return f"its GCS did not answer within {HEALTH_TIMEOUT:g} s"
        if isinstance(answer[0], Exception):
            return f"its GCS cannot be reached ({_one_line(answer[0])})"
        if answer[0] == 0:
            return "it has no live node"
        return None

    def _lost(self, exc: BaseException | None = None, reason: str | None = None) -> ExecutorLost:
        """The :class:`ExecutorLost` that stops the search: names the instance or cluster and why."""
        if reason is None:
            reason = self._backend_lost() or (_one_line(exc) if exc is not None else "it went away")
        where = {"local": "the local Ray instance", "connected": "the Ray cluster",
                 "attached": "the Ray cluster of this process"}.get(self._mode or "", "Ray")
        gcs = (self._local_instance or (None,))[0] or self.address
        if gcs:
            where += f" at {gcs}"
        self._gone = True
        return ExecutorLost(f"lost {where}: {reason}")

    @staticmethod
    def _cancel(refs) -> None:
        import ray

        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished, or Ray is going away
                pass

    def imap(self, tasks: Iterable[EvalTask]) -> Iterator[EvalOutcome]:
        import ray

        self.start()
        self._refresh()
        # Built with ray.remote (not .options) so that Ray's own defaults by resources apply: max_calls=1 for GPU
        # tasks (a fresh process per evaluation frees its GPU memory), which .options cannot set.
        remote = ray.remote(**self._options())(run_task)
        limit = self._parallelism
        source = TaskSource(tasks)
        pending: dict[Any, tuple[EvalTask, float]] = {}  # ObjectRef -> (task, submitted at); insertion ordered
        try:
            while True:
                self._check_local()
                while len(pending) < limit:
                    task = source.take()
                    if task is None:  # none now (the source waits for an outcome) or none ever
                        break
                    try:
                        pending[remote.remote(self._prepare(task))] = (task, time.perf_counter())
                    except Exception as exc:  # noqa: BLE001 - submitting fails only when Ray is unusable
                        raise self._lost(exc) from exc
                if source.finished(len(pending)):
                    return
                timeout = None
                if self.task_timeout is not None:
                    now = time.perf_counter()
                    late = [ref for ref, (_, t0) in pending.items() if now - t0 >= self.task_timeout]
                    if late:
                        self._cancel(late)
                        for ref in late:
                            task, t0 = pending.pop(ref)
                            yield self._failed(task, t0, f"timed out after {self.task_timeout:g} s while "
                                                         f"evaluating task {task.task_id}")
                        continue
                    timeout = max(0.0, min(t0 for _, t0 in pending.values()) + self.task_timeout - now)
                if self._mode == "local":  # wake now and then to see that the instance still lives
                    timeout = _LOCAL_POLL if timeout is None else min(timeout, _LOCAL_POLL)
                try:
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
                except Exception as exc:  # noqa: BLE001 - a lost connection, a dead raylet
                    raise self._lost(exc) from exc
                for ref in ready:
                    task, t0 = pending.pop(ref)
                    yield self._collect(ref, task, t0)
        finally:
            # Abandoned (Ctrl-C, an exception, the caller stopped iterating): the evaluations in flight are of
            # no use any more; their workers are killed rather than left computing on a shared cluster.
            if pending and not self._gone:  # (nothing to cancel on a Ray that went away)
                self._cancel(list(pending))

    def _check_local(self) -> None:
        """Raise :class:`ExecutorLost` when a vital process of the local instance this executor started exited
        (cheap: a poll of each process)."""
        dead = self._dead_local_processes()
        if dead:
            raise self._lost(reason=f"its {' and '.join(dead)} process{'es' if len(dead) > 1 else ''} exited")
