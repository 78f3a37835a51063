"""The engine conv's optional explicit ``padding`` (even kernels such as DBPN's 6x6 stride 2): shape rule, builder,
cost, recount, receptive radius, and that graphs without it keep their keys and JSON."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings, strategies as st

from nasengine.builder import build
from nasengine.cost import analytic_cost
from nasengine.errors import ValidationError
from nasengine.graph import ArchGraph
from nasengine.ops import conv_output_padding_problem
from nasengine.receptive import receptive_radius


def _graph(**conv):
    g = ArchGraph()
    x = g.input(channels=3)
    y = g.add("conv", x, out_channels=8, kernel=3, name="a", **conv)
    y = g.add("conv", y, out_channels=12, kernel=3, stride=1)
    g.output(g.add("pixel_shuffle", y, factor=2))
    return g


def test_unset_padding_keeps_keys_and_json():
    # The key printed by the engine before conv had a `padding` attribute (main at 73a7038, same graph).
    golden = "2b52352e34a2af6eb69354323aa0009c2f39588f5d32ebf477472f6716021a45"
    assert _graph().key() == golden
    assert _graph(padding=None).key() == golden
    doc = _graph().to_json()
    assert all("padding" not in n["attrs"] for n in doc["nodes"])
    assert ArchGraph.from_json(doc).key() == golden
    # An explicit padding is part of the architecture's text, even where it equals 'same' padding.
    assert _graph(padding=1).key() != golden
    assert ArchGraph.from_json(_graph(padding=1).to_json()).key() == _graph(padding=1).key()


def test_odd_kernel_rule_unchanged_without_padding():
    g = ArchGraph()
    x = g.input(channels=1)
    with pytest.raises(ValidationError) as exc:
        g.add("conv", x, out_channels=8, kernel=4)
    assert exc.value.field == "node 1 (conv) attrs.kernel" and "must be a positive odd integer, got 4" in str(exc.value)


@pytest.mark.parametrize("attrs, message", [
    ({"kernel": 6, "stride": 2, "padding": 1}, "need padding 2), got 1"),
    ({"kernel": 3, "stride": 1, "padding": 0}, "need padding 1), got 0"),
    ({"kernel": 2, "stride": 1, "padding": 0}, "need padding none (no padding does)), got 0"),
    ({"kernel": 3, "padding": -1}, "must be >= 0, got -1"),
])
def test_bad_padding_names_the_attribute(attrs, message):
    g = ArchGraph()
    x = g.input(channels=1)
    with pytest.raises(ValidationError) as exc:
        g.add("conv", x, out_channels=4, **attrs)
    assert exc.value.field == "node 1 (conv) attrs.padding" and message in str(exc.value)


def test_dbpn_down_projection_shape_build_cost_recount():
    g = ArchGraph()
    x = g.input(channels=4)
    d = g.add("conv", x, out_channels=4, kernel=6, stride=2, padding=2, name="down")
    up = g.add("conv_transpose", d, out_channels=4, kernel=6, stride=2)
    g.output(g.add("pixel_shuffle", up, factor=2))
    shapes = g.validate()
    assert shapes[d].scale == Fraction(1, 2)
    module = build(g)
    y = module(torch.zeros(1, 4, 12, 10))
    assert tuple(y.shape) == (1, 1, 24, 20)
    conv = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.padding == (2, 2) and conv.kernel_size == (6, 6)
    cost = analytic_cost(g, (12, 10))
    # conv: 6*6*4*4 weights + 4 biases, over 6x5 output pixels; conv_transpose k6 s2 over its 6x5 INPUT pixels.
    assert cost.params == (576 + 4) * 2
    assert cost.mult_adds == 576 * 30 + 576 * 30
    wide = g.with_counts({d: 8})
    assert wide.attrs(d)["padding"] == 2 and wide.attrs(d)["out_channels"] == 8


def test_receptive_radius_with_explicit_padding():
    assert receptive_radius(_graph(padding=1)) == receptive_radius(_graph()) == 2
    g = ArchGraph()
    x = g.input(channels=1)
    y = g.add("conv", x, out_channels=1, kernel=6, stride=2, padding=2)
    g.output(g.add("interpolate", g.add("interpolate", y, factor=2, mode="nearest"), factor=2, mode="nearest"))
    assert receptive_radius(g) is None  # strided: unbounded, as without padding


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 7), s=st.integers(1, 3), d=st.integers(1, 2), p=st.integers(0, 6), n=st.integers(1, 4))
def test_padding_rule_matches_torch(k, s, d, p, n):
    """The shape rule accepts a padding exactly when torch's conv maps ``n*s`` to ``n``."""
    size = n * s
    out = (size + 2 * p - d * (k - 1) - 1) // s + 1 if size + 2 * p >= d * (k - 1) + 1 else None
    ok = conv_output_padding_problem(k, s, d, p) is None
    if ok:
        assert out == n
        conv = torch.nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
        assert conv(torch.zeros(1, 1, size, size)).shape[-1] == n
    else:  # a rejected padding maps n*s to n for no n (torch's formula is n + a constant != n)
        big = 2 * k * d
        assert (big * s + 2 * p - d * (k - 1) - 1) // s + 1 != big
