"""nasengine-falsr: FALSR (Chu et al., *Fast, Accurate and Lightweight Super-Resolution with Neural
Architecture Search*) as a nasengine plugin.

* :mod:`nasengine_falsr.genome` — the genome ``(M_mic, M_mac)`` of §4.1 (:class:`FalsrGenome`, :class:`Cell`),
  its JSON, vector encoding, cell indices and paper cell names;
* :mod:`nasengine_falsr.space` — :class:`FalsrSpace`, the elastic search space (registered as ``falsr``),
  decoding to the engine's architecture graph exactly as the released models are wired;
* :mod:`nasengine_falsr.controller` — :class:`FalsrHybridController` (registered as ``falsr-hybrid``), the
  hybrid NSGA-II / RWS / reinforcement-driven controller of §4 with its policy network;
* :mod:`nasengine_falsr.weights` — the official frozen graphs: reading them, loading them into the built
  models, the official pipeline (``--model falsr:FALSR-A --weights FALSR-A.pb``);
* :mod:`nasengine_falsr.plugin` — the hook implementations: space ``falsr``, controller ``falsr-hybrid``,
  method ``falsr``, models and published architectures ``falsr:FALSR-A`` / ``-B`` / ``-C`` / ``-C-paper``
  (genome files in ``genomes/``).

The controller and the weights importer import torch; they are loaded when first named here.
"""
from __future__ import annotations

from nasengine_falsr.genome import (
    ALL_CELLS,
    N_CELL_CHOICES,
    Cell,
    FalsrGenome,
    cell_from_index,
    cell_name,
    cell_to_index,
    parse_cell_name,
)
from nasengine_falsr.space import FalsrSpace

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Cell",
    "FalsrGenome",
    "FalsrSpace",
    "ALL_CELLS",
    "N_CELL_CHOICES",
    "cell_name",
    "parse_cell_name",
    "cell_to_index",
    "cell_from_index",
    "FalsrHybridController",
]


def __getattr__(name: str):
    if name == "FalsrHybridController":
        from nasengine_falsr.controller import FalsrHybridController

        return FalsrHybridController
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
