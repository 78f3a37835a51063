"""The experiment store: one SQLite file (``run.sqlite``) per run folder, the run's single source of truth.

It holds the run record (method, preset, seed, full config, plugin versions, environment, status), one row
per evaluated candidate, and the controller state after each generation (as data, never a pickle: see
:mod:`nasengine.statecodec`). Every write is one transaction,
committed before the call returns, so a process killed at any moment (SIGKILL included) loses nothing that
was recorded and never leaves a half-written candidate behind; the file runs in WAL mode so that readers
(``nasengine report``) can look at a run while it is being written.

::

    store = ExperimentStore.create("runs/a", method="simple", preset="smoke", seed=0, config=cfg,
                                   plugins=get_plugins().versions(), environment=environment())
    store.record(CandidateRecord(generation=0, idx=0, key=k, genome=g, status="ok", metrics={"psnr": 33.1}))
    store.save_controller_state(0, controller.state_dict())
    ...
    store = ExperimentStore.open("runs/a")
    front = store.candidates(status="ok")

The search driver opens the store with ``lock=True``: the store then holds the run folder's :class:`RunLock`
(one driver per run; a second is refused with :class:`RunLockedError` naming the holder's pid) until closed.

The schema is versioned (``PRAGMA user_version`` and the ``meta`` table); a store written by another
schema version is refused with an error naming the file and both versions.
"""
from __future__ import annotations

import json
import logging
import math
import os
import pickle
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

import attrs

from nasengine.errors import NasengineError
from nasengine.statecodec import StateCodecError, decode_state, encode_state, is_encoded_state

log = logging.getLogger(__name__)

__all__ = [
    "ExperimentStore",
    "RunLock",
    "RunLockedError",
    "UntrustedStateError",
    "CandidateRecord",
    "CheckpointRecord",
    "RunRecord",
    "StoreError",
    "SchemaVersionError",
    "SCHEMA_VERSION",
    "STORE_FILE",
    "CANDIDATE_STATUSES",
    "RUN_STATUSES",
]

#: Bump whenever the tables change; older/newer stores are refused with a clear message.
SCHEMA_VERSION = 1
#: The store's file name inside a run folder.
STORE_FILE = "run.sqlite"
#: The run-folder lock's file name (it holds the pid of the process that runs the search).
LOCK_FILE = ".lock"
#: ``ok`` evaluated; ``failed`` evaluation raised / diverged / returned a non-finite metric; ``infeasible``
#: rejected by a cost-stage constraint before training; ``duplicate`` same architecture key as an earlier
#: candidate of the run, whose results it carries (it was not evaluated again).
CANDIDATE_STATUSES = ("ok", "failed", "infeasible", "duplicate")
RUN_STATUSES = ("created", "running", "done", "interrupted", "failed")


class StoreError(NasengineError):
    """A run folder or store file that cannot be used; the message names it."""


class SchemaVersionError(StoreError):
    """The store was written with another schema version than this nasengine reads."""


class RunLockedError(StoreError):
    """Another process is running this run folder."""


class UntrustedStateError(StoreError):
    """A controller state stored as a pickle (by an older nasengine) that this store was not told to trust."""


#: Lock files this process holds -> its pid. POSIX record locks do not conflict within one process, so a second
#: lock of the same folder here is refused by this table; a forked child inherits no record lock, and the pid
#: tells it that an inherited entry is its parent's.
_HELD: dict[str, int] = {}


class RunLock:
    """An exclusive lock on a run folder (a POSIX record lock on its ``.lock`` file), released by the OS if the
    holder dies, and never held by a forked worker (record locks are not inherited), so workers that outlive a
    killed driver do not keep the run locked."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    def _refuse(self, holder: str) -> RunLockedError:
        return RunLockedError(f"{self.path.parent} is being searched by another process (pid {holder})")

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            return self
        key = os.path.realpath(self.path)
        if _HELD.get(key) == os.getpid():
            raise self._refuse(str(os.getpid()))
        try:
            # O_NOFOLLOW: a .lock planted as a symlink must not make us truncate and write its target.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            if self.path.is_symlink():
                raise StoreError(f"{self.path} is a symbolic link; refusing to write through it (remove it)") from None
            raise StoreError(f"{self.path}: cannot create the run lock ({exc.strerror or exc})") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise self._refuse(holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        _HELD[key] = os.getpid()
        return self

    def release(self) -> None:
        if self.fd is not None:
            _HELD.pop(os.path.realpath(self.path), None)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _json_dumps(data: Any) -> str:
    # Metrics are finite by contract; ``allow_nan`` keeps a stray NaN from turning a record into an error
    # at the last moment (SQLite stores the text as is and json.loads reads it back).
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@attrs.define
class CandidateRecord:
    """One candidate of a run, as stored.

    ``(generation, idx)`` is its place in the search (``idx``: position in that generation's ``ask``);
    ``key`` the canonical key of its architecture graph; ``genome`` the space's JSON form of the genome.
    ``params`` and ``mult_adds`` come from the cost model (``costs`` holds every cost number, these two
    included); ``metrics`` what the evaluator returned. A ``duplicate`` carries the costs, metrics and error of
    the candidate it repeats (``duplicate_of``, that record's ``id``). ``seed`` is the evaluation seed;
    ``wall_seconds`` / ``cpu_seconds`` the time its evaluation took (0 when it was not evaluated); ``worker``
    where it ran; ``created`` / ``finished`` Unix times (set by the store when left ``None``). ``attempt`` is 1
    for the first evaluation and n for the n-th: ``nasengine resume --retry-failed`` evaluates a failed candidate
    again (:meth:`ExperimentStore.replace`), its row then holds the latest attempt and the earlier ones are kept
    as history (:meth:`ExperimentStore.attempts`).
    """

    generation: int
    idx: int
    key: str
    genome: Any
    status: str = attrs.field()
    params: float | None = None
    mult_adds: float | None = None
    costs: dict = attrs.field(factory=dict)
    metrics: dict = attrs.field(factory=dict)
    error: str | None = None
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    worker: str | None = None
    seed: int | None = None
    duplicate_of: int | None = None
    created: float | None = None
    finished: float | None = None
    id: int | None = None
    attempt: int = 1

    @status.validator
    def _check_status(self, _attribute, value):
        if value not in CANDIDATE_STATUSES:
            raise StoreError(f"candidate status must be one of {', '.join(CANDIDATE_STATUSES)}, got {value!r}")

    def metrics_all(self) -> dict[str, float]:
        """Costs and metrics in one flat dict (``params``, ``mult_adds``, ..., ``psnr``, ...)."""
        out: dict[str, float] = {}
        if self.params is not None:
            out["params"] = self.params
        if self.mult_adds is not None:
            out["mult_adds"] = self.mult_adds
        out.update(self.costs)
        out.update(self.metrics)
        return out

    @property
    def evaluated(self) -> bool:
        """Whether this record went through an evaluator (``ok`` or ``failed``, not a duplicate)."""
        return self.status in ("ok", "failed")


@attrs.frozen
class RunRecord:
    """The run itself: what was searched, with which plugins, where, and how it stands."""

    method: str
    preset: str | None
    seed: int
    config: dict
    plugins: dict
    environment: dict
    status: str
    created: float
    updated: float
    elapsed_seconds: float = 0.0


_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE run (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    method          TEXT NOT NULL,
    preset          TEXT,
    seed            INTEGER NOT NULL,
    config          TEXT NOT NULL,
    plugins         TEXT NOT NULL,
    environment     TEXT NOT NULL,
    status          TEXT NOT NULL,
    created         REAL NOT NULL,
    updated         REAL NOT NULL,
    elapsed_seconds REAL NOT NULL DEFAULT 0
);
CREATE TABLE candidates (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    generation    INTEGER NOT NULL,
    idx           INTEGER NOT NULL,
    key           TEXT NOT NULL,
    genome        TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'infeasible', 'duplicate')),
    params        REAL,
    mult_adds     REAL,
    costs         TEXT NOT NULL DEFAULT '{}',
    metrics       TEXT NOT NULL DEFAULT '{}',
    error         TEXT,
    wall_seconds  REAL NOT NULL DEFAULT 0,
    cpu_seconds   REAL NOT NULL DEFAULT 0,
    worker        TEXT,
    seed          INTEGER,
    duplicate_of  INTEGER REFERENCES candidates (id),
    created       REAL NOT NULL,
    finished      REAL NOT NULL,
    UNIQUE (generation, idx)
);
CREATE INDEX candidates_key ON candidates (key);
CREATE TABLE IF NOT EXISTS candidate_attempts (
    candidate_id  INTEGER NOT NULL REFERENCES candidates (id),
    attempt       INTEGER NOT NULL,
    generation    INTEGER NOT NULL,
    idx           INTEGER NOT NULL,
    key           TEXT NOT NULL,
    genome        TEXT NOT NULL,
    status        TEXT NOT NULL,
    params        REAL,
    mult_adds     REAL,
    costs         TEXT NOT NULL DEFAULT '{}',
    metrics       TEXT NOT NULL DEFAULT '{}',
    error         TEXT,
    wall_seconds  REAL NOT NULL DEFAULT 0,
    cpu_seconds   REAL NOT NULL DEFAULT 0,
    worker        TEXT,
    seed          INTEGER,
    duplicate_of  INTEGER,
    created       REAL NOT NULL,
    finished      REAL NOT NULL,
    replaced      REAL NOT NULL,
    PRIMARY KEY (candidate_id, attempt)
);
CREATE INDEX candidates_status ON candidates (status);
CREATE TABLE controller_state (
    generation INTEGER PRIMARY KEY,
    state      BLOB NOT NULL,
    created    REAL NOT NULL
);
"""

#: The history table of earlier attempts (added to older stores by the first retry: no schema-version change,
#: a version-1 reader ignores it).
_ATTEMPTS_TABLE = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS candidate_attempts"):].split(";")[0]
#: Files a loop keeps in the run folder to resume from (the one-shot loop's shared weights), with their sha256,
#: and named results of the run (the one-shot loop's derived genome). Added by the first write like the
#: attempts table: no schema-version change, a version-1 reader ignores them.
_CHECKPOINTS_TABLE = """CREATE TABLE IF NOT EXISTS checkpoints (
    name     TEXT PRIMARY KEY,
    epoch    INTEGER NOT NULL,
    path     TEXT NOT NULL,
    sha256   TEXT NOT NULL,
    created  REAL NOT NULL
)"""
_RESULTS_TABLE = """CREATE TABLE IF NOT EXISTS run_results (
    name     TEXT PRIMARY KEY,
    value    TEXT NOT NULL,
    created  REAL NOT NULL
)"""


@attrs.frozen
class CheckpointRecord:
    """A loop's checkpoint file as recorded: ``name`` (e.g. ``"oneshot"``), the ``epoch`` it was written after,
    its ``path`` relative to the run folder, its ``sha256`` and when it was recorded."""

    name: str
    epoch: int
    path: str
    sha256: str
    created: float

_CANDIDATE_COLUMNS = (
    "id", "generation", "idx", "key", "genome", "status", "params", "mult_adds", "costs", "metrics", "error",
    "wall_seconds", "cpu_seconds", "worker", "seed", "duplicate_of", "created", "finished",
)


def _db_error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "malformed" in text or "not a database" in text:
        return f"{text} (the file is damaged)"
    if "readonly" in text or "read-only" in text:
        return f"{text} (the run folder or its store file is read-only)"
    return text


def _named_db_errors(method):
    """SQLite and stored-JSON errors inside ``method`` become one :class:`StoreError` naming the store file
    (a page found corrupt after opening, a read-only file, a full disk)."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: {_db_error_text(exc)}") from None
        except json.JSONDecodeError as exc:  # a stored JSON text that does not parse
            raise StoreError(f"{self.path}: a damaged record ({exc})") from None

    return wrapper


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """The store file opened read-only and immutable (no WAL index is made): for a closed run in a folder
    that cannot be written; any write is refused with a read-only error."""
    from urllib.parse import quote

    return sqlite3.connect(f"file:{quote(str(Path(path).resolve()))}?mode=ro&immutable=1", uri=True,
                           isolation_level=None)


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: every write below opens its own explicit transaction.
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class ExperimentStore:
    """The SQLite experiment store of one run folder. Use :meth:`create` or :meth:`open`, not the constructor.

    Not thread-safe: one process (the search driver) writes; any number of readers may open the file.
    """

    def __init__(self, run_dir: Path, conn: sqlite3.Connection):
        self.run_dir = run_dir
        self.path = run_dir / STORE_FILE
        self._conn = conn
        self._lock: RunLock | None = None
        #: Whether :meth:`load_controller_state` may unpickle a state an older nasengine stored as a pickle
        #: (which runs whatever code the pickle names: only for run folders whose origin is trusted).
        self.trust_pickles = False
        self._attempts = False  # whether the store has the attempts table (known to have it)

    # ---- opening -----------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        run_dir: str | os.PathLike,
        *,
        method: str,
        preset: str | None,
        seed: int,
        config: dict,
        plugins: dict[str, str],
        environment: dict,
        lock: bool = False,
    ) -> "ExperimentStore":
        """A new store in ``run_dir`` (created if needed); an error if the folder already holds a run.

        The file is built under a temporary name and renamed into place once complete, so a crash here
        never leaves a half-initialised store behind. ``lock``: the store holds the run folder's
        :class:`RunLock` (taken before the store is made) until it is closed.
        """
        run_dir = Path(run_dir)
        path = run_dir / STORE_FILE
        if path.exists():
            raise StoreError(f"{run_dir} already holds a run ({STORE_FILE}); resume it or choose another folder")
        if run_dir.exists() and not run_dir.is_dir():
            raise StoreError(f"{run_dir} is not a folder")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{run_dir}: cannot make the run folder ({exc.strerror or exc})") from None
        held = RunLock(run_dir).acquire() if lock else None
        try:
            try:
                cls._build(run_dir, method=method, preset=preset, seed=seed, config=config, plugins=plugins,
                           environment=environment)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{run_dir}: cannot create the store ({_db_error_text(exc)})") from None
            except OSError as exc:
                raise StoreError(f"{run_dir}: cannot create the store ({exc.strerror or exc})") from None
            store = cls.open(run_dir)
        except BaseException:
            if held is not None:
                held.release()
            raise
        store._lock = held
        return store

    @staticmethod
    def _build(run_dir: Path, *, method, preset, seed, config, plugins, environment) -> None:
        path = run_dir / STORE_FILE
        tmp = run_dir / f".{STORE_FILE}.{os.getpid()}.tmp"
        for p in (tmp, Path(f"{tmp}-journal")):
            if p.exists():
                p.unlink()
        now = time.time()
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("BEGIN")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            from nasengine import __version__

            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("created_by", f"nasengine {__version__}")],
            )
            conn.execute(
                "INSERT INTO run (id, method, preset, seed, config, plugins, environment, status, created, updated)"
                " VALUES (1, ?, ?, ?, ?, ?, ?, 'created', ?, ?)",
                (method, preset, int(seed), _json_dumps(config), _json_dumps(plugins), _json_dumps(environment),
                 now, now),
            )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            tmp.unlink(missing_ok=True)
            raise
        conn.close()
        try:
            # A hard link is atomic and refuses an existing target, so two processes creating the same run
            # cannot both win; file systems without hard links fall back to a check + rename.
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise StoreError(
                    f"{run_dir} already holds a run ({STORE_FILE}); resume it or choose another folder"
                ) from None
            except OSError:
                if path.exists():
                    raise StoreError(
                        f"{run_dir} already holds a run ({STORE_FILE}); resume it or choose another folder"
                    ) from None
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def open(cls, run_dir: str | os.PathLike, *, lock: bool = False,
             trust_pickles: bool = False) -> "ExperimentStore":
        """The store of an existing run folder; an error naming the folder if it holds no run. ``lock``: the
        store holds the run folder's :class:`RunLock` until it is closed (:class:`RunLockedError` if another
        process holds it). ``trust_pickles``: see :attr:`trust_pickles`."""
        store = cls._open_locked(run_dir, lock)
        store.trust_pickles = bool(trust_pickles)
        return store

    @classmethod
    def _open_locked(cls, run_dir: str | os.PathLike, lock: bool) -> "ExperimentStore":
        run_dir = Path(run_dir)
        path = run_dir / STORE_FILE
        if not run_dir.is_dir():
            raise StoreError(f"{run_dir}: no such run folder")
        if not path.is_file():
            raise StoreError(f"{run_dir} is not a nasengine run folder (no {STORE_FILE} in it)")
        if not lock:
            return cls._open(run_dir, path)
        held = RunLock(run_dir).acquire()
        try:
            store = cls._open(run_dir, path)
        except BaseException:
            held.release()
            raise
        store._lock = held
        return store

    @classmethod
    def _open(cls, run_dir: Path, path: Path) -> "ExperimentStore":
        try:
            return cls._open_checked(run_dir, path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: {_db_error_text(exc)}") from None

    @classmethod
    def _open_checked(cls, run_dir: Path, path: Path) -> "ExperimentStore":
        read_only = False
        try:
            try:
                conn = _connect(path)
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "unable to open" not in str(exc) or Path(f"{path}-wal").exists():
                    raise
                # A folder that cannot be written (no room for the WAL index): read the closed store as is.
                conn = _connect_read_only(path)
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                read_only = True
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path} is not a nasengine experiment store ({exc})") from None
        if "meta" not in tables or "run" not in tables:
            conn.close()
            raise StoreError(f"{path} is not a nasengine experiment store (no meta/run tables)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        meta_version = int(row[0]) if row else version
        if version != SCHEMA_VERSION or meta_version != SCHEMA_VERSION:
            conn.close()
            raise SchemaVersionError(
                f"{path} has experiment-store schema version {meta_version}, but this nasengine reads version "
                f"{SCHEMA_VERSION}; use the nasengine version that wrote it"
            )
        # WAL: readers never block the writer and a commit is one append to the log. synchronous=FULL makes
        # each commit durable on disk (not only against a killed process but against a power cut).
        if not read_only:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        return cls(run_dir, conn)

    @staticmethod
    def exists(run_dir: str | os.PathLike) -> bool:
        """Whether ``run_dir`` holds a run (a store file)."""
        return (Path(run_dir) / STORE_FILE).is_file()

    def close(self) -> None:
        """Close the file, then release the run folder's lock if this store holds it."""
        try:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> "ExperimentStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ExperimentStore({str(self.run_dir)!r})"

    # ---- transactions --------------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the store of {self.run_dir} is closed")
        return self._conn

    def _write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        """One statement in one IMMEDIATE transaction, committed (durably) before returning."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return cur

    # ---- copies ----------------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Copy what the write-ahead log holds into ``run.sqlite`` itself (as far as readers allow, never
        waiting for them), so that a copy of that file alone holds the run up to now. The search does it at
        the end of every generation; for a consistent copy at any moment use :meth:`export`."""
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def export(self, dest: str | os.PathLike) -> Path:
        """A consistent single-file copy of the store at ``dest`` (through SQLite's backup API, so it can be
        made while a search writes the run; no ``-wal`` file goes with it). An existing ``dest`` is refused."""
        dest = Path(dest)
        if dest.exists():
            raise StoreError(f"{dest} exists; give a new file name for the copy of the store")
        if not dest.parent.is_dir():
            raise StoreError(f"{dest.parent}: no such folder for the copy of the store")
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            copy = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                self.conn.backup(copy)
                copy.execute("PRAGMA journal_mode = DELETE")  # one file, whatever the source's journal
            finally:
                copy.close()
            os.replace(tmp, dest)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot copy the store to {dest} ({exc})") from None
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    # ---- the run -----------------------------------------------------------------------------------
    @property
    @_named_db_errors
    def run(self) -> RunRecord:
        """The run record (read afresh)."""
        row = self.conn.execute(
            "SELECT method, preset, seed, config, plugins, environment, status, created, updated, elapsed_seconds"
            " FROM run WHERE id = 1"
        ).fetchone()
        if row is None:
            raise StoreError(f"{self.path} has no run record")
        method, preset, seed, config, plugins, env, status, created, updated, elapsed = row
        return RunRecord(method, preset, int(seed), json.loads(config), json.loads(plugins), json.loads(env),
                         status, created, updated, elapsed)

    @_named_db_errors
    def set_status(self, status: str) -> None:
        """Set the run status (``created`` -> ``running`` -> ``done`` / ``interrupted`` / ``failed``)."""
        if status not in RUN_STATUSES:
            raise StoreError(f"run status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
        self._write("UPDATE run SET status = ?, updated = ? WHERE id = 1", (status, time.time()))

    @_named_db_errors
    def set_elapsed(self, seconds: float) -> None:
        """Record the run's accumulated search time (over every session), for the ``seconds`` budget."""
        self._write("UPDATE run SET elapsed_seconds = ?, updated = ? WHERE id = 1", (float(seconds), time.time()))

    @_named_db_errors
    def update_config(self, config: dict) -> None:
        """Replace the stored config (a resume that extends the budget or changes the executor)."""
        self._write("UPDATE run SET config = ?, updated = ? WHERE id = 1", (_json_dumps(config), time.time()))

    # ---- candidates --------------------------------------------------------------------------------
    @_named_db_errors
    def record(self, rec: CandidateRecord) -> CandidateRecord:
        """Store one completed candidate in one transaction, durable before this returns.

        Returns the record with ``id`` (and ``created`` / ``finished`` when they were ``None``) filled in.
        Recording the same ``(generation, idx)`` twice is an error.
        """
        now = time.time()
        rec = attrs.evolve(
            rec,
            created=now if rec.created is None else rec.created,
            finished=now if rec.finished is None else rec.finished,
        )
        values = (
            int(rec.generation), int(rec.idx), str(rec.key), _json_dumps(rec.genome), rec.status,
            _finite_or_none(rec.params), _finite_or_none(rec.mult_adds), _json_dumps(rec.costs or {}),
            _json_dumps(rec.metrics or {}), rec.error, float(rec.wall_seconds or 0.0),
            float(rec.cpu_seconds or 0.0), rec.worker, None if rec.seed is None else int(rec.seed),
            rec.duplicate_of, rec.created, rec.finished,
        )
        try:
            cur = self._write(
                f"INSERT INTO candidates ({', '.join(_CANDIDATE_COLUMNS[1:])})"
                f" VALUES ({', '.join('?' * (len(_CANDIDATE_COLUMNS) - 1))})",
                values,
            )
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise StoreError(
                    f"{self.path}: candidate (generation {rec.generation}, idx {rec.idx}) is already recorded"
                ) from None
            raise StoreError(f"{self.path}: cannot record candidate ({exc})") from None
        return attrs.evolve(rec, id=cur.lastrowid)

    def replace(self, rec: CandidateRecord) -> CandidateRecord:
        """Store ``rec`` as a new attempt of the candidate at its ``(generation, idx)`` (a retried evaluation),
        in one transaction: the stored row moves to the history (:meth:`attempts`) and the row (same ``id``,
        so its duplicates still point at it) takes ``rec``; the duplicates of the candidate carry the new
        results too. Returns ``rec`` with its ``id`` and ``attempt``."""
        now = time.time()
        rec = attrs.evolve(rec, created=now if rec.created is None else rec.created,
                           finished=now if rec.finished is None else rec.finished)
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_ATTEMPTS_TABLE)
            old = self.get(rec.generation, rec.idx)
            if old is None:
                raise StoreError(f"{self.path}: no candidate (generation {rec.generation}, idx {rec.idx}) to "
                                 "evaluate again")
            cols = ", ".join(_CANDIDATE_COLUMNS[1:])
            conn.execute(f"INSERT INTO candidate_attempts (candidate_id, attempt, {cols}, replaced) "
                         f"SELECT id, ?, {cols}, ? FROM candidates WHERE id = ?", (old.attempt, now, old.id))
            conn.execute(
                "UPDATE candidates SET status = ?, params = ?, mult_adds = ?, costs = ?, metrics = ?, error = ?,"
                " wall_seconds = ?, cpu_seconds = ?, worker = ?, seed = ?, created = ?, finished = ? WHERE id = ?",
                (rec.status, _finite_or_none(rec.params), _finite_or_none(rec.mult_adds),
                 _json_dumps(rec.costs or {}), _json_dumps(rec.metrics or {}), rec.error,
                 float(rec.wall_seconds or 0.0), float(rec.cpu_seconds or 0.0), rec.worker,
                 None if rec.seed is None else int(rec.seed), rec.created, rec.finished, old.id))
            conn.execute("UPDATE candidates SET costs = ?, metrics = ?, error = ? WHERE duplicate_of = ?",
                         (_json_dumps(rec.costs or {}), _json_dumps(rec.metrics or {}), rec.error, old.id))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._attempts = True
        return attrs.evolve(rec, id=old.id, attempt=old.attempt + 1)

    def attempts(self) -> list[CandidateRecord]:
        """The earlier attempts of retried candidates (``id``: the candidate's row; ``attempt``: which), in
        search order; the candidates' rows (:meth:`candidates`) hold their latest attempts."""
        if not self._has_attempts():
            return []
        sql = (f"SELECT candidate_id, {', '.join(_CANDIDATE_COLUMNS[1:])}, attempt FROM candidate_attempts "
               "ORDER BY generation, idx, attempt")
        return [self._row(row) for row in self.conn.execute(sql)]

    def _has_attempts(self) -> bool:
        if not self._attempts:
            self._attempts = self.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'candidate_attempts'").fetchone() is not None
        return self._attempts

    @staticmethod
    def _row(row: tuple) -> CandidateRecord:
        d = dict(zip(_CANDIDATE_COLUMNS + ("attempt",), row))
        for name in ("genome", "costs", "metrics"):
            d[name] = json.loads(d[name])
        return CandidateRecord(**d)

    def _select(self, where: str = "", params: tuple = (), tail: str = "") -> Iterator[CandidateRecord]:
        attempt = ("1 + (SELECT COUNT(*) FROM candidate_attempts a WHERE a.candidate_id = candidates.id)"
                   if self._has_attempts() else "1")
        sql = (f"SELECT {', '.join(_CANDIDATE_COLUMNS)}, {attempt} FROM candidates {where} "
               f"ORDER BY generation, idx {tail}")
        for row in self.conn.execute(sql, params):
            yield self._row(row)

    @_named_db_errors
    def candidates(self, status: str | None = None, generation: int | None = None) -> list[CandidateRecord]:
        """Stored candidates in search order (generation, idx), optionally filtered."""
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if generation is not None:
            clauses.append("generation = ?")
            params.append(int(generation))
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return list(self._select(where, tuple(params)))

    @_named_db_errors
    def get(self, generation: int, idx: int) -> CandidateRecord | None:
        """The candidate at ``(generation, idx)``, or ``None``."""
        return next(self._select("WHERE generation = ? AND idx = ?", (int(generation), int(idx))), None)

    @_named_db_errors
    def find_key(self, key: str) -> CandidateRecord | None:
        """The first (in search order) non-duplicate record of architecture ``key``, or ``None``."""
        return next(self._select("WHERE key = ? AND status != 'duplicate'", (key,), "LIMIT 1"), None)

    @_named_db_errors
    def count(self, status: str | None = None) -> int:
        """How many candidates are stored (with ``status``, if given)."""
        if status is None:
            return self.conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM candidates WHERE status = ?", (status,)).fetchone()[0]

    @_named_db_errors
    def counts(self) -> dict[str, int]:
        """``{status: count}`` for every candidate status (zeros included)."""
        out = dict.fromkeys(CANDIDATE_STATUSES, 0)
        for status, n in self.conn.execute("SELECT status, COUNT(*) FROM candidates GROUP BY status"):
            out[status] = n
        return out

    # ---- checkpoints and results of a loop ----------------------------------------------------------
    def _has_table(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                 (name,)).fetchone() is not None

    def _write_created(self, table_sql: str, sql: str, params: tuple) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(table_sql)
            conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @_named_db_errors
    def save_checkpoint(self, name: str, epoch: int, path: str, sha256: str) -> None:
        """Record that checkpoint ``name`` is now the file ``path`` (relative to the run folder), written after
        ``epoch``, with checksum ``sha256`` (one transaction; replaces the earlier record of ``name``)."""
        self._write_created(_CHECKPOINTS_TABLE,
                            "INSERT OR REPLACE INTO checkpoints (name, epoch, path, sha256, created) VALUES (?, ?, ?, ?, ?)",
                            (str(name), int(epoch), str(path), str(sha256), time.time()))

    @_named_db_errors
    def load_checkpoint(self, name: str) -> CheckpointRecord | None:
        """The record of checkpoint ``name``, or ``None`` (none written yet)."""
        if not self._has_table("checkpoints"):
            return None
        row = self.conn.execute("SELECT name, epoch, path, sha256, created FROM checkpoints WHERE name = ?",
                                (str(name),)).fetchone()
        return None if row is None else CheckpointRecord(row[0], int(row[1]), row[2], row[3], float(row[4]))

    @_named_db_errors
    def set_result(self, name: str, value: Any) -> None:
        """Store a named result of the run (JSON data, e.g. the one-shot loop's ``"derived"`` genome)."""
        self._write_created(_RESULTS_TABLE,
                            "INSERT OR REPLACE INTO run_results (name, value, created) VALUES (?, ?, ?)",
                            (str(name), _json_dumps(value), time.time()))

    @_named_db_errors
    def results(self) -> dict[str, Any]:
        """Every named result of the run (``{}`` for a run that stored none)."""
        if not self._has_table("run_results"):
            return {}
        return {name: json.loads(value) for name, value in
                self.conn.execute("SELECT name, value FROM run_results ORDER BY name")}

    # ---- controller state ---------------------------------------------------------------------------
    @_named_db_errors
    def save_controller_state(self, generation: int, state: dict) -> None:
        """Store the controller state after ``generation`` (as data, see :mod:`nasengine.statecodec`; one
        transaction; replaces an earlier one)."""
        try:
            blob = encode_state(state)
        except StateCodecError as exc:
            raise StoreError(f"controller state of generation {generation} cannot be stored as data: {exc}") from None
        self._write(
            "INSERT OR REPLACE INTO controller_state (generation, state, created) VALUES (?, ?, ?)",
            (int(generation), sqlite3.Binary(blob), time.time()),
        )

    @_named_db_errors
    def load_controller_state(self, generation: int | None = None) -> tuple[int, dict] | None:
        """``(generation, state)`` of the latest saved generation (or of ``generation``), or ``None``."""
        if generation is None:
            row = self.conn.execute(
                "SELECT generation, state FROM controller_state ORDER BY generation DESC LIMIT 1"
            ).fetchone()
        else:
            row = self.conn.execute(
                "SELECT generation, state FROM controller_state WHERE generation = ?", (int(generation),)
            ).fetchone()
        if row is None:
            return None
        gen, blob = int(row[0]), bytes(row[1])
        where = f"{self.path}: controller state of generation {gen}"
        if is_encoded_state(blob):
            try:
                return gen, decode_state(blob, where)
            except StateCodecError as exc:
                raise StoreError(str(exc)) from None
        if not self.trust_pickles:
            raise UntrustedStateError(
                f"{where} is a pickle (stored by an older nasengine) and reading a pickle can run any code; "
                f"only if you trust where this run folder came from, resume it with --trust-run")
        log.warning("%s: reading a pickled controller state of generation %d (--trust-run)", self.run_dir, gen)
        try:
            return gen, pickle.loads(blob)
        except Exception as exc:
            raise StoreError(f"{where}: corrupt pickled state ({type(exc).__name__}: {exc})") from None

    @_named_db_errors
    def controller_generations(self) -> list[int]:
        """Generations with a saved controller state, ascending."""
        return [r[0] for r in self.conn.execute("SELECT generation FROM controller_state ORDER BY generation")]
