"""torch modules of the built-in ops that torch itself does not provide (private: use :mod:`nasengine.ops`).

Kept apart from :mod:`nasengine.ops` so that importing the op registry (and the analytic cost model) needs no
torch. Every module here is TorchScript-, trace- and ONNX-friendly; variadic ops take one ``List[Tensor]``.
"""

from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Sum", "Mean", "Concat", "Multiply", "Scale", "Shift", "GlobalAvgPool", "ChannelAttention", "SepConv",
           "Interpolate"]


class Sum(nn.Module):
    """Element-wise sum of a list of tensors."""

    def forward(self, xs: List[Tensor]) -> Tensor:
        out = xs[0]
        for i in range(1, len(xs)):
            out = out + xs[i]
        return out


class Mean(nn.Module):
    """Element-wise mean of a list of tensors."""

    def forward(self, xs: List[Tensor]) -> Tensor:
        out = xs[0]
        for i in range(1, len(xs)):
            out = out + xs[i]
        if len(xs) > 1:
            out = out / float(len(xs))
        return out


class Concat(nn.Module):
    """Channel concatenation of a list of tensors, in list order."""

    def forward(self, xs: List[Tensor]) -> Tensor:
        if len(xs) == 1:
            return xs[0]
        return torch.cat(xs, dim=1)


class Multiply(nn.Module):
    """Element-wise product of a list of tensors (C x 1x1 gates broadcast)."""

    def forward(self, xs: List[Tensor]) -> Tensor:
        out = xs[0]
        for i in range(1, len(xs)):
            out = out * xs[i]
        return out


class Shift(nn.Module):
    """Addition of a fixed per-channel constant (a non-persistent buffer: not a parameter, not in the
    state dict)."""

    def __init__(self, values):
        super().__init__()
        self.register_buffer("values", torch.tensor(list(values), dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.values.to(x.dtype)


class Scale(nn.Module):
    """Multiplication by a fixed constant."""

    def __init__(self, value: float):
        super().__init__()
        self.value = float(value)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.value

    def extra_repr(self) -> str:
        return f"value={self.value}"


class GlobalAvgPool(nn.Module):
    """Global average pooling to N x C x 1 x 1."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=[2, 3], keepdim=True)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(W2 relu(W1 gap(x))) with 1x1 convs ``squeeze`` and ``excite``."""

    def __init__(self, channels: int, reduction: int, bias: bool = True):
        super().__init__()
        mid = channels // reduction
        self.squeeze = nn.Conv2d(channels, mid, 1, bias=bias)
        self.excite = nn.Conv2d(mid, channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        g = x.mean(dim=[2, 3], keepdim=True)
        g = torch.sigmoid(self.excite(F.relu(self.squeeze(g))))
        return x * g


class SepConv(nn.Module):
    """Depthwise kxk conv (no bias) followed by a pointwise 1x1 conv (optional bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, dilation: int = 1,
                 bias: bool = True):
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel, stride=stride,
                                   padding=dilation * (kernel - 1) // 2, dilation=dilation, groups=in_channels,
                                   bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class Interpolate(nn.Module):
    """``F.interpolate`` by an integer factor (align_corners=False for the linear/cubic modes)."""

    align_corners: Optional[bool]

    def __init__(self, mode: str, factor: int):
        super().__init__()
        self.mode = str(mode)
        self.factor = float(factor)
        self.align_corners = False if mode in ("bilinear", "bicubic") else None

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=self.factor, mode=self.mode, align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, factor={int(self.factor)}"
