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



# ---- nasengine_hnas/method.py: the hnas-hierarchical controller, the hnas-joint reward, the hnas and
# hnas-generational methods ----------------------------------------------------------------------------------
@hookimpl
def nasengine_register_controllers(registry):
    from nasengine_hnas.method import register_controllers

    register_controllers(registry)


@hookimpl
def nasengine_register_rewards(registry):
    from nasengine_hnas.method import register_rewards

    register_rewards(registry)


@hookimpl
def nasengine_register_methods(registry):
    from nasengine_hnas.method import register_methods

    register_methods(registry)
