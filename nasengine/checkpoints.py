"""Trained models on disk: the architecture (genome file or graph JSON) travels with the weights.

A trained-model file (``nasengine train`` writes ``model.pt``) is a ``torch.save`` dict::

    {"format": "nasengine.model/1", "architecture": <genome-file or graph JSON>, "state_dict": {...},
     "scale": 2, "channels": "y", "metrics": {...}}

so ``nasengine evaluate --model model.pt``, ``upscale --model model.pt`` and ``export model.pt`` need nothing
else. Loading uses ``torch.load(weights_only=True)``: no code is unpickled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nasengine.errors import InputError

__all__ = ["save_trained_model", "load_trained_module", "load_trained_model", "MODEL_FORMAT"]

MODEL_FORMAT = "nasengine.model/1"


def save_trained_model(path, architecture, module, *, metrics: dict | None = None) -> Path:
    """Write ``module``'s weights with ``architecture`` (a :class:`nasengine.genomefile.Architecture`)."""
    import os

    import torch

    from nasengine.sr.models import channels_of

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = architecture.graph
    data = {"format": MODEL_FORMAT, "architecture": architecture.document(), "name": architecture.name,
            "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            "scale": int(graph.scale), "channels": channels_of(graph.input_channels),
            "metrics": {k: float(v) for k, v in (metrics or {}).items()}}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)
    return path


def _read(path: Path) -> dict[str, Any]:
    import torch

    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable nasengine model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise InputError(f"{path}: not a nasengine trained-model file (expected format {MODEL_FORMAT!r}; "
                         "train one with `nasengine train GENOME`)")
    for key, kind in (("architecture", dict), ("state_dict", dict)):
        if not isinstance(data.get(key), kind):
            raise InputError(f"{path}: a trained-model file without its {key!r} (a {kind.__name__}); "
                             f"it is damaged or was not written by `nasengine train`")
    return data


def load_trained_module(path):
    """``(architecture, module)`` of a trained-model file, weights loaded, in eval mode."""
    from nasengine.builder import build
    from nasengine.genomefile import architecture_from_data

    path = Path(path)
    data = _read(path)
    arch = architecture_from_data(data["architecture"], origin=f"{path}:architecture")
    module = build(arch.graph)
    try:
        module.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"{path}: the weights do not fit the stored architecture: {exc}") from None
    module.eval()
    return arch, module


def load_trained_model(path, *, scale: int | None = None, device: str = "auto"):
    """A :class:`nasengine.sr.models.TorchUpscaler` for a trained-model file; ``scale`` must match if given.
    Its ``receptive_radius`` is :func:`nasengine.receptive.overlap_for` of the stored architecture, so that
    tiled inference of large images is exact."""
    from nasengine.sr.models import TorchUpscaler, channels_of

    arch, module = load_trained_module(path)
    model_scale = int(arch.graph.scale)
    if scale is not None and int(scale) != model_scale:
        raise InputError(f"{path}: this model upscales x{model_scale}, not x{scale}")
    channels = channels_of(arch.graph.input_channels)
    from nasengine.receptive import overlap_for

    return TorchUpscaler(module, scale=model_scale, channels=channels, name=arch.name, device=device,
                         receptive_radius=overlap_for(arch.graph))
