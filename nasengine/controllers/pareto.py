"""Pareto fronts and hypervolume of results (minimisation form), on pymoo's machinery.

Used by the NSGA-II controller's tests and by the report module::

    front = pareto_front(results)                      # feasible, non-dominated results
    hv = hypervolume([r.objectives for r in front], ref_point=[0.0, 1e6])
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from nasengine.errors import InputError

__all__ = ["pareto_front", "non_dominated", "hypervolume", "is_feasible"]


def _field(result: Any, name: str, default: Any = None) -> Any:
    if isinstance(result, Mapping):
        return result.get(name, default)
    return getattr(result, name, default)


def _objectives(result: Any) -> np.ndarray | None:
    obj = _field(result, "objectives")
    if obj is None:
        return None
    try:
        arr = np.asarray(obj, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return None
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        return None
    return arr


def is_feasible(result: Any) -> bool:
    """``status == "ok"``, zero violation and finite objectives (a :class:`~nasengine.controller.Result` or a
    mapping with the same field names)."""
    if _field(result, "status", "ok") != "ok":
        return False
    try:
        violation = float(_field(result, "violation", 0.0) or 0.0)
    except (TypeError, ValueError):
        return False
    if math.isnan(violation) or violation > 0.0:
        return False
    return _objectives(result) is not None


def non_dominated(points: Any) -> np.ndarray:
    """Indices (ascending) of the rows of ``points`` (minimisation form) that no other row dominates.
    Equal rows do not dominate each other, so all copies of a non-dominated point are kept."""
    F = np.asarray(points, dtype=float)
    if F.size == 0:
        return np.zeros(0, dtype=int)
    if F.ndim != 2:
        raise InputError(f"points must be a 2-d array (one row per point), got shape {F.shape}")
    front = NonDominatedSorting().do(F, only_non_dominated_front=True)
    return np.sort(np.asarray(front, dtype=int))


def pareto_front(results: Iterable[Any]) -> list:
    """The feasible results that no other feasible result dominates, in their input order.

    ``results`` are :class:`~nasengine.controller.Result` objects (or mappings with ``status``, ``violation``
    and ``objectives``), objectives in minimisation form (``Reward.vector``). Failed and infeasible results are
    never on the front.
    """
    feasible = [r for r in results if is_feasible(r)]
    if not feasible:
        return []
    dims = {len(_objectives(r)) for r in feasible}
    if len(dims) != 1:
        raise InputError(f"results have objective vectors of different lengths: {sorted(dims)}")
    F = np.stack([_objectives(r) for r in feasible])
    return [feasible[i] for i in non_dominated(F)]


def hypervolume(points: Any, ref_point: Sequence[float]) -> float:
    """The hypervolume dominated by ``points`` (minimisation form) and bounded by ``ref_point``.

    Points that do not strictly dominate ``ref_point`` contribute nothing; no points give 0.0. Computed by
    :class:`pymoo.indicators.hv.HV`.
    """
    ref = np.asarray(ref_point, dtype=float).reshape(-1)
    if ref.size == 0 or not np.all(np.isfinite(ref)):
        raise InputError(f"ref_point must be a finite vector, got {ref_point!r}")
    F = np.asarray(points, dtype=float)
    if F.size == 0:
        return 0.0
    F = F.reshape(-1, ref.size) if F.ndim == 1 else F
    if F.ndim != 2 or F.shape[1] != ref.size:
        raise InputError(f"points have {F.shape[-1]} objectives but ref_point has {ref.size}")
    F = F[np.all(np.isfinite(F), axis=1) & np.all(F < ref, axis=1)]
    if len(F) == 0:
        return 0.0
    return float(HV(ref_point=ref)(F))
