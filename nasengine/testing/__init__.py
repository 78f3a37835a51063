"""The test kit shipped to plugin authors: hypothesis strategies (and contract tests) for nasengine objects.

``arch_graphs()`` draws random valid SR architecture graphs; ``random_arch_graph(seed)`` draws one without
hypothesis. See :mod:`nasengine.testing.strategies`.
"""
from __future__ import annotations

from nasengine.testing.strategies import BLOCKS, arch_graphs, random_arch_graph

__all__ = ["arch_graphs", "random_arch_graph", "BLOCKS"]

# ---- search-space genomes: strategies (nasengine.testing.genomes) and contract tests (.contract) -------------
# Bound here, after the submodule import, so that ``nasengine.testing.genomes`` the *function* is what
# ``from nasengine.testing import genomes`` gives. hypothesis is imported when a strategy is made.
from nasengine.testing.genomes import fuzzed_json, genome_pairs, genomes, seeds, vectors  # noqa: E402

__all__ += ["genomes", "genome_pairs", "vectors", "seeds", "fuzzed_json", "SearchSpaceContract"]


def __getattr__(name: str):
    # The contract class needs pytest; import it only when asked for.
    if name == "SearchSpaceContract":
        from nasengine.testing.contract import SearchSpaceContract

        return SearchSpaceContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
