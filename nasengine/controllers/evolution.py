"""Regularised (aging) evolution, Real et al., *Regularized Evolution for Image Classifier Architecture
Search*, AAAI 2019.

A population of ``population_size`` (P) genomes is first filled by sampling. Then each child is a mutation
of the best of ``tournament_size`` (S) members drawn at random, and when it is told the *oldest* member dies
(not the worst) — the aging that regularises the search.
"""
from __future__ import annotations

from typing import Any, Sequence

import attrs

from nasengine.controller import Result
from nasengine.controllers._common import FAILED, INFEASIBLE, GenomeController, Member, check_n
from nasengine.controllers.random_search import IN_FLIGHT_HELP
from nasengine.options import OptionError, option, optional, whole
from nasengine.reward import Reward
from nasengine.space import Genome, SearchSpace

__all__ = ["RegularizedEvolution"]


class RegularizedEvolution(GenomeController):
    """Aging evolution over any space's ``sample`` / ``mutate``.

    Options: ``population_size`` P (default 16), ``tournament_size`` S (1 <= S <= P, default min(4, P)),
    ``max_tries`` (draws spent per initial sample looking for a genome not proposed before, default 50),
    ``in_flight`` K (default none: generational batches of P). With K, the search runs steady-state as in the
    paper — each freed worker gets a child of the current population — but in a fixed order: child n is bred
    right after result n - K is told, so a run does not depend on which evaluation finishes first.

    * The first P genomes are sampled (more while nothing has been told yet).
    * ``ask(n)`` then returns n children, each ``space.mutate`` of the tournament winner among S members
      drawn without replacement from the current population; the population does not change within one
      ``ask``, so a batch is what n asynchronous workers would have proposed.
    * The winner is the member with the largest scalar reward (``Result.reward``, else
      ``reward.scalar(metrics)``), feasible members first, then infeasible ones by smaller violation.
    * ``tell`` adds each result as the youngest member and removes the oldest while more than P are alive.
      A failed result (no usable objectives) does not enter the population: it could never win a tournament
      while a valid member exists, and keeping it would kill a valid member early.
    """

    registry_name = "evolution"

    @attrs.frozen(kw_only=True)
    class Options(GenomeController.Options):
        population_size: int = option(16, whole(1), help="P, the population (and the batch of ask() without n)")
        tournament_size: int | None = option(None, optional(whole(1)),
                                             help="S <= P, members drawn per tournament (none: min(4, P))")
        in_flight: int | None = option(None, optional(whole(1)), help=IN_FLIGHT_HELP)

        def __attrs_post_init__(self):
            if self.tournament_size is not None and self.tournament_size > self.population_size:
                raise OptionError("tournament_size", f"must be a whole number between 1 and population_size "
                                  f"({self.population_size}), got {self.tournament_size}")

    def __init__(self, space: SearchSpace, reward: Reward, *, seed: int = 0, **options: Any):
        super().__init__(space, reward, seed=seed, **options)
        if self.tournament_size is None:
            self.tournament_size = min(4, self.population_size)
        self.population: list[Member] = []  # oldest first
        self.n_sampled = 0

    def options(self) -> dict[str, Any]:
        return {**super().options(), "tournament_size": self.tournament_size, "in_flight": self.in_flight}

    # ---- ask / tell ----------------------------------------------------------------------------------
    def ask(self, n: int | None = None) -> list[Genome]:
        n = check_n(n, self.population_size)
        out: list[Genome] = []
        for _ in range(n):
            if self.n_sampled < self.population_size or not self.population:
                genome, key = self.sample_new()
                self.n_sampled += 1
            else:
                parent = self.tournament()
                genome = self.space.mutate(parent.genome, self.rng)
                key = self.space.genome_key(genome)
            out.extend(self._propose([(genome, key)]))
        return out

    def tell(self, results: Sequence[Result]) -> None:
        for member in self._members(results):
            if member.tier == FAILED:
                continue
            self.population.append(member)
            while len(self.population) > self.population_size:
                self.population.pop(0)  # the oldest dies

    def tournament(self) -> Member:
        """The winner among ``tournament_size`` members drawn at random (uses ``self.rng``)."""
        pop = self.population
        size = min(self.tournament_size, len(pop))
        drawn = self.rng.choice(len(pop), size=size, replace=False)
        return pop[min(drawn, key=lambda i: _rank_key(pop[i]))]

    # ---- state -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["population"] = [m.to_state(self.space) for m in self.population]
        state["n_sampled"] = self.n_sampled
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = [Member.from_state(self.space, m) for m in state["population"]]
        self.n_sampled = int(state["n_sampled"])


def _rank_key(member: Member) -> tuple:
    """Smaller is better: feasible first, then infeasible by violation; within a tier larger reward."""
    tier = member.tier
    return (tier, member.cv if tier == INFEASIBLE else 0.0, -member.fitness)
