"""The nasengine hooks of the HNAS plugin: the ``hnas`` space and the published architectures ``hnas:HNAS-A``,
``hnas:HNAS-B`` and ``hnas:HNAS-C``."""
from __future__ import annotations

from pathlib import Path

from nasengine import hookimpl

#: Genome files of the published models (package data).
GENOMES_DIR = Path(__file__).resolve().parent / "genomes"
PUBLISHED = ("HNAS-A", "HNAS-B", "HNAS-C")


@hookimpl
def nasengine_register_search_spaces(registry):
    from nasengine_hnas.space import HnasSpace

    registry.add("hnas", HnasSpace)


@hookimpl
def nasengine_register_architectures(registry):
    for name in PUBLISHED:
        registry.add(f"hnas:{name}", str(GENOMES_DIR / f"{name}.json"))


# ---- the hnas-hierarchical controller, the hnas-joint reward and the hnas / hnas-generational methods -----------
from nasengine_hnas.method import (  # noqa: E402,F401 - hook implementations, registered with this module
    nasengine_register_controllers, nasengine_register_methods, nasengine_register_rewards)
