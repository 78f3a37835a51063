"""Weight sharing on the HNAS space (METHODS.md §2.3): the bank from the union graph holds one module per (cell
position, cell type, edge, op); a child at any position uses it; duplicate edges share one module in the
supernet and are separate modules in the network built on its own; and every genome at every position maps
(1, 3, h, w) to (1, 3, 2h, 2w)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nasengine.builder import build
from nasengine.supernet import Supernet
from nasengine.testing.genomes import genomes
from nasengine_hnas.genome import HnasGenome
from nasengine_hnas.space import HnasSpace

SPACE = HnasSpace(L=3, channels=4)


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return Supernet(SPACE)


def test_bank_has_one_slot_per_position_type_edge_and_op(supernet):
    names = set(supernet.slot_names())
    # 14 edges (f, t) per cell at 4 nodes; normal: rcab (conv1, conv2, ca), sep_conv_3x3/5x5 (.1, .2),
    # dil_conv_3x3/5x5; upsampling: sub_pixel and deconvolution from nodes 0/1 (sub_pixel is an identity at HR).
    edges = [(f, t) for t in range(2, 6) for f in range(t)]
    assert len(edges) == 14
    for i in range(SPACE.L):
        for f, t in edges:
            e = f"c{i}.normal.e{f}_{t}"
            assert {f"{e}.rcab.conv1", f"{e}.rcab.conv2", f"{e}.rcab.ca", f"{e}.sep_conv_3x3.1",
                    f"{e}.sep_conv_5x5.2", f"{e}.dil_conv_3x3", f"{e}.dil_conv_5x5"} <= names
            u = f"c{i}.up.e{f}_{t}"
            assert f"{u}.deconvolution" in names
            assert (f"{u}.sub_pixel" in names) == (f < 2)
        assert {f"c{i}.normal.pre0", f"c{i}.up.pre1", f"c{i}.normal.out", f"c{i}.up.out"} <= names
    assert {"stem", "tail"} <= names


def _with(genome, **changes):
    return HnasGenome(genome.L, genome.nodes, changes.get("up_pos", genome.up_pos),
                      changes.get("normal", genome.normal), changes.get("upsampling", genome.upsampling))


def test_duplicate_edges_share_a_module_in_the_supernet_only(supernet):
    # HNAS-B's upsampling cell has ('sub_pixel', 3, 4) twice; here ('deconvolution', 0, 2) twice (§2.3, §2.11 #5).
    g = SPACE.sample(np.random.default_rng(1))
    up = (("deconvolution", 0, 2), ("deconvolution", 0, 2)) + g.upsampling[2:]
    g = _with(g, upsampling=up, up_pos=1)
    graph = SPACE.decode(g)
    named = [n for n in graph if graph.name(n) == "c1.up.e0_2.deconvolution"]
    assert len(named) == 2
    child = supernet.child(g)
    bank = supernet.slot_module("c1.up.e0_2.deconvolution")
    used = [m for m in child.modules() if m is bank]
    assert used and sum(1 for p in child.parameters() if p is bank.weight) == 1
    # The network built on its own has two transposed convs; inheriting the bank's weights gives the same function.
    own = build(graph)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) and m.in_channels == 4 for m in own.modules()) >= 2
    own.load_state_dict(supernet.standalone_state_dict(graph))
    x = torch.rand(1, 3, 5, 6)
    assert torch.allclose(own(x), child(x), atol=1e-5)
    n_own = sum(p.numel() for p in own.parameters())
    assert n_own == sum(p.numel() for p in child.parameters()) + bank.weight.numel() + bank.bias.numel()


def test_children_at_every_position_share_the_bank(supernet):
    g = SPACE.sample(np.random.default_rng(2))
    x = torch.rand(2, 3, 4, 5)
    for p in range(SPACE.L):
        child = supernet.child(_with(g, up_pos=p))
        y = child(x)
        assert y.shape == (2, 3, 8, 10)
        y.abs().mean().backward()
    # The last cell's normal cell ran at HR (p < L-1) though the bank's graph has it at LR: one module, any
    # resolution; each position's upsampling cell was trained once.
    assert supernet.slot_module("c2.normal.pre0").weight.grad is not None
    assert all(supernet.slot_module(f"c{i}.up.pre0").weight.grad is not None for i in range(SPACE.L))
    supernet.zero_grad()


@settings(max_examples=6, deadline=None)
@given(genomes(HnasSpace(L=4, channels=4)), st.integers(0, 3), st.integers(1, 5), st.integers(1, 5))
def test_every_genome_and_position_doubles_the_input(genome, p, h, w):
    space = HnasSpace(L=4, channels=4)
    model = build(space.decode(_with(genome, up_pos=p)))
    with torch.no_grad():
        assert model(torch.rand(1, 3, h, w)).shape == (1, 3, 2 * h, 2 * w)


def test_search_bn_supernet_shares_batch_norms_and_derived_net_has_none():
    space = HnasSpace(L=2, channels=4, nodes=2, search_bn=True)
    sn = Supernet(space)
    assert {"stem.bn", "c0.normal.pre0.bn", "c1.up.pre1.bn"} <= set(sn.slot_names())
    g = space.sample(np.random.default_rng(4))
    child = sn.child(g)
    bns = [m for m in child.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(any(m is b for b in sn.modules()) for m in bns)  # the bank's: running stats shared
    assert bns[0].affine and not any(m.affine for m in bns[1:])  # stem BN affine, the others not (§2.3)
    plain = HnasSpace(L=2, channels=4, nodes=2)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in build(plain.decode(g)).modules())


def test_upsampling_cell_nodes_run_twice():
    g = SPACE.sample(np.random.default_rng(5))
    graph = SPACE.decode(g)
    twice = {graph.name(n) for n in graph if graph.runs(n) == 2 and graph.name(n)}
    once = {graph.name(n) for n in graph if graph.runs(n) == 1 and graph.name(n)}
    assert twice and all(n.startswith(f"c{g.up_pos}.up.") for n in twice)
    assert not any(n.startswith(f"c{g.up_pos}.up.") for n in once)


def test_supernet_children_at_every_position_with_three_nodes():
    """With ``nodes`` != 4 the stem is nodes x C wide, so a cell's preprocess reads one width whatever the
    upsampling position (a child with the upsampling cell first used to fail in the supernet)."""
    import numpy as np
    import torch

    from nasengine.supernet import Supernet
    from nasengine_hnas.space import HnasSpace

    space = HnasSpace(L=3, channels=3, nodes=3)
    sn = Supernet(space)
    rng = np.random.default_rng(0)
    for pos in range(3):
        g = space.sample(rng)
        g = space.from_json({**space.to_json(g), "up_pos": pos})
        out = sn.child(g)(torch.rand(1, 3, 6, 6))
        assert out.shape == (1, 3, 12, 12)
