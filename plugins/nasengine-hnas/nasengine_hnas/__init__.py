"""nasengine-hnas: HNAS-SR (Guo et al., *Hierarchical neural architecture search for single image
super-resolution*) as a nasengine plugin.

* :mod:`nasengine_hnas.genome` — the genome (normal and upsampling genotypes, the upsampling position), its JSON,
  the released ``Genotype(...)`` text and the controller's token order;
* :mod:`nasengine_hnas.space` — :class:`HnasSpace` (registered as ``hnas``), decoding to the engine's graph
  with slot names per (cell position, cell type, edge, op) and the supernet's union graph;
* :mod:`nasengine_hnas.plugin` — the hook implementations: the space and the published architectures
  ``hnas:HNAS-A``, ``hnas:HNAS-B``, ``hnas:HNAS-C`` (genome files in ``genomes/``).
"""
from __future__ import annotations

from nasengine_hnas.genome import HnasGenome, parse_genotype
from nasengine_hnas.space import HnasSpace

__version__ = "0.1.0"

__all__ = ["__version__", "HnasGenome", "HnasSpace", "parse_genotype"]
