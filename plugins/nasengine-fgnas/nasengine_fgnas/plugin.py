"""The nasengine hooks of the FGNAS plugin: the ``fgnas`` space, the ops ``channel_scatter_add`` and
``bias_map``, and the supernets as published architectures ``fgnas:supernet-S`` / ``-M`` / ``-L``."""
from __future__ import annotations

from pathlib import Path

from nasengine import hookimpl

#: Genome files of the published supernets (package data).
GENOMES_DIR = Path(__file__).resolve().parent / "genomes"
#: The supernets of FGNAS-S / M / L (all gates on; C = 64, x2) by name -> blocks B (METHODS §3.1).
SUPERNETS = {"supernet-S": 16, "supernet-M": 32, "supernet-L": 64}


@hookimpl
def nasengine_register_ops(registry):
    from nasengine_fgnas.ops import FGNAS_OPS

    for spec in FGNAS_OPS:
        registry.add(spec)


@hookimpl
def nasengine_register_search_spaces(registry):
    from nasengine_fgnas.space import FgnasSpace

    registry.add("fgnas", FgnasSpace)


@hookimpl
def nasengine_register_architectures(registry):
    for name in SUPERNETS:
        registry.add(f"fgnas:{name}", str(GENOMES_DIR / f"{name}.json"))
