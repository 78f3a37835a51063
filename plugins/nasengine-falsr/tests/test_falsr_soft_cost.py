"""The engine's differentiable cost on a FALSR graph (issue 14, item 9): a Mult-Adds penalty on soft channel
counts of a FALSR architecture, with no FGNAS code involved."""
from __future__ import annotations

import torch

from nasengine.cost import DifferentiableCost, analytic_cost, st_gate
from nasengine.genomefile import load_architecture


def test_falsr_graph_costed_softly_with_a_penalty():
    graph = load_architecture("falsr:FALSR-B").graph
    dc = DifferentiableCost(graph)  # LR 480x480, the x2 tables' size
    # No counts: the published figure (tests/test_falsr_published.py GOLDEN, 74,502,144,000 at 480x480).
    assert dc().as_metrics()["mult_adds"] == analytic_cost(graph).mult_adds == 74_502_144_000
    # Gate cell 0's expand conv (32 channels; its depthwise conv follows) with straight-through gates.
    psi = torch.full((32,), 1.0, requires_grad=True)
    with torch.no_grad():
        psi[:12] = 0.0  # 20 alive
    sc = dc({"cell0/b0/expand": st_gate(psi).sum()})
    pruned = graph.with_counts({"cell0/b0/expand": 20})
    assert sc.as_metrics() == analytic_cost(pruned).as_metrics()
    budget = sc.as_metrics()["mult_adds"] - 1e9
    penalty = sc.penalty("mult_adds", weight=1e-9, budget=budget)
    assert penalty.item() == 1.0
    penalty.backward()
    # d(Mult-Adds)/d(count) per LR pixel: expand 9*16 (3x3 over 16), depthwise 9, project 9*16 (3x3 to 16).
    slope = torch.sigmoid(torch.tensor(1.0)) * (1 - torch.sigmoid(torch.tensor(1.0)))
    expected = 1e-9 * 480 * 480 * (9 * 16 + 9 + 9 * 16) * float(slope)
    assert torch.allclose(psi.grad[12:], torch.full((20,), expected), rtol=1e-6)
