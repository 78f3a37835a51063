"""Hypothesis strategies over the genomes of any :class:`~nasengine.space.SearchSpace`.

They use only the space's public methods, so a plugin author gets them for free::

    from hypothesis import given
    from nasengine.testing.genomes import genomes

    @given(genomes(MySpace()))
    def test_decodes(genome):
        MySpace().decode(genome).validate()

Genomes are drawn by seeding ``space.sample`` and then applying a drawn number of mutations and crossovers
(with freshly sampled partners), so that they cover what controllers actually produce. Shrinking goes
towards seed 0 and no variation. hypothesis is imported when a strategy is made, not with this module.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nasengine.space import SearchSpace

__all__ = ["seeds", "rngs", "genomes", "genome_pairs", "vectors", "json_values", "fuzzed_json"]

_MAX_SEED = 2**32 - 1


def seeds():
    """Seeds for ``numpy.random.default_rng``."""
    from hypothesis import strategies as st

    return st.integers(0, _MAX_SEED)


def rngs():
    """Seeded numpy generators."""
    return seeds().map(np.random.default_rng)


def genomes(space: SearchSpace, max_mutations: int = 3):
    """A genome of ``space``: ``space.sample`` from a drawn seed, then up to ``max_mutations`` variations,
    each a ``space.mutate`` or one child of ``space.crossover`` with a freshly sampled partner."""
    from hypothesis import strategies as st

    return st.composite(_draw_genome)(space, max_mutations)


def _draw_genome(draw, space: SearchSpace, max_mutations: int):
    from hypothesis import strategies as st

    rng = np.random.default_rng(draw(seeds()))
    genome = space.sample(rng)
    n = draw(st.integers(0, max(0, max_mutations)))
    for _ in range(n):
        if draw(st.booleans()):
            genome = space.mutate(genome, rng)
        else:
            partner = space.sample(rng)
            children = space.crossover(genome, partner, rng)
            genome = children[draw(st.integers(0, len(children) - 1))]
    return genome


def genome_pairs(space: SearchSpace, max_mutations: int = 3):
    """Two independently drawn genomes of ``space``."""
    from hypothesis import strategies as st

    return st.tuples(genomes(space, max_mutations), genomes(space, max_mutations))


def vectors(space: SearchSpace):
    """Any integer vector within ``space.vector_bounds()`` (inclusive), not only encodings of genomes."""
    from hypothesis import strategies as st

    lo, hi = space.vector_bounds()
    lo = np.asarray(lo).reshape(-1)
    hi = np.asarray(hi).reshape(-1)
    if lo.size > _LONG_VECTOR:
        # Too long for hypothesis's buffer (an entry per gate of a pruning space: thousands): a seeded draw.
        return seeds().map(lambda s: np.random.default_rng(s).integers(lo, hi + 1).astype(np.int64))
    parts = [st.integers(int(a), int(b)) for a, b in zip(lo, hi)]
    return st.tuples(*parts).map(lambda t: np.array(t, dtype=np.int64))


#: Vectors longer than this are drawn from a seeded numpy generator instead of entry by entry.
_LONG_VECTOR = 512


def json_values(max_leaves: int = 12):
    """Arbitrary JSON values (what ``json.loads`` can return)."""
    from hypothesis import strategies as st

    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**40), 2**40)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8)
    )
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=max_leaves,
    )


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indices) into a nested JSON value, the root included."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, prefix + (i,)))
    return out


def _replace(value: Any, path: tuple, new: Any, delete: bool = False) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    out = dict(value) if isinstance(value, dict) else list(value)
    if rest:
        out[head] = _replace(value[head], rest, new, delete)
    elif delete:
        del out[head]
    else:
        out[head] = new
    return out


def fuzzed_json(space: SearchSpace, max_edits: int = 3):
    """Malformed (and sometimes still valid) genome JSON: a valid genome's ``to_json`` with up to
    ``max_edits`` random edits (a value replaced by arbitrary JSON, a key or list item deleted, a key
    added), or, one time in five, arbitrary JSON."""
    from hypothesis import strategies as st

    return st.composite(_draw_fuzzed)(space, max_edits)


def _draw_fuzzed(draw, space: SearchSpace, max_edits: int):
    from hypothesis import strategies as st

    if draw(st.integers(0, 4)) == 0:
        return draw(json_values())
    data = space.to_json(draw(genomes(space, max_mutations=1)))
    for _ in range(draw(st.integers(1, max(1, max_edits)))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and path:
            data = _replace(data, path, None, delete=True)
        elif action == "add":
            target = path
            node = data
            for key in target:
                node = node[key]
            if isinstance(node, dict):
                key = draw(st.text(max_size=8))
                data = _replace(data, target + (key,), draw(json_values(4)))
            elif isinstance(node, list):
                data = _replace(data, target, node + [draw(json_values(4))])
            else:
                data = _replace(data, path, draw(json_values(4)))
        else:
            data = _replace(data, path, draw(json_values(4)))
    return data
