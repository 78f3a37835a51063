"""The built-in ``simple`` search space: the SearchSpace contract on several option sets, plus its own rules."""
from __future__ import annotations

import importlib.metadata
import itertools
import json
import os

import numpy as np
import pytest

from nasengine.cost import analytic_cost
from nasengine.errors import ConfigError, ValidationError
from nasengine.spaces import BUILTIN_SPACES, Layer, SimpleGenome, SimpleSpace
from nasengine.testing.contract import SearchSpaceContract

pytest_plugins = ["pytester"]


# ---- the contract ---------------------------------------------------------------------------------------------
class TestSimpleSpaceContract(SearchSpaceContract):
    """Every scale, both channel modes; small depth so that the build checks stay fast."""

    max_examples = 12
    build_examples = 4

    @pytest.fixture(
        params=[
            {"scale": 2, "channels": "y"},
            {"scale": 3, "channels": "rgb", "max_depth": 4},
            {"scale": 4, "channels": "y", "max_depth": 4, "head_width": 8},
            {"scale": 2, "channels": "rgb", "min_depth": 1, "max_depth": 3, "widths": [8, 12],
             "kernels": [3], "activations": ["prelu"], "upsamplers": ["deconv", "bicubic_residual"],
             "deconv_kernel": 4},
        ],
        ids=["x2-y", "x3-rgb", "x4-y", "x2-rgb-narrow"],
    )
    def space(self, request):
        return SimpleSpace(**request.param)


class TestSimpleSpaceDefaults(SearchSpaceContract):
    """The ``make_space`` form of the contract, on the default options."""

    max_examples = 8
    build_examples = 2

    def make_space(self):
        return SimpleSpace()


# ---- helpers ---------------------------------------------------------------------------------------------------
def genome(*layers, residual=True, upsampler="pixel_shuffle"):
    return SimpleGenome(tuple(Layer(*l) for l in layers), residual, upsampler)


def ops(graph) -> list[str]:
    return [graph.op(n) for n in graph.topological_order()]


# ---- registration and options ---------------------------------------------------------------------------------
def test_registered_as_simple():
    assert BUILTIN_SPACES == {"simple": SimpleSpace}


@pytest.mark.parametrize(
    "options, field",
    [
        ({"scale": 5}, "space.scale"),
        ({"scale": True}, "space.scale"),
        ({"channels": "ycbcr"}, "space.channels"),
        ({"head_width": 0}, "space.head_width"),
        ({"min_depth": 0}, "space.min_depth"),
        ({"min_depth": 4, "max_depth": 3}, "space.max_depth"),
        ({"widths": []}, "space.widths"),
        ({"widths": [8, 8]}, "space.widths"),
        ({"widths": [8, 2.5]}, "space.widths"),
        ({"widths": "16"}, "space.widths"),
        ({"kernels": [2]}, "space.kernels"),
        ({"activations": ["gelu"]}, "space.activations"),
        ({"upsamplers": ["nearest"]}, "space.upsamplers"),
        ({"deconv_kernel": 0}, "space.deconv_kernel"),
    ],
)
def test_bad_options_raise_config_error_naming_the_option(options, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        SimpleSpace(**options)


def test_options_from_json_lists_work():
    space = SimpleSpace(**json.loads('{"scale": 3, "max_depth": 5, "widths": [8, 12, 16]}'))
    assert space.widths == (8, 12, 16) and space.options()["widths"] == [8, 12, 16]


# ---- decoding ----------------------------------------------------------------------------------------------------
def test_decode_structure_and_hand_counted_cost():
    space = SimpleSpace(scale=2, channels="y", head_width=16, min_depth=1)
    g = genome((8, 3, "relu"), residual=True)
    graph = space.decode(g)
    assert ops(graph) == ["input", "conv", "conv", "relu", "conv", "add", "conv", "pixel_shuffle", "output"]
    # head 3x3 1->16, body 3x3 16->8, projection 1x1 8->16, upsampler 3x3 16->4 (+ biases)
    params = (9 * 16 + 16) + (9 * 16 * 8 + 8) + (8 * 16 + 16) + (9 * 16 * 4 + 4)
    per_lr_pixel = 9 * 16 + 9 * 16 * 8 + 8 * 16 + 9 * 16 * 4
    cost = analytic_cost(graph, (10, 10))
    assert cost.params == params == 2044
    assert cost.mult_adds == per_lr_pixel * 100 == 200_000


def test_residual_width_rule():
    space = SimpleSpace(head_width=16)
    # last width == head width: no projection
    assert ops(space.decode(genome((8, 3, "relu"), (16, 3, "relu"))))[1:7] == [
        "conv", "conv", "relu", "conv", "relu", "add"]
    # last width != head width: a 1x1 projection to the head width before the add
    graph = space.decode(genome((16, 3, "relu"), (24, 5, "tanh")))
    proj = [n for n in graph if graph.op(n) == "conv" and graph.attrs(n)["kernel"] == 1]
    assert len(proj) == 1 and graph.attrs(proj[0])["out_channels"] == 16
    # no residual: no projection, no add, the upsampler reads the last width
    graph = space.decode(genome((16, 3, "relu"), (24, 5, "tanh"), residual=False))
    assert "add" not in ops(graph)
    assert not [n for n in graph if graph.op(n) == "conv" and graph.attrs(n)["kernel"] == 1]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upsamplers(scale):
    space = SimpleSpace(scale=scale, channels="rgb")
    body = ((16, 3, "prelu"), (8, 1, "relu"))
    ps = space.decode(genome(*body, residual=False, upsampler="pixel_shuffle"))
    assert ops(ps)[-3:] == ["conv", "pixel_shuffle", "output"]
    dc = space.decode(genome(*body, residual=False, upsampler="deconv"))
    assert ops(dc)[-2:] == ["conv_transpose", "output"]
    n = next(n for n in dc if dc.op(n) == "conv_transpose")
    assert dc.attrs(n) == {"out_channels": 3, "kernel": 9, "stride": scale, "bias": True}
    br = space.decode(genome(*body, residual=False, upsampler="bicubic_residual"))
    interp = next(n for n in br if br.op(n) == "interpolate")
    assert br.attrs(interp) == {"mode": "bicubic", "factor": scale}
    assert br.inputs(interp) == [br.input_node]
    assert br.op(br.inputs(br.output_node)[0]) == "add"
    for graph in (ps, dc, br):
        assert graph.scale == scale


def test_prelu_is_per_channel():
    space = SimpleSpace()
    graph = space.decode(genome((24, 3, "prelu"), (16, 3, "relu")))
    n = next(n for n in graph if graph.op(n) == "prelu")
    assert graph.attrs(n)["num_parameters"] == 24


def test_different_genomes_have_different_architecture_keys():
    space = SimpleSpace(max_depth=3)
    rng = np.random.default_rng(0)
    seen = {}
    for _ in range(200):
        g = space.sample(rng)
        seen.setdefault(space.key(g), set()).add(g)
    assert all(len(v) == 1 for v in seen.values())


# ---- size and vector encoding ---------------------------------------------------------------------------------
def test_size_is_exact_by_enumeration():
    space = SimpleSpace(min_depth=1, max_depth=2, widths=[8, 16], kernels=[1, 3], activations=["relu"],
                        upsamplers=["pixel_shuffle", "deconv"])
    lo, hi = space.vector_bounds()
    decoded = {space.vector_decode(np.array(v)) for v in
               itertools.product(*(range(a, b + 1) for a, b in zip(lo, hi)))}
    assert len(decoded) == space.size() == 2 * 2 * (4 + 16)


def test_default_size_formula():
    space = SimpleSpace()
    assert space.size() == 2 * 3 * sum(36 ** d for d in range(2, 9))


def test_vector_layout():
    space = SimpleSpace(max_depth=4)
    assert len(space.vector_bounds()[0]) == 1 + 3 * 4 + 2
    v = space.vector_encode(genome((24, 5, "tanh"), (8, 1, "relu"), residual=False, upsampler="deconv"))
    assert v.tolist() == [2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]


def test_vector_decode_repairs_and_rejects():
    space = SimpleSpace(max_depth=3)
    n = 1 + 3 * 3 + 2
    g = space.vector_decode([99] + [-5.0] * (n - 3) + [0.6, 7])  # clipped, rounded
    assert g.depth == 3 and g.residual is True and g.upsampler == "bicubic_residual"
    assert all(layer == (8, 1, "relu") for layer in g.layers)
    with pytest.raises(ValidationError, match="vector"):
        space.vector_decode([2] * (n - 1))
    with pytest.raises(ValidationError, match="vector"):
        space.vector_decode([float("nan")] * n)
    with pytest.raises(ValidationError, match="vector"):
        space.vector_decode("abc")


# ---- variation ---------------------------------------------------------------------------------------------------
def _genes(g: SimpleGenome) -> list:
    return [g.residual, g.upsampler] + [x for layer in g.layers for x in layer]


def test_mutate_changes_one_gene():
    space = SimpleSpace()
    rng = np.random.default_rng(5)
    kinds = set()
    for _ in range(400):
        parent = space.sample(rng)
        child = space.mutate(parent, rng)
        assert child != parent
        space.validate(child)
        if child.depth == parent.depth:
            diff = sum(a != b for a, b in zip(_genes(parent), _genes(child)))
            assert diff == 1
            kinds.add("gene")
        else:
            assert abs(child.depth - parent.depth) == 1
            longer, shorter = (child, parent) if child.depth > parent.depth else (parent, child)
            assert any(longer.layers[:i] + longer.layers[i + 1:] == shorter.layers for i in range(longer.depth))
            assert (child.residual, child.upsampler) == (parent.residual, parent.upsampler)
            kinds.add("insert" if child.depth > parent.depth else "delete")
    assert kinds == {"gene", "insert", "delete"}


def test_mutate_respects_depth_bounds_and_single_choice_genes():
    space = SimpleSpace(min_depth=3, max_depth=3, widths=[16], kernels=[3], activations=["relu"],
                        upsamplers=["deconv"])
    rng = np.random.default_rng(0)
    g = space.sample(rng)
    assert space.mutation_kinds(g) == ["residual"]
    assert space.mutate(g, rng) == SimpleGenome(g.layers, not g.residual, "deconv")


def test_crossover_is_one_point_and_repairs_depth():
    space = SimpleSpace(min_depth=2, max_depth=4)
    a = genome((8, 1, "relu"), (8, 1, "relu"), (8, 1, "relu"), (8, 1, "relu"), residual=True,
               upsampler="pixel_shuffle")
    b = genome((32, 5, "tanh"), (32, 5, "tanh"), (32, 5, "tanh"), (32, 5, "tanh"), residual=False,
               upsampler="deconv")
    rng = np.random.default_rng(0)
    depths = set()
    for _ in range(300):
        c1, c2 = space.crossover(a, b, rng)
        for c, first in ((c1, a), (c2, b)):
            space.validate(c)
            depths.add(c.depth)
            if c.depth == space.min_depth:
                continue  # possibly completed from the first parent: checked by validate only
            # a prefix of one parent followed by a suffix of the other
            k = next((i for i, layer in enumerate(c.layers) if layer != first.layers[0]), c.depth)
            other = b if first is a else a
            assert all(layer == other.layers[0] for layer in c.layers[k:])
        assert {c1.residual, c2.residual} == {True, False}
        assert {c1.upsampler, c2.upsampler} == {"pixel_shuffle", "deconv"}
    assert depths == {2, 3, 4}


# ---- validation and JSON -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad, field",
    [
        (SimpleGenome(((16, 3, "relu"),), True, "deconv"), "layers"),  # depth 1 < min_depth 2
        (SimpleGenome(((16, 3, "relu"),) * 9, True, "deconv"), "layers"),
        (SimpleGenome(((16, 3, "relu"), (16, 3, "relu"), (16, 4, "relu")), True, "deconv"), "layers[2].kernel"),
        (SimpleGenome(((16, 3, "relu"), (7, 3, "relu")), True, "deconv"), "layers[1].width"),
        (SimpleGenome(((16, 3, "relu"), (True, 3, "relu")), True, "deconv"), "layers[1].width"),
        (SimpleGenome(((16, 3, "relu"), (16, 3, "gelu")), True, "deconv"), "layers[1].activation"),
        (SimpleGenome(((16, 3, "relu"), (16, 3)), True, "deconv"), "layers[1]"),
        (SimpleGenome(((16, 3, "relu"), (16, 3, "relu")), 1, "deconv"), "residual"),
        (SimpleGenome(((16, 3, "relu"), (16, 3, "relu")), True, "nearest"), "upsampler"),
        ("not a genome", "genome"),
    ],
)
def test_validate_names_the_field(bad, field):
    with pytest.raises(ValidationError) as info:
        SimpleSpace().validate(bad)
    assert info.value.field == field


def _doc(**changes):
    doc = {"layers": [{"width": 16, "kernel": 3, "activation": "relu"}, {"width": 8, "kernel": 1,
                                                                         "activation": "tanh"}],
           "residual": True, "upsampler": "deconv"}
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    "data, field",
    [
        ([], "genome"),
        (None, "genome"),
        ({"layers": []}, "residual"),
        (_doc(extra=1), "extra"),
        (_doc(layers="16-3-relu"), "layers"),
        (_doc(layers=[{"width": 16, "kernel": 3, "activation": "relu"}, 5]), "layers[1]"),
        (_doc(layers=[{"width": 16, "kernel": 3}, {"width": 8, "kernel": 1, "activation": "tanh"}]),
         "layers[0].activation"),
        (_doc(layers=[{"width": 16, "kernel": 3, "activation": "relu", "groups": 2}] * 2), "layers[0].groups"),
        (_doc(layers=[{"width": "16", "kernel": 3, "activation": "relu"}] * 2), "layers[0].width"),
        (_doc(layers=[{"width": 16, "kernel": 3.0, "activation": "relu"}] * 2), "layers[0].kernel"),
        (_doc(layers=[{"width": 16, "kernel": 3, "activation": ["relu"]}] * 2), "layers[0].activation"),
        (_doc(layers=[[16, 3, "relu"]]), "layers"),
        (_doc(residual="yes"), "residual"),
        (_doc(upsampler=None), "upsampler"),
    ],
)
def test_from_json_names_the_field(data, field):
    with pytest.raises(ValidationError) as info:
        SimpleSpace().from_json(data)
    assert info.value.field == field


def test_from_json_accepts_list_layers():
    space = SimpleSpace()
    g = space.from_json({"layers": [[16, 3, "relu"], [8, 1, "tanh"]], "residual": False, "upsampler": "deconv"})
    assert g == genome((16, 3, "relu"), (8, 1, "tanh"), residual=False, upsampler="deconv")
    assert space.describe(g) == "16k3relu-8k1tanh nores deconv"


# ---- the test kit as a plugin author uses it ------------------------------------------------------------------
CONTRACT_USER = """
import pytest
from nasengine.spaces import SimpleSpace
from nasengine.testing.contract import SearchSpaceContract

class TestMine(SearchSpaceContract):
    max_examples = 50

    def make_space(self):
        return SimpleSpace(max_depth=3, widths=[8])

def test_examples_option(nasengine_examples):
    assert nasengine_examples == 2
"""


def test_contract_class_runs_in_a_plugin_authors_suite(pytester):
    pytester.makepyfile(test_mine=CONTRACT_USER)
    plugin = "nasengine.testing.pytest_plugin"
    args = ["-q", "-p", "no:cacheprovider", "--nasengine-examples", "2"]
    entry_points = {ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    if plugin not in entry_points or os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        args = ["-p", plugin] + args  # not autoloaded by the inner run: load it by name
    result = pytester.runpytest_inprocess(*args)
    result.assert_outcomes(passed=16)


def test_contract_class_reports_a_broken_space(pytester):
    pytester.makepyfile(test_broken="""
import numpy as np
from nasengine.spaces import SimpleSpace
from nasengine.testing.contract import SearchSpaceContract

class Broken(SimpleSpace):
    def mutate(self, genome, rng):
        child = super().mutate(genome, rng)
        return type(child)(child.layers + child.layers, child.residual, child.upsampler)  # too deep

class TestBroken(SearchSpaceContract):
    max_examples = 5
    build_examples = 1

    def make_space(self):
        return Broken(max_depth=3)
""")
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider", "-k", "mutate")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ValidationError*depth*"])


PLUGIN_OP_SPACE = '''
import torch.nn as nn

import nasengine
from nasengine.graph import ArchGraph
from nasengine.ops import OpCost, OpSpec
from nasengine.spaces import SimpleSpace


class Double(nn.Module):
    def forward(self, x):
        return 2 * x


DOUBLE = OpSpec("contract_double", 1, {}, lambda a, ins: ins[0], lambda a, ins: Double(), lambda a, ins, out: OpCost(),
                doc="x * 2 (a plugin's op)")


@nasengine.hookimpl
def nasengine_register_ops(registry):
    registry.add(DOUBLE)


class DoubleSpace(SimpleSpace):
    """The simple space's genomes, decoded to conv -> contract_double -> conv -> pixel shuffle."""

    def decode(self, genome):
        g = ArchGraph()
        x = g.input(channels=self.image_channels)
        h = g.add("contract_double", g.add("conv", x, out_channels=genome.layers[0].width, kernel=3))
        u = g.add("conv", h, out_channels=self.image_channels * self.scale ** 2, kernel=3)
        g.output(g.add("pixel_shuffle", u, factor=self.scale))
        return g
'''

PLUGIN_OP_CONTRACT = '''
from nasengine.testing.contract import SearchSpaceContract
from op_plugin import DoubleSpace


class TestDoubleSpace(SearchSpaceContract):
    max_examples = 3
    build_examples = 1

    def make_space(self):
        return DoubleSpace(max_depth=2, widths=[4])
'''


def test_space_contract_loads_the_plugins_itself(tmp_path):
    """A space using a plugin's op passes the contract run alone: the contract loads the plugins (here the
    op's plugin comes through NASENGINE_PLUGINS_EXTRA) before making the space, the author need not."""
    import subprocess
    import sys

    (tmp_path / "op_plugin.py").write_text(PLUGIN_OP_SPACE)
    (tmp_path / "test_double.py").write_text(PLUGIN_OP_CONTRACT)
    env = {**os.environ, "NASENGINE_PLUGINS_EXTRA": "op_plugin",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_double.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "15 passed" in proc.stdout, proc.stdout[-2000:]
