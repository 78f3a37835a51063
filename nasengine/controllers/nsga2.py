"""NSGA-II (Deb et al., *A fast and elitist multiobjective genetic algorithm: NSGA-II*, IEEE TEC 2002) over
any space's ``sample`` / ``crossover`` / ``mutate``, in ask/tell form.

The sorting, crowding and tie-breaking are pymoo's (``NonDominatedSorting``, the ``"cd"`` crowding function,
``randomized_argsort`` and the tournament ``compare``), fed with this controller's ``rng``; the constraint
handling is pymoo's too (Deb's constraint domination: feasible before infeasible, infeasible by smaller
violation).
"""
from __future__ import annotations

from typing import Any, Sequence

import attrs
import numpy as np
from pymoo.operators.selection.tournament import compare
from pymoo.operators.survival.rank_and_crowding.metrics import get_crowding_function
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
from pymoo.util.randomized_argsort import randomized_argsort

from nasengine.controller import Result
from nasengine.controllers._common import FAILED, FEASIBLE, GenomeController, Member, check_n
from nasengine.options import option, probability, whole
from nasengine.reward import Reward
from nasengine.space import Genome, SearchSpace

__all__ = ["NSGA2", "rank_and_crowding", "survive"]

_NDS = NonDominatedSorting()
_CROWDING = get_crowding_function("cd")


class NSGA2(GenomeController):
    """NSGA-II with constraint domination.

    Options: ``population_size`` N (default 16), ``crossover_prob`` (default 0.9), ``mutation_prob``
    (default 0.5), ``max_tries`` (matings spent per offspring looking for a genome not proposed before in
    this run, default 50).

    * The initial population is N sampled genomes (distinct where the space allows); while no member of
      the population has a usable result, ``ask`` keeps sampling.
    * Each generation's offspring come from binary tournaments on (constraint violation, rank, crowding);
      two parents are crossed with probability ``crossover_prob`` (else copied) and each child mutated with
      probability ``mutation_prob`` (:meth:`vary`, :meth:`crossover` and :meth:`mutate` are the hooks a
      subclass overrides for its own operators); an offspring already proposed in this run is discarded and the mating
      repeated (pymoo's duplicate elimination), at most ``max_tries`` times, then mutated once more.
    * When N offspring of a generation have been told, the best N of parents + offspring survive by
      constraint domination, non-dominated rank and crowding distance.
    * Failed results (no usable objectives) rank after every infeasible one and are never drawn into a
      tournament while a valid member exists.

    ``ask()`` without ``n`` is one generation (N genomes); any other batch size works, survival happens each
    time N results have been told.
    """

    registry_name = "nsga2"
    #: the origin tag of a child varied by the space's own ``mutate``
    mutation_tag = "mutation"

    @attrs.frozen(kw_only=True)
    class Options(GenomeController.Options):
        population_size: int = option(16, whole(1), help="N, the population (and the batch of ask() without n)")
        crossover_prob: float = option(0.9, probability, help="a mating crosses its two parents (else copies)")
        mutation_prob: float = option(0.5, probability, help="each child is mutated")

    def __init__(self, space: SearchSpace, reward: Reward, *, seed: int = 0, **options: Any):
        super().__init__(space, reward, seed=seed, **options)
        self.population: list[Member] = []
        self.offspring: list[Member] = []  # told, waiting for the survival of their generation
        self.generation = 0
        #: how each genome of the current ``ask`` was made (genome key -> "init", "copy", "crossover" or the
        #: tag of :meth:`mutate`); reset by every ``ask``, not state
        self.origins_made: dict[str, str] = {}
        self._rank = np.zeros(0, dtype=int)
        self._crowding = np.zeros(0)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "crossover_prob": self.crossover_prob, "mutation_prob": self.mutation_prob}

    # ---- ask -------------------------------------------------------------------------------------------
    def ask(self, n: int | None = None) -> list[Genome]:
        n = check_n(n, self.population_size)
        self.origins_made = {}
        out: list[Genome] = []
        while len(out) < n:
            if any(m.tier != FAILED for m in self.population):
                children = self._mate()
            else:  # nothing to breed from yet (initial population, or every member failed): sample
                children = [self.sample_new()]
                self.origins_made[children[0][1]] = "init"
            out.extend(self._propose(children[: n - len(out)]))
        return out

    def _mate(self) -> list[tuple[Genome, str]]:
        """One or two offspring not proposed before (where the space allows) from two tournament winners."""
        exhausted = self.space_exhausted()
        for _ in range(self.max_tries):
            children = self.make_offspring()
            fresh = [(g, k) for g, k in children if exhausted or k not in self.seen]
            if len(fresh) == 2 and fresh[0][1] == fresh[1][1]:
                fresh = fresh[:1]
            if fresh:
                return fresh
        # duplicates all the way down: one more mutation (the space's) and take what comes
        genome, _ = children[0]
        genome = self.space.mutate(genome, self.rng)
        key = self.space.genome_key(genome)
        self.origins_made[key] = self.mutation_tag
        return [(genome, key)]

    def make_offspring(self) -> list[tuple[Genome, str]]:
        """Two children ``(genome, genome_key)`` of two tournament winners, varied by :meth:`vary`; each
        child's origin tag goes to :attr:`origins_made`."""
        a = self.population[self.tournament()].genome
        b = self.population[self.tournament()].genome
        out = []
        for child, origin in self.vary(a, b):
            key = self.space.genome_key(child)
            self.origins_made[key] = origin
            out.append((child, key))
        return out

    # ---- variation hooks ---------------------------------------------------------------------------------
    def vary(self, a: Genome, b: Genome) -> list[tuple[Genome, str]]:
        """Two children of the parents ``a`` and ``b`` with their origin tags: crossed by :meth:`crossover`
        with probability ``crossover_prob`` (tag ``"crossover"``, else copied: ``"copy"``), then each mutated
        by :meth:`mutate` with probability ``mutation_prob`` (the tag :meth:`mutate` returns).

        Extension point, as are :meth:`crossover` and :meth:`mutate`: a subclass overrides them for its own
        variation operators (e.g. a hybrid mutation); selection (``tournament``) and survival stay NSGA-II's."""
        crossed = self.rng.random() < self.crossover_prob
        c1, c2 = self.crossover(a, b) if crossed else (a, b)
        out = []
        for child in (c1, c2):
            origin = "crossover" if crossed else "copy"
            if self.rng.random() < self.mutation_prob:
                child, origin = self.mutate(child)
            out.append((child, origin))
        return out

    def crossover(self, a: Genome, b: Genome) -> tuple[Genome, Genome]:
        """Two children of ``a`` and ``b``: the space's ``crossover``."""
        return self.space.crossover(a, b, self.rng)

    def mutate(self, genome: Genome) -> tuple[Genome, str]:
        """``(child, tag)``: the space's ``mutate``, tagged :attr:`mutation_tag`."""
        return self.space.mutate(genome, self.rng), self.mutation_tag

    def tournament(self) -> int:
        """Index (into ``population``) of the winner of one binary tournament (pymoo's NSGA-II rule)."""
        pool = [i for i, m in enumerate(self.population) if m.tier != FAILED] or list(range(len(self.population)))
        if len(pool) == 1:
            return pool[0]
        i, j = (pool[k] for k in self.rng.choice(len(pool), size=2, replace=False))
        a, b = self.population[i], self.population[j]
        if a.cv > 0.0 or b.cv > 0.0:
            return int(compare(i, a.cv, j, b.cv, method="smaller_is_better", return_random_if_equal=True,
                               random_state=self.rng))
        winner = compare(i, self._rank[i], j, self._rank[j], method="smaller_is_better", random_state=self.rng)
        if winner is None:
            winner = compare(i, self._crowding[i], j, self._crowding[j], method="larger_is_better",
                             return_random_if_equal=True, random_state=self.rng)
        return int(winner)

    # ---- tell ------------------------------------------------------------------------------------------
    def tell(self, results: Sequence[Result]) -> None:
        self.offspring.extend(self._members(results))
        if len(self.offspring) >= self.population_size:
            merged = self.population + self.offspring
            keep = survive(merged, self.population_size, self.rng)
            self.population = [merged[i] for i in keep]
            self.offspring = []
            self.generation += 1
            self._update_rank()

    def _update_rank(self) -> None:
        self._rank, self._crowding = rank_and_crowding(self.population)

    # ---- state -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["population"] = [m.to_state(self.space) for m in self.population]
        state["offspring"] = [m.to_state(self.space) for m in self.offspring]
        state["generation"] = self.generation
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = [Member.from_state(self.space, m) for m in state["population"]]
        self.offspring = [Member.from_state(self.space, m) for m in state["offspring"]]
        self.generation = int(state["generation"])
        self._update_rank()


# ---- survival and ranking (pymoo machinery) -------------------------------------------------------------
def _objective_matrix(members: Sequence[Member]) -> np.ndarray:
    return np.array([m.objectives for m in members], dtype=float)


def survive(members: Sequence[Member], n_survive: int, rng: np.random.Generator) -> list[int]:
    """Indices of the ``n_survive`` members kept by NSGA-II survival with constraint domination.

    As pymoo's ``Survival.do`` + ``RankAndCrowding``: the feasible members are sorted into non-dominated
    fronts and taken front by front, the front that does not fit whole cut by crowding distance (ties broken
    at random with ``rng``); remaining places go to infeasible members by increasing violation, failed
    members last.
    """
    n_survive = min(n_survive, len(members))
    feasible = [i for i, m in enumerate(members) if m.tier == FEASIBLE]
    others = [i for i, m in enumerate(members) if m.tier != FEASIBLE]
    others.sort(key=lambda i: (members[i].cv, i))
    survivors: list[int] = []
    if feasible:
        F = _objective_matrix([members[i] for i in feasible])
        n_feasible = min(len(feasible), n_survive)
        for front in _NDS.do(F, n_stop_if_ranked=n_feasible):
            order = np.arange(len(front))
            if len(survivors) + len(front) > n_feasible:
                n_remove = len(survivors) + len(front) - n_feasible
                crowding = _CROWDING.do(F[front, :], n_remove=n_remove)
                order = randomized_argsort(crowding, order="descending", method="numpy", random_state=rng)
                order = order[:-n_remove]
            survivors.extend(feasible[int(front[k])] for k in order)
            if len(survivors) >= n_feasible:
                break
    survivors.extend(others[: n_survive - len(survivors)])
    return survivors


def rank_and_crowding(members: Sequence[Member]) -> tuple[np.ndarray, np.ndarray]:
    """Non-dominated rank and crowding distance (within its front) of each feasible member; infeasible and
    failed members get rank ``len(members)`` and crowding 0 (tournaments compare them by violation)."""
    n = len(members)
    rank = np.full(n, n, dtype=int)
    crowding = np.zeros(n)
    feasible = [i for i, m in enumerate(members) if m.tier == FEASIBLE]
    if feasible:
        F = _objective_matrix([members[i] for i in feasible])
        for r, front in enumerate(_NDS.do(F)):
            cd = _CROWDING.do(F[front, :])
            for k, idx in enumerate(front):
                rank[feasible[int(idx)]] = r
                crowding[feasible[int(idx)]] = cd[k]
    return rank, crowding
