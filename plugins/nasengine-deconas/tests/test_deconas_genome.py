"""The DeCoNAS genome and space beyond the engine's contract: bits and JSON forms, sizes, canonical keys,
variation, densest(), the op variants, and errors that name the field."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nasengine.errors import ValidationError
from nasengine.options import OptionError
from nasengine_deconas.genome import DeconasGenome, bit_string, genome_bits
from nasengine_deconas.space import DeconasSpace

SMALL = DeconasSpace(N=2, M=3, channels=8)
FUSION = DeconasSpace(N=2, M=3, channels=8, fusion=True)


def bits_of(space):
    return st.lists(st.integers(0, 1), min_size=space.n_bits, max_size=space.n_bits)


def test_sizes():
    # §1.2: 2^(K*M(M+1)/2), 2^(30+M+N) with the fusion search; the ablation space N=16, M=8: 2^108 / 2^132.
    assert DeconasSpace().size() == 2 ** 30 == 1_073_741_824
    assert DeconasSpace(fusion=True).size() == 2 ** 38 == 274_877_906_944
    assert DeconasSpace(N=16, M=8).size() == 2 ** 108
    assert DeconasSpace(N=16, M=8, fusion=True).size() == 2 ** 132
    assert SMALL.size() == 2 ** 18  # the smoke preset's space (§1.9)


@settings(max_examples=30, deadline=None)
@given(data=st.data(), fusion=st.booleans())
def test_round_trips(data, fusion):
    space = FUSION if fusion else SMALL
    bits = data.draw(bits_of(space))
    genome = space.from_bits(bits)
    assert list(genome_bits(genome)) == bits == space.vector_encode(genome).tolist()
    assert space.from_json(json.loads(json.dumps(space.to_json(genome)))) == genome
    assert space.parse_bit_string(bit_string(genome)) == genome
    assert space.vector_decode(np.array(bits)) == genome
    # controller order, MSB = conv: mask i is bits 3i..3i+2
    assert genome.masks == tuple(4 * bits[3 * i] + 2 * bits[3 * i + 1] + bits[3 * i + 2] for i in range(6))


@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_distinct_genomes_have_distinct_keys(data):
    # Every bit changes the graph (an all-zero node is still ReLU + CA of the previous layer, so even the
    # "pass-through" degeneracy of §1.2 is a distinct graph here): distinct genomes, distinct keys.
    space = FUSION
    a = space.from_bits(data.draw(bits_of(space)))
    b = space.from_bits(data.draw(bits_of(space)))
    assert (space.key(a) == space.key(b)) == (a == b)
    c = space.mutate(a, np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1))))
    assert space.key(c) != space.key(a)


def test_mutation_flips_one_bit_and_crossover_mixes_bits():
    rng = np.random.default_rng(0)
    a, b = SMALL.from_bits([0] * 18), SMALL.from_bits([1] * 18)
    for _ in range(20):
        assert sum(genome_bits(SMALL.mutate(a, rng))) == 1
        c1, c2 = SMALL.crossover(a, b, rng)
        assert [x + y for x, y in zip(genome_bits(c1), genome_bits(c2))] == [1] * 18


def test_densest_is_all_ones_and_the_widest():
    space = DeconasSpace(N=2, M=3, channels=8, fusion=True)
    d = space.densest()
    assert d.masks == (7,) * 6 and d.lff == (1, 1, 1) and d.gff == (1, 1)
    graph = space.decode(d)
    widths = {graph.name(r.node): r.in_shapes[0].channels for r in graph.resolve()
              if r.name and r.in_shapes}
    assert widths["d1.n2.conv"] == 8 * 3 and widths["d0.lff"] == 8 * 4 and widths["gff"] == 8 * 3


def test_slot_names_are_stable_and_unique():
    rng = np.random.default_rng(1)
    space = FUSION
    dense = space.decode(space.densest())
    dense_names = {dense.name(n): (dense.op(n), dense.attrs(n)) for n in dense if dense.name(n)}
    for _ in range(10):
        g = space.decode(space.sample(rng))
        names = [g.name(r.node) for r in g.resolve() if r.spec.cost(r.attrs, r.in_shapes, r.shape).params]
        assert None not in names and len(names) == len(set(names))
        for n in g:  # the same role has the same op and attributes in every genome
            if g.name(n):
                assert dense_names[g.name(n)] == (g.op(n), g.attrs(n))


def test_op_variants():
    genome = SMALL.from_bits([1] * 18)
    fixed = SMALL.decode(genome)
    sup = DeconasSpace(N=2, M=3, channels=8, op_variant="released_supernet").decode(genome)
    by = {id(g): {g.name(n): n for n in g if g.name(n)} for g in (fixed, sup)}
    # fixed: ReLU before every op, conv bias; released_supernet: no ReLU, no conv bias (sep/dil keep theirs).
    assert fixed.op(fixed.inputs(by[id(fixed)]["d0.n0.conv"])[0]) == "relu"
    assert fixed.attrs(by[id(fixed)]["d0.n0.conv"])["bias"] is True
    assert sup.name(sup.inputs(by[id(sup)]["d0.n0.conv"])[0]) == "sfe2"
    assert sup.attrs(by[id(sup)]["d0.n0.conv"])["bias"] is False
    assert sup.attrs(by[id(sup)]["d0.n0.dil"])["bias"] is True and sup.attrs(by[id(sup)]["d0.n0.sep"])["bias"] is True


def test_fusion_bits_select_fusion_inputs_and_unread_nodes_stay_built():
    # lff = 0 everywhere and no node reads another: every node but the last is built but unused.
    masks = [4, 4, 0, 4, 0, 0]  # each node reads only u
    genome = DeconasGenome(2, 3, tuple(masks), (0, 0, 0), (0, 0))
    graph = FUSION.decode(genome)
    live = graph.live_nodes()
    by = {graph.name(n): n for n in graph if graph.name(n)}
    assert by["d0.n2.ca"] in live and by["d0.n0.ca"] not in live and by["d0.n1.ca"] not in live
    assert graph.inputs(by["d0.lff"]) == [by["d0.n2.ca"]]
    assert graph.inputs(by["gff"]) == [by["d1.out"]]


def test_scale_4_has_two_x2_stages():
    graph = DeconasSpace(N=1, M=1, channels=8, scale=4).decode(DeconasGenome(1, 1, (7,)))
    assert graph.scale == 4
    assert [graph.attrs(n)["factor"] for n in graph if graph.op(n) == "pixel_shuffle"] == [2, 2]


@pytest.mark.parametrize("data, field", [
    ({"method": "x", "N": 2, "M": 3, "K": 3, "ops": ["conv3x3", "sepconv3x3", "dilconv3x3_r3"],
      "masks": [0] * 6, "lff": None, "gff": None}, "method"),
    ({"method": "deconas", "N": 3, "M": 3, "K": 3, "ops": ["conv3x3", "sepconv3x3", "dilconv3x3_r3"],
      "masks": [0] * 6, "lff": None, "gff": None}, "N"),
    ({"method": "deconas", "N": 2, "M": 3, "K": 3, "ops": ["sepconv3x3", "conv3x3", "dilconv3x3_r3"],
      "masks": [0] * 6, "lff": None, "gff": None}, "ops"),
    ({"method": "deconas", "N": 2, "M": 3, "K": 3, "ops": ["conv3x3", "sepconv3x3", "dilconv3x3_r3"],
      "masks": [0] * 5, "lff": None, "gff": None}, "masks"),
    ({"method": "deconas", "N": 2, "M": 3, "K": 3, "ops": ["conv3x3", "sepconv3x3", "dilconv3x3_r3"],
      "masks": [0, 0, 8, 0, 0, 0], "lff": None, "gff": None}, "masks[2]"),
    ({"method": "deconas", "N": 2, "M": 3, "K": 3, "ops": ["conv3x3", "sepconv3x3", "dilconv3x3_r3"],
      "masks": [0] * 6, "lff": [1, 1, 1], "gff": None}, "lff"),
    ({"method": "deconas", "N": 2, "M": 3, "K": 3, "ops": ["conv3x3", "sepconv3x3", "dilconv3x3_r3"],
      "masks": [0] * 6, "lff": None}, "gff"),
    ("1 0 1", "bits"),
    ("1 0 2 " * 6, "bits"),
])
def test_bad_genomes_name_the_field(data, field):
    with pytest.raises(ValidationError) as err:
        SMALL.from_json(data)
    assert err.value.field == field


def test_bad_fusion_bits_and_options():
    good = FUSION.to_json(FUSION.densest())
    with pytest.raises(ValidationError, match=r"gff\[1\]: must be 0 or 1"):
        FUSION.from_json({**good, "gff": [1, 2]})
    with pytest.raises(OptionError, match="space.op_variant"):
        DeconasSpace(op_variant="tf")
    with pytest.raises(OptionError, match="space.reduction"):
        DeconasSpace(channels=8, reduction=16)
