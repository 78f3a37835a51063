"""Straight-through gates and union counting on hand examples, both passes (METHODS §3.3), and the supernet's
parameter groups."""
from __future__ import annotations

import math

import pytest
import torch

from nasengine_fgnas.genome import Block, FgnasGenome
from nasengine_fgnas.supernet import FgnasSupernet, st_gate, st_union


def _dsigmoid(x: float) -> float:
    s = 1 / (1 + math.exp(-x))
    return s * (1 - s)


def test_gate_forward_is_exactly_binary_on_psi_and_backward_is_the_sigmoid_slope():
    psi = torch.tensor([1.0, 0.2, 0.6, 0.5, -3.0], dtype=torch.float64, requires_grad=True)
    g = st_gate(psi, 0.5)
    # Threshold on ψ itself, as printed (0.5 is not > 0.5), not on σ(ψ) (which would keep 0.2 alive).
    assert g.tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
    w = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    (g * w).sum().backward()
    expected = [wi * _dsigmoid(p) for wi, p in zip(w.tolist(), [1.0, 0.2, 0.6, 0.5, -3.0])]
    assert psi.grad.tolist() == pytest.approx(expected, rel=1e-12)


def test_union_forward_any_alive_backward_sum():
    g1 = torch.tensor([1.0, 0.0, 0.0, 1.0], requires_grad=True)
    g2 = torch.tensor([1.0, 0.0, 1.0, 0.0], requires_grad=True)
    g3 = torch.tensor([0.0, 0.0, 0.0, 1.0], requires_grad=True)
    u = st_union(g1, g2, g3)
    assert u.tolist() == [1.0, 0.0, 1.0, 1.0]  # a channel counts once however many sub-maps use it
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    (u * w).sum().backward()
    for g in (g1, g2, g3):  # backward: the sum, so every sub-map gets the union's gradient, alive or not
        assert g.grad.tolist() == w.tolist()


def _genome(head, outs, pw=(1, 1, 1), acts=(1, 1, 1), end=(1, 1, 1)):
    return FgnasGenome(head, [Block(pw, acts, acts, acts, o) for o in outs], end)


def test_nested_skip_union_counts_and_head_gradient_by_hand():
    """H = {0}, O_0 = {1}, O_1 = {1, 2}: S_0 = {0}, S_1 = {0, 1}, S_2 = {0, 1, 2}. Every later conv that reads
    the skip path sends gradient to the head's gates through the nested unions (backward = sum)."""
    net = FgnasSupernet(blocks=2, channels=3).double()
    net.set_genome(_genome((1, 0, 0), [(0, 1, 0), (0, 1, 1)]))  # ψ = 1.0 (on) / 0.0 (off)
    counts = net.counts()
    assert [counts[k].item() for k in ("head", "b0.skip", "b1.skip", "global_skip")] == [1, 2, 3, 3]
    assert counts["b0.conv1.relu_prelu_tanh"].item() == 3 and counts["b1.conv2"].item() == 2
    pixels = 4 * 4
    sc = net.cost_term((4, 4))
    # R by hand (§3.4 table): head 27·1, pw 1·3 + 2·3, conv1 9·3·3 twice, conv2 9·3·1 + 9·3·2, body end 9·3·3,
    # tail 9·3·12 — per LR pixel.
    assert sc.mult_adds.item() == pixels * (27 + 3 + 6 + 2 * 81 + 27 + 54 + 81 + 324)
    sc.mult_adds.backward()
    # d R / d g_head[c]: the head's output (27), b0.pw's input (|P_0| = 3), b1.pw's input (3), the body-end
    # input (9·|E| = 27), the tail input (9·12) — the same for every head channel, alive or not.
    per_count = pixels * (27 + 3 + 3 + 27 + 108)
    expected = [per_count * _dsigmoid(p) for p in (1.0, 0.0, 0.0)]
    assert net.psi_head.grad.tolist() == pytest.approx(expected, rel=1e-12)
    # A residual gate feeds its own conv2 output and every later skip count: O_0's gate c: conv2 (9·3),
    # b1.pw input (3), body end input (27), nothing else (the tail reads E ∪ H).
    assert net.blocks[0].psi_out.grad[0].item() == pytest.approx(pixels * (27 + 3 + 27) * _dsigmoid(0.0))


def test_activation_union_counts_a_conv_channel_once():
    net = FgnasSupernet(blocks=1, channels=3).double()
    g = FgnasGenome((1, 1, 1), [Block((1, 1, 1), (1, 1, 0), (1, 0, 0), (0, 0, 0), (1, 1, 1))], (1, 1, 1))
    net.set_genome(g)
    c = net.counts()
    assert c["b0.conv1.relu_prelu_tanh"].item() == 2  # channel 0 has two activations: counted once
    sc = net.cost_term((2, 2))
    sc.mult_adds.backward()
    # d R / d g_relu[c] = d R / d |A| = 9·|P| (conv1 output) + 9·|O| (conv2 input) = 54 per pixel, for each of
    # the three sub-maps of each channel (backward = sum), dead tanh sub-maps included.
    grad = net.blocks[0].psi_act.grad
    for i, row in enumerate(([1, 1, 0], [1, 0, 0], [0, 0, 0])):
        assert grad[i].tolist() == pytest.approx([4 * 54 * _dsigmoid(1.0 if v else 0.0) for v in row])


def test_pruned_channels_get_gradient_from_the_loss_and_can_revive():
    torch.manual_seed(0)
    net = FgnasSupernet(blocks=1, channels=3)
    net.set_genome(_genome((1, 0, 1), [(1, 1, 0)]))
    net(torch.rand(1, 3, 5, 5)).square().mean().backward()
    assert net.psi_head.grad[1].item() != 0.0 and net.blocks[0].psi_out.grad[2].item() != 0.0


def test_hard_masks_round_trip_and_forward_uses_them():
    torch.manual_seed(1)
    net = FgnasSupernet(blocks=2, channels=3)
    assert net.genome() == net.space.densest()  # ψ0 = 1.0 > 0.5: the supernet starts fully alive
    g = _genome((1, 1, 0), [(1, 0, 1), (0, 0, 0)], end=(0, 1, 1))
    net.set_genome(g)
    assert net.genome() == g
    with torch.no_grad():  # a head channel whose gate is off changes nothing downstream
        x = torch.rand(1, 3, 4, 4)
        y = net(x)
        net.head.weight[2].add_(1.0)
        assert torch.equal(net(x), y)


def test_gates_are_their_own_parameter_group():
    net = FgnasSupernet(blocks=2, channels=4)
    groups = net.param_groups(1e-4, gate_lr=5e-3)
    assert [g["name"] for g in groups] == ["weights", "gates"] and [g["lr"] for g in groups] == [1e-4, 5e-3]
    n_gates = sum(p.numel() for p in groups[1]["params"])
    assert n_gates == net.space.n_bits == 4 * (1 + 5 * 2 + 1)
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in net.parameters())
