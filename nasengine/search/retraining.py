"""What the loops that end by retraining their derived architectures share (one-shot, differentiable): the
``retrain`` section, its evaluator, and the space the retraining decodes with (``loop.retrain_space``: another
scale, a wider tail...), with a record's key and costs at that space."""
from __future__ import annotations

import attrs

from nasengine.errors import ConfigError

__all__ = ["retrain_spec", "retrain_evaluator", "retrain_space", "at_space"]


def retrain_spec(spec):
    """The ``retrain`` section (``sr-train`` with its defaults when the config has none)."""
    from nasengine.spec import DEFAULT_RETRAIN, RoleSpec

    return spec.retrain if spec.retrain is not None else RoleSpec(DEFAULT_RETRAIN, {})


def retrain_evaluator(spec, plugins):
    """The retrain evaluator made with its options (a wrong one is a one-line ``retrain.X`` error)."""
    from nasengine.options import construct

    rs = retrain_spec(spec)
    return construct("retrain", rs.name, plugins.evaluators.get(rs.name), rs.kwargs())


def retrain_space(spec, plugins, overrides: dict, field: str = "loop.retrain_space"):
    """The space the retraining decodes with: the run's, with ``overrides`` (the loop's ``retrain_space``
    option) over its own options (a wrong one is a one-line error naming ``field``)."""
    from nasengine.options import OptionError, construct

    options = {**spec.space.kwargs(), **overrides}
    try:
        return construct("space", spec.space.name, plugins.spaces.get(spec.space.name), options)
    except OptionError as exc:
        raise ConfigError(f"{field}: {exc}") from None


def at_space(record, space, cost_model):
    """``record`` (a :class:`~nasengine.store.CandidateRecord`) with the key and costs of its genome decoded by
    ``space`` (the retraining's): the architecture it is retrained as."""
    genome = space.from_json(record.genome)
    graph = space.decode(genome)
    costs = {k: float(v) for k, v in cost_model.metrics(graph).items()}
    costs.update({k: float(v) for k, v in space.genome_metrics(genome).items()})
    return attrs.evolve(record, key=graph.key(), costs=costs, params=costs.get("params"),
                        mult_adds=costs.get("mult_adds"))
