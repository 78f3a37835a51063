"""ArchGraph: building, validation errors that name the node, canonical form and key, JSON (round trip and
fuzzing), and the op registry."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasengine.errors import ValidationError
from nasengine.graph import SCHEMA, ArchGraph
from nasengine.ops import (
    BUILTIN_OPS, REQUIRED, Attr, OpCost, OpRegistry, OpSpec, Shape, builtin_registry, default_registry, positive,
)
from nasengine.registry import DuplicateNameError, UnknownNameError
from nasengine.testing import arch_graphs

from tests.engine.zoo import fsrcnn, residual_sr, srcnn, vdsr


def small() -> tuple[ArchGraph, dict]:
    g = ArchGraph()
    ids = {}
    ids["x"] = g.input(channels=1)
    ids["c1"] = g.add("conv", ids["x"], out_channels=32, kernel=3)
    ids["r"] = g.add("relu", ids["c1"])
    ids["c2"] = g.add("conv", ids["r"], out_channels=1, kernel=3)
    ids["s"] = g.add("add", ids["c2"], ids["x"])
    ids["c3"] = g.add("conv", ids["s"], out_channels=4, kernel=3)
    ids["ps"] = g.add("pixel_shuffle", ids["c3"], factor=2, name="upsampler")
    ids["out"] = g.output(ids["ps"])
    return g, ids


def errors_of(fn) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        fn()
    return info.value


# ---- building and shapes ------------------------------------------------------------------------------------
def test_building_api_and_shapes():
    g, ids = small()
    shapes = g.validate()
    assert shapes[ids["c1"]] == Shape(32, Fraction(1))
    assert shapes[ids["ps"]] == Shape(1, Fraction(2))
    assert g.scale == 2
    assert g.inputs(ids["s"]) == [ids["c2"], ids["x"]]
    assert g.input_node == ids["x"] and g.output_node == ids["out"]
    assert g.input_channels == 1 and g.output_channels == 1
    assert g.attrs(ids["c1"]) == {"out_channels": 32, "kernel": 3, "stride": 1, "groups": 1, "dilation": 1,
                                  "bias": True}  # defaults are filled in
    assert g.name(ids["ps"]) == "upsampler"
    assert g.nx.nodes[ids["c1"]]["op"] == "conv"
    assert "n6 pixel_shuffle(factor=2) <- n5  # upsampler" in g.summary()


def test_add_accepts_a_list_and_repeated_inputs():
    g = ArchGraph()
    x = g.input(channels=3)
    c = g.add("concat", [x, x, x])
    s = g.add("add", x, x)
    g.output(g.add("add", g.add("conv", c, out_channels=3, kernel=1), s))
    assert g.inputs(c) == [x, x, x]
    assert g.validate()[c] == Shape(9, Fraction(1))


def test_pooled_gate_and_fractional_scales():
    g = ArchGraph()
    x = g.input(channels=8)
    d = g.add("conv", x, out_channels=8, kernel=3, stride=2)
    gap = g.add("global_avg_pool", d)
    gate = g.add("sigmoid", g.add("conv", gap, out_channels=8, kernel=1))
    m = g.add("multiply", gate, d)
    u = g.add("conv_transpose", m, out_channels=2, kernel=4, stride=4)
    g.output(u)
    shapes = g.validate()
    assert shapes[d].scale == Fraction(1, 2)
    assert shapes[gap].pooled and shapes[gate].pooled and str(shapes[gap]) == "8ch@1x1 pooled"
    assert shapes[m] == Shape(8, Fraction(1, 2))
    assert g.scale == 2


# ---- validation errors name the node ------------------------------------------------------------------------
def test_channel_mismatch_names_node_op_and_channels():
    g = ArchGraph()
    x = g.input(channels=1)
    a = g.add("conv", x, out_channels=32, kernel=3)
    b = g.add("conv", x, out_channels=64, kernel=3)
    s = g.add("add", a, b)
    g.output(s)
    err = errors_of(g.validate)
    assert str(err) == f"node {s} (add): inputs have 32 and 64 channels (add needs equal shapes)"
    assert err.field == f"node {s} (add)"


def test_scale_mismatch_names_node():
    g = ArchGraph()
    x = g.input(channels=4)
    u = g.add("pixel_shuffle", x, factor=2)
    c = g.add("concat", x, u, name="join")
    g.output(c)
    err = errors_of(g.validate)
    assert f"node {c} (concat, 'join')" in str(err) and "1ch@x2" in str(err) and "4ch@x1" in str(err)


@pytest.mark.parametrize("make, expect", [
    (lambda g, x: g.add("pixel_shuffle", x, factor=2), "needs channels divisible by 4, got 3"),
    (lambda g, x: g.add("prelu", x, num_parameters=2), "prelu num_parameters must be 1 or the input channels (3)"),
    (lambda g, x: g.add("conv", x, out_channels=4, kernel=3, groups=2), "input channels 3 are not divisible by groups=2"),
    (lambda g, x: g.add("channel_attention", x, reduction=4), "reduction 4 leaves no channels of 3"),
    (lambda g, x: g.add("conv_transpose", x, out_channels=3, kernel=2, stride=1), "needs an odd kernel"),
    (lambda g, x: g.add("interpolate", g.add("global_avg_pool", x), factor=2), "needs a spatial input"),
    (lambda g, x: g.add("multiply", x, g.add("pixel_shuffle", g.add("conv", x, out_channels=12, kernel=1),
                                               factor=2)), "inputs have shapes 3ch@x1 and 3ch@x2 (multiply needs"),
    (lambda g, x: g.add("multiply", x, g.add("conv", x, out_channels=4, kernel=1)),
     "inputs have 3 and 4 channels (multiply needs equal channels)"),
])
def test_shape_rule_errors(make, expect):
    g = ArchGraph()
    x = g.input(channels=3)
    bad = make(g, x)
    g.output(g.add("identity", bad))
    err = errors_of(g.validate)
    assert expect in str(err)
    assert err.field.startswith(f"node {bad} (")


def test_output_scale_must_be_an_integer():
    g = ArchGraph()
    x = g.input(channels=1)
    g.output(g.add("conv", x, out_channels=1, kernel=3, stride=2))
    assert "scale x1/2; an SR graph must upscale by an integer >= 1" in str(errors_of(g.validate))
    g = ArchGraph()
    x = g.input(channels=1)
    out = g.output(g.add("global_avg_pool", x))
    err = errors_of(g.validate)
    assert "globally pooled" in str(err) and err.field == f"node {out} (output)"


def test_dangling_nodes_are_named_and_prune_removes_them():
    g, ids = small()
    extra = g.add("conv", ids["r"], out_channels=8, kernel=3)
    extra2 = g.add("relu", extra)
    err = errors_of(g.validate)
    assert f"node {extra} (conv)" in str(err) and f"node {extra2} (relu)" in str(err) and "dangling" in str(err)
    assert g.prune() == [extra, extra2]
    assert g.validate()


def test_cycle_is_reported():
    g = ArchGraph()
    x = g.input(channels=1)
    a = g.add("add", x)
    b = g.add("relu", a)
    g.output(b)
    g.nx.add_edge(b, a, key=1, port=1)
    err = errors_of(g.validate)
    assert "cycle" in str(err) and f"{a} -> {b}" in str(err) or f"{b} -> {a}" in str(err)


def test_unreachable_node_is_named():
    reg = builtin_registry()
    reg.add(OpSpec("const", 0, {"channels": Attr(int, REQUIRED, positive)},
                   lambda a, ins: Shape(a["channels"], Fraction(1)), lambda a, ins: None,
                   lambda a, ins, out: OpCost()), plugin="test")
    g = ArchGraph(reg)
    x = g.input(channels=2)
    c = g.add("const", channels=2)
    g.output(g.add("add", x, c))
    err = errors_of(g.validate)
    assert f"not reachable from the input (node {x}): node {c} (const)" in str(err)


def test_structure_errors():
    g = ArchGraph()
    x = g.input(channels=1)
    assert "already has an input node" in str(errors_of(lambda: g.input(channels=1)))
    assert "not a node of this graph" in str(errors_of(lambda: g.add("relu", 99)))
    err = errors_of(lambda: g.add("relu", x, x))
    assert str(err) == "node 1 (relu): relu takes 1 input, got 2"
    out = g.output(x)
    assert "graph output and cannot feed" in str(errors_of(lambda: g.add("relu", out)))
    assert "needs exactly one output node, found 0" in str(errors_of(lambda: _only_input().validate()))
    assert "the graph is empty" in str(errors_of(ArchGraph().validate))
    # ports with a gap, an output that feeds a node (edited through .nx)
    g, ids = small()
    g.nx.remove_edge(ids["x"], ids["s"], key=1)
    g.nx.add_edge(ids["x"], ids["s"], key=2, port=2)
    assert "input ports are [0, 2]" in str(errors_of(g.validate))
    g, ids = small()
    r = g.add("relu", ids["ps"])
    g.nx.add_edge(ids["out"], r, key=1, port=1)
    assert "relu takes 1 input, got 2" in str(errors_of(g.validate))


def _only_input() -> ArchGraph:
    g = ArchGraph()
    g.input(channels=1)
    return g


@pytest.mark.parametrize("attrs, field, message", [
    ({"out_channels": 8, "kernel": 3, "pad": 1}, "attrs.pad", "unknown attribute 'pad'"),
    ({"out_channels": 8}, "attrs.kernel", "missing required attribute"),
    ({"out_channels": 8, "kernel": 4}, "attrs.kernel", "must be a positive odd integer, got 4"),
    ({"out_channels": True, "kernel": 3}, "attrs.out_channels", "must be int, got bool"),
    ({"out_channels": 8, "kernel": "3"}, "attrs.kernel", "must be int, got str"),
    ({"out_channels": 8, "kernel": 3, "bias": 1}, "attrs.bias", "must be bool, got int"),
    ({"out_channels": 0, "kernel": 3}, "attrs.out_channels", "must be >= 1, got 0"),
])
def test_attr_errors_name_node_and_attr(attrs, field, message):
    g = ArchGraph()
    x = g.input(channels=1)
    err = errors_of(lambda: g.add("conv", x, **attrs))
    assert err.field == f"node 1 (conv) {field}"
    assert message in str(err)


def test_unknown_op_lists_known_ops():
    g = ArchGraph()
    x = g.input(channels=1)
    err = errors_of(lambda: g.add("convv", x))
    assert "unknown operation 'convv'" in str(err) and "conv, conv_transpose" in str(err)


def test_float_attr_accepts_int_and_rejects_nan():
    g = ArchGraph()
    x = g.input(channels=1)
    s = g.add("scale", x, value=2)
    assert g.attrs(s)["value"] == 2.0 and isinstance(g.attrs(s)["value"], float)
    assert "finite" in str(errors_of(lambda: g.add("scale", x, value=float("nan"))))


# ---- canonical form and key ----------------------------------------------------------------------------------
def permuted(g: ArchGraph, perm_seed: int, id_offset: int = 0) -> ArchGraph:
    """The same graph with node ids permuted and nodes/edges inserted in a shuffled order (through JSON)."""
    import random

    rng = random.Random(perm_seed)
    doc = g.to_json()
    ids = [n["id"] for n in doc["nodes"]]
    new_ids = rng.sample(range(id_offset, id_offset + 3 * len(ids)), len(ids))
    relabel = dict(zip(ids, new_ids))
    nodes = [{**n, "id": relabel[n["id"]]} for n in doc["nodes"]]
    edges = [{**e, "src": relabel[e["src"]], "dst": relabel[e["dst"]]} for e in doc["edges"]]
    rng.shuffle(nodes)
    rng.shuffle(edges)
    return ArchGraph.from_json({"schema": SCHEMA, "nodes": nodes, "edges": edges})


def swap_commutative_inputs(g: ArchGraph, seed: int) -> ArchGraph:
    """Reverse/shuffle the ports of every commutative node."""
    import random

    rng = random.Random(seed)
    doc = g.to_json()
    reg = default_registry()
    comm = {n["id"] for n in doc["nodes"] if reg.get(n["op"]).commutative}
    by_dst: dict[int, list[dict]] = {}
    for e in doc["edges"]:
        by_dst.setdefault(e["dst"], []).append(e)
    for dst, edges in by_dst.items():
        if dst in comm:
            ports = [e["port"] for e in edges]
            rng.shuffle(ports)
            for e, p in zip(edges, ports):
                e["port"] = p
    return ArchGraph.from_json(doc)


@given(arch_graphs(), st.integers(0, 2**16), st.integers(0, 1000))
def test_key_invariant_under_relabelling_insertion_order_and_commutative_order(g, seed, offset):
    key = g.key()
    other = permuted(g, seed, offset)
    assert other.key() == key
    assert other.canonical() == g.canonical()
    assert swap_commutative_inputs(other, seed).key() == key


@given(arch_graphs())
def test_canonical_form_is_equivalent_and_idempotent(g):
    c = g.canonical()
    assert sorted(c) == list(range(len(g)))
    assert c.key() == g.key()
    assert c.canonical() == c
    assert c.validate()[c.output_node] == g.validate()[g.output_node]
    order = c.topological_order()
    assert order == list(range(len(c)))  # ids follow a topological order


@given(arch_graphs(blocks=("conv", "sep_conv", "scale", "merge")), st.data())
def test_key_changes_when_an_attr_changes(g, data):
    candidates = [n for n in g if g.op(n) in ("conv", "sep_conv", "scale", "conv_transpose")]
    if not candidates:
        candidates = [n for n in g if g.op(n) == "input"]
    n = data.draw(st.sampled_from(candidates))
    doc = g.to_json()
    node = next(d for d in doc["nodes"] if d["id"] == n)
    op = node["op"]
    if op == "scale":
        node["attrs"]["value"] += 1.0
    elif op == "input":
        node["attrs"]["channels"] += 1  # changes shapes downstream; only the key matters here
        try:
            other = ArchGraph.from_json(doc)
        except ValidationError:
            return
        assert other.key() != g.key()
        return
    else:
        node["attrs"]["bias"] = not node["attrs"]["bias"]
    assert ArchGraph.from_json(doc).key() != g.key()


def test_key_distinguishes_structure_not_just_what_is_computed():
    def graph(shared: bool, order=("a", "b")):
        g = ArchGraph()
        x = g.input(channels=2)
        a = g.add("conv", x, out_channels=2, kernel=3)
        b = a if shared else g.add("conv", x, out_channels=2, kernel=3)
        g.output(g.add("concat", *[{"a": a, "b": b}[k] for k in order]))
        return g

    # one shared conv read twice vs two convs with the same attrs: different parameter counts
    assert graph(True).key() != graph(False).key()
    # two identical parallel convs: swapping them is an automorphism, the key must not care
    assert graph(False, ("a", "b")).key() == graph(False, ("b", "a")).key()
    # concat is not commutative
    g1, g2 = ArchGraph(), ArchGraph()
    for g, order in ((g1, 0), (g2, 1)):
        x = g.input(channels=2)
        a = g.add("conv", x, out_channels=2, kernel=3)
        b = g.add("conv", x, out_channels=4, kernel=3)
        g.output(g.add("concat", *((a, b) if order == 0 else (b, a))))
    assert g1.key() != g2.key()
    assert g1.canonical() != g2.canonical()


def test_twin_branches_with_different_consumers():
    """Two identical convs of the input, told apart only by what reads them (a non-commutative concat and
    an add): every relabelling gives the same key."""
    g = ArchGraph()
    x = g.input(channels=2)
    a = g.add("conv", x, out_channels=2, kernel=3)
    b = g.add("conv", x, out_channels=2, kernel=3)
    c = g.add("concat", a, b)
    r = g.add("relu", a)
    d = g.add("conv", c, out_channels=2, kernel=1)
    g.output(g.add("add", d, r, b))
    keys = {permuted(g, s).key() for s in range(30)}
    assert keys == {g.key()}


def test_key_is_stable_across_processes_and_versions():
    """The key is a sha256 of canonical JSON, never Python's hash(): fixed here so that stored keys stay
    valid (changing it invalidates every experiment store)."""
    key = srcnn().key()
    code = "import sys; sys.path.insert(0, sys.argv[1]); from tests.engine.zoo import srcnn; print(srcnn().key())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parents[2])], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip() == key
    assert key == GOLDEN_SRCNN_KEY


GOLDEN_SRCNN_KEY = "24cf2c49138cfe3d89902d2be8b9094c065900cd76ed442e9a9874fe1bf29073"


def test_zoo_keys_differ():
    keys = {f().key() for f in (srcnn, vdsr, fsrcnn, residual_sr)}
    assert len(keys) == 4
    assert fsrcnn(56, 12, 4).key() != fsrcnn(56, 12, 3).key()


# ---- JSON -----------------------------------------------------------------------------------------------------
@given(arch_graphs())
def test_json_round_trip(g):
    doc = g.to_json()
    text = json.dumps(doc)
    back = ArchGraph.from_json(json.loads(text))
    assert back == g
    assert back.key() == g.key()
    assert back.to_json() == doc
    # new nodes get fresh ids after loading
    n = back.add("relu", back.input_node)
    assert n == max(g) + 1


def test_json_layout():
    g, ids = small()
    doc = g.to_json()
    assert doc["schema"] == "nasengine.graph/1"
    assert doc["nodes"][1] == {"id": 1, "op": "conv", "attrs": {"out_channels": 32, "kernel": 3, "stride": 1,
                                                                 "groups": 1, "dilation": 1, "bias": True}}
    assert {"id": ids["ps"], "op": "pixel_shuffle", "attrs": {"factor": 2}, "name": "upsampler"} in doc["nodes"]
    assert {"src": ids["x"], "dst": ids["s"], "port": 1} in doc["edges"]


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(schema="nasengine.graph/0"), "schema"),
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d.update(nodes={}), "nodes"),
    (lambda d: d["nodes"][3]["attrs"].update(kernel=4), "nodes[3].attrs.kernel"),
    (lambda d: d["nodes"][3]["attrs"].update(kernel=None), "nodes[3].attrs.kernel"),
    (lambda d: d["nodes"][3]["attrs"].pop("kernel"), "nodes[3].attrs.kernel"),
    (lambda d: d["nodes"][3].update(attrs=[1]), "nodes[3].attrs"),
    (lambda d: d["nodes"][3].update(op="nope"), "nodes[3].op"),
    (lambda d: d["nodes"][3].update(id="3"), "nodes[3].id"),
    (lambda d: d["nodes"][3].update(id=1), "nodes[3].id"),
    (lambda d: d["nodes"][3].update(name=5), "nodes[3].name"),
    (lambda d: d["nodes"][3].update(colour="red"), "nodes[3].colour"),
    (lambda d: d["nodes"].__setitem__(2, "relu"), "nodes[2]"),
    (lambda d: d["edges"][0].update(src=99), "edges[0].src"),
    (lambda d: d["edges"][0].update(dst=[1]), "edges[0].dst"),
    (lambda d: d["edges"][0].update(port=-1), "edges[0].port"),
    (lambda d: d["edges"][0].pop("port"), "edges[0].port"),
    (lambda d: d["edges"].append(dict(d["edges"][0])), "edges[8].port"),
])
def test_from_json_errors_name_the_field(mutate, field):
    g, _ = small()
    doc = copy.deepcopy(g.to_json())
    mutate(doc)
    err = errors_of(lambda: ArchGraph.from_json(doc))
    assert err.field == field, str(err)


def test_from_json_of_non_objects():
    for data in (None, [], "graph", 3, {"schema": SCHEMA}):
        errors_of(lambda: ArchGraph.from_json(data))


_scalars = st.none() | st.booleans() | st.integers(-5, 2**70) | st.floats() | st.text(max_size=6)
_json = st.recursive(_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                     max_leaves=10)


def _paths(value, prefix=()):
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated_graph_json(draw):
    doc = draw(arch_graphs(max_blocks=2)).to_json()
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "delete", "add", "small-int", "swap"]))
        if not path:
            doc = draw(_json)
            break
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["id", "op", "attrs", "port", "src", "x"]))] = draw(_json)
        elif action == "small-int":
            parent[path[-1]] = draw(st.integers(-1, 12))
        elif action == "swap" and isinstance(parent, list) and len(parent) > 1:
            i, j = draw(st.integers(0, len(parent) - 1)), draw(st.integers(0, len(parent) - 1))
            parent[i], parent[j] = parent[j], parent[i]
        else:
            parent[path[-1]] = draw(_json)
    return doc


@settings(max_examples=150)
@given(st.one_of(_json, st.dictionaries(st.sampled_from(["schema", "nodes", "edges"]), _json), mutated_graph_json()))
def test_fuzzed_json_raises_only_validation_error(data):
    try:
        g = ArchGraph.from_json(data)
    except ValidationError as err:
        assert str(err)
        return
    # whatever loads is a valid graph with a key
    assert len(g.key()) == 64


# ---- registry -------------------------------------------------------------------------------------------------
def test_registry_duplicate_and_unknown_names():
    reg = OpRegistry()
    assert reg.names() == []
    for spec in BUILTIN_OPS:
        reg.add(spec)
    assert reg.plugin_of("conv") == "builtin"
    reg.current_plugin = "nasengine-hnas"
    with pytest.raises(DuplicateNameError, match="'conv' is registered twice: by plugin 'builtin' and by plugin "
                                                 "'nasengine-hnas'"):
        reg.add(reg.get("conv"))
    with pytest.raises(UnknownNameError, match="unknown operation 'rcab'; registered: add, batch_norm, channel_attention"):
        reg.get("rcab")
    assert set(reg.names()) == {s.name for s in BUILTIN_OPS}
    assert {"input", "output", "conv", "sep_conv", "conv_transpose", "relu", "relu6", "prelu", "tanh", "sigmoid",
            "identity", "scale", "shift", "unused", "add", "concat", "mean", "multiply", "global_avg_pool",
            "channel_attention", "pixel_shuffle", "interpolate", "batch_norm"} == set(reg.names())


DOUBLE_PLUGIN = """
import nasengine
from nasengine.ops import OpCost, OpSpec

DOUBLE = OpSpec("double", 1, {"gain": (float, 2.0)}, lambda a, ins: ins[0], lambda a, ins: None,
                lambda a, ins, out: OpCost())


@nasengine.hookimpl
def nasengine_register_ops(registry):
    registry.add(DOUBLE)
"""


@pytest.fixture
def double_plugin(tmp_path, monkeypatch):
    """A plugin module ``double_plugin`` (importable from ``tmp_path``) registering the op ``double``."""
    import importlib
    import sys

    (tmp_path / "double_plugin.py").write_text(DOUBLE_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "double_plugin", raising=False)
    return importlib.import_module("double_plugin")


def test_plugin_op_through_the_default_registry(double_plugin):
    """A plugin op registered through the plugin facade is usable wherever no registry is handed down."""
    from nasengine.plugins import Plugins, reset_plugins

    plugins = Plugins(autoload=False, extra=(double_plugin,))
    previous = reset_plugins(plugins)
    try:
        assert default_registry() is plugins.ops
        g = ArchGraph()
        x = g.input(channels=1)
        g.output(g.add("double", x))
        assert g.scale == 1 and len(g.key()) == 64
        assert plugins.ops.get("double").describe() == "double(gain=2.0)"
        assert plugins.ops.plugin_of("double") == "double_plugin"
    finally:
        reset_plugins(previous)
    assert "double" not in default_registry()


def test_opspec_schema_checks():
    with pytest.raises(ValueError):
        OpSpec("bad name", 1, {}, None, None, None)
    with pytest.raises(ValueError):
        OpSpec("x", (2, 1), {}, None, None, None)
    with pytest.raises(TypeError):
        OpSpec("x", 1, {"a": (list, None)}, None, None, None)
    with pytest.raises(ValueError):
        OpCost(params=1, bias_params=2)
    spec = default_registry().get("concat")
    assert spec.variadic and spec.arity_problem(0) == "takes at least 1 inputs, got 0"


def test_numpy_scalars_become_python_values():
    np = pytest.importorskip("numpy")
    g = ArchGraph()
    x = g.input(channels=np.int64(3))
    h = g.add("conv", np.int64(x), out_channels=np.int32(4), kernel=np.int64(3), bias=np.bool_(False))
    g.output(g.add("scale", h, value=np.float32(0.5)))
    doc = g.to_json()
    json.dumps(doc)  # plain Python types only
    assert type(doc["nodes"][1]["attrs"]["out_channels"]) is int and doc["nodes"][1]["attrs"]["bias"] is False
    assert all(type(e["src"]) is int for e in doc["edges"])
    assert "inputs must be node ids" in str(errors_of(lambda: g.add("relu", "0")))


def test_pickle_drops_the_registry():
    import pickle

    g, _ = small()
    g = ArchGraph.from_json(g.to_json(), registry=builtin_registry())
    back = pickle.loads(pickle.dumps(g))
    assert back == g and back.key() == g.key() and back.registry is default_registry()


def _double_graph(registry) -> ArchGraph:
    g = ArchGraph(registry)
    g.output(g.add("double", g.input(channels=1)))
    return g


def test_an_unpickled_graph_checks_its_ops_against_the_receiving_registry(double_plugin):
    import pickle

    from nasengine.graph import OpMismatchError, check_ops

    reg = builtin_registry()
    reg.add(double_plugin.DOUBLE, plugin="double_plugin")
    data = pickle.dumps(_double_graph(reg))
    with pytest.raises(OpMismatchError, match="op 'double' of plugin 'double_plugin', which this process does "
                                              "not have"):
        pickle.loads(data)
    carried = _double_graph(reg).__getstate__()["ops"]
    assert set(carried) == {"input", "output", "double"}
    check_ops(carried, reg)  # the sender's own registry agrees
    # the same name with another schema, or from another plugin: refused, naming both sides
    other = builtin_registry()
    d = double_plugin.DOUBLE
    other.add(OpSpec("double", 1, {"gain": (float, 3.0)}, d.infer, d.build, d.cost), plugin="double_plugin")
    with pytest.raises(OpMismatchError, match=r"'double' .*differs.*double\(gain=3.0\)"):
        check_ops(carried, other)
    renamed = builtin_registry()
    renamed.add(d, plugin="another")
    with pytest.raises(OpMismatchError, match="plugin 'double_plugin'.*plugin 'another'"):
        check_ops(carried, renamed)


def test_a_graph_pickled_here_unpickles_in_a_process_that_has_its_plugin(double_plugin, tmp_path):
    import os
    import pickle
    import subprocess
    import sys

    reg = builtin_registry()
    reg.add(double_plugin.DOUBLE, plugin="double_plugin")
    (tmp_path / "graph.pkl").write_bytes(pickle.dumps(_double_graph(reg)))
    code = ("import pickle, sys; g = pickle.load(open(sys.argv[1], 'rb')); "
            "print(g.registry.plugin_of('double'), g.scale)")
    base = {k: v for k, v in os.environ.items() if not k.startswith("NASENGINE_PLUGINS")}
    base["PYTHONPATH"] = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    ok = subprocess.run([sys.executable, "-c", code, str(tmp_path / "graph.pkl")], capture_output=True, text=True,
                        env={**base, "NASENGINE_PLUGINS_EXTRA": "double_plugin"}, timeout=120)
    assert ok.returncode == 0 and ok.stdout.split() == ["double_plugin", "1"], ok.stderr[-2000:]
    missing = subprocess.run([sys.executable, "-c", code, str(tmp_path / "graph.pkl")], capture_output=True,
                             text=True, env=base, timeout=120)
    assert missing.returncode != 0
    assert "OpMismatchError: the graph uses op 'double' of plugin 'double_plugin'" in missing.stderr


def test_copies_keep_the_registry(double_plugin):
    import copy

    reg = builtin_registry()
    reg.add(double_plugin.DOUBLE, plugin="double_plugin")
    g = _double_graph(reg)
    for twin in (copy.copy(g), copy.deepcopy(g)):
        assert twin == g and twin.registry is reg and twin.key() == g.key()
