"""DeCoNASNet as data (METHODS.md §1.2, §1.11; reference/published_architectures.json "DeCoNASNet"): golden
costs through the CLI, the space's extremes, the built module's parameter count, the complexity penalties, and
the decoded published net against the reference's per-layer list and §1.2's table (the bit-order pitfall)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from nasengine.builder import build
from nasengine.cost import analytic_cost, count_with_hooks
from nasengine.genomefile import load_architecture
from nasengine_deconas.space import DeconasSpace

from tests.cli_helpers import run_cli

# ../shared/reference beside the repository (a worktree elsewhere: set NASENGINE_REFERENCE_DIR).
_DEFAULT_REFERENCE_DIR = Path(__file__).resolve().parents[4] / "shared" / "reference"
REFERENCE = Path(os.environ.get("NASENGINE_REFERENCE_DIR", _DEFAULT_REFERENCE_DIR)) / "published_architectures.json"
# §1.2 / §1.11 [G] (= published_architectures.json computed_params, checkpoint_meta_graph_params and
# computed_multadds_480x480_all / _live_only): exact integers, zero tolerance.
PARAMS, MULT_ADDS = 1_713_795, 387_381_690_368
LIVE_PARAMS, LIVE_MULT_ADDS = 1_693_251, 382_663_098_368


@pytest.fixture(scope="module")
def published():
    return load_architecture("deconas:DeCoNASNet")


def test_cli_cost_of_the_published_net(capsys):
    assert run_cli(["cost", "deconas:DeCoNASNet", "--lr-size", "480x480"]) == 0
    out = capsys.readouterr().out
    assert "387.3817G Mult-Adds, 1,713,795 params" in out
    assert "live (without unused nodes): 382.6631G Mult-Adds, 1,693,251 params" in out
    assert run_cli(["cost", "deconas:DeCoNASNet", "--lr-size", "480x480", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["params"], data["mult_adds"]) == (PARAMS, MULT_ADDS)
    assert (data["live_params"], data["live_mult_adds"]) == (LIVE_PARAMS, LIVE_MULT_ADDS)


def test_published_genome_and_bit_string(published):
    space = published.space
    assert isinstance(space, DeconasSpace) and (space.N, space.M, space.channels, space.scale) == (4, 4, 64, 2)
    assert published.genome.masks == (7, 6, 4, 3, 0, 2, 2, 3, 4, 1)
    # The README's --child_fixed_arc (§1.2) is the same genome.
    readme = "1 1 1 1 1 0 1 0 0 0 1 1 0 0 0 0 1 0 0 1 0 0 1 1 1 0 0 0 0 1"
    assert space.parse_bit_string(readme) == published.genome == space.from_json(readme)


@pytest.mark.parametrize("bit, params, giga", [(1, 3_558_531, 812.29), (0, 419_459, 89.76)])
def test_space_extremes(bit, params, giga):
    # §1.2 "Space extremes at N=M=4, C=64" [G].
    space = DeconasSpace()
    cost = analytic_cost(space.decode(space.from_bits([bit] * 30)), (480, 480))
    assert cost.params == params
    assert round(cost.mult_adds / 1e9, 2) == giga


def test_built_module_has_the_released_parameter_count(published):
    # The unused block connection's 20,544 params exist in the module (§1.10 #7) but it never runs.
    model = build(published.graph)
    assert sum(p.numel() for p in model.parameters()) == PARAMS
    counted = count_with_hooks(model, published.graph, (480, 480), meta=True)
    assert counted.params == PARAMS and counted.mult_adds == LIVE_MULT_ADDS


def test_complexity_penalties_of_the_published_net(published):
    # §1.5 / §1.11: cb_code = 298,752 / 743,680; cb_paper = 1,713,795 / 3,558,531.
    metrics = published.space.genome_metrics(published.genome)
    assert metrics["cb_code"] == pytest.approx(298_752 / 743_680, abs=1e-12)
    assert round(metrics["cb_code"], 5) == 0.40172
    assert metrics["cb_paper"] == pytest.approx(PARAMS / 3_558_531, abs=1e-12)
    assert round(metrics["cb_paper"], 5) == 0.48160


def _inputs_of(graph, node):
    """Slot names of what ``node`` reads, through ReLU and concat nodes."""
    names = []
    for u in graph.inputs(node):
        if graph.op(u) in ("relu", "concat"):
            names += _inputs_of(graph, u)
        else:
            names.append(graph.name(u))
    return names


def test_decoded_published_net_matches_the_table_of_section_1_2(published):
    # §1.2 "Published DeCoNASNet decoded" (§1.10 #1: per node, per input, then per op, MSB = conv).
    table = {
        0: {"conv": ["u"], "sep": ["u"], "dil": ["u"]},
        1: {"conv": ["u", "n0"], "sep": ["u"]},
        2: {"sep": ["u", "n1"], "dil": ["u"]},
        3: {"conv": ["n1"], "sep": ["u", "n0"], "dil": ["n0", "n2"]},
    }
    graph = published.graph
    by_name = {graph.name(n): n for n in graph if graph.name(n)}
    for d in range(4):
        u = "sfe2" if d == 0 else f"bc{d - 1}"
        alias = {u: "u", **{f"d{d}.n{m}.ca": f"n{m}" for m in range(4)}}
        for m, ops in table.items():
            found = {op: [alias[x] for x in _inputs_of(graph, by_name[f"d{d}.n{m}.{op}"])]
                     for op in ("conv", "sep", "dil") if f"d{d}.n{m}.{op}" in by_name}
            assert found == ops, (d, m)


def test_per_layer_params_match_the_reference_list(published):
    if not REFERENCE.exists():
        pytest.skip(f"{REFERENCE} not found")
    layers = json.loads(REFERENCE.read_text())["DeCoNASNet"]["layers"]
    ref: dict[str, int] = {}
    for name, *_, params in (layer[:10] for layer in layers):
        ours = (name.replace("block_connection", "bc").replace("global_fusion1x1", "gff")
                .replace("gfe3x3", "gff3x3").replace("up_conv", "up0").replace("result_conv", "out"))
        ours = re.sub(r"dnb(\d)/node(\d)/", r"d\1.n\2.", ours)
        ours = re.sub(r"dnb(\d)/local_fusion", r"d\1.lff", ours)
        ours = (ours.replace("dilconv3x3_rate3", "dil").replace("sepconv3x3/dw", "sep")
                .replace("sepconv3x3/pw", "sep").replace("conv3x3", "conv").replace("ca_down", "ca")
                .replace("ca_up", "ca"))
        ref[ours] = ref.get(ours, 0) + params
    graph = published.graph
    mine = {r.name: c.params for r, c in zip(graph.resolve(), [r.spec.cost(r.attrs, r.in_shapes, r.shape)
                                                                for r in graph.resolve()]) if c.params}
    assert mine == ref
