"""The nasengine hooks of the DeCoNAS plugin: the ``deconas`` space and the published architecture
``deconas:DeCoNASNet``."""
from __future__ import annotations

from pathlib import Path

from nasengine import hookimpl

#: Genome files of the published models (package data).
GENOMES_DIR = Path(__file__).resolve().parent / "genomes"
PUBLISHED = ("DeCoNASNet",)


@hookimpl
def nasengine_register_search_spaces(registry):
    from nasengine_deconas.space import DeconasSpace

    registry.add("deconas", DeconasSpace)


@hookimpl
def nasengine_register_architectures(registry):
    for name in PUBLISHED:
        registry.add(f"deconas:{name}", str(GENOMES_DIR / f"{name}.json"))
