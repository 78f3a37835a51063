"""Running a search: a run session (:mod:`nasengine.search.session`) that calls the method's loop.

* :mod:`nasengine.search.session` — lock (held by the store), store, resolved spec, environment, progress,
  final status, executor life; picks the loop from :data:`LOOPS` by ``Method.loop``.
* :mod:`nasengine.search.generational` — ask a population, cost it, enforce constraints, evaluate each
  candidate on its own (through an executor), tell, store, repeat (FALSR; every generic controller).
* :mod:`nasengine.search.steady` — the same pipeline steady-state, for a controller with ``in_flight``.
* :mod:`nasengine.search.oneshot` — epochs of weight-sharing supernet training on sampled children and
  controller updates from their shared-weight rewards, then derivation and retraining (DeCoNAS, HNAS).
* :mod:`nasengine.search.differentiable` — weights and architecture parameters of one supernet trained together
  (L1 + lambda * differentiable Mult-Adds, the SR trainer's step hook), then derivation and retraining (FGNAS).
* :mod:`nasengine.search.trainingloop` — the base of those two loops (they train weights in the driver):
  seeding, checkpoints with RNG states, rows, the retraining's tasks and rows; :mod:`nasengine.search.retraining`
  — their ``retrain`` section, evaluator and space.
* :mod:`nasengine.search.context` — what a loop gets from the session, and the candidate pipeline.
* :mod:`nasengine.search.budget`, :mod:`nasengine.search.records`, :mod:`nasengine.search.progress`.

::

    from nasengine.search import run_search, resume_search

    out = run_search("runs/simple", method="simple", preset="smoke", seed=0)
    out.counts            # {"ok": 17, "failed": 0, "infeasible": 0, "duplicate": 1}
    resume_search("runs/simple", overrides={"budget": {"generations": 6}})   # continue / extend
"""
from __future__ import annotations

from nasengine.search.budget import Budget
from nasengine.search.records import COUNTED_STATUSES, SearchOutcome, candidate_seed, union_length
from nasengine.search.session import (
    LOOPS,
    RESUMABLE_SECTIONS,
    RunSession,
    apply_executor_args,
    environment,
    resume_search,
    run_search,
)
from nasengine.store import RunLock, RunLockedError

__all__ = ["Budget", "SearchOutcome", "run_search", "resume_search", "candidate_seed", "environment",
           "RunLockedError", "RunLock", "COUNTED_STATUSES", "union_length", "LOOPS", "RESUMABLE_SECTIONS",
           "RunSession", "apply_executor_args"]
