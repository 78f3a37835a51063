"""The engine's SearchSpace contract on HnasSpace at tiny sizes (C = 4, 2-3 cells): x2 and x3, fewer nodes, the
paper's seven normal ops, and the search supernet's BatchNorms."""
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
        {"L": 2, "channels": 4, "nodes": 3, "paper_ops": True, "search_bn": True},
    ], ids=["l3", "l2-n2-x3", "paper-ops-bn"])
    def space(self, request):
        return HnasSpace(**request.param)
