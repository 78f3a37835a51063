"""The HNAS genome (METHODS.md §2.2): space size, the controller's token order, the released Genotype text,
canonical keys and the errors of bad genomes."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings

from nasengine.errors import ValidationError
from nasengine.genomefile import load_architecture
from nasengine.testing.genomes import genomes, seeds
from nasengine_hnas.genome import HnasGenome, parse_genotype
from nasengine_hnas.space import HnasSpace

# §2.8: the released genotypes.py line of HNAS-A, verbatim.
HNAS_A_TEXT = ("HNAS_A = Genotype(normal=[('skip_connect', 1, 2), ('sep_conv_5x5', 1, 2), ('dil_conv_3x3', 0, 3), "
               "('dil_conv_5x5', 1, 3), ('skip_connect', 1, 4), ('dil_conv_3x3', 1, 4), ('dil_conv_5x5', 1, 5), "
               "('sep_conv_3x3', 4, 5)], normal_concat=range(2, 6), upsampling=[('deconvolution', 0, 2), "
               "('bilinear', 0, 2), ('area', 1, 3), ('deconvolution', 0, 3), ('area', 3, 4), ('bilinear', 0, 4), "
               "('bilinear', 1, 5), ('deconvolution', 3, 5)], upsampling_concat=range(2, 6))")
SMALL = HnasSpace(L=3, channels=4)


def test_size_as_section_2_2():
    # §2.2: 24,186,470,400 x 5,625,000,000 x 12 = 1.63e21 (6 ops); 83,013,134,400 x 5.625e9 x 12 = 5.60e21 (7 ops).
    assert HnasSpace().size() == 24_186_470_400 * 5_625_000_000 * 12 == 1_632_586_752_000_000_000_000
    assert HnasSpace(paper_ops=True).size() == 83_013_134_400 * 5_625_000_000 * 12
    assert f"{HnasSpace(paper_ops=True).size():.2e}" == "5.60e+21"
    lo, hi = HnasSpace().vector_bounds()
    assert int(np.prod(hi - lo + 1, dtype=object)) == HnasSpace().size()  # ordered token choices


def test_released_genotype_text_is_the_published_genome():
    space = HnasSpace()
    published = load_architecture("hnas:HNAS-A")
    assert space.from_json({"genotype": HNAS_A_TEXT, "up_pos": 9}) == published.genome
    normal, up, nodes = parse_genotype(published.genome.genotype_text())
    assert (normal, up, nodes) == (published.genome.normal, published.genome.upsampling, 4)
    # METHODS §2.2 writes C into the genome: read when it is the space's width.
    assert space.from_json({**published.genome.to_json(), "C": 64}) == published.genome


def test_token_order_is_the_controllers():
    # §2.2 / [C] utils.convert_lstm_output: per node from_1, from_2, op_1, op_2; normal, upsampling, position.
    g = load_architecture("hnas:HNAS-B").genome
    tokens = HnasSpace().to_tokens(g)
    assert len(tokens) == 33
    # normal node 2: ('dil_conv_3x3', 0, 2), ('rcab', 1, 2) -> from 0, 1; ops dil_conv_3x3 = 4, rcab = 0
    assert tokens[:4] == [0, 1, 4, 0]
    # upsampling node 4: ('sub_pixel', 3, 4) twice -> from 3, 3; ops 0, 0
    assert tokens[16 + 8:16 + 12] == [3, 3, 0, 0]
    assert tokens[-1] == 11
    assert HnasSpace().from_tokens(tokens) == g


@settings(max_examples=25, deadline=None)
@given(genomes(SMALL), seeds())
def test_tokens_json_and_variation_round_trip(genome, seed):
    space = SMALL
    assert space.from_tokens(space.to_tokens(genome)) == genome
    assert space.from_json(json.loads(json.dumps(space.to_json(genome)))) == genome
    rng = np.random.default_rng(seed)
    child = space.mutate(genome, rng)
    assert child != genome and sum(a != b for a, b in zip(space.to_tokens(child), space.to_tokens(genome))) == 1
    a, b = space.crossover(genome, space.sample(rng), rng)
    space.validate(a), space.validate(b)


def test_canonical_key_ignores_edge_order_and_stride_one_identities():
    space = SMALL
    base = space.sample(np.random.default_rng(3))
    # Swapping the two edges of a node changes the genome (token order) but not the network.
    n = list(base.normal)
    n[0], n[1] = n[1], n[0]
    swapped = HnasGenome(base.L, base.nodes, base.up_pos, tuple(n), base.upsampling)
    # At HR (from node >= 2) sub_pixel, bilinear, nearest and area are identities (§2.11 #3).
    u = list(base.upsampling)
    u[4], u[5] = ("nearest", 2, 4), ("area", 3, 4)
    u2 = list(u)
    u2[4], u2[5] = ("sub_pixel", 2, 4), ("bilinear", 3, 4)
    a = HnasGenome(base.L, base.nodes, base.up_pos, base.normal, tuple(u))
    b = HnasGenome(base.L, base.nodes, base.up_pos, base.normal, tuple(u2))
    assert space.genome_key(swapped) != space.genome_key(base) and space.key(swapped) == space.key(base)
    assert space.key(a) == space.key(b)
    # ... but a stride-1 deconvolution is a real transposed conv, and the position matters.
    u2[4] = ("deconvolution", 2, 4)
    assert space.key(HnasGenome(base.L, base.nodes, base.up_pos, base.normal, tuple(u2))) != space.key(a)
    moved = HnasGenome(base.L, base.nodes, (base.up_pos + 1) % base.L, base.normal, base.upsampling)
    assert space.key(moved) != space.key(base)


def _published_json():
    return load_architecture("hnas:HNAS-A").genome.to_json()


@pytest.mark.parametrize("edit, field, words", [
    (lambda d: d["normal"].__setitem__(0, ["conv3x3", 1, 2]), "normal[0]", "unknown op 'conv3x3'"),
    (lambda d: d["upsampling"].__setitem__(1, ["rcab", 0, 2]), "upsampling[1]", "unknown op 'rcab'"),
    (lambda d: d["normal"].__setitem__(2, ["rcab", 3, 3]), "normal[2]", "input node must be in [0, 2]"),
    (lambda d: d["normal"].__setitem__(2, ["rcab", 0, 4]), "normal[2]", "target node must be 3"),
    (lambda d: d["normal"].pop(), "normal", "must be 8 edges"),
    (lambda d: d.__setitem__("up_pos", 12), "up_pos", "[0, 11]"),
    (lambda d: d.__setitem__("L", 8), "L", "must be 12"),
    (lambda d: d.__setitem__("C", 8), "C", "written for C=8 but the space has channels=64"),
    (lambda d: d.__setitem__("method", "deconas"), "method", "must be 'hnas'"),
    (lambda d: d.__setitem__("extra", 1), "extra", "unknown field"),
])
def test_bad_genomes_name_the_field(edit, field, words):
    data = _published_json()
    edit(data)
    with pytest.raises(ValidationError) as err:
        HnasSpace().from_json(data)
    assert err.value.field == field and words in str(err.value)


def test_bad_genotype_texts():
    space = HnasSpace()
    with pytest.raises(ValidationError, match="no upsampling position"):
        space.from_json(HNAS_A_TEXT)
    with pytest.raises(ValidationError, match=r"range\(2, 6\)") as err:
        space.from_json({"genotype": HNAS_A_TEXT.replace("normal_concat=range(2, 6)", "normal_concat=[2, 3, 5]"),
                         "up_pos": 9})
    assert err.value.field == "genotype.normal_concat"
    with pytest.raises(ValidationError, match="keyword"):
        space.from_json({"genotype": "Genotype([('rcab', 0, 2)])", "up_pos": 0})
    with pytest.raises(ValidationError) as err:
        space.vector_decode(np.zeros(32, dtype=int))
    assert err.value.field == "vector"
    bad = space.vector_encode(load_architecture("hnas:HNAS-A").genome)
    bad[0] = 2  # node 2 reads node 0 or 1
    with pytest.raises(ValidationError, match=r"\[0, 1\]") as err:
        space.vector_decode(bad)
    assert err.value.field == "tokens[0]"
