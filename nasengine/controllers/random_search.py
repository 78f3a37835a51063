"""Random search: the baseline every search should beat."""
from __future__ import annotations

from typing import Any, Sequence

from nasengine.controller import Result
from nasengine.controllers._common import (
    DEFAULT_MAX_TRIES,
    GenomeController,
    check_n,
    in_flight_option,
    reject_unknown,
)
from nasengine.reward import Reward
from nasengine.space import Genome, SearchSpace

__all__ = ["RandomSearch"]


class RandomSearch(GenomeController):
    """Uniform sampling from the space (``space.sample``), learning nothing.

    Options: ``population_size`` (the batch of ``ask()`` without ``n``, default 8), ``max_tries`` (draws
    spent per genome looking for one not proposed before in this run, default 50; a small space that is
    exhausted yields repeats) and ``in_flight`` (steady-state search with that many evaluations under way,
    see :class:`~nasengine.controller.Controller`; default: generational).
    """

    registry_name = "random"

    def __init__(self, space: SearchSpace, reward: Reward, *, seed: int = 0, population_size: int = 8,
                 max_tries: int = DEFAULT_MAX_TRIES, in_flight: int | None = None, **unknown: Any):
        reject_unknown(type(self), unknown, ("seed", "population_size", "max_tries", "in_flight"))
        super().__init__(space, reward, seed=seed, population_size=population_size, max_tries=max_tries)
        self.in_flight = in_flight_option(in_flight)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "in_flight": self.in_flight}

    def ask(self, n: int | None = None) -> list[Genome]:
        n = check_n(n, self.population_size)
        out = []
        for _ in range(n):
            genome, key = self.sample_new()
            out.extend(self._propose([(genome, key)]))
        return out

    def tell(self, results: Sequence[Result]) -> None:
        self._members(results)
