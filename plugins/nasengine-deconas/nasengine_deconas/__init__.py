"""nasengine-deconas: DeCoNAS (Ahn & Cho, *Neural architecture search for image super-resolution using densely
constructed search space: DeCoNAS*) as a nasengine plugin.

* :mod:`nasengine_deconas.genome` — the genome (masks in controller order, MSB = conv; fusion bits), its JSON,
  bits and the README's flat bit string;
* :mod:`nasengine_deconas.space` — :class:`DeconasSpace` (registered as ``deconas``), decoding to the engine's
  graph with stable slot names for weight sharing, and the complexity penalties ``cb_code`` / ``cb_paper``;
* :mod:`nasengine_deconas.reward` — the ``deconas-cb`` reward (PSNR - alpha * cb);
* :mod:`nasengine_deconas.plugin` — the hook implementations: space, reward, method ``deconas`` with its
  presets, the published architecture ``deconas:DeCoNASNet`` (genome file in ``genomes/``).
"""
from __future__ import annotations

from nasengine_deconas.genome import DeconasGenome, bit_string, parse_bit_string
from nasengine_deconas.space import DeconasSpace

__version__ = "0.1.0"

__all__ = ["__version__", "DeconasGenome", "DeconasSpace", "bit_string", "parse_bit_string"]
