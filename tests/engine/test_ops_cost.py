"""Op cost formulas and the analytic cost model: golden figures of the published baselines, and exact
agreement with forward-hook counting on random graphs."""
from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nasengine.builder import build
from nasengine.cost import (
    CONVENTION, AnalyticCostModel, Cost, analytic_cost, cost_breakdown, count_with_hooks,
)
from nasengine.errors import InputError, ValidationError
from nasengine.graph import ArchGraph
from nasengine.ops import OpCost, OpSpec, Shape, builtin_registry
from nasengine.testing import arch_graphs

from tests.engine.zoo import fsrcnn, srcnn, vdsr

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "reference" / "published_architectures.json"


# ---- golden figures ---------------------------------------------------------------------------------------------
def test_golden_baselines():
    """Reference figures and conventions from ``shared/reference/README.md`` ("Mult-Adds and params: one
    convention" and its table), LR 480x480, x2:

    * SRCNN 9-5-5 (64/32): 52.7008G / 57,184 — all convs on the 960x960 bicubic-upscaled image, weights only;
    * VDSR: 612.5912G / 664,704 weights only (665,921 with biases) — 20 convs on 960x960;
    * FSRCNN(56,12,4): 6.0070G / 12,464 — LR convs at 480x480, the 9x9 deconv counted at HR (the
      ``deconv_output`` convention; "counting it per LR input pixel instead gives 2.87G", the ``true`` one,
      published_architectures.json "FSRCNN".convention). The 12,464
      "weights only" excludes the biases *and* the 172 PReLU slopes (one per channel after each of the
      seven LR convs: 56+12+4*12+56); with biases the reference gives 12,637, and every learned parameter
      together is 12,637 + 172 = 12,809.
    """
    c = analytic_cost(srcnn())
    assert (c.mult_adds, c.kernel_params, c.params_without_bias, c.params) == (52_700_774_400, 57_184, 57_184, 57_281)
    assert f"{c.mult_adds / 1e9:.4f}" == "52.7008"

    c = analytic_cost(vdsr())
    assert (c.mult_adds, c.kernel_params, c.params_without_bias, c.params) == (612_591_206_400, 664_704, 664_704,
                                                                              665_921)
    assert f"{c.mult_adds / 1e9:.4f}" == "612.5912"

    c = analytic_cost(fsrcnn(56, 12, 4), convention="deconv_output", also=["true"])
    assert c.mult_adds == 6_006_988_800 and f"{c.mult_adds / 1e9:.4f}" == "6.0070"
    assert c.convention == "deconv_output" and c.figures == {"deconv_output": 6_006_988_800, "true": 2_871_705_600}
    assert f"{c.mult_adds_as('true') / 1e9:.2f}" == "2.87" and analytic_cost(fsrcnn(56, 12, 4)).mult_adds == 2_871_705_600
    assert c.kernel_params == 12_464
    assert c.params - (c.params - c.params_without_bias) - 172 == 12_464  # biases and PReLU slopes excluded
    assert c.params == 12_637 + 172
    assert c.lr_size == (480, 480) and c.hr_size == (960, 960) and c.scale == 2
    assert analytic_cost(vdsr()).convention == CONVENTION == "true"


@pytest.mark.parametrize("name, make", [("SRCNN", srcnn), ("VDSR", vdsr), ("FSRCNN", fsrcnn)])
def test_golden_per_layer_lists(name, make):
    """Each learned layer's params (kernels + bias) match the per-layer list of published_architectures.json."""
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} not found")
    ref = json.loads(REFERENCE.read_text())[name]
    layers = [n for n in cost_breakdown(make(), convention="deconv_output") if n.op in ("conv", "conv_transpose")]
    assert [n.params for n in layers] == [layer[9] for layer in ref["layers"]]
    assert sum(n.mult_adds for n in layers) == ref["computed_multadds"]


@pytest.mark.parametrize("make", [srcnn, vdsr, fsrcnn])
def test_hooks_agree_on_the_baselines_at_full_size(make):
    """On the meta device (shapes only) the hook counter runs the real 480x480 pass for free."""
    g = make()
    assert count_with_hooks(build(g), g, (480, 480), meta=True) == analytic_cost(g, (480, 480))


# ---- analytic == hooks on random graphs -------------------------------------------------------------------------
@settings(max_examples=40)
@given(arch_graphs(), st.sampled_from([2, 4, 6]), st.sampled_from([2, 4, 6]))
def test_analytic_cost_equals_hook_count_and_forward_scales(g, h, w):
    module = build(g)
    analytic = analytic_cost(g, (h, w))
    assert count_with_hooks(module, g, (h, w)) == analytic
    assert sum(p.numel() for p in module.parameters()) == analytic.params
    c_in = g.attrs(g.input_node)["channels"]
    y = module(torch.randn(2, c_in, h, w))
    shapes = g.validate()
    assert tuple(y.shape) == (2, shapes[g.output_node].channels, h * g.scale, w * g.scale)


@settings(max_examples=15)
@given(arch_graphs(max_width=16))
def test_meta_hook_count_equals_analytic_at_480(g):
    assert count_with_hooks(build(g), g, (480, 480), meta=True) == analytic_cost(g)


# ---- op formulas -------------------------------------------------------------------------------------------------
def one_op(c_in: int, op: str, *extra, **attrs) -> tuple[ArchGraph, int]:
    g = ArchGraph()
    x = g.input(channels=c_in)
    n = g.add(op, x, *extra, **attrs)
    g.output(n)
    return g, n


def node_cost(g, node, lr=(8, 8)):
    return next(c for c in cost_breakdown(g, lr) if c.node == node)


@pytest.mark.parametrize("attrs, params, mult_per_px", [
    (dict(out_channels=8, kernel=3), 4 * 8 * 9 + 8, 4 * 8 * 9),
    (dict(out_channels=8, kernel=3, groups=2, bias=False), 2 * 8 * 9, 2 * 8 * 9),
    (dict(out_channels=8, kernel=5, dilation=2), 4 * 8 * 25 + 8, 4 * 8 * 25),
])
def test_conv_formula(attrs, params, mult_per_px):
    g, n = one_op(4, "conv", **attrs)
    c = node_cost(g, n)
    assert (c.params, c.mult_adds) == (params, mult_per_px * 64)


def test_strided_conv_counts_output_pixels():
    g = ArchGraph()
    x = g.input(channels=2)
    d = g.add("conv", x, out_channels=4, kernel=3, stride=2)
    g.output(g.add("pixel_shuffle", g.add("conv", d, out_channels=16, kernel=1), factor=4))
    assert node_cost(g, d).mult_adds == 2 * 4 * 9 * 4 * 4 and node_cost(g, d).out_size == (4, 4)
    with pytest.raises(InputError, match=r"node 1 \(conv\): LR size 9x8 gives a non-integer size 9/2x4"):
        analytic_cost(g, (9, 8))


def test_sep_conv_and_transposed_conv_formulas():
    g, n = one_op(4, "sep_conv", out_channels=6, kernel=3)
    c = node_cost(g, n)
    assert (c.params, c.bias_params, c.mult_adds) == (4 * 9 + 4 * 6 + 6, 6, (4 * 9 + 4 * 6) * 64)
    g, n = one_op(4, "conv_transpose", out_channels=2, kernel=9, stride=3)
    c = node_cost(g, n)
    assert c.out_size == (24, 24)  # true Mult-Adds: a 9x9x2 patch scattered per LR input pixel (8x8)
    assert (c.params, c.mult_adds) == (81 * 4 * 2 + 2, 81 * 4 * 2 * 8 * 8)
    c = next(c for c in cost_breakdown(g, (8, 8), convention="deconv_output") if c.node == n)
    assert (c.params, c.mult_adds) == (81 * 4 * 2 + 2, 81 * 4 * 2 * 24 * 24)  # as a 9x9 conv over the HR output


def test_channel_attention_costs_once_per_image():
    g, n = one_op(16, "channel_attention", reduction=3)  # HNAS's 64->21->64 pattern: hidden = 16 // 3 = 5
    small, large = node_cost(g, n, (8, 8)), node_cost(g, n, (480, 480))
    assert small.mult_adds == large.mult_adds == 2 * 16 * 5
    assert small.params == 2 * 16 * 5 + 5 + 16 and small.bias_params == 21
    assert count_with_hooks(build(g), g, (480, 480), meta=True) == analytic_cost(g, (480, 480))


def test_free_ops_cost_nothing():
    g = ArchGraph()
    x = g.input(channels=4)
    nodes = [g.add("relu", x), g.add("relu6", x), g.add("tanh", x), g.add("sigmoid", x), g.add("identity", x),
             g.add("scale", x, value=0.5)]
    s = g.add("add", nodes[:2])
    m = g.add("mean", nodes[2:4])
    p = g.add("multiply", nodes[4], g.add("global_avg_pool", nodes[5]))
    c = g.add("concat", s, m, p, x)
    u = g.add("interpolate", g.add("pixel_shuffle", c, factor=2), factor=2, mode="nearest")
    g.output(u)
    cost = analytic_cost(g)
    assert (cost.params, cost.mult_adds, cost.scale) == (0, 0, 4)


def test_prelu_slopes_are_activation_params():
    g, n = one_op(6, "prelu", num_parameters=6)
    cost = analytic_cost(g)
    assert (cost.params, cost.params_without_bias, cost.kernel_params, cost.mult_adds) == (6, 6, 0, 0)
    assert count_with_hooks(build(g), g, (4, 4)) == analytic_cost(g, (4, 4))


def test_plugin_op_with_fractional_per_pixel_cost():
    """A sub-pixel op (3x3 conv C->4C at LR + shuffle) reports its cost per HR output pixel as a Fraction."""

    def infer(a, ins):
        return Shape(ins[0].channels, ins[0].scale * 2)

    def build_(a, ins):
        c = ins[0].channels
        return torch.nn.Sequential(torch.nn.Conv2d(c, 4 * c, 3, padding=1), torch.nn.PixelShuffle(2))

    def cost(a, ins, out):
        c = ins[0].channels
        return OpCost(params=9 * c * 4 * c + 4 * c, bias_params=4 * c, mult_adds_per_pixel=Fraction(9 * c * 4 * c, 4))

    reg = builtin_registry()
    reg.add(OpSpec("sub_pixel", 1, {}, infer, build_, cost), plugin="test")
    g = ArchGraph(reg)
    x = g.input(channels=3)
    g.output(g.add("sub_pixel", x))
    assert analytic_cost(g, (6, 4)).mult_adds == 9 * 3 * 12 * 24
    assert count_with_hooks(build(g), g, (6, 4)) == analytic_cost(g, (6, 4))


def test_bad_cost_formula_and_lr_size():
    reg = builtin_registry()
    reg.add(OpSpec("broken", 1, {}, lambda a, ins: ins[0], lambda a, ins: None, lambda a, ins, out: 3),
            plugin="test")
    g = ArchGraph(reg)
    g.output(g.add("broken", g.input(channels=1)))
    with pytest.raises(ValidationError, match=r"node 1 \(broken\): cost formula of 'broken' returned int"):
        analytic_cost(g)
    for bad in [(0, 4), (4,), "480", (4.0, 4), None]:
        with pytest.raises(InputError):
            analytic_cost(srcnn(), bad)


# ---- the CostModel role ----------------------------------------------------------------------------------------
def test_analytic_cost_model():
    model = AnalyticCostModel(lr_size=[640, 360], model="analytic")
    metrics = model.metrics(srcnn())
    assert metrics["mult_adds"] == 52_700_774_400.0  # same pixel budget as 480x480
    assert set(metrics) >= {"params", "params_without_bias", "mult_adds"}
    assert model.cost(srcnn()).lr_size == (640, 360)
    with pytest.raises(InputError, match="unknown option"):
        AnalyticCostModel(latency=True)
    assert "52.7008G Mult-Adds" in str(analytic_cost(srcnn()))
    assert isinstance(analytic_cost(srcnn()), Cost)


def test_cost_model_needs_no_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from nasengine.graph import ArchGraph\n"
        "from nasengine.cost import analytic_cost\n"
        "g = ArchGraph(); x = g.input(channels=1)\n"
        "h = g.add('interpolate', x, factor=2)\n"
        "h = g.add('relu', g.add('conv', h, out_channels=64, kernel=9))\n"
        "h = g.add('relu', g.add('conv', h, out_channels=32, kernel=5))\n"
        "g.output(g.add('conv', h, out_channels=1, kernel=5))\n"
        "print(analytic_cost(g).mult_adds, g.key()[:8])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "52700774400"


def test_hook_count_leaves_the_module_as_it_was():
    g = fsrcnn(8, 4, 1)
    module = build(g).train()
    module.n1_conv.eval()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    count_with_hooks(module, g, (4, 4))
    count_with_hooks(module, g, (4, 4), meta=True)
    assert module.training and not module.n1_conv.training and module.n3_conv.training
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert not module._forward_hooks and not any(m._forward_hooks for m in module.modules())
