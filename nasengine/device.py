"""The one place a torch device name is resolved: ``--device`` of every command, the trainer's
``TrainConfig.device``, the upscalers' ``device=`` and the executors' per-task device all go through
:func:`resolve_device`.

* ``"auto"`` (or ``None`` / ``""``): ``cuda`` when torch sees a GPU, else ``cpu``;
* ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` (or a :class:`torch.device`): checked against this
  machine, so ``cuda`` on a CPU-only build is a one-line :class:`~nasengine.errors.InputError`
  naming the value, not a torch traceback deep inside the work.
"""
from __future__ import annotations

import re

from nasengine.errors import InputError

__all__ = ["AUTO", "resolve_device", "device_name"]

#: The device name that means "a GPU if there is one, else the CPU".
AUTO = "auto"

_NAME = re.compile(r"^(cpu|cuda|cuda:\d+|mps)$")


def resolve_device(device=AUTO):
    """The :class:`torch.device` for ``device`` (see the module docstring). Raises
    :class:`~nasengine.errors.InputError` (``device: ..., got 'VALUE'``) for an unknown name or a device
    this machine lacks."""
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if device is None or (isinstance(device, str) and device.strip().lower() in ("", AUTO)):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not _NAME.match(device.strip().lower()):
        raise InputError(f'device: must be "auto", "cpu", "cuda", "cuda:N" or "mps", got {device!r}')
    name = device.strip().lower()
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device: CUDA is not available on this machine (torch {torch.__version__}), "
                             f"got {device!r}")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise InputError(f"device: only {torch.cuda.device_count()} CUDA device(s), got {device!r}")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"device: MPS is not available on this machine, got {device!r}")
    return torch.device(name)


def device_name(device=AUTO) -> str:
    """``str(resolve_device(device))``: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ..."""
    return str(resolve_device(device))
