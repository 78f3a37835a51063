"""The published FALSR models as data: golden costs, the CLI, building and running them, and agreement with the
reference's per-layer lists."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nasengine.cost import analytic_cost
from nasengine.genomefile import load_architecture
from nasengine_falsr.plugin import GENOMES_DIR, PUBLISHED

# Independent counts at LR 480x480, x2, convention of reference/README.md ("Mult-Adds and params: one
# convention" table: released graphs; FALSR-C without node 2 in the tail concat = the paper's 93.7G / 408K).
# Exact integers: the count is exact arithmetic, so the tolerance is zero.
GOLDEN = {
    "FALSR-A": (235_000_627_200, 1_021_401),
    "FALSR-B": (74_502_144_000, 324_745),
    "FALSR-C": (97_955_020_800, 426_569),
    "FALSR-C-paper": (93_708_288_000, 408_137),
}
# Table 1 of the paper (G Mult-Adds, K params): within 0.3% / 0.4% for A and B, exact to its rounding for C-paper.
PAPER = {"FALSR-A": (234.7, 1021), "FALSR-B": (74.7, 326), "FALSR-C-paper": (93.7, 408)}

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = PLUGIN_ROOT.parents[2] / "shared" / "reference" / "published_architectures.json"


@pytest.fixture(scope="module")
def archs():
    return {name: load_architecture(f"falsr:{name}") for name in PUBLISHED}


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} not found (the reference lives beside the checkout)")
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", PUBLISHED)
def test_golden_cost_at_480x480(archs, name):
    cost = analytic_cost(archs[name].graph, lr_size=(480, 480))
    assert (cost.mult_adds, cost.params) == GOLDEN[name]
    assert cost.scale == 2 and cost.hr_size == (960, 960)
    if name in PAPER:
        g, k = PAPER[name]
        assert abs(cost.mult_adds / 1e9 - g) / g < 0.003 and abs(cost.params / 1e3 - k) / k < 0.004


def test_cli_cost_console_script():
    exe = shutil.which("nasengine", path=str(Path(sys.executable).parent))
    assert exe, "the nasengine console script is not installed next to this Python"
    out = subprocess.run([exe, "cost", "falsr:FALSR-A", "--lr-size", "480x480"], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("FALSR-A: 235.0006G Mult-Adds, 1,021,401 params")


@pytest.mark.parametrize("name", PUBLISHED)
def test_cli_cost_json(name, capsys):
    from nasengine.cli import main

    assert main(["cost", f"falsr:{name}", "--lr-size", "480x480", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["mult_adds"], data["params"], data["lr_size"], data["scale"]) == (*GOLDEN[name], [480, 480], 2)


@pytest.mark.parametrize("name", PUBLISHED)
def test_build_and_forward(archs, name):
    import torch

    from nasengine.builder import build

    torch.manual_seed(0)
    module = build(archs[name].graph)
    with torch.no_grad():
        y = module(torch.rand(1, 1, 24, 24))
    assert tuple(y.shape) == (1, 1, 48, 48) and torch.isfinite(y).all()
    assert sum(p.numel() for p in module.parameters()) == GOLDEN[name][1]


def test_published_genomes_are_registered_files(archs):
    for name, arch in archs.items():
        path = GENOMES_DIR / f"{name}.json"
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["schema"] == "nasengine.genome/1" and doc["space"] == "falsr" and doc["name"] == name
        assert doc["options"] == {"n_cells": 7, "scale": 2} and arch.space.name == "falsr"
        assert arch.document() == doc
    # C-paper differs from C only by node 2 leaving the tail concat
    c, paper = archs["FALSR-C"].genome, archs["FALSR-C-paper"].genome
    assert c.micro == paper.micro and c.cell_inputs == paper.cell_inputs
    assert (c.tail_inputs, paper.tail_inputs) == ((0, 2, 6, 7), (0, 6, 7))
    # §6.2: FALSR-C "uses relatively sparse connections (8 in total)" — 8 searched bits set in the released graph
    assert sum(c.macro) == 8


def test_falsr_a_cells_are_figure_3s(archs):
    names = [cell.name for cell in archs["FALSR-A"].genome.micro]
    assert names == ["conv_f64_k3_b4_isskip", "conv_f48_k1_b1_isskip", "conv_f64_k3_b4_isskip",
                     "conv_f64_k3_b4_isskip", "conv_f64_k3_b4_isskip", "conv_f64_k1_b4_noskip",
                     "conv_f64_k3_b4_isskip"]


@pytest.mark.parametrize("name", ["FALSR-A", "FALSR-B", "FALSR-C"])
def test_conv_layers_match_the_reference_layer_list(archs, reference, name):
    """Every learned conv, in order: name, C_in, C_out, kernel, groups, params and resolution, as listed by
    the reference for the released graph."""
    graph = archs[name].graph
    resolved = [r for r in graph.resolve() if r.op == "conv"]
    got = [[r.name, r.in_shapes[0].channels, r.attrs["out_channels"], r.attrs["kernel"], r.attrs["groups"],
            "HR" if r.shape.scale == 2 else "LR"] for r in resolved]
    want = [[row[0], row[2], row[3], row[4], row[5], row[7]] for row in reference[name]["layers"]]
    assert got == want
    from nasengine.cost import cost_breakdown

    params = [c.params for c in cost_breakdown(graph, (480, 480)) if c.op == "conv"]
    assert params == [row[9] for row in reference[name]["layers"]]


def test_genome_files_are_what_the_tool_writes(reference):
    spec = importlib.util.spec_from_file_location("make_genomes", PLUGIN_ROOT / "tools" / "make_genomes.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for name, doc in tool.documents(reference).items():
        assert (GENOMES_DIR / f"{name}.json").read_text(encoding="utf-8") == tool.dumps(doc)
