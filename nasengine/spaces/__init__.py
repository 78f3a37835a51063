"""The engine's built-in search spaces (registered by :mod:`nasengine.builtin`).

* ``simple`` — :class:`SimpleSpace`: a plain SR network of searchable depth, per-layer width / kernel /
  activation, optional global residual and a choice of upsampler.
"""
from __future__ import annotations

from nasengine.spaces.simple import Layer, SimpleGenome, SimpleSpace

__all__ = ["SimpleSpace", "SimpleGenome", "Layer", "BUILTIN_SPACES"]

#: name -> class, registered by the built-in plugin.
BUILTIN_SPACES = {"simple": SimpleSpace}
