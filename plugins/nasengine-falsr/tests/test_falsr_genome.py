"""The FALSR genome (M_mic, M_mac): cell indices and names, the connection-bit layout, JSON, vector encoding,
keys, variation operators and the space's size."""
from __future__ import annotations

import json
from math import lcm

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasengine.errors import ConfigError, ValidationError
from nasengine.testing import genome_pairs, genomes, seeds
from nasengine_falsr import genome as G
from nasengine_falsr.genome import Cell, FalsrGenome
from nasengine_falsr.space import FalsrSpace

SPACES = {n: FalsrSpace(n_cells=n) for n in (1, 2, 4, 7)}
any_space = st.sampled_from(sorted(SPACES)).map(SPACES.get)
fast = settings(max_examples=60, deadline=None)


def drawn(data, space, max_mutations=3):
    return data.draw(genomes(space, max_mutations=max_mutations))


# ---- cells ----------------------------------------------------------------------------------------------------
def test_operator_set_has_192_cells_and_indices_are_a_bijection():
    assert G.N_CELL_CHOICES == 192 == len(G.ALL_CELLS) == len(set(G.ALL_CELLS))
    for i, cell in enumerate(G.ALL_CELLS):
        assert G.cell_to_index(cell) == i
        assert G.cell_from_index(i) == cell
        assert G.parse_cell_name(G.cell_name(cell)) == cell
    assert G.cell_from_index(0) == Cell("conv", 16, 1, False, 1)
    assert G.cell_from_index(191) == Cell("inverted_bottleneck_e2", 64, 3, True, 4)
    assert G.cell_to_index(Cell("group_conv_g2", 48, 3, True, 2)) == (((1 * 4 + 2) * 2 + 1) * 2 + 1) * 3 + 1
    for bad in (-1, 192, 1.5, True, "3"):
        with pytest.raises(ValidationError):
            G.cell_from_index(bad)


@pytest.mark.parametrize("name, cell", [
    ("conv_f64_k3_b4_isskip", Cell("conv", 64, 3, True, 4)),                       # Fig. 3 caption
    ("groupConG4_f16_k3_b4_noskip", Cell("group_conv_g4", 16, 3, False, 4)),
    ("groupConG2_f32_k1_b1_noskip", Cell("group_conv_g2", 32, 1, False, 1)),
    ("invertBotConE2_f32_k3_b4_noskip", Cell("inverted_bottleneck_e2", 32, 3, False, 4)),
])
def test_paper_cell_names(name, cell):
    assert G.cell_name(cell) == cell.name == name
    assert G.parse_cell_name(name) == cell
    assert (cell.groups, cell.expansion) == ({"group_conv_g4": 4, "group_conv_g2": 2}.get(cell.kind, 1),
                                            2 if cell.kind == "inverted_bottleneck_e2" else 1)


@pytest.mark.parametrize("name", ["conv_f8_k3_b4_isskip", "conv_f64_k5_b4_isskip", "conv_f64_k3_b3_noskip",
                                  "groupConG3_f16_k3_b1_noskip", "conv_f64_k3_b4", "", 7])
def test_bad_cell_names_are_rejected(name):
    with pytest.raises(ValidationError):
        G.parse_cell_name(name)


def test_space_cell_indices_follow_the_global_order():
    full, sub = FalsrSpace(), FalsrSpace(n_cells=3, channels=[32, 16])
    assert full.n_cell_choices == 192 and sub.n_cell_choices == 96 and sub.channels == (16, 32)
    for i, cell in enumerate(full.cell_choices):
        assert full.cell_index(cell) == G.cell_to_index(cell) == i and full.cell_from_index(i) == cell
    assert [G.cell_to_index(c) for c in sub.cell_choices] == sorted(G.cell_to_index(c) for c in sub.cell_choices)
    with pytest.raises(ValidationError, match="not a cell of this space"):
        sub.cell_index(Cell("conv", 64, 3, True, 4))
    with pytest.raises(ValidationError):
        sub.cell_from_index(96)


def test_grouped_convs_always_divide():
    """Why no genome needs repair: the head and every cell width are multiples of lcm(groups) = 4, so any
    concatenation of nodes is too, and so is every grouped conv's input and output."""
    groups = lcm(*(c.groups for c in G.ALL_CELLS))
    assert groups == 4
    assert all(w % groups == 0 for w in G.CHANNELS + (G.HEAD_CHANNELS,))


# ---- the connection bits --------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_bit_layout_is_the_papers_row_order(n):
    """Flat bit of c_i^j (1-based, i <= j <= n) is (i-1)(n+1-i/2) + (j-i+1) - 1, the paper's O^mac index with
    j counted within the row; it means node i-1 feeds consumer j+1 (cell j+1, or the tail for j = n)."""
    seen = []
    for i in range(1, n + 1):
        for j in range(i, n + 1):
            flat = G.bit_index(n, i - 1, j + 1)
            assert flat == int((i - 1) * (n + 1 - 0.5 * i)) + (j - i + 1) - 1
            seen.append(flat)
    assert seen == list(range(G.macro_length(n))) and G.macro_length(n) == n * (n + 1) // 2
    with pytest.raises(ValueError):
        G.bit_index(n, 0, 1)  # a cell's predecessor is always wired: no bit


def test_inputs_of_the_extreme_genomes():
    cells = (G.ALL_CELLS[0],) * 4
    chain = FalsrGenome(cells, (0,) * 10)
    dense = FalsrGenome(cells, (1,) * 10)
    assert chain.cell_inputs == ((0,), (1,), (2,), (3,)) and chain.tail_inputs == (4,)
    assert dense.cell_inputs == ((0,), (0, 1), (0, 1, 2), (0, 1, 2, 3)) and dense.tail_inputs == (0, 1, 2, 3, 4)
    assert dense.rows == ((1, 1, 1, 1), (1, 1, 1), (1, 1), (1,))


@fast
@given(data=st.data())
def test_from_inputs_inverts_inputs(data):
    space = data.draw(any_space)
    genome = drawn(data, space)
    assert FalsrGenome.from_inputs(genome.micro, genome.cell_inputs, genome.tail_inputs) == genome


@pytest.mark.parametrize("cell_inputs, tail, field", [
    ([[0], [0]], [2], "cell_inputs[1]"),          # cell 2 without its predecessor (node 1)
    ([[0], [1, 2]], [2], "cell_inputs[1]"),       # a later node
    ([[0], [1]], [0, 1], "tail_inputs"),          # tail without the last cell
    ([[0], [1, 1]], [2], "cell_inputs[1]"),       # repeated node
    ([[0]], [2], "cell_inputs"),                  # one list short
])
def test_from_inputs_rejects_what_the_space_cannot_express(cell_inputs, tail, field):
    with pytest.raises(ValidationError) as exc:
        FalsrGenome.from_inputs(G.ALL_CELLS[:2], cell_inputs, tail)
    assert exc.value.field == field


# ---- JSON, keys, vectors ----------------------------------------------------------------------------------------
@fast
@given(data=st.data())
def test_json_round_trip_and_key_stability(data):
    space = data.draw(any_space)
    genome = drawn(data, space)
    doc = json.loads(json.dumps(space.to_json(genome)))
    assert [len(row) for row in doc["macro"]] == list(range(space.n_cells, 0, -1))
    back = space.from_json(doc)
    assert back == genome and hash(back) == hash(genome)
    plain = FalsrSpace(n_cells=space.n_cells)
    assert plain.genome_key(genome) == plain.genome_key(back) == space.genome_key(genome)
    named = {"micro": [c.name for c in genome.micro], "macro": doc["macro"]}  # paper names are accepted too
    assert space.from_json(named) == genome


def test_genome_key_is_fixed():
    """The canonical key is a function of the genome only (pinned: a change would orphan stored runs)."""
    genome = FalsrGenome.from_inputs([Cell("conv", 64, 3, True, 4), Cell("group_conv_g4", 16, 1, False, 2)],
                                     [[0], [0, 1]], [0, 2])
    assert json.dumps(genome.to_json(), sort_keys=True, separators=(",", ":")) == (
        '{"macro":[[1,1],[0]],"micro":[{"blocks":4,"channels":64,"kernel":3,"kind":"conv","skip":true},'
        '{"blocks":2,"channels":16,"kernel":1,"kind":"group_conv_g4","skip":false}]}')
    assert FalsrSpace(n_cells=2).genome_key(genome) == (
        "f84604e6b76246e10c67324391bffe3f8b2051e727feba43744b67a651bf567f")


@fast
@given(data=st.data())
def test_vector_round_trip_and_layout(data):
    space = data.draw(any_space)
    genome = drawn(data, space)
    v = space.vector_encode(genome)
    lo, hi = space.vector_bounds()
    assert v.shape == lo.shape == (space.n_cells + space.n_macro_bits,)
    assert list(v[: space.n_cells]) == [G.cell_to_index(c) for c in genome.micro]
    assert tuple(v[space.n_cells:]) == genome.macro
    assert np.all(hi[: space.n_cells] == 191) and np.all(hi[space.n_cells:] == 1)
    assert space.vector_decode(v) == genome
    assert space.vector_decode(v.astype(float) + 0.3) == genome  # real-valued operators round


def test_vector_decode_rejects_the_wrong_length_and_nan():
    space = SPACES[2]
    with pytest.raises(ValidationError, match="5 entries"):
        space.vector_decode([0, 0, 0, 0])
    with pytest.raises(ValidationError, match="non-finite"):
        space.vector_decode([0, 0, np.nan, 0, 0])


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("macro"), "macro"),
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d["micro"].pop(), "micro"),                       # 1 cell for a 2-cell space
    (lambda d: d["micro"][1].update(channels=24), "micro[1].channels"),
    (lambda d: d["micro"][0].update(kind="sep_conv"), "micro[0].kind"),
    (lambda d: d["micro"][0].update(skip=1), "micro[0].skip"),
    (lambda d: d["micro"][0].update(blocks=True), "micro[0].blocks"),
    (lambda d: d["micro"][0].pop("kernel"), "micro[0].kernel"),
    (lambda d: d["micro"].__setitem__(0, "conv_f64_k7_b1_isskip"), "micro[0].kernel"),
    (lambda d: d["micro"].__setitem__(0, "sepConv_f64_k3_b1_isskip"), "micro[0]"),
    (lambda d: d["micro"].__setitem__(0, [64, 3]), "micro[0]"),
    (lambda d: d["macro"].pop(), "macro"),
    (lambda d: d["macro"][0].append(0), "macro[0]"),
    (lambda d: d["macro"][1].__setitem__(0, 2), "macro[1][0]"),
    (lambda d: d["macro"][0].__setitem__(1, 0.5), "macro[0][1]"),
])
def test_malformed_json_names_the_field(mutate, field):
    space = SPACES[2]
    doc = space.to_json(space.sample(np.random.default_rng(0)))
    mutate(doc)
    with pytest.raises(ValidationError) as exc:
        space.from_json(doc)
    assert exc.value.field == field


def test_validate_explains_invalid_genomes():
    space = SPACES[2]
    good = space.sample(np.random.default_rng(1))
    cases = {
        "micro[0].channels": FalsrGenome((Cell("conv", 20, 3, True, 1), good.micro[1]), good.macro),
        "micro": FalsrGenome(good.micro[:1], (0,)),
        "macro": FalsrGenome(good.micro, good.macro[:2]),
        "macro[1][0]": FalsrGenome(good.micro, good.macro[:2] + (3,)),
        "genome": None,
    }
    for field, genome in cases.items():
        with pytest.raises(ValidationError) as exc:
            space.validate(genome)
        assert exc.value.field == field
    narrow = FalsrSpace(n_cells=2, channels=[16])  # a cell width outside the space's channel subset
    with pytest.raises(ValidationError) as exc:
        narrow.validate(FalsrGenome((Cell("conv", 16, 1, False, 1), Cell("conv", 32, 1, False, 1)), (0, 0, 0)))
    assert exc.value.field == "micro[1].channels"


# ---- variation ----------------------------------------------------------------------------------------------------
@fast
@given(data=st.data(), seed=seeds())
def test_mutation_changes_exactly_one_gene(data, seed):
    space = data.draw(any_space)
    genome = drawn(data, space)
    child = space.mutate(genome, np.random.default_rng(seed))
    space.validate(child)
    changed = [a != b for a, b in zip(genome.micro, child.micro)] + [a != b for a, b in zip(genome.macro, child.macro)]
    assert sum(changed) == 1


@fast
@given(data=st.data(), seed=seeds())
def test_crossover_exchanges_one_cell_and_one_row(data, seed):
    """Eq. (4): child 1 = a with b's x_i and b's row c_j^{j:n}; child 2 the converse."""
    space = data.draw(any_space)
    a, b = data.draw(genome_pairs(space))
    c1, c2 = space.crossover(a, b, np.random.default_rng(seed))
    for child in (c1, c2):
        space.validate(child)
    n = space.n_cells
    from_b = [i for i in range(n) if c1.micro[i] != a.micro[i]]
    assert len(from_b) <= 1 and all(c1.micro[i] == b.micro[i] for i in from_b)
    rows_b = [j for j in range(n) if c1.rows[j] != a.rows[j]]
    assert len(rows_b) <= 1 and all(c1.rows[j] == b.rows[j] for j in rows_b)
    # the two children hold, position by position, the parents' genes between them
    for k in range(n):
        assert {c1.micro[k], c2.micro[k]} == {a.micro[k], b.micro[k]}
        assert {c1.rows[k], c2.rows[k]} == {a.rows[k], b.rows[k]}


def test_sampling_is_uniform_enough():
    """Every cell choice and every bit value turns up (uniform sampling, not the paper's initialisation)."""
    space = FalsrSpace(n_cells=7)
    rng = np.random.default_rng(0)
    sampled = [space.sample(rng) for _ in range(400)]
    indices = {space.cell_index(c) for g in sampled for c in g.micro}
    assert len(indices) == 192
    bits = np.array([g.macro for g in sampled])
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 0.12)


# ---- size and options -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", range(1, 9))
def test_size_formula(n):
    assert FalsrSpace(n_cells=n).size() == 192 ** n * 2 ** (n * (n + 1) // 2)
    assert FalsrSpace(n_cells=n, channels=[16, 64]).size() == 96 ** n * 2 ** (n * (n + 1) // 2)


def test_size_matches_exhaustive_enumeration_for_one_cell():
    space = FalsrSpace(n_cells=1)
    lo, hi = space.vector_bounds()
    distinct = {space.vector_decode([i, b]) for i in range(hi[0] + 1) for b in range(2)}
    assert len(distinct) == space.size() == 384


@pytest.mark.parametrize("options", [{"n_cells": 0}, {"n_cells": True}, {"scale": 3}, {"scale": 4},
                                     {"channels": [8, 16]}, {"channels": []}, {"channels": [16, 16]},
                                     {"channels": "16"}])
def test_bad_options_raise_config_error(options):
    with pytest.raises(ConfigError):
        FalsrSpace(**options)


def test_options_and_repr():
    assert FalsrSpace().options() == {"n_cells": 7, "scale": 2}
    assert FalsrSpace(n_cells=3, channels=[32, 16]).options() == {"n_cells": 3, "scale": 2, "channels": [16, 32]}
    assert FalsrSpace().name == "falsr" and "n_cells=7" in repr(FalsrSpace())
