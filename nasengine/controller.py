"""The Controller role: proposes genomes and learns from their results (``ask`` / ``tell``).

A controller never evaluates, stores or parallelises anything — the search loop does (pymoo's
problem/algorithm split). Its whole state must round-trip through ``state_dict`` / ``load_state_dict``
(plain Python, numpy arrays and torch tensors are fine; the store keeps it as data, see
:mod:`nasengine.statecodec`, never as a pickle), so that a resumed run asks
exactly what an uninterrupted one would have asked.
"""
from __future__ import annotations

import abc
import numbers
from typing import Any, Sequence

import attrs
import numpy as np

from nasengine.reward import Reward
from nasengine.space import Genome, SearchSpace

__all__ = ["Controller", "Result"]


@attrs.frozen
class Result:
    """What the loop tells a controller about one proposed genome.

    ``status`` is ``"ok"``, ``"failed"`` (evaluation raised or diverged) or ``"infeasible"`` (rejected by a
    constraint, possibly before training). ``objectives`` is the minimisation-form vector of the reward's
    objectives (``None`` when failed); ``violation`` is 0 for a feasible candidate and grows with the
    constraint violation; ``reward`` is the scalar reward for policy-gradient controllers.
    """

    genome: Genome
    key: str
    status: str
    metrics: dict = attrs.field(factory=dict)
    objectives: tuple | None = None
    violation: float = 0.0
    reward: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Controller(abc.ABC):
    """Base class of controllers.

    ``space`` is the search space, ``reward`` gives objective directions and constraints, ``seed`` seeds
    ``self.rng`` (the controller's only randomness); other options come from the method preset.

    ``in_flight`` selects the search loop. ``None`` (the default): generational — the loop asks
    ``ask()`` (a generation), evaluates it all, then tells the results. An int K: steady-state — the loop
    asks one genome at a time and tells each result alone, in ask order; genome n is asked right after
    genome n - K is told, so at most K are under evaluation and workers never wait for a whole generation.
    The run is the same whatever the executor and timing (the order is fixed by K, not by which evaluation
    finishes first). A controller offers it by accepting ``ask(1)`` / ``tell([one])`` at any time and an
    ``in_flight`` option (random search and aging evolution do).
    """

    in_flight: int | None = None

    def __init__(self, space: SearchSpace, reward: Reward, *, seed: int = 0, population_size: int = 8):
        from nasengine.options import OptionError, whole

        try:
            population_size = whole(1).value("population_size", population_size)
        except OptionError as exc:
            raise exc.under("controller") from None
        self.space = space
        self.reward = reward
        self.seed = seed
        self.population_size = population_size
        self.rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def ask(self, n: int | None = None) -> list[Genome]:
        """The next ``n`` genomes to evaluate (``None``: the controller's natural batch, one generation)."""

    @abc.abstractmethod
    def tell(self, results: Sequence[Result]) -> None:
        """Learn from the results of the genomes of the last ``ask`` (in the same order)."""

    def sample(self, n: int) -> list[Genome]:
        """``n`` architectures to train shared weights on (the one-shot loop): never told, not recorded as
        asked or pending. Default: the space's uniform sampler drawing from ``self.rng`` — so it advances the
        rng, and the asks that follow differ from those of a run that did not sample (a resumed run restores
        the rng with the rest of the state, so it stays exact)."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            from nasengine.errors import ConfigError

            raise ConfigError(f"sample(n): n must be a whole number >= 0, got {n!r}")
        return [self.space.sample(self.rng) for _ in range(int(n))]

    def stats(self) -> dict[str, float]:
        """Numbers a search shows about the controller's learning (e.g. ``baseline``, ``entropy``, ``loss`` of
        a policy-gradient controller's last update); default none. Never part of the state."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; subclasses extend the dict."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
