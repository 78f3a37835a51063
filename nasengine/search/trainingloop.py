"""What the loops that train weights in the driver share (one-shot, differentiable): a base class,
:class:`WeightTrainingLoop`, for a loop that trains one supernet in the run session itself, records its
measurements as rows, derives an architecture and retrains it through the executor.

It holds what is the same in both loops, the loop-specific parts staying in each:

* the run's seed for torch / numpy / Python (:meth:`~WeightTrainingLoop._seed`), their states in a checkpoint
  and back (:meth:`~WeightTrainingLoop._rng_states`, :meth:`~WeightTrainingLoop._set_rng_states`);
* checkpoints: a state written atomically to ``checkpoints/{name}-{letter}{counter}.state`` (the store's state
  codec: data, never a pickle) with ``format`` and the counter (``epoch`` / ``step``) as its first entries,
  recorded in the store with its sha256, older files removed only after that
  (:meth:`~WeightTrainingLoop._write_checkpoint`); read back after checking file, checksum and format
  (:meth:`~WeightTrainingLoop._read_checkpoint`);
* rows: a genome's row with its costs (cost model plus ``space.genome_metrics``), ``failed`` on a non-finite
  metric, or the stored row of an earlier session after checking it holds the same genome
  (:meth:`~WeightTrainingLoop._row`); a retraining task and its outcome's row
  (:meth:`~WeightTrainingLoop._retrain_task`, :meth:`~WeightTrainingLoop._record_retrained`);
* checks and plan: the budgets that do not apply, the ``retrain`` section's evaluator, space and plan.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from nasengine.errors import ConfigError, NasengineError
from nasengine.search.loop import Loop
from nasengine.search.records import candidate_seed
from nasengine.search.retraining import retrain_evaluator, retrain_space, retrain_spec
from nasengine.space import canonical_json
from nasengine.store import CandidateRecord, StoreError

__all__ = ["WeightTrainingLoop", "sha256", "finite", "outcome_text", "CHECKPOINTS_FOLDER"]

#: The run's subfolder of the checkpoint files.
CHECKPOINTS_FOLDER = "checkpoints"


def sha256(data: bytes) -> str:
    """The hex sha256 of ``data`` (a checkpoint's checksum in the store)."""
    return hashlib.sha256(data).hexdigest()


def finite(metrics: dict) -> bool:
    """Whether every metric is a finite number."""
    return all(isinstance(v, (int, float)) and math.isfinite(float(v)) for v in metrics.values())


def outcome_text(label: str, status: str, metrics: dict, error: str | None) -> str:
    """A progress line for a retraining's outcome: ``"LABEL: ok (psnr 31.2, ssim 0.88)"``."""
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k in ("psnr", "ssim"))
    return f"{label}: {status}" + (f" ({shown})" if shown else "") + (f": {error}" if error else "")


class WeightTrainingLoop(Loop):
    """A loop that trains a supernet's weights in the driver, then derives and retrains (module docstring).
    A subclass sets the checkpoint's names below and ``Options`` (with ``retrain_space``), and implements
    ``run``."""

    retrains = True
    retries = False  # a row is a measurement of the shared weights at their state: it cannot be repeated
    uses_evaluation_time = False  # the plan times the loop's own steps (where the data is here)

    #: the checkpoint's name in the store (and the stem of its files under ``checkpoints/``)
    checkpoint_name: str = ""
    #: the ``format`` entry of a checkpoint's state
    checkpoint_format: str = ""
    #: what a checkpoint is counted in: its state's entry and the word of messages (``epoch``, ``step``)
    checkpoint_unit: str = "epoch"
    #: the letter and digits of the counter in a checkpoint file's name (``oneshot-e00003.state``)
    checkpoint_letter: str = "e"
    checkpoint_digits: int = 5
    #: the loop in messages (``"one-shot"``: "the one-shot loop is bounded by ...")
    loop_words: str = ""
    #: the checkpoint in messages (``"one-shot"``: "not a one-shot checkpoint")
    checkpoint_words: str = ""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.opts = self.options(ctx.spec)
        self.device = "cpu"
        self._costs: dict[str, dict[str, float]] = {}
        self._shown = 0.0

    # ---- checks and plan -------------------------------------------------------------------------------
    @classmethod
    def check_budget(cls, spec, bound: str) -> None:
        """Refuse the ``generations`` / ``candidates`` budgets: the loop is bounded by ``bound`` (words)."""
        for name in ("generations", "candidates"):
            if getattr(spec.budget, name) is not None:
                raise ConfigError(f"budget.{name}: the {cls.loop_words} loop is bounded by {bound}; only "
                                  "budget.seconds applies to it")

    retrain_spec = staticmethod(retrain_spec)

    @classmethod
    def retrain_evaluator(cls, spec, plugins):
        """The retrain evaluator made with its options (a wrong one is a one-line ``retrain.X`` error)."""
        return retrain_evaluator(spec, plugins)

    @classmethod
    def retrain_space_of(cls, spec, plugins):
        """The space the retraining decodes with (:func:`nasengine.search.retraining.retrain_space`)."""
        return retrain_space(spec, plugins, cls.options(spec).retrain_space)

    @staticmethod
    def data_here(context: dict) -> bool:
        """Whether the plan's evaluator finds its data on this machine: without it no search time can be
        estimated, so the plan times nothing (a paper preset's steps take seconds to minutes each on a CPU)."""
        evaluator = context.get("evaluator")
        if evaluator is None:
            return False
        try:
            evaluator.check()
        except NasengineError:
            return False
        return True

    @classmethod
    def plan_retrain(cls, spec, context: dict) -> tuple[str, float | None]:
        """``(what the retraining runs, its seconds here or None)``: the retrain evaluator's own plan for the
        plan's ``context["graph"]`` where the context has it and the plugins."""
        rs = cls.retrain_spec(spec)
        plugins = context.get("plugins")
        if plugins is None or context.get("graph") is None:
            return rs.name, None
        try:
            p = cls.retrain_evaluator(spec, plugins).plan(
                context["graph"], cost=context.get("cost"), measure=bool(context.get("measure")),
                device=context.get("device", "cpu"), threads=context.get("threads"))
        except NasengineError as exc:
            return f"{rs.name} (cannot plan it: {exc})", None
        return f"{rs.name} ({p.work})", p.seconds

    @staticmethod
    def within_budget(spec, seconds: float | None) -> float | None:
        """``seconds`` capped by the ``seconds`` budget (the budget itself when ``seconds`` is unknown)."""
        if spec.budget.seconds is not None:
            return min(seconds, spec.budget.seconds) if seconds is not None else spec.budget.seconds
        return seconds

    # ---- the run ---------------------------------------------------------------------------------------
    @staticmethod
    def _seed(seed: int) -> None:
        """Seed torch, numpy and Python from the run seed."""
        import torch

        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)

    def _show(self, text: str, force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - self._shown > 0.5:
            self._shown = now
            self.ctx.progress.postfix(text)

    # ---- rows ------------------------------------------------------------------------------------------
    def _costs_of(self, key: str, graph, genome) -> dict[str, float]:
        if key not in self._costs:
            costs = {k: float(v) for k, v in self.ctx.cost_model.metrics(graph).items()}
            extra = getattr(self.ctx.space, "genome_metrics", None)
            if callable(extra):
                costs.update({k: float(v) for k, v in extra(genome).items()})
            self._costs[key] = costs
        return self._costs[key]

    def _differs(self, g: int, i: int) -> tuple[str, str]:
        """``(what happened, the word for the new genome)`` in the error of a resumed run whose genome at row
        ``(g, i)`` is not the stored one."""
        return f"resuming, the loop holds a different genome at row ({g}, {i})", "now"

    def _row(self, g: int, i: int, genome: Any, metrics: dict, wall: float, cpu: float = 0.0, *, graph=None,
             failed: str = "non-finite metric(s)") -> CandidateRecord:
        """The row ``(g, i)`` of ``genome`` measured as ``metrics`` (``failed`` when one is not finite, its error
        ``"{failed}: {metrics}"``), or the stored one of an earlier session, after checking it is the same
        genome. ``graph``: the genome's, when the caller has decoded it."""
        ctx = self.ctx
        genome_json = json.loads(canonical_json(ctx.space.to_json(genome)))
        stored = ctx.store.get(g, i)
        if stored is not None:
            if canonical_json(stored.genome) != canonical_json(genome_json):
                what, word = self._differs(g, i)
                raise StoreError(
                    f"{ctx.store.path}: {what} than the stored one; the run is not deterministic given its "
                    f"checkpoint (stored {canonical_json(stored.genome)}, {word} {canonical_json(genome_json)})")
            return stored
        graph = ctx.space.decode(genome) if graph is None else graph
        key = graph.key()
        costs = self._costs_of(key, graph, genome)
        status, error = "ok", None
        if not finite(metrics):
            status, error = "failed", f"{failed}: {metrics}"
        return ctx.record(CandidateRecord(
            generation=g, idx=i, key=key, genome=genome_json, status=status, params=costs.get("params"),
            mult_adds=costs.get("mult_adds"), costs=costs, metrics=metrics, error=error, wall_seconds=wall,
            cpu_seconds=cpu, worker="driver"))

    # ---- retraining ------------------------------------------------------------------------------------
    def _retrain_task(self, g: int, i: int, rec: CandidateRecord, workdir: str | None, keep_model: bool = False):
        """``(task, seed)``: the retraining of ``rec`` from scratch as task ``g:i`` (the ``retrain`` section's
        evaluator, the space's options under ``loop.retrain_space``, the seed of its key)."""
        from nasengine.executors import EvalTask

        spec = self.ctx.spec
        rs = self.retrain_spec(spec)
        seed = candidate_seed(spec.seed, rec.key)
        task = EvalTask(task_id=f"{g}:{i}", space=spec.space.name,
                        space_options={**spec.space.kwargs(), **self.opts.retrain_space},
                        genome=canonical_json(rec.genome), evaluator=rs.name, evaluator_options=rs.kwargs(),
                        seed=seed, device=spec.device, workdir=workdir, keep_model=keep_model)
        return task, seed

    def _record_retrained(self, g: int, i: int, rec: CandidateRecord, seed: int, outcome, label: str) -> None:
        """The row ``(g, i)`` of the retraining ``outcome`` of ``rec`` (``failed`` on a non-finite metric), and
        its progress line, ``label: status (psnr, ssim)``."""
        metrics = dict(outcome.metrics)
        status, error = outcome.status, outcome.error
        if status == "ok" and not finite(metrics):
            status, error = "failed", f"non-finite metric(s): {metrics}"
        self.ctx.record(CandidateRecord(
            generation=g, idx=i, key=rec.key, genome=rec.genome, status=status, params=rec.params,
            mult_adds=rec.mult_adds, costs=dict(rec.costs), metrics=metrics, error=error,
            wall_seconds=outcome.wall_seconds, cpu_seconds=outcome.cpu_seconds, worker=outcome.worker, seed=seed))
        self.ctx.progress.line(outcome_text(label, status, metrics, error))

    # ---- checkpoints -----------------------------------------------------------------------------------
    def _rng_states(self, torch_too: bool = True) -> dict:
        """numpy's and Python's RNG states (``torch_too``: first torch's, and CUDA's on a CUDA device)."""
        if not torch_too:
            return {"numpy": np.random.get_state(), "python": random.getstate()}
        import torch

        states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
        if torch.cuda.is_available() and str(self.device).startswith("cuda"):
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    @staticmethod
    def _set_rng_states(rng: dict) -> None:
        """The RNG states of :meth:`_rng_states` restored (torch's and CUDA's where there)."""
        if "torch" in rng:
            import torch

            torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        if "cuda" in rng:
            import torch

            if torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])

    def _checkpoint_recorded(self, counter: int) -> None:
        """Called after a checkpoint is recorded, before the older files go (e.g. to store the controller)."""

    def _write_checkpoint(self, counter: int, state: dict) -> None:
        """Write ``state`` (after ``format`` and the counter) as the checkpoint after ``counter`` to a new file,
        record it (with its sha256) in the store, then remove the older files: a kill at any moment leaves the
        recorded checkpoint intact."""
        from nasengine.statecodec import encode_state

        ctx, stem = self.ctx, self.checkpoint_name
        folder = ctx.store.run_dir / CHECKPOINTS_FOLDER
        folder.mkdir(exist_ok=True)
        name = f"{stem}-{self.checkpoint_letter}{counter:0{self.checkpoint_digits}d}.state"
        blob = encode_state({"format": self.checkpoint_format, self.checkpoint_unit: int(counter), **state})
        path = folder / name
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        ctx.store.save_checkpoint(stem, counter, f"{CHECKPOINTS_FOLDER}/{name}", sha256(blob))
        self._checkpoint_recorded(counter)
        for old in folder.glob(f"{stem}-{self.checkpoint_letter}*.state"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def _read_checkpoint(self, ck) -> dict:
        """The state of the store's checkpoint record ``ck``, after checking its file is there, has the recorded
        sha256 and is one of this loop's (a one-line :class:`~nasengine.store.StoreError` otherwise)."""
        from nasengine.statecodec import StateCodecError, decode_state

        path = self.ctx.store.run_dir / ck.path
        if not path.is_file():
            raise StoreError(f"{path}: the checkpoint the store records (after {self.checkpoint_unit} {ck.epoch}, "
                             f"sha256 {ck.sha256}) is missing; the run cannot resume")
        blob = Path(path).read_bytes()
        actual = sha256(blob)
        if actual != ck.sha256:
            raise StoreError(f"{path}: checkpoint checksum sha256 {actual} does not match the one the store "
                             f"recorded ({ck.sha256}); the file is torn or was changed, the run cannot resume")
        try:
            state = decode_state(blob, str(path))
        except StateCodecError as exc:
            raise StoreError(str(exc)) from None
        if not isinstance(state, dict) or state.get("format") != self.checkpoint_format:
            raise StoreError(f"{path}: not a {self.checkpoint_words} checkpoint ({self.checkpoint_format})")
        return state
