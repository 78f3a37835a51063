"""The weight-sharing supernet (nasengine/supernet.py) on the tiny dense test space (tests/supernet_space.py)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nasengine.builder import build
from nasengine.errors import ValidationError
from nasengine.layouts import PerSlotLayout, SlotInput, SlotView, WeightLayout
from nasengine.supernet import SharedConv, SharedSepConv, Supernet
from nasengine.testing.contract import SearchSpaceContract
from tests.supernet_space import TinyDenseGenome, TinyDenseSpace

C = 8
#: masks of M=3 (m = 0..2, j = 0..m), MSB = conv: n2.conv reads n1.ca only, n2.sep f0 only, n2.dil {f0, n1.ca}
MIXED = TinyDenseGenome((7, 6, 4, 3, 0, 5))
ZEROS = TinyDenseGenome((0,) * 6)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    torch.manual_seed(0)


@pytest.fixture
def space():
    return TinyDenseSpace(M=3, channels=C)


@pytest.fixture
def sn(space):
    torch.manual_seed(0)
    return Supernet(space)


def lr(n=2, size=8):
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(1))


class TestTinyDenseContract(SearchSpaceContract):
    def make_space(self):
        return TinyDenseSpace(M=2, channels=4)


def test_space_basics():
    space = TinyDenseSpace(M=3, channels=C)
    assert space.size() == 2 ** 18 and space.weight_layout == "per_slot" and space.genome_metrics(MIXED) == {}
    assert list(space.vector_encode(MIXED)[:6]) == [1, 1, 1, 1, 1, 0]  # mask 7, then 6 (MSB = conv)
    with pytest.raises(ValidationError, match="masks"):
        space.from_json({"masks": [1, 2]})


def test_a_space_without_densest_cannot_be_a_supernet():
    from nasengine.spaces.simple import SimpleSpace

    space = SimpleSpace()
    assert space.genome_metrics(space.sample(np.random.default_rng(0))) == {}
    with pytest.raises(NotImplementedError, match="SimpleSpace.*cannot be used as a weight-sharing supernet"):
        Supernet(space)


# ---- the bank ------------------------------------------------------------------------------------------
def test_bank_holds_every_slot_of_the_densest_graph_at_its_widest(space, sn):
    assert sn.slot_names() == ["sfe"] + [f"n{m}.{op}" for m in range(3) for op in ("conv", "sep", "dil", "ca")] \
        + ["lff", "up"]
    assert sn.slot_module("n2.conv").weight.shape == (C, 3 * C, 3, 3)
    assert sn.slot_module("n2.sep").depthwise.weight.shape == (3 * C, 1, 3, 3)
    densest = build(space.decode(space.densest()))
    assert sum(p.numel() for p in sn.parameters()) == sum(p.numel() for p in densest.parameters())


def test_state_dict_is_the_bank_only_and_round_trips(space, sn):
    keys = list(sn.state_dict())
    assert keys[:3] == ["slots.sfe.weight", "slots.sfe.bias", "slots.n0/conv.weight"]
    x = lr()
    y = sn.child(MIXED)(x)
    sn.child(ZEROS)
    assert list(sn.state_dict()) == keys and [n for n, _ in sn.named_children()] == ["slots"]
    buf = io.BytesIO()
    torch.save(sn.state_dict(), buf)
    torch.manual_seed(1)
    other = Supernet(space)
    assert not torch.equal(other.child(MIXED)(x), y)
    other.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    assert torch.equal(other.child(MIXED)(x), y)


# ---- children -------------------------------------------------------------------------------------------
def per_slot_weights(space, genome, sn, graph) -> dict:
    """The state dict of ``build(graph)`` sliced from the bank by hand (independently of the supernet's
    slicing): slot n{m}.{op} reading inputs js uses the bank's input channels j*C..(j+1)*C for j in js."""
    from nasengine.graph import module_name

    state = {}
    starts = np.cumsum([0] + [m + 1 for m in range(space.M)])
    for node in graph:
        name = graph.name(node)
        if name is None:
            continue
        bank = {k: v.detach() for k, v in sn.slot_module(name).state_dict().items()}
        prefix = module_name(node, graph.op(node))
        if name[0] == "n" and not name.endswith(".ca"):
            m, op = int(name[1]), name.split(".")[1]
            bit = {"conv": 4, "sep": 2, "dil": 1}[op]
            masks = genome.masks[starts[m]:starts[m] + m + 1]
            idx = [c for j in range(m + 1) if masks[j] & bit for c in range(j * C, (j + 1) * C)]
            if op == "sep":
                bank["depthwise.weight"] = bank["depthwise.weight"][idx]
                bank["pointwise.weight"] = bank["pointwise.weight"][:, idx]
            else:
                bank["weight"] = bank["weight"][:, idx]
        state.update({f"{prefix}.{k}": v for k, v in bank.items()})
    return state


@pytest.mark.parametrize("which", ["mixed", "zeros", "densest", "sample0", "sample1"])
def test_child_computes_what_a_standalone_build_does_with_the_sliced_weights(space, sn, which):
    genome = {"mixed": MIXED, "zeros": ZEROS, "densest": space.densest()}.get(which) \
        or space.sample(np.random.default_rng(int(which[-1])))
    x = lr()
    graph = space.decode(genome)
    model = sn.child(genome)
    bank = {id(p) for p in sn.parameters()}
    assert all(id(p) in bank for p in model.parameters())
    standalone = build(graph)
    expected = per_slot_weights(space, genome, sn, graph)
    exported = sn.standalone_state_dict(graph)
    assert exported.keys() == expected.keys() == standalone.state_dict().keys()
    assert all(torch.equal(exported[k], expected[k]) for k in expected)
    standalone.load_state_dict(expected)
    torch.testing.assert_close(model(x), standalone(x), rtol=0, atol=1e-6)


def test_the_slots_a_child_reads_narrower_are_wrapped(sn):
    model = sn.child(MIXED)
    kinds = {name: type(m).__name__ for name, m in model.named_children()}
    assert kinds["n20_conv"] == "SharedConv"           # n2.conv on n1.ca: channels 16..24 (a view)
    assert kinds["n25_conv"] == "SharedConv"           # n2.dil on {f0, n1.ca}: channels 0..8, 16..24
    assert model.n25_conv.index.tolist() == list(range(0, C)) + list(range(2 * C, 3 * C))
    assert model.n30_conv is sn.slot_module("lff")      # full width: the bank module itself
    assert model.n3_conv is sn.slot_module("n0.conv")


def test_only_the_selected_slots_and_input_channels_receive_gradients(sn):
    sn.zero_grad(set_to_none=True)
    sn.child(MIXED)(lr()).abs().mean().backward()
    bank = dict(sn.named_parameters())
    # MIXED has no n1.dil (masks 6, 4 have no dil bit); every other slot is used.
    unused = {n for n in bank if n.startswith("slots.n1/dil.")}
    assert unused and all(bank[n].grad is None for n in unused)
    assert all(bank[n].grad is not None for n in set(bank) - unused)
    dil = bank["slots.n2/dil.weight"].grad                 # inputs f0 (0..8) and n1.ca (16..24), not n0.ca
    assert dil[:, C:2 * C].abs().sum() == 0 and dil[:, :C].abs().sum() > 0 and dil[:, 2 * C:].abs().sum() > 0
    sep = sn.slot_module("n2.sep")                          # f0 only
    assert sep.depthwise.weight.grad[C:].abs().sum() == 0 and sep.depthwise.weight.grad[:C].abs().sum() > 0
    assert sep.pointwise.weight.grad[:, C:].abs().sum() == 0


def test_per_slot_conv_over_two_inputs_is_the_sum_of_single_input_convs(sn):
    conv = sn.slot_module("n2.conv")
    x0, x2 = torch.randn(2, C, 6, 6), torch.randn(2, C, 6, 6)
    w, b = conv.weight, conv.bias
    shared = SharedConv(conv, channels=list(range(C)) + list(range(2 * C, 3 * C)))
    expected = F.conv2d(x0, w[:, :C], None, padding=1) + F.conv2d(x2, w[:, 2 * C:], None, padding=1) + b.view(1, -1, 1, 1)
    torch.testing.assert_close(shared(torch.cat([x0, x2], 1)), expected, rtol=1e-5, atol=1e-5)
    sep = sn.slot_module("n2.sep")
    shared = SharedSepConv(sep, channels=list(range(C)) + list(range(2 * C, 3 * C)))
    single = [SharedSepConv(sep, channels=list(range(a, a + C))) for a in (0, 2 * C)]
    bias = sep.pointwise.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(shared(torch.cat([x0, x2], 1)),
                               single[0](x0) + single[1](x2) - bias, rtol=1e-5, atol=1e-5)


def test_children_are_cached_by_graph(space):
    sn = Supernet(space, cache_size=2)
    a = sn.child(MIXED)
    assert sn.child(MIXED) is a and sn.child_of_graph(space.decode(MIXED)) is a
    b = sn.child(ZEROS)
    sn.child(MIXED)                                       # MIXED most recent: ZEROS is dropped next
    sn.child(space.densest())
    assert sn.child(MIXED) is a and sn.child(ZEROS) is not b
    sn.to(torch.float64)                                  # a move rebuilds the children
    assert sn.child(MIXED) is not a and sn.child(MIXED)(lr().double()).dtype == torch.float64


def test_train_and_eval_reach_the_children(sn):
    model = sn.child(MIXED)
    sn.eval()
    assert not model.training and not sn.child(ZEROS).training
    sn.train()
    assert model.training


# ---- errors ----------------------------------------------------------------------------------------------
def _node(graph, name):
    return next(n for n in graph if graph.name(n) == name)


def test_a_slot_not_in_the_bank_is_named(space, sn):
    g = space.decode(MIXED)
    g.nx.nodes[_node(g, "n0.conv")]["name"] = "n9.conv"
    with pytest.raises(ValidationError, match=r"slot 'n9.conv'.*not in the supernet's bank"):
        sn.child_of_graph(g)


def test_a_slot_whose_op_or_attrs_differ_is_named(space, sn):
    g = space.decode(MIXED)
    g.nx.nodes[_node(g, "n0.conv")]["attrs"]["kernel"] = 5
    with pytest.raises(ValidationError, match=r"slot 'n0.conv'.*kernel=5 \(bank: 3\)"):
        sn.child_of_graph(g)
    g = space.decode(MIXED)
    conv, sep = _node(g, "n0.conv"), _node(g, "n0.sep")
    g.nx.nodes[conv]["name"], g.nx.nodes[sep]["name"] = "n0.sep", "n0.conv"
    with pytest.raises(ValidationError, match=r"slot 'n0.(sep|conv)'.*is a (conv|sep_conv) here but a"):
        sn.child_of_graph(g)


def test_an_input_the_densest_graph_does_not_have_is_named(space, sn):
    g = space.decode(MIXED)                               # n2.dil reads concat(f0, n1.ca): feed it n0's mean
    dil = _node(g, "n2.dil")
    concat = g.inputs(g.inputs(dil)[0])[0]
    assert g.op(concat) == "concat"
    ca = _node(g, "n1.ca")
    relu = g.inputs(_node(g, "n0.ca"))[0]
    g.nx.remove_edge(ca, concat, key=1)
    g.nx.add_edge(relu, concat, key=1, port=1)
    with pytest.raises(ValidationError, match=r"slot 'n2.dil'.*input 'relu\(mean\(.*not an input of this slot"):
        sn.child_of_graph(g)


def test_an_unnamed_node_with_parameters_is_refused(space):
    class Unnamed(TinyDenseSpace):
        def decode(self, genome):
            g = super().decode(genome)
            g.nx.nodes[_node(g, "lff")]["name"] = None
            return g

    with pytest.raises(ValidationError, match="densest graph node .*conv.*has parameters but no slot name"):
        Supernet(Unnamed(M=2, channels=4))


def test_layouts_by_name_and_their_errors(space):
    from nasengine.registry import UnknownNameError

    assert isinstance(Supernet(space, layout="per_slot").layout, PerSlotLayout)
    with pytest.raises(UnknownNameError, match="unknown weight layout 'bogus'.*per_slot"):
        Supernet(space, layout="bogus")
    view = SlotView("n0.ca", "channel_attention", {"reduction": 4}, nn.Identity(),
                    (SlotInput("a", 0, 0, 4), SlotInput("b", 1, 4, 8)), (SlotInput("b", 1, 4, 8),))
    with pytest.raises(ValidationError, match=r"slot 'n0.ca'.*cannot slice op 'channel_attention'.*\[b\] of \[a, b\]"):
        PerSlotLayout().slot_module(view)

    class Broken(WeightLayout):
        def slot_module(self, slot):
            return nn.Conv2d(1, 1, 1) if slot.name == "up" else slot.module

    with pytest.raises(ValidationError, match="child module .*not the supernet's"):
        Supernet(space, layout=Broken()).child(MIXED)


def test_the_test_space_and_per_slot_are_registered_through_plugins(monkeypatch):
    import tests.supernet_space
    from nasengine.plugins import Plugins

    monkeypatch.setenv("NASENGINE_PLUGINS", "")
    plugins = Plugins(autoload=False, extra=(tests.supernet_space,))
    assert plugins.spaces.get("tiny-dense") is TinyDenseSpace
    assert plugins.weight_layouts.get("per_slot") is PerSlotLayout


# ---- the builder's per-node hook ---------------------------------------------------------------------------
def test_build_uses_the_modules_module_for_returns(space):
    graph = space.decode(ZEROS)
    shared = nn.Conv2d(1, C, 3, padding=1)
    inits = []
    model = build(graph, module_for=lambda r: shared if r.name == "sfe" else None,
                  weight_init=lambda m: inits.append(m))
    assert model.n1_conv is shared and shared not in inits and len(inits) > 0
    with pytest.raises(ValidationError, match=r"node 1 \(conv\).*module_for returned int"):
        build(graph, module_for=lambda r: 3 if r.name == "sfe" else None)
