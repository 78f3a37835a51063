"""The built-in ops ``unused`` (a built-but-unused branch: validated, built, costed, live figures) and ``shift``
(a fixed per-channel constant)."""
from __future__ import annotations

import pytest
import torch

from nasengine.builder import build
from nasengine.cost import analytic_cost, count_with_hooks
from nasengine.errors import ValidationError
from nasengine.graph import ArchGraph


def _graph(with_unused: bool = True) -> tuple[ArchGraph, int]:
    g = ArchGraph()
    x = g.input(channels=1)
    h = g.add("conv", x, out_channels=4, kernel=3)
    dead = g.add("conv", h, out_channels=2, kernel=1)  # 4*2 + 2 = 10 params, 8 Mult-Adds per LR pixel
    if with_unused:
        g.add("unused", g.add("relu", dead))
    g.output(g.add("pixel_shuffle", h, factor=2))
    return g, dead


def test_an_unused_branch_validates_and_other_dangling_nodes_do_not():
    g, dead = _graph()
    g.validate()
    assert dead not in g.live_nodes() and g.output_node in g.live_nodes()
    bare, _ = _graph(with_unused=False)
    with pytest.raises(ValidationError, match="dangling"):
        bare.validate()


def test_an_unused_node_must_be_terminal():
    g = ArchGraph()
    x = g.input(channels=1)
    u = g.add("unused", x)
    g.output(g.add("add", x, u))
    with pytest.raises(ValidationError, match=r"node 1 \(unused\): an unused node is terminal"):
        g.validate()


def test_the_unused_branch_is_costed_and_built_but_not_run():
    g, dead = _graph()
    cost = analytic_cost(g, (5, 3))
    live = analytic_cost(g.copy(), (5, 3))
    assert cost.params == 4 * 9 + 4 + 10 and cost.live_params == 4 * 9 + 4
    assert cost.mult_adds == 15 * (36 + 8) and cost.live_mult_adds == 15 * 36
    assert "live (without unused nodes)" in str(cost) and live == cost
    model = build(g)
    assert sum(p.numel() for p in model.parameters()) == cost.params
    assert f"n{dead}_conv" not in model.code and hasattr(model, f"n{dead}_conv")
    calls = []
    getattr(model, f"n{dead}_conv").register_forward_hook(lambda *a: calls.append(1))
    assert model(torch.rand(1, 1, 5, 3)).shape == (1, 1, 10, 6) and not calls
    assert count_with_hooks(model, g, (5, 3)).mult_adds == cost.live_mult_adds
    # graphs without unused nodes: no live figures, keys unchanged by the mechanism
    plain = _graph(with_unused=False)[0]
    plain.prune()
    assert analytic_cost(plain, (5, 3)).live_params is None
    assert plain.key() != g.key()


def test_shift_adds_fixed_constants():
    g = ArchGraph()
    x = g.input(channels=3)
    g.output(g.add("pixel_shuffle", g.add("conv", g.add("shift", x, values="-0.5,0.25,1"), out_channels=12,
                                          kernel=1), factor=2))
    model = build(g)
    shift = next(m for name, m in model.named_children() if name.endswith("_shift"))
    y = shift(torch.zeros(2, 3, 4, 4))
    assert y[:, :, 1, 2].tolist() == [[-0.5, 0.25, 1.0]] * 2
    assert not list(shift.parameters()) and not shift.state_dict()  # free, not in checkpoints
    assert analytic_cost(g, (4, 4)).params == 3 * 12 + 12
    one = ArchGraph()
    one.output(one.add("shift", one.input(channels=2), values="0.1"))
    one.validate()
    with pytest.raises(ValidationError, match="shift has 2 values for 3 channels"):
        bad = ArchGraph()
        bad.output(bad.add("shift", bad.input(channels=3), values="1,2"))
        bad.validate()
    with pytest.raises(ValidationError, match="attrs.values: must be comma-separated numbers"):
        bad = ArchGraph()
        bad.add("shift", bad.input(channels=2), values="1;2")


def test_both_ops_are_pointwise_for_the_receptive_radius():
    from nasengine.receptive import receptive_radius

    g, _ = _graph()
    assert receptive_radius(g) == 1  # the 3x3 conv's; the unused branch and shifts add nothing
    s = ArchGraph()
    x = s.add("shift", s.input(channels=1), values="0.5")
    s.output(s.add("pixel_shuffle", s.add("conv", x, out_channels=4, kernel=3), factor=2))
    assert receptive_radius(s) == 1
