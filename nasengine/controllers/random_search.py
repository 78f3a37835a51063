"""Random search: the baseline every search should beat."""
from __future__ import annotations

from typing import Any, Sequence

import attrs

from nasengine.controller import Result
from nasengine.controllers._common import GenomeController, check_n
from nasengine.options import option, optional, whole
from nasengine.space import Genome

__all__ = ["RandomSearch"]

IN_FLIGHT_HELP = "steady-state search with this many evaluations under way (none: generational)"


class RandomSearch(GenomeController):
    """Uniform sampling from the space (``space.sample``), learning nothing.

    Options: ``population_size`` (the batch of ``ask()`` without ``n``, default 8), ``max_tries`` (draws
    spent per genome looking for one not proposed before in this run, default 50; a small space that is
    exhausted yields repeats) and ``in_flight`` (steady-state search with that many evaluations under way,
    see :class:`~nasengine.controller.Controller`; default: generational).
    """

    registry_name = "random"

    @attrs.frozen(kw_only=True)
    class Options(GenomeController.Options):
        in_flight: int | None = option(None, optional(whole(1)), help=IN_FLIGHT_HELP)

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
