"""The engine's SearchSpace contract on FgnasSpace: tiny supernets (the paper's B = 16, C = 64 genomes hold
5,248 bits; the golden tests cover them) at x2 with the body end gated, and at x3 without."""
from __future__ import annotations

import pytest

from nasengine.testing.contract import SearchSpaceContract
from nasengine_fgnas.space import FgnasSpace


class TestFgnasSpaceTiny(SearchSpaceContract):
    max_examples = 15
    build_examples = 4

    @pytest.fixture(params=[{"blocks": 2, "channels": 3},
                            {"blocks": 1, "channels": 2, "scale": 3, "gate_body_end": False}],
                        ids=["b2-c3-x2", "b1-c2-x3-ungated"])
    def space(self, request):
        return FgnasSpace(**request.param)
