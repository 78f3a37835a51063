"""Rewards and objectives: metrics -> objective vector, constraint violation and a scalar reward.

Metrics are flat dicts such as ``{"psnr": 37.1, "ssim": 0.958, "mult_adds": 2.3e10, "params": 1.1e5}``.
Cost metrics are known before any training, so constraints on them are checked before a candidate is
trained (``stage="cost"``); others after evaluation.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import attrs
import numpy as np

from nasengine.errors import ConfigError
from nasengine.options import Check, option, read_options, real, sequence

__all__ = ["Objective", "Constraint", "Reward", "COST_METRICS", "objectives_reward"]

#: Metrics the cost model provides before training.
COST_METRICS = frozenset({"params", "params_without_bias", "mult_adds", "latency_ms"})


def _direction(_inst, attribute, value):
    if value not in ("max", "min"):
        raise ConfigError(f"{attribute.name} must be 'max' or 'min', got {value!r}")


@attrs.frozen
class Objective:
    """One objective: the metric it reads and whether larger (``max``) or smaller (``min``) is better."""

    metric: str
    direction: str = attrs.field(validator=_direction)

    def minimised(self, metrics: Mapping[str, float]) -> float:
        value = float(metrics[self.metric])
        return -value if self.direction == "max" else value


@attrs.frozen
class Constraint:
    """``metric <= bound`` (``kind="max"``) or ``metric >= bound`` (``kind="min"``)."""

    metric: str
    bound: float
    kind: str = attrs.field(validator=_direction)

    @property
    def stage(self) -> str:
        return "cost" if self.metric in COST_METRICS else "metrics"

    def violation(self, metrics: Mapping[str, float]) -> float:
        """0 when satisfied, else the relative amount by which the bound is missed."""
        value = float(metrics[self.metric])
        if not math.isfinite(value):
            return math.inf
        gap = value - self.bound if self.kind == "max" else self.bound - value
        return max(0.0, gap) / max(abs(self.bound), 1e-12)

    def describe(self) -> str:
        return f"{self.metric} {'<=' if self.kind == 'max' else '>='} {self.bound:g}"


@attrs.define
class Reward:
    """Objectives + constraints, and a scalarisation for controllers that need one number.

    The default scalar reward is the first objective in its natural direction (larger is better), minus
    ``penalty`` times the constraint violation; a plugin overrides :meth:`scalar` for a paper's reward.
    """

    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = ()
    penalty: float = 1.0

    def __attrs_post_init__(self):
        if not self.objectives:
            raise ConfigError("reward.objectives: at least one objective is needed")

    @classmethod
    def from_config(cls, objectives: Iterable, constraints: Iterable = (), penalty: float = 1.0) -> "Reward":
        """Build from preset data: objectives ``[["psnr", "max"], ["mult_adds", "min"]]``, constraints
        ``[["mult_adds", "max", 1e10]]`` (or dicts with the same field names)."""

        def obj(item):
            return Objective(**item) if isinstance(item, Mapping) else Objective(*item)

        def con(item):
            if isinstance(item, Mapping):
                return Constraint(**item)
            metric, kind, bound = item
            return Constraint(metric, float(bound), kind)

        try:
            return cls(tuple(obj(o) for o in objectives), tuple(con(c) for c in constraints), float(penalty))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"reward: {exc}") from None

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def vector(self, metrics: Mapping[str, float]) -> np.ndarray:
        """Objective vector in minimisation form (what pymoo's machinery expects)."""
        return np.array([o.minimised(metrics) for o in self.objectives], dtype=float)

    def violation(self, metrics: Mapping[str, float], stage: str | None = None) -> float:
        """Total constraint violation (0 = feasible); ``stage`` limits it to ``"cost"`` or ``"metrics"``."""
        return float(sum(c.violation(metrics) for c in self.constraints if stage in (None, c.stage)))

    def scalar(self, metrics: Mapping[str, float]) -> float:
        first = self.objectives[0]
        value = float(metrics[first.metric])
        value = value if first.direction == "max" else -value
        return value - self.penalty * self.violation(metrics)


def _objective(item) -> Objective:
    return Objective(**item) if isinstance(item, Mapping) else Objective(*item)


def _constraint(item) -> Constraint:
    if isinstance(item, Mapping):
        return Constraint(**{**item, "bound": float(item["bound"])})
    metric, kind, bound = item
    if isinstance(bound, bool):
        raise TypeError("bound")
    return Constraint(metric, float(bound), kind)


def _plain_item(make):
    """A check's test: ``item`` as plain data (a list, or a dict) once ``make(item)`` accepts it."""

    def test(item):
        make(item)
        return dict(item) if isinstance(item, Mapping) else list(item)

    return test


@attrs.frozen(kw_only=True)
class RewardOptions:
    """The options of the built-in ``objectives`` reward (a preset's ``reward`` section)."""

    objectives: tuple = option(check=sequence(Check("[metric, 'max' or 'min']", _plain_item(_objective)),
                                              min_length=1),
                               help="objectives, each [metric, max|min], e.g. [[psnr, max], [mult_adds, min]]")
    constraints: tuple = option((), sequence(Check("[metric, 'max' or 'min', bound]", _plain_item(_constraint))),
                                help="constraints, each [metric, max|min, bound]: metric <= bound (max) or >= (min)")
    penalty: float = option(1.0, real(), help="weight of the constraint violation in the scalar reward")


def objectives_reward(**options) -> Reward:
    """The ``objectives`` reward: :meth:`Reward.from_config` with its options checked (``reward.KEY`` errors)."""
    declared = read_options("reward", RewardOptions, options, name="objectives")
    return Reward.from_config(declared.objectives, declared.constraints, declared.penalty)


objectives_reward.Options = RewardOptions  # type: ignore[attr-defined]
