"""nasengine-fgnas: FGNAS (Kim et al., *Fine-grained neural architecture search for image super-resolution*,
JVCIR 2022) as a nasengine plugin. The paper has no public code; ``reference/METHODS.md`` §3 settles what it
leaves open (marked [I]/[E] there and in this plugin's README).

* :mod:`nasengine_fgnas.genome` — the genome: the boolean gate masks (:class:`FgnasGenome`, :class:`Block`);
* :mod:`nasengine_fgnas.space` — :class:`FgnasSpace` (registered as ``fgnas``): masks decoded to the pruned
  network with the union rules, the all-on genome being the supernet;
* :mod:`nasengine_fgnas.ops` — the ops ``channel_scatter_add`` and ``bias_map`` that pruned networks use;
* :mod:`nasengine_fgnas.supernet` — :class:`FgnasSupernet`, the torch supernet with straight-through gates and
  union counting (§3.3), its soft channel counts and cost term;
* :mod:`nasengine_fgnas.derive` — the pruned network with the supernet's weights (§3.6);
* :mod:`nasengine_fgnas.plugin` — the hooks: space, ops, architectures ``fgnas:supernet-S`` / ``-M`` / ``-L``.

The supernet and derivation import torch; they are loaded when first named here.
"""
from __future__ import annotations

from nasengine_fgnas.genome import ACTIVATIONS, BLOCK_FIELDS, Block, FgnasGenome
from nasengine_fgnas.space import FgnasSpace

__version__ = "0.1.0"

__all__ = ["__version__", "ACTIVATIONS", "BLOCK_FIELDS", "Block", "FgnasGenome", "FgnasSpace", "FgnasSupernet",
           "derive"]


def __getattr__(name: str):
    if name == "FgnasSupernet":
        from nasengine_fgnas.supernet import FgnasSupernet

        return FgnasSupernet
    if name == "derive":
        from nasengine_fgnas.derive import derive

        return derive
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
