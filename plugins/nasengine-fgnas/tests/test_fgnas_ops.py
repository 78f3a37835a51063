"""The plugin's ops on hand examples: channel_scatter_add (skip ∪ residual) and bias_map (a conv over no
channels), with their shape errors."""
from __future__ import annotations

import pytest
import torch

from nasengine.builder import build
from nasengine.cost import analytic_cost, count_with_hooks
from nasengine.errors import ValidationError
from nasengine.graph import ArchGraph


def _graph(index: str, channels: int):
    g = ArchGraph()
    x = g.input(channels=3)
    a = g.add("conv", x, out_channels=2, kernel=1)
    b = g.add("bias_map", x, channels=2)
    s = g.add("channel_scatter_add", a, b, channels=channels, index=index)
    g.output(g.add("pixel_shuffle", g.add("conv", s, out_channels=12, kernel=1), factor=2))
    return g, a, b, s


def test_scatter_add_and_bias_map_by_hand():
    g, a, b, s = _graph("0,1;1,2", 3)
    module = build(g)
    scatter, conv, bias = (getattr(module, f"n{s}_channel_scatter_add"), getattr(module, f"n{a}_conv"),
                           getattr(module, f"n{b}_bias_map"))
    with torch.no_grad():
        bias.bias.copy_(torch.tensor([10.0, 20.0]))
    x = torch.randn(2, 3, 4, 5)
    ya = conv(x)
    out = scatter([ya, bias(x)])
    assert out.shape == (2, 3, 4, 5)
    torch.testing.assert_close(out[:, 0], ya[:, 0])        # only the first input
    torch.testing.assert_close(out[:, 1], ya[:, 1] + 10)  # both: summed
    torch.testing.assert_close(out[:, 2], torch.full_like(out[:, 2], 20.0))  # only the constant
    # bias_map counts as a conv over no input channels: its biases, no Mult-Adds.
    assert analytic_cost(g, (4, 5)) == count_with_hooks(module, g, (4, 5))
    assert analytic_cost(g, (4, 5)).params == (3 * 2 + 2) + 2 + (3 * 12 + 12)


@pytest.mark.parametrize("index, channels, message", [
    ("0,1", 3, "1 list"),
    ("0,1;1", 3, "names 1 channels"),
    ("0,0;1,2", 3, "twice"),
    ("0,1;1,3", 3, "outside 0..2"),
    ("0,1;0,1", 3, r"\[2\] receive no input"),
    ("0,x;1,2", 3, "not a comma-separated"),
])
def test_scatter_add_shape_errors_name_the_node(index, channels, message):
    g, *_ = _graph(index, channels)
    with pytest.raises(ValidationError, match=message) as info:
        g.validate()
    assert "channel_scatter_add" in info.value.field
