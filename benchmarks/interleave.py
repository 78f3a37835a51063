"""Timing two ways of doing the same step in one run, interleaved (these machines are noisy): the shared
helper of the benchmarks that report a ratio."""
from __future__ import annotations

from typing import Callable


def interleaved(step: Callable[[str], float], a: str, b: str, *, reps: int,
                warmup: int) -> tuple[dict[str, list[float]], list[float]]:
    """``step(name)`` times one step of ``a`` or ``b`` (seconds). After ``warmup`` steps of each, ``reps``
    repetitions of one step of each, alternating which goes first. Returns the times by name and the
    per-repetition ratios ``a / b``."""
    for _ in range(warmup):
        step(a)
        step(b)
    times: dict[str, list[float]] = {a: [], b: []}
    ratios = []
    for rep in range(reps):
        for name in ((a, b) if rep % 2 == 0 else (b, a)):
            times[name].append(step(name))
        ratios.append(times[a][-1] / times[b][-1])
    return times, ratios
