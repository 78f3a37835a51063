"""The engine's SearchSpace contract on FalsrSpace: the released size (7 cells) and small ones."""
from __future__ import annotations

import pytest

from nasengine.testing.contract import SearchSpaceContract
from nasengine_falsr.space import FalsrSpace


class TestFalsrSpaceSevenCells(SearchSpaceContract):
    """The paper's (and the released models') 7 cells, all 192 cell choices."""

    max_examples = 15
    build_examples = 3

    def make_space(self):
        return FalsrSpace(n_cells=7)


class TestFalsrSpaceSmall(SearchSpaceContract):
    """One cell (a single bit: node 0 into the tail), and the smoke preset's 3 cells on a channel subset."""

    max_examples = 15
    build_examples = 3

    @pytest.fixture(params=[{"n_cells": 1}, {"n_cells": 3, "channels": [16, 32]}], ids=["n1", "n3-c16-32"])
    def space(self, request):
        return FalsrSpace(**request.param)
