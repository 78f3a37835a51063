"""Cost conventions (true / executed / deconv_output / conv2d_48px_x10), per-node execution counts, and the ops a
hierarchical cell space composes (batch_norm, transposed convs at stride 1 and 2, interpolation modes)."""
from __future__ import annotations

import json
import pickle
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from nasengine.builder import build
from nasengine.cli import main as cli_main
from nasengine.cost import (
    CONVENTIONS, AnalyticCostModel, CostConvention, DifferentiableCost, analytic_cost, cost_breakdown,
    cost_convention, count_with_hooks, register_convention,
)
from nasengine.errors import InputError, ValidationError
from nasengine.graph import ArchGraph
from nasengine.options import OptionError

from tests.engine.zoo import hnas


# ---- golden: the HNAS table of issue 13 -------------------------------------------------------------------------
# params, true Mult-Adds (each module once), as executed (up cell twice), the repo's compute_flops x1e-8 at 48x48
# (as an integer: figure / 1e9 = the paper's "G FLOPs"). Source: shared/reference/published_architectures.json,
# "HNAS-A/B/C".variants (computed_params, true_macs_480x480_G_*, repo_flops_48x48_x1e-8), C = 64, L = 12, LR 480x480.
HNAS_TABLE = [
    ("HNAS-A", 9, 974_019, 357_256_396_800, 415_766_937_600, 30_630_597_120),
    ("HNAS-B", 11, 2_141_290, 490_645_123_968, 574_636_061_568, 48_216_495_360),
    ("HNAS-C", 9, 2_542_545, 904_554_145_536, 1_014_025_479_936, 83_662_264_320),
    ("HNAS-A", 11, 974_019, 254_627_020_800, 313_137_561_600, 20_367_659_520),
    ("HNAS-C", 11, 2_542_545, 626_747_041_536, 736_218_375_936, 55_881_553_920),
]


@pytest.mark.parametrize("model, position, params, true, executed, repo", HNAS_TABLE)
def test_hnas_published_figures_under_each_convention(model, position, params, true, executed, repo):
    g = hnas(model, position)
    c = analytic_cost(g, also=["executed", "conv2d_48px_x10"])
    assert (c.params, c.mult_adds, c.convention) == (params, true, "true")
    assert c.other == {"executed": executed, "conv2d_48px_x10": repo}
    assert c.figures == {"true": true, "executed": executed, "conv2d_48px_x10": repo}
    # the repo's figure does not depend on the asked LR size (the counter always runs at 48x48)
    assert analytic_cost(g, (96, 96), convention="conv2d_48px_x10").mult_adds == repo


def test_hnas_published_rounding():
    """Issue 13's table: 357.3G / 415.8G, 30.6306; 490.6G / 574.6G, 48.2165; 904.6G / 1,014.0G, 83.6623."""
    shown = [(f"{t / 1e9:.1f}", f"{e / 1e9:.1f}", f"{r / 1e9:.4f}") for _, _, _, t, e, r in HNAS_TABLE[:3]]
    assert shown == [("357.3", "415.8", "30.6306"), ("490.6", "574.6", "48.2165"), ("904.6", "1014.0", "83.6623")]


def test_conv2d_48px_x10_rules_per_node():
    """Transposed convs are not counted, fixed shifts count as 3x3 1x1 convs, channel attention per image x10."""
    g = hnas("HNAS-B", 11, c=8, layers=3)
    nodes = {n.node: n for n in cost_breakdown(g, convention="conv2d_48px_x10")}
    true = {n.node: n for n in cost_breakdown(g)}
    for n in g:
        op = g.op(n)
        if op == "conv_transpose":
            assert nodes[n].mult_adds == 0 < true[n].mult_adds
        elif op == "shift":
            assert nodes[n].mult_adds == 9 * nodes[n].out_size[0] * nodes[n].out_size[1] and true[n].mult_adds == 0
        elif op == "channel_attention":
            assert nodes[n].mult_adds == true[n].mult_adds == 2 * 8 * 2
        elif op == "conv":  # per output pixel at 48x48 (LR) or 96x96 (HR) instead of 480/960
            assert nodes[n].mult_adds * 100 == true[n].mult_adds and nodes[n].out_size[0] in (48, 96)


# ---- conventions: transposed convs, execution counts ------------------------------------------------------------
def deconv_graph(stride: int) -> tuple[ArchGraph, int]:
    g = ArchGraph()
    x = g.input(channels=4)
    d = g.add("conv_transpose", x, out_channels=6, kernel=3, stride=stride)
    g.output(g.add("conv", d, out_channels=3, kernel=3))
    return g, d


@pytest.mark.parametrize("stride", [1, 2])
def test_transposed_conv_true_and_output_conventions_and_hooks(stride):
    g, d = deconv_graph(stride)
    true = next(n for n in cost_breakdown(g, (5, 7)) if n.node == d)
    out = next(n for n in cost_breakdown(g, (5, 7), convention="deconv_output") if n.node == d)
    assert true.mult_adds == 9 * 4 * 6 * 5 * 7  # per input pixel
    assert out.mult_adds == 9 * 4 * 6 * (5 * stride) * (7 * stride)
    module = build(g)
    deconv = next(m for m in module.modules() if isinstance(m, torch.nn.ConvTranspose2d))
    # HNAS's deconvolution: padding 1, output_padding 1 at stride 2; a real 3x3 transposed conv at stride 1
    assert (deconv.stride, deconv.padding, deconv.output_padding) == ((stride,) * 2, (1, 1), (stride - 1,) * 2)
    assert count_with_hooks(module, g, (5, 7)) == analytic_cost(g, (5, 7))
    x = torch.randn(1, 4, 5, 7)
    ref = F.conv_transpose2d(x, deconv.weight, deconv.bias, stride=stride, padding=1, output_padding=stride - 1)
    assert torch.equal(deconv(x), ref) and ref.shape[-2:] == (5 * stride, 7 * stride)


def test_executed_counts_marked_nodes_runs_times():
    g, d = deconv_graph(2)
    conv = g.consumers(d)[0][0]
    g.set_runs([d, conv], 3)
    base = analytic_cost(g, (4, 4))
    c = analytic_cost(g, (4, 4), convention="executed", also=["true"])
    assert c.mult_adds == 3 * base.mult_adds and c.other["true"] == base.mult_adds and c.params == base.params
    g.set_runs(conv, 1)
    per = {n.node: n for n in cost_breakdown(g, (4, 4), convention="executed")}
    assert per[d].runs == 3 and per[conv].runs == 1 and per[d].mult_adds == 3 * 9 * 4 * 6 * 16
    assert analytic_cost(g, (4, 4), convention="executed").mult_adds == base.mult_adds + 2 * per[d].mult_adds // 3


@pytest.mark.parametrize("convention", ["true", "executed", "deconv_output", "conv2d_48px_x10"])
def test_differentiable_cost_follows_the_convention(convention):
    """At whole counts the differentiable face equals analytic_cost of the re-counted graph, per convention."""
    g = hnas("HNAS-C", 1, c=6, layers=2)
    stem = next(n for n in g if g.op(n) == "conv")  # 3 -> 4C, read by every cell's 1x1 preprocess convs
    dc = DifferentiableCost(g, (48, 48), convention=convention)
    counts = {stem: torch.tensor(10.0, dtype=torch.float64, requires_grad=True)}
    soft = dc(counts)
    whole = analytic_cost(g.with_counts({stem: 10}), (48, 48), convention=convention)
    assert soft.convention == convention
    assert float(soft.mult_adds.detach()) == float(whole.mult_adds) and float(soft.params) == whole.params
    soft.mult_adds.backward()
    assert all(t.grad is not None and float(t.grad) > 0 for t in counts.values())


# ---- the graph annotation -----------------------------------------------------------------------------------------
def test_runs_annotation_is_kept_but_not_in_the_key():
    g, d = deconv_graph(2)
    key = g.key()
    g.set_runs(d, 2)
    assert g.runs(d) == 2 and g.key() == key and g.canonical_json() == deconv_graph(2)[0].canonical_json()
    doc = g.to_json()
    assert [n.get("runs") for n in doc["nodes"]] == [None, 2, None, None]
    for other in (ArchGraph.from_json(doc), g.copy(), pickle.loads(pickle.dumps(g)), g.with_counts({d: 5})):
        assert other.runs(d) == 2
    canon = g.canonical()
    assert sorted(canon.runs(n) for n in canon) == [1, 1, 1, 2]
    assert "(runs x2)" in g.summary()
    assert next(r for r in g.resolve() if r.node == d).runs == 2
    g.set_runs(d, 1)  # clears the mark
    assert g.to_json() == deconv_graph(2)[0].to_json()


def test_runs_errors_name_the_node_or_value():
    g, d = deconv_graph(2)
    g.nx.nodes[d]["name"] = "up"
    g.set_runs("up", 2)
    assert g.runs(d) == 2
    for bad, match in [(0, "runs: must be an integer >= 1, got 0"), (1.5, "got 1.5"), (True, "got True")]:
        with pytest.raises(ValidationError, match=match):
            g.set_runs(d, bad)
    with pytest.raises(ValidationError, match="runs of 'nope': no node of this graph is named 'nope'"):
        g.set_runs(["up", "nope"], 3)
    with pytest.raises(ValidationError, match="runs of 99: 99 is not a node id"):
        g.set_runs(99, 3)
    assert g.runs(d) == 2  # nothing changed
    doc = g.to_json()
    doc["nodes"][1]["runs"] = 0
    with pytest.raises(ValidationError, match=r"nodes\[1\].runs: must be an integer >= 1, got 0"):
        ArchGraph.from_json(doc)


# ---- naming, registration, the cost model role ------------------------------------------------------------------
def test_convention_names_and_errors():
    assert list(CONVENTIONS)[:4] == ["true", "executed", "deconv_output", "conv2d_48px_x10"]
    assert cost_convention(None) is CONVENTIONS["true"]
    with pytest.raises(InputError, match="unknown cost convention 'flops'; known: true, executed"):
        cost_convention("flops")
    with pytest.raises(InputError, match="'true' is registered twice"):
        register_convention(CostConvention("true", "again"))
    with pytest.raises(InputError, match="multiplier must be a positive int or Fraction"):
        CostConvention("x", "bad", multiplier=0.5)
    half = CostConvention("half_test", "true / 2 (a Fraction when odd)", multiplier=Fraction(1, 2))
    g, _ = deconv_graph(1)
    c = analytic_cost(g, (1, 1), convention=half, also=["true"])
    assert c.mult_adds == Fraction(c.other["true"], 2) and c.convention == "half_test"
    with pytest.raises(InputError, match="no figure under convention 'executed'.*has true"):
        analytic_cost(g).mult_adds_as("executed")


def test_analytic_cost_model_options():
    g = hnas("HNAS-A", 1, c=4, layers=2)
    model = AnalyticCostModel(lr_size=[48, 48], convention="executed", also=["true", "conv2d_48px_x10"])
    m = model.metrics(g)
    c = analytic_cost(g, (48, 48), also=["executed", "conv2d_48px_x10"])
    assert m["mult_adds"] == c.other["executed"] and m["mult_adds_true"] == c.mult_adds
    assert m["mult_adds_conv2d_48px_x10"] == c.other["conv2d_48px_x10"]
    assert set(AnalyticCostModel().metrics(g)) == {"params", "params_without_bias", "kernel_params", "mult_adds"}
    with pytest.raises(OptionError, match=r"cost.also: unknown cost convention 'flops'"):
        AnalyticCostModel(also=["flops"])
    with pytest.raises(OptionError, match=r"cost.convention: unknown cost convention"):
        AnalyticCostModel(convention="G")


def test_cli_cost_names_each_convention(tmp_path, capsys):
    path = tmp_path / "hnas-b.json"
    path.write_text(json.dumps(hnas("HNAS-B", 11).to_json()))
    assert cli_main(["cost", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["convention"] == "true" and data["mult_adds"] == 490_645_123_968
    assert {k: v["mult_adds"] for k, v in data["conventions"].items()} == {
        "true": 490_645_123_968, "executed": 574_636_061_568, "deconv_output": 516_125_520_768,
        "conv2d_48px_x10": 48_216_495_360}
    assert cli_main(["cost", str(path), "--convention", "conv2d_48px_x10"]) == 0
    out = capsys.readouterr().out
    assert "48.2165G Mult-Adds, 2,141,290 params" in out and "Mult-Adds convention: conv2d_48px_x10" in out
    assert "executed" in out and "574.6361G" in out


# ---- ops ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_op(affine):
    g = ArchGraph()
    x = g.input(channels=3)
    h = g.add("conv", x, out_channels=8, kernel=3, bias=False)
    b = g.add("batch_norm", h, affine=affine)
    g.output(b)
    c = next(n for n in cost_breakdown(g, (4, 4)) if n.node == b)
    assert (c.params, c.bias_params, c.activation_params, c.mult_adds) == ((16, 8, 8, 0) if affine else (0, 0, 0, 0))
    module = build(g)
    bn = next(m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.affine == affine and bn.num_features == 8 and bn.eps == 1e-5
    assert count_with_hooks(module, g, (4, 4)) == analytic_cost(g, (4, 4))
    y = module.train()(torch.randn(4, 3, 4, 4))
    assert abs(float(y.detach().mean())) < 1e-5  # batch statistics in training
    soft = DifferentiableCost(g, (4, 4))({h: torch.tensor(5.0, dtype=torch.float64)})
    assert float(soft.params) == 3 * 9 * 5 + (10 if affine else 0)
    with pytest.raises(ValidationError, match="attrs.eps: must be > 0"):
        g.add("batch_norm", h, eps=0.0)


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "area"])
def test_interpolate_modes_match_torch_defaults(mode):
    g = ArchGraph()
    g.output(g.add("interpolate", g.input(channels=2), factor=2, mode=mode))
    x = torch.randn(1, 2, 5, 6)
    assert torch.equal(build(g)(x), F.interpolate(x, scale_factor=2, mode=mode))
    assert analytic_cost(g, (5, 6)).mult_adds == 0


def test_hnas_zoo_graph_maps_lr_to_2x_at_every_position():
    for position in range(3):
        g = hnas("HNAS-B", position, c=4, layers=3)
        assert build(g)(torch.randn(1, 3, 6, 5)).shape == (1, 3, 12, 10)
