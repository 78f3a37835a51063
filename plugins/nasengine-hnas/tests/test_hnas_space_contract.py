"""The engine's SearchSpace contract on HnasSpace at tiny sizes (C = 4, 2-3 cells): x2 and x3, fewer nodes, the
search supernet's BatchNorms, and the paper's seven normal ops (whose up-and-down projection needs the engine's
6x6 stride-2 conv)."""
from __future__ import annotations

import pytest

from nasengine.errors import ValidationError
from nasengine.graph import ArchGraph
from nasengine.testing.contract import SearchSpaceContract
from nasengine_hnas.space import HnasSpace


def _even_kernel_conv() -> bool:
    g = ArchGraph()
    try:
        g.add("conv", g.input(channels=1), out_channels=1, kernel=6, stride=2)
    except ValidationError as exc:
        return "odd" not in str(exc)
    return True


class TestHnasSpace(SearchSpaceContract):
    max_examples = 10
    build_examples = 2

    @pytest.fixture(params=[
        {"L": 3, "channels": 4},
        {"L": 2, "channels": 4, "nodes": 2, "scale": 3},
        {"L": 2, "channels": 4, "nodes": 3, "search_bn": True},
        pytest.param({"L": 2, "channels": 4, "nodes": 2, "paper_ops": True},
                     marks=pytest.mark.skipif(not _even_kernel_conv(), reason="the engine's conv takes odd kernels "
                                                                                "only (UDPB needs 6x6 stride 2)")),
    ], ids=["l3", "l2-n2-x3", "search-bn", "paper-ops"])
    def space(self, request):
        return HnasSpace(**request.param)
