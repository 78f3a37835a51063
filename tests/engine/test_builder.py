"""The builder: graph -> torch.fx GraphModule that trains, scripts, traces, exports and equals a hand-written
module given the same weights."""
from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings

from nasengine.builder import build
from nasengine.errors import ValidationError
from nasengine.graph import ArchGraph
from nasengine.ops import OpCost, OpSpec, builtin_registry
from nasengine.testing import arch_graphs

from tests.engine.test_graph import permuted
from tests.engine.zoo import ResidualSR, copy_weights, fsrcnn, residual_sr, srcnn

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*is deprecated.*:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*is deprecated.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The TorchScript type system:UserWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]


def input_for(g: ArchGraph, h: int = 8, w: int = 6, n: int = 2) -> torch.Tensor:
    return torch.randn(n, g.attrs(g.input_node)["channels"], h, w)


def test_equals_hand_written_module_given_the_same_weights():
    torch.manual_seed(0)
    hand = ResidualSR(channels=3, width=32, blocks=4, scale=2)
    model = build(residual_sr(channels=3, width=32, blocks=4, scale=2))
    assert [p.shape for p in hand.parameters()] == [p.shape for p in model.parameters()]
    copy_weights(hand, model)
    x = torch.randn(2, 3, 12, 10)
    y = model(x)
    assert y.shape == (2, 3, 24, 20)
    assert torch.equal(y, hand(x))  # same ops in the same order: bit-identical


def test_trains():
    torch.manual_seed(0)
    model = build(residual_sr(channels=1, width=8, blocks=2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    lr, hr = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 16, 16)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.l1_loss(model(lr), hr)
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_parameter_names_are_readable_and_deterministic():
    g = fsrcnn(56, 12, 1)
    names = [n for n, _ in build(g).named_parameters()]
    assert names == ["n1_conv.weight", "n1_conv.bias", "n2_prelu.weight", "n3_conv.weight", "n3_conv.bias",
                     "n4_prelu.weight", "n5_conv.weight", "n5_conv.bias", "n6_prelu.weight", "n7_conv.weight",
                     "n7_conv.bias", "n8_prelu.weight", "n9_conv_transpose.weight", "n9_conv_transpose.bias"]
    assert [n for n, _ in build(g).named_parameters()] == names
    # the canonical form gives names that depend only on the architecture
    a, b = permuted(g, 1, 50), permuted(g, 2, 7)
    assert list(build(a).state_dict()) != list(build(b).state_dict())
    assert list(build(a.canonical()).state_dict()) == list(build(b.canonical()).state_dict())
    build(a.canonical()).load_state_dict(build(b.canonical()).state_dict())


def test_forward_is_generated_code():
    g = srcnn()
    model = build(g)
    assert isinstance(model, torch.fx.GraphModule)
    code = model.code
    assert "networkx" not in code and "for " not in code
    assert code.count("self.n") == len(g) - 2  # one call per op node; input/output are the signature
    assert "n1_interpolate = self.n1_interpolate(x)" in code


def test_variadic_ops_receive_a_list():
    g = ArchGraph()
    x = g.input(channels=2)
    c = g.add("concat", x, g.add("relu", x), x)
    g.output(g.add("mean", g.add("conv", c, out_channels=2, kernel=1), x))
    model = build(g)
    assert "self.n2_concat([x, n1_relu, x])" in model.code
    xin = input_for(g)
    conv = model.n3_conv
    expected = (conv(torch.cat([xin, xin.relu(), xin], 1)) + xin) / 2
    assert torch.allclose(model(xin), expected)


def test_weight_init_is_applied_to_every_module():
    seen = []

    def zero(m):
        seen.append(type(m).__name__)
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.zeros_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    g = ArchGraph()
    x = g.input(channels=3)
    h = g.add("channel_attention", g.add("conv", x, out_channels=8, kernel=3), reduction=2)
    g.output(g.add("pixel_shuffle", g.add("sep_conv", h, out_channels=12, kernel=3), factor=2))
    model = build(g, weight_init=zero)
    assert {"Conv2d", "ChannelAttention", "SepConv", "PixelShuffle"} <= set(seen)
    assert torch.count_nonzero(model(input_for(g))) == 0


def test_builder_errors_name_the_node():
    reg = builtin_registry()
    reg.add(OpSpec("nothing", 1, {}, lambda a, ins: ins[0], lambda a, ins: None, lambda a, ins, out: OpCost()),
            plugin="test")
    g = ArchGraph(reg)
    g.output(g.add("nothing", g.input(channels=1)))
    with pytest.raises(ValidationError, match=r"node 1 \(nothing\): the builder of 'nothing' returned NoneType"):
        build(g)
    bad = ArchGraph()
    bad.output(bad.add("conv", bad.input(channels=1), out_channels=1, kernel=3, stride=2))
    with pytest.raises(ValidationError, match="upscale by an integer"):
        build(bad)


@settings(max_examples=8)
@given(arch_graphs(max_blocks=3))
def test_script_and_trace_match_eager(g):
    model = build(g).eval()
    x = input_for(g)
    with torch.no_grad():
        expected = model(x)
        assert torch.allclose(torch.jit.script(model)(x), expected, atol=1e-6)
        assert torch.allclose(torch.jit.trace(model, x)(x), expected, atol=1e-6)


def test_traced_and_scripted_modules_take_other_sizes():
    model = build(residual_sr(channels=3, width=8, blocks=1)).eval()
    x, other = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 10, 6)
    with torch.no_grad():
        assert torch.allclose(torch.jit.trace(model, x)(other), model(other), atol=1e-6)
        scripted = torch.jit.script(model)
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)
        buf.seek(0)
        assert torch.allclose(torch.jit.load(buf)(other), model(other), atol=1e-6)


def test_torch_export():
    model = build(fsrcnn(16, 8, 1)).eval()
    x = torch.randn(1, 1, 8, 8)
    exported = torch.export.export(model, (x,))
    assert torch.allclose(exported.module()(x), model(x), atol=1e-6)


def test_onnx_export(tmp_path, caplog, recwarn):
    """What `nasengine export --format onnx` writes (nasengine.export.export_module: torch's torch.export-based
    exporter, with the onnx extra's onnxscript): one valid file whose batch and LR size are free."""
    import logging

    from nasengine.export import export_module
    from nasengine.genomefile import Architecture

    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    graph = residual_sr(channels=3, width=8, blocks=1)
    model = build(graph).eval()
    with caplog.at_level(logging.WARNING, logger="nasengine.export"):
        target = export_module(model, Architecture(name="r", graph=graph), tmp_path / "r.onnx", format="onnx")
    assert not [r for r in caplog.records if r.name == "nasengine.export"]  # no fallback to the old exporter
    assert not [w for w in recwarn if "legacy TorchScript-based ONNX export" in str(w.message)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.onnx"]  # weights inside, no external data file
    proto = onnx.load(str(target))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["lr"] and [o.name for o in proto.graph.output] == ["sr"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param != "" for d in dims] == [True, False, True, True]  # batch, (channels), height, width
