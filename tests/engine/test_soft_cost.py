"""The cost model's differentiable face (nasengine.cost.DifferentiableCost): exact at whole counts against the
analytic cost of the graph pruned to those counts (ArchGraph.with_counts), gradients, straight-through gates,
unions, and clear errors."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nasengine.cost import DifferentiableCost, analytic_cost, soft_cost, st_gate, st_union, straight_through
from nasengine.errors import ValidationError
from nasengine.graph import ArchGraph
from nasengine.ops import Attr, OpCost, REQUIRED, Shape, SoftCount, builtin_registry, positive
from nasengine.testing import arch_graphs

LR = (6, 4)  # even: the random graphs' stride-2 pairs
METRICS = ("params", "params_without_bias", "kernel_params", "mult_adds")

# Ops whose output count is their input's (a gated count passes through them unchanged).
_PASS = {"relu", "relu6", "tanh", "sigmoid", "identity", "prelu", "scale", "channel_attention", "interpolate",
         "global_avg_pool", "concat"}
# Consumers that tie a count to another (equal shapes, divisibility): a count reaching them stays as built.
_TIED = {"add", "mean", "multiply", "pixel_shuffle"}


def free_nodes(graph: ArchGraph) -> dict[int, int]:
    """{node: lowest allowed count} for the convs whose output count may change freely: groups 1, and the
    count reaches no tying consumer through pass-through ops (channel attention asks for count >= r)."""
    out = {}
    for n in graph:
        op, a = graph.op(n), graph.attrs(n)
        if op not in ("conv", "sep_conv", "conv_transpose") or a.get("groups", 1) != 1:
            continue
        low, stack, seen, ok = 1, [n], set(), True
        while stack and ok:
            for v, _ in graph.consumers(stack.pop()):
                vop = graph.op(v)
                if vop in _TIED or (vop == "conv" and graph.attrs(v)["groups"] != 1):
                    ok = False
                elif vop in _PASS and v not in seen:
                    seen.add(v)
                    stack.append(v)
                    if vop == "channel_attention":
                        low = max(low, graph.attrs(v)["reduction"])
        if ok:
            out[n] = low
    return out


def costs_equal(soft, exact):
    for m in METRICS:
        value = getattr(soft, m)
        assert value.dtype == torch.float64
        assert float(value.detach()) == getattr(exact, m), m


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=arch_graphs(max_blocks=3, max_width=6), data=st.data())
def test_whole_counts_equal_the_analytic_cost_of_the_pruned_graph(graph, data):
    free = free_nodes(graph)
    chosen = data.draw(st.lists(st.sampled_from(sorted(free)), unique=True) if free else st.just([]))
    counts = {n: data.draw(st.integers(free[n], 9), label=f"count {n}") for n in chosen}
    tensors = {n: torch.tensor(float(c), requires_grad=True) for n, c in counts.items()}
    dc = DifferentiableCost(graph, LR)
    costs_equal(dc({}), analytic_cost(graph, LR))  # no counts: the graph as it is
    pruned = graph.with_counts(counts)
    costs_equal(dc(tensors), analytic_cost(pruned, LR))
    costs_equal(dc(counts), analytic_cost(pruned, LR))  # int counts: the exact path
    if tensors:
        dc(tensors).mult_adds.backward()
        assert all(t.grad is not None and math.isfinite(float(t.grad)) for t in tensors.values())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=arch_graphs(max_blocks=3, max_width=6,
                         blocks=("conv", "sep_conv", "activation", "scale", "gate", "down_up", "merge")),
       data=st.data())
def test_gradient_is_the_difference_quotient_for_linear_formulas(graph, data):
    # Without channel attention (c * c//r) every formula is linear in each single count, so the derivative is
    # exactly cost(c + 1) - cost(c).
    free = free_nodes(graph)
    if not free:
        return
    node = data.draw(st.sampled_from(sorted(free)))
    c = data.draw(st.integers(1, 8))
    t = torch.tensor(float(c), requires_grad=True)
    soft = soft_cost(graph, {node: t}, LR)
    params_grad, = torch.autograd.grad(soft.params, t, retain_graph=True)
    mult_grad, = torch.autograd.grad(soft.mult_adds, t)
    lo, hi = analytic_cost(graph.with_counts({node: c}), LR), analytic_cost(graph.with_counts({node: c + 1}), LR)
    assert float(mult_grad) == hi.mult_adds - lo.mult_adds
    assert float(params_grad) == hi.params - lo.params


def chain(reduction: int = 2) -> ArchGraph:
    g = ArchGraph()
    x = g.input(channels=3)
    h = g.add("conv", x, out_channels=8, kernel=3, name="head")
    c = g.add("conv", g.add("relu", h), out_channels=8, kernel=3, name="c1")
    p = g.add("prelu", g.add("channel_attention", c, reduction=reduction), num_parameters=8)
    g.output(g.add("pixel_shuffle", g.add("conv", p, out_channels=12, kernel=3, name="tail"), factor=2))
    return g


def test_hand_example_values_and_gradients():
    # LR 4x4 (16 pixels). Mult-Adds: head 16*27*h, c1 16*9*h*c, CA 2*c*(c//2) once, tail 16*9*c*12.
    g = chain()
    h, c = torch.tensor(5.0, requires_grad=True), torch.tensor(7.0, requires_grad=True)
    sc = soft_cost(g, {"head": h, "c1": c}, (4, 4))
    assert sc.mult_adds.item() == 16 * 27 * 5 + 16 * 9 * 5 * 7 + 2 * 7 * 3 + 16 * 9 * 7 * 12
    # params: head 27*5+5, c1 9*5*7+7, CA 2*7*3+3+7, PReLU 7 slopes, tail 9*7*12+12
    assert sc.params.item() == 140 + 322 + 52 + 7 + 768
    assert sc.kernel_params.item() == 135 + 315 + 42 + 756
    dh, dc = torch.autograd.grad(sc.mult_adds, (h, c))
    assert float(dh) == 16 * 27 + 16 * 9 * 7
    # channel attention's c//2 is a straight-through floor: d(2*c*(c//2))/dc = 2*(c//2) + 2*c/2 = 6 + 7
    assert float(dc) == 16 * 9 * 5 + 13 + 16 * 9 * 12


def test_straight_through_gates_forward_hard_backward_sigmoid():
    g = chain()
    psi = torch.tensor([1.0, 0.2, 0.8, -1.0, 2.0, 1.0, 1.0, 0.0], requires_grad=True)
    gates = st_gate(psi)
    assert gates.tolist() == [1, 0, 1, 0, 1, 1, 1, 0]  # psi > 0.5, as printed (METHODS.md §3.3)
    sc = soft_cost(g, {"c1": gates.sum()}, (4, 4))
    assert sc.mult_adds.item() == analytic_cost(g.with_counts({"c1": 5}), (4, 4)).mult_adds
    sc.mult_adds.backward()
    d_count = 16 * 9 * 8 + (2 * 2 + 5) + 16 * 9 * 12  # at c = 5: CA's derivative 2*(5//2) + 5
    slope = torch.sigmoid(psi) * (1 - torch.sigmoid(psi))
    assert torch.allclose(psi.grad, d_count * slope.detach(), rtol=1e-6)


def test_union_of_a_residual_and_its_skip():
    # head (gated) -> conv r (gated) -> add(r, head) -> conv: the add's count is the union, given by the caller.
    g = ArchGraph()
    x = g.input(channels=1)
    h = g.add("conv", x, out_channels=4, kernel=1, name="head")
    r = g.add("conv", h, out_channels=4, kernel=1, name="r")
    s = g.add("add", r, h, name="sum")
    g.output(g.add("conv", s, out_channels=1, kernel=1, name="out"))
    ph = torch.tensor([1.0, 1.0, 0.0, 0.0], requires_grad=True)
    pr = torch.tensor([0.0, 1.0, 1.0, 0.0], requires_grad=True)
    gh, gr = st_gate(ph), st_gate(pr)
    with pytest.raises(ValidationError, match="node 3 \\(add, 'sum'\\).*union"):
        soft_cost(g, {"head": gh.sum(), "r": gr.sum()}, (1, 1))
    union = st_union(gh, gr)
    assert union.tolist() == [1, 1, 1, 0]
    sc = soft_cost(g, {"head": gh.sum(), "r": gr.sum(), "sum": union.sum()}, (1, 1))
    assert sc.mult_adds.item() == 2 + 2 * 2 + 3  # head 1*2, r 2*2, out 3*1
    sc.mult_adds.backward()
    sig = torch.sigmoid(torch.tensor([1.0, 0.0])) * (1 - torch.sigmoid(torch.tensor([1.0, 0.0])))
    s1, s0 = float(sig[0]), float(sig[1])
    # d/d count(head) = 1 (head) + 2 (r's input); d/d count(r) = 2; d/d union = 1 (out's input): each gate of
    # the union gets the union's gradient (backward = sum, METHODS.md §3.3).
    assert ph.grad.tolist() == pytest.approx([(3 + 1) * s1, (3 + 1) * s1, (3 + 1) * s0, (3 + 1) * s0])
    assert pr.grad.tolist() == pytest.approx([(2 + 1) * s0, (2 + 1) * s1, (2 + 1) * s1, (2 + 1) * s0])


def test_depthwise_conv_follows_its_input():
    g = ArchGraph()
    x = g.input(channels=1)
    e = g.add("conv", x, out_channels=6, kernel=1, name="expand")
    d = g.add("conv", e, out_channels=6, kernel=3, groups=6, name="dw")
    g.output(g.add("conv", d, out_channels=1, kernel=1))
    pruned = g.with_counts({"expand": 4})
    assert pruned.attrs(d)["groups"] == pruned.attrs(d)["out_channels"] == 4
    t = torch.tensor(4.0, requires_grad=True)
    sc = soft_cost(g, {"expand": t}, (2, 2))
    costs_equal(sc, analytic_cost(pruned, (2, 2)))
    sc.mult_adds.backward()
    assert float(t.grad) == 4 * (1 + 9 + 1)


def test_a_count_on_a_per_channel_prelu_gates_its_slopes():
    # conv 1->6, PReLU (6 slopes) gated to p channels, conv 6->1 reading the p kept channels (LR 2x2, 4 px).
    g = ArchGraph()
    x = g.input(channels=1)
    c = g.add("conv", x, out_channels=6, kernel=1, name="c")
    p = g.add("prelu", c, num_parameters=6, name="p")
    g.output(g.add("conv", p, out_channels=1, kernel=1, name="out"))
    t = torch.tensor(4.0, requires_grad=True)
    sc = soft_cost(g, {"p": t}, (2, 2))
    assert sc.params.item() == (6 + 6) + 4 + (4 + 1)  # the slopes and the next conv follow the gate
    assert sc.kernel_params.item() == 6 + 4
    assert sc.mult_adds.item() == 4 * (6 + 4)
    (dp,) = torch.autograd.grad(sc.params, (t,))
    assert float(dp) == 1 + 1
    # whole counts: the network built with 4 channels after c, plus c's 2 gated-off channels (weight + bias)
    h = ArchGraph()
    y = h.input(channels=1)
    h.output(h.add("conv", h.add("prelu", h.add("conv", y, out_channels=4, kernel=1), num_parameters=4),
                   out_channels=1, kernel=1))
    assert soft_cost(g, {"p": 4}, (2, 2)).params.item() == analytic_cost(h, (2, 2)).params + 2 * (1 + 1)


def test_soft_count_arithmetic():
    t = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    x = SoftCount(t)
    assert float(3 * x - 1 + x * 2) == 34 and float(x // 2) == 3 and x % 2 == 1 and x % 1 == 0
    assert x // x == 1 and x % x == 0 and x // 1 is x and x > 6 and x == 7 and int(x) == 7
    from fractions import Fraction
    assert float(x * Fraction(3, 7)) == 3.0
    y = (x // 2) * 4
    y.tensor.backward()
    assert float(t.grad) == 2.0  # straight-through: d(floor(x/2))/dx = 1/2


def test_straight_through_forward_is_exactly_hard():
    soft = torch.tensor([0.1234567, 0.987654321], dtype=torch.float64, requires_grad=True)
    hard = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert straight_through(hard, soft).tolist() == [1.0, 0.0]


def test_penalty_and_metrics():
    g = chain()
    t = torch.tensor(4.0, requires_grad=True)
    sc = soft_cost(g, {"c1": t}, (4, 4))
    m = sc.as_metrics()
    assert m["mult_adds"] == analytic_cost(g.with_counts({"c1": 4}), (4, 4)).mult_adds
    assert sc.penalty(weight=2.0).item() == 2 * m["mult_adds"]
    assert sc.penalty(budget=m["mult_adds"] + 1).item() == 0.0
    assert sc.penalty("params", budget=m["params"] - 10).item() == 10.0
    with pytest.raises(Exception, match="latency"):
        sc.penalty("latency")


def test_bad_counts_name_the_key():
    dc = DifferentiableCost(chain(), (4, 4))
    with pytest.raises(ValidationError, match=r"counts\['nope'\].*named 'nope'"):
        dc({"nope": 3})
    with pytest.raises(ValidationError, match=r"counts\['c1'\].*str 'x'"):
        dc({"c1": "x"})
    with pytest.raises(ValidationError, match=r"one element, got shape \(2,\)"):
        dc({"c1": torch.ones(2)})
    with pytest.raises(ValidationError, match=">= 0, got -1.0"):
        dc({"c1": -1.0})
    with pytest.raises(ValidationError, match="given twice"):
        dc({"c1": 3, 3: 4})


def test_an_op_without_recount_rule_cannot_take_a_count():
    reg = builtin_registry()
    reg.add(OpSpec_with_width(), plugin="test")
    g = ArchGraph(reg)
    x = g.input(channels=1)
    w = g.add("widen", x, out_channels=4)
    r = g.add("relu", w, name="masked")
    g.output(g.add("conv", r, out_channels=1, kernel=1))
    dc = DifferentiableCost(g, (2, 2), reg)
    with pytest.raises(ValidationError, match="node 1 \\(widen\\).*no recount rule"):
        dc({1: torch.tensor(2.0)})
    # a count on a free op masks its output: the consumer sees 2 channels
    assert float(dc({"masked": torch.tensor(2.0)}).mult_adds) == 4 * 4 + 4 * 2


def OpSpec_with_width():
    from nasengine.ops import OpSpec

    return OpSpec("widen", 1, {"out_channels": Attr(int, REQUIRED, positive)},
                  lambda a, ins: Shape(a["out_channels"], ins[0].scale), lambda a, ins: None,
                  lambda a, ins, out: OpCost(params=a["out_channels"], mult_adds_per_pixel=a["out_channels"]))


def test_set_attrs_is_validated():
    g = chain()
    before = g.to_json()
    with pytest.raises(ValidationError, match=r"node 1 \(conv, 'head'\) attrs.kernel"):
        g.set_attrs(1, kernel=2)
    with pytest.raises(ValidationError, match=r"attrs.colour.*unknown attribute"):
        g.set_attrs(1, colour=3)
    assert g.to_json() == before  # nothing changed
    assert g.set_attrs(1, out_channels=5)["out_channels"] == 5
    assert g.attrs(1)["kernel"] == 3 and g.validate()[1].channels == 5
    g.set_attrs(3, out_channels=5)  # c1: schema fine, but the 8-slope PReLU after it no longer fits
    with pytest.raises(ValidationError, match=r"node 5 \(prelu\)"):
        g.validate()
    with pytest.raises(ValidationError, match="not a node"):
        g.set_attrs(99, kernel=3)


def test_with_counts_rejects_what_it_cannot_build():
    g = chain()
    with pytest.raises(ValidationError, match=r"node 2 \(relu\).*cannot output 3 channels.*no recount rule"):
        g.with_counts({2: 3})
    with pytest.raises(ValidationError, match="positive integer"):
        g.with_counts({"c1": 0})
    with pytest.raises(ValidationError, match=r"channel_attention.*at the new channel counts"):
        g.with_counts({"c1": 1})  # reduction 2 leaves no channel of 1

