"""The paper's seventh normal op, the up-and-down projection block (``paper_ops: true``; METHODS.md §2.1, our
reading of DBPN): six 6x6 stride-2 (transposed) convs with bias and PReLU, built on its own and in the supernet."""
from __future__ import annotations

import torch

from nasengine.builder import build
from nasengine.cost import analytic_cost
from nasengine.supernet import Supernet
from nasengine_hnas.space import HnasSpace

SPACE = HnasSpace(L=2, channels=4, nodes=2, paper_ops=True)


def _genome(op: str, up_pos: int = 1):
    return SPACE.from_json({"method": "hnas", "L": 2, "nodes": 2, "up_pos": up_pos,
                            "normal": [[op, 1, 2], [op, 0, 2], [op, 2, 3], [op, 1, 3]],
                            "upsampling": [["sub_pixel", 0, 2], ["bilinear", 1, 2], ["area", 2, 3], ["nearest", 0, 3]]})


def test_udpb_params_and_shapes():
    udpb, skip = SPACE.decode(_genome("up_and_down")), SPACE.decode(_genome("skip_connect"))
    # Per edge: 3 convs + 3 transposed convs, each 6*6*C*C weights + C biases, and a one-slope PReLU each (C = 4).
    per_edge = 6 * (36 * 4 * 4 + 4 + 1)
    assert analytic_cost(udpb, (8, 8)).params - analytic_cost(skip, (8, 8)).params == 4 * per_edge
    for genome in (_genome("up_and_down", 0), _genome("up_and_down", 1)):
        net = build(SPACE.decode(genome))
        assert tuple(net(torch.rand(1, 3, 7, 5)).shape) == (1, 3, 14, 10)


def test_udpb_in_the_supernet():
    torch.manual_seed(0)
    sn = Supernet(SPACE)
    assert {"c0.normal.e1_2.up_and_down.down.conv2", "c1.normal.e0_3.up_and_down.up.deconv1"} <= set(sn.slot_names())
    child = sn.child(_genome("up_and_down", 1))
    assert tuple(child(torch.rand(1, 3, 6, 6)).shape) == (1, 3, 12, 12)
