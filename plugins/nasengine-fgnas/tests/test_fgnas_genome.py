"""The FGNAS genome: JSON (lists of 0/1 or booleans), field-naming errors, the flat bit order, the space's
options, effective masks and the decoded channel sets (METHODS §3.2)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasengine.errors import ValidationError
from nasengine.options import OptionError
from nasengine_fgnas.genome import Block, FgnasGenome, n_bits
from nasengine_fgnas.space import FgnasSpace


def _space(**kw):
    return FgnasSpace(**{"blocks": 2, "channels": 4, **kw})


def test_bit_count_of_the_paper_supernet():
    # METHODS §3.2: 64 + 16*320 (+64) = 5,184 (5,248) gates for B = 16, C = 64.
    assert n_bits(16, 64, False) == 5184 and n_bits(16, 64, True) == 5248
    assert FgnasSpace().size() == 2 ** 5248


def test_booleans_and_bits_parse_to_the_same_genome():
    space = _space()
    g = space.sample(np.random.default_rng(0))
    data = space.to_json(g)
    as_bools = json.loads(json.dumps(data).replace("1", "true").replace("0", "false"))
    assert space.from_json(as_bools) == g
    assert space.genome_key(space.from_json(as_bools)) == space.genome_key(g)


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["blocks"][1]["relu"].__setitem__(2, 2), "blocks[1].relu[2]"),
    (lambda d: d["blocks"][0]["out"].pop(), "blocks[0].out"),
    (lambda d: d["blocks"].pop(), "blocks"),
    (lambda d: d["blocks"][0].__setitem__("gelu", [1, 1, 1, 1]), "blocks[0].gelu"),
    (lambda d: d.__setitem__("head", "1111"), "head"),
    (lambda d: d["head"].__setitem__(0, 1.0), "head[0]"),
    (lambda d: d.__setitem__("body_end", None), "body_end"),
    (lambda d: d.pop("head"), "head"),
])
def test_malformed_json_names_the_field(edit, field):
    space = _space()
    data = space.to_json(space.densest())
    edit(data)
    with pytest.raises(ValidationError) as info:
        space.from_json(data)
    assert info.value.field == field


def test_ungated_body_end_must_be_null():
    space = _space(gate_body_end=False)
    data = space.to_json(space.densest())
    assert data["body_end"] is None
    data["body_end"] = [1, 1, 1, 1]
    with pytest.raises(ValidationError, match="does not gate") as info:
        space.from_json(data)
    assert info.value.field == "body_end"


def test_bad_option_is_named():
    with pytest.raises(OptionError, match="scale"):
        FgnasSpace(scale=5)


def test_vector_order_is_head_blocks_body_end():
    space = _space(blocks=1, channels=2)
    g = FgnasGenome([1, 0], [Block([0, 1], [1, 1], [0, 0], [1, 0], [0, 1])], [1, 1])
    assert space.vector_encode(g).tolist() == [1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 1, 1, 1]
    with pytest.raises(ValidationError) as info:
        space.vector_decode([0] * 13 + [2])
    assert info.value.field == "vector[13]"


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_channel_sets_follow_the_union_rules(seed):
    """S_0 = H, S_b = S_{b-1} ∪ O_b over live blocks, U = E ∪ H; effective masks decode to the same graph."""
    space = _space(blocks=3, channels=4)
    rng = np.random.default_rng(seed)
    bits = np.asarray(space.sample(rng).bits())
    bits[rng.random(bits.size) < rng.random()] = 0  # many empty sets
    g = space.vector_decode(bits)
    eff = space.effective(g)
    plan = space.plan(g)
    on = lambda m: {c for c, v in enumerate(m) if v}  # noqa: E731
    S = on(g.head)
    assert set(plan.H) == S
    live = {bp.index: bp for bp in plan.blocks}
    for b, block in enumerate(eff.blocks):
        if not on(g.body_end):
            assert eff.blocks[b] == Block.filled(4, 0) and not live
            continue
        if not on(g.blocks[b].out):
            assert b not in live and block == Block.filled(4, 0)
            continue
        bp = live[b]
        assert set(bp.S) == S and set(bp.O) == on(block.out) and set(bp.A) == on(block.act)
        assert len(bp.A) == len(set(bp.A))
        assert set(bp.P) == (on(block.pw) if bp.A else set())
        S = S | on(block.out)
        assert set(bp.S_out) == S
    assert set(plan.S_B) == S and set(plan.U) == set(plan.E) | set(plan.H)
    assert space.effective(eff) == eff
    assert space.key(eff) == space.key(g)
    assert space.decode(eff) == space.decode(g)


def test_all_on_is_the_supernet_with_builtin_ops_only():
    space = _space()
    graph = space.decode(space.densest())
    ops = {graph.op(n) for n in graph}
    assert ops <= {"input", "output", "conv", "relu", "prelu", "tanh", "add", "scale", "pixel_shuffle"}
    assert space.describe(space.densest()) == "head 4 | blocks (pw/act/out->skip) 4/4/4->4 4/4/4->4 | body_end 4 | tail in 4"


def test_x3_widens_the_tail_only():
    from nasengine.cost import analytic_cost

    g2, g3 = _space(), _space(scale=3)
    genome = g2.sample(np.random.default_rng(3))
    c2, c3 = analytic_cost(g2.decode(genome), (6, 6)), analytic_cost(g3.decode(genome), (6, 6))
    u = len(g2.plan(genome).U)
    # METHODS §3.7: Δparams = (3s² − 12)·(9·|U| + 1) for a tail reading |U| channels.
    assert c3.params - c2.params == (27 - 12) * (9 * u + 1)
    assert c3.scale == 3
