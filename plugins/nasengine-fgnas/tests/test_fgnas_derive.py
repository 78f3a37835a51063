"""Derivation with weights (METHODS §3.6, issue 14 item 5): on random masks the pruned network reproduces the
masked supernet to <= 1e-5, and its analytic Mult-Adds equal the differentiable cost term at the hard gates
exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nasengine.cost import analytic_cost
from nasengine_fgnas.derive import derive
from nasengine_fgnas.genome import FgnasGenome
from nasengine_fgnas.supernet import FgnasSupernet


def _random_genomes(space, n, seed):
    rng = np.random.default_rng(seed)
    out = [space.densest(), FgnasGenome.filled(space.blocks, space.channels, space.gate_body_end, 0)]
    while len(out) < n:
        bits = np.asarray(space.sample(rng).bits())
        bits[rng.random(bits.size) < rng.uniform(0, 0.9)] = 0  # sparse too: empty sets, dead blocks
        out.append(space.vector_decode(bits))
    return out


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    net = FgnasSupernet(blocks=3, channels=5)
    with torch.no_grad():  # larger biases and slopes, so that dropped or misplaced constants would show
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.bias.uniform_(-0.5, 0.5)
            if isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(0.0, 0.5)
    return net


def test_derived_network_reproduces_the_masked_supernet(supernet):
    x = torch.rand(2, 3, 6, 5) * 2 - 0.5
    for genome in _random_genomes(supernet.space, 24, seed=1):
        supernet.set_genome(genome)
        d = derive(supernet)
        with torch.no_grad():
            diff = (supernet(x) - d.module(x)).abs().max().item()
        assert diff <= 1e-5, (supernet.space.describe(genome), diff)


def test_cost_term_at_hard_gates_equals_the_derived_networks_analytic_cost(supernet):
    lr = (6, 5)
    for genome in _random_genomes(supernet.space, 24, seed=2):
        eff = supernet.space.effective(genome)
        supernet.set_genome(eff)
        sc = supernet.cost_term(lr)
        cost = analytic_cost(supernet.space.decode(eff), lr)
        assert sc.mult_adds.item() == cost.mult_adds
        # Params too, exactly: the prelu node's count gives a slope per PReLU-alive channel only (not per
        # channel of A_b), as the pruned network keeps them.
        assert sc.params.item() == cost.params
        assert sc.as_metrics() == {k: float(v) for k, v in cost.as_metrics().items() if k in sc.as_metrics()}
        # The masks as trained (dead convs still computed by the supernet) cost at least the derived net.
        supernet.set_genome(genome)
        assert supernet.cost_term(lr).mult_adds.item() >= cost.mult_adds


def test_derive_defaults_to_the_hard_masks(supernet):
    genome = _random_genomes(supernet.space, 3, seed=3)[2]
    supernet.set_genome(genome)
    d = derive(supernet)
    assert d.genome == supernet.space.effective(genome)
    assert d.graph.key() == supernet.space.key(genome)
