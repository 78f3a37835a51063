"""The search loops the engine owns.

* :mod:`nasengine.search.generational` — ask a population, cost it, enforce constraints, evaluate each
  candidate on its own (through an executor), tell, store, repeat (FALSR; every generic controller).

::

    from nasengine.search import run_search, resume_search

    out = run_search("runs/simple", method="simple", preset="smoke", seed=0)
    out.counts            # {"ok": 17, "failed": 0, "infeasible": 0, "duplicate": 1}
    resume_search("runs/simple", overrides={"budget": {"generations": 6}})   # continue / extend
"""
from __future__ import annotations

from nasengine.search.generational import (
    COUNTED_STATUSES,
    Budget,
    RunLockedError,
    SearchOutcome,
    candidate_seed,
    environment,
    resume_search,
    run_search,
)

__all__ = ["Budget", "SearchOutcome", "run_search", "resume_search", "candidate_seed", "environment",
           "RunLockedError", "COUNTED_STATUSES"]
