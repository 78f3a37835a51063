"""The engine's SearchSpace contract on HnasSpace at tiny sizes (C = 4, 2-3 cells): x2 and x3, fewer nodes, the
search supernet's BatchNorms, and the paper's seven normal ops (whose up-and-down projection needs the engine's
6x6 stride-2 conv with padding 2)."""
from __future__ import annotations

import pytest

from nasengine.testing.contract import SearchSpaceContract
from nasengine_hnas.space import HnasSpace


class TestHnasSpace(SearchSpaceContract):
    max_examples = 10
    build_examples = 2

    @pytest.fixture(params=[
        {"L": 3, "channels": 4},
        {"L": 2, "channels": 4, "nodes": 2, "scale": 3},
        {"L": 2, "channels": 4, "nodes": 3, "search_bn": True},
        {"L": 2, "channels": 4, "nodes": 2, "paper_ops": True},
    ], ids=["l3", "l2-n2-x3", "search-bn", "paper-ops"])
    def space(self, request):
        return HnasSpace(**request.param)
