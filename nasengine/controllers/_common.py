"""Shared plumbing of the generic controllers: option checks, result classification, bookkeeping.

Private: the public names live in :mod:`nasengine.controllers`.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import attrs
import numpy as np

from nasengine.controller import Controller, Result
from nasengine.errors import ConfigError
from nasengine.options import OptionError, option, read_options, whole
from nasengine.reward import Reward
from nasengine.space import Genome, SearchSpace

#: How many draws a controller spends looking for a genome it has not proposed before, per genome.
DEFAULT_MAX_TRIES = 50

# Tiers of a told result, best first.
FEASIBLE, INFEASIBLE, FAILED = 0, 1, 2


def check_n(n: Any, default: int) -> int:
    if n is None:
        return default
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:  # an argument, not an option
        raise ConfigError(f"ask(n): n must be a whole number >= 0 or None, got {n!r}")
    return int(n)


@attrs.define
class Member:
    """A told genome as a controller keeps it: the result summary plus its birth index (age)."""

    genome: Genome
    genome_key: str
    key: str
    status: str
    objectives: tuple | None
    violation: float
    fitness: float
    birth: int = 0

    # ---- classification ------------------------------------------------------------------------
    @property
    def tier(self) -> int:
        """0 feasible, 1 infeasible (constraint violated), 2 failed (no usable objectives)."""
        if self.status == "failed":
            return FAILED
        if self.status == "infeasible" or self.violation > 0.0:
            return INFEASIBLE
        if self.objectives is None:
            return FAILED
        return FEASIBLE

    @property
    def cv(self) -> float:
        """Constraint violation used for constraint domination: 0 feasible, > 0 infeasible, inf failed."""
        tier = self.tier
        if tier == FEASIBLE:
            return 0.0
        if tier == FAILED:
            return math.inf
        v = self.violation
        if not math.isfinite(v):
            return 1e300  # worse than any measured violation, better than a failure
        return max(v, 1e-12)

    # ---- plain-data state ------------------------------------------------------------------------
    def to_state(self, space: SearchSpace) -> dict:
        return {
            "genome": space.to_json(self.genome),
            "genome_key": self.genome_key,
            "key": self.key,
            "status": self.status,
            "objectives": None if self.objectives is None else [float(v) for v in self.objectives],
            "violation": float(self.violation),
            "fitness": float(self.fitness),
            "birth": int(self.birth),
        }

    @classmethod
    def from_state(cls, space: SearchSpace, data: dict) -> "Member":
        obj = data["objectives"]
        return cls(
            genome=space.from_json(data["genome"]),
            genome_key=data["genome_key"],
            key=data["key"],
            status=data["status"],
            objectives=None if obj is None else tuple(float(v) for v in obj),
            violation=float(data["violation"]),
            fitness=float(data["fitness"]),
            birth=int(data["birth"]),
        )


def _finite_vector(values) -> tuple | None:
    if values is None:
        return None
    try:
        arr = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return None
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        return None
    return tuple(float(v) for v in arr)


def fitness_of(result: Result, reward: Reward) -> float:
    """The scalar reward of ``result`` (larger is better): ``result.reward`` when the loop set it, else the
    reward's scalarisation of the metrics, else minus the first objective; ``-inf`` when none is usable."""
    if result.reward is not None:
        try:
            value = float(result.reward)
        except (TypeError, ValueError):
            value = math.nan
        if math.isfinite(value):
            return value
    if result.metrics:
        try:
            value = float(reward.scalar(result.metrics))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            value = math.nan
        if math.isfinite(value):
            return value
    obj = _finite_vector(result.objectives)
    if obj is not None:
        violation = float(result.violation) if math.isfinite(float(result.violation)) else 0.0
        return -obj[0] - reward.penalty * violation
    return -math.inf


def member_from_result(space: SearchSpace, reward: Reward, result: Result, birth: int) -> Member:
    """Summarise a told :class:`Result`. ``ok`` results without finite objectives count as failed."""
    status = result.status if result.status in ("ok", "failed", "infeasible") else "failed"
    objectives = _finite_vector(result.objectives) if status != "failed" else None
    if status == "ok" and objectives is None:
        status = "failed"
    try:
        violation = float(result.violation)
    except (TypeError, ValueError):
        violation = math.inf
    if math.isnan(violation):
        violation = math.inf
    violation = max(violation, 0.0)
    fitness = fitness_of(result, reward) if status != "failed" else -math.inf
    return Member(
        genome=result.genome,
        genome_key=space.genome_key(result.genome),
        key=str(result.key),
        status=status,
        objectives=objectives,
        violation=violation,
        fitness=fitness,
        birth=birth,
    )


class GenomeController(Controller):
    """Base of the generic controllers: remembers every proposed genome key (to avoid repeats) and the
    genomes asked but not yet told (``pending``); serialises genomes with the space's JSON.

    Options are declared by ``Options`` (a subclass extends ``Parent.Options``); each becomes an attribute."""

    #: the name the controller is registered under (used in messages)
    registry_name: str = ""

    @attrs.frozen(kw_only=True)
    class Options:
        """The options of every generic controller; a subclass extends them (``class Options(Parent.Options)``)
        and every declared option becomes an attribute of the controller."""

        population_size: int = option(8, whole(1), help="genomes of one generation (what ask() without n asks)")
        max_tries: int = option(DEFAULT_MAX_TRIES, whole(1),
                                help="draws spent per genome looking for one not proposed before in this run")

    def __init__(self, space: SearchSpace, reward: Reward, *, seed: int = 0, **options: Any):
        try:
            seed = whole(0).value("seed", seed)
        except OptionError as exc:
            raise exc.under("controller") from None
        declared = read_options("controller", type(self).Options, options,
                                name=self.registry_name or type(self).__name__)
        super().__init__(space, reward, seed=seed, population_size=declared.population_size)
        for field in attrs.fields(type(declared)):
            setattr(self, field.name, getattr(declared, field.name))
        self.seen: set[str] = set()
        self.pending: list[Genome] = []
        self._pending_keys: list[str] = []
        self.n_told = 0
        self._space_size: int | None = None

    # ---- options recorded in the state (a state only loads into a controller with the same options) ----
    def options(self) -> dict[str, Any]:
        return {"population_size": self.population_size, "max_tries": self.max_tries}

    # ---- proposing -------------------------------------------------------------------------------------
    def space_exhausted(self) -> bool:
        """True when every genome of the space has been proposed already (small spaces).

        Extension point for subclasses (as are :meth:`sample_new` and, in NSGA-II, ``vary`` / ``crossover`` /
        ``mutate``)."""
        if self._space_size is None:
            try:
                self._space_size = int(self.space.size())
            except Exception:  # a space that cannot count: never exhausted
                self._space_size = -1
        return 0 <= self._space_size <= len(self.seen)

    def sample_new(self) -> tuple[Genome, str]:
        """A sampled genome whose key was not proposed before in this run (``max_tries`` draws at most).

        Extension point: a subclass overrides it to change how new individuals are made (e.g. FALSR's
        population initialisation)."""
        genome = self.space.sample(self.rng)
        key = self.space.genome_key(genome)
        if self.space_exhausted():
            return genome, key
        tries = 1
        while key in self.seen and tries < self.max_tries:
            genome = self.space.sample(self.rng)
            key = self.space.genome_key(genome)
            tries += 1
        return genome, key

    def _propose(self, genomes: Sequence[tuple[Genome, str]]) -> list[Genome]:
        out = []
        for genome, key in genomes:
            self.seen.add(key)
            self.pending.append(genome)
            self._pending_keys.append(key)
            out.append(genome)
        return out

    # ---- telling ---------------------------------------------------------------------------------------
    def _members(self, results: Sequence[Result]) -> list[Member]:
        members = []
        for result in results:
            m = member_from_result(self.space, self.reward, result, birth=self.n_told)
            self.n_told += 1
            self.seen.add(m.genome_key)
            self._drop_pending(m.genome_key)
            members.append(m)
        return members

    def _drop_pending(self, genome_key: str) -> None:
        try:
            i = self._pending_keys.index(genome_key)
        except ValueError:
            return  # told without being asked (e.g. seeded by the loop): fine
        del self.pending[i]
        del self._pending_keys[i]

    # ---- state -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            controller=self.registry_name or type(self).__name__,
            options=self.options(),
            seen=sorted(self.seen),
            pending=[self.space.to_json(g) for g in self.pending],
            n_told=self.n_told,
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        name = self.registry_name or type(self).__name__
        if state.get("controller", name) != name:
            raise ConfigError(f"controller: the saved state belongs to controller {state.get('controller')!r}, "
                              f"not {name!r}")
        mine = self.options()
        theirs = state.get("options", mine)
        for name in sorted(set(mine) | set(theirs)):
            if mine.get(name) != theirs.get(name):
                raise ConfigError(
                    f"controller.{name}: the saved state was made with {name}={theirs.get(name)!r}, "
                    f"this controller has {mine.get(name)!r}"
                )
        super().load_state_dict(state)
        self.seen = set(state["seen"])
        self.pending = [self.space.from_json(g) for g in state["pending"]]
        self._pending_keys = [self.space.genome_key(g) for g in self.pending]
        self.n_told = int(state["n_told"])
