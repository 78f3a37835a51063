"""torch modules of the plugin's ops (:mod:`nasengine_fgnas.ops`); TorchScript-friendly, variadic ops take one
``List[Tensor]``."""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["ScatterAdd", "BiasMap"]


class ScatterAdd(nn.Module):
    """``channel_scatter_add``: input ``i``'s channel ``k`` is added into output channel ``index[i][k]``."""

    def __init__(self, channels: int, index: Sequence[Sequence[int]]):
        super().__init__()
        self.channels = int(channels)
        flat = [int(c) for lst in index for c in lst]
        self.register_buffer("index", torch.tensor(flat, dtype=torch.long), persistent=False)

    def forward(self, xs: List[Tensor]) -> Tensor:
        x = torch.cat(xs, dim=1)
        out = x.new_zeros(x.shape[0], self.channels, x.shape[2], x.shape[3])
        return out.index_add(1, self.index, x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class BiasMap(nn.Module):
    """``bias_map``: a learned constant per channel, at the spatial size of the input (a conv over no channels)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.bias.view(1, -1, 1, 1).expand(x.shape[0], -1, x.shape[2], x.shape[3])

    def extra_repr(self) -> str:
        return f"channels={self.bias.shape[0]}"
