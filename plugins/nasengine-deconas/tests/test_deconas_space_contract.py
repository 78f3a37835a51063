"""The engine's SearchSpace contract on DeconasSpace: small widths (C = 8), with and without the fusion search,
both op variants, x2 and x4."""
from __future__ import annotations

import pytest

from nasengine.testing.contract import SearchSpaceContract
from nasengine_deconas.space import DeconasSpace


class TestDeconasSpace(SearchSpaceContract):
    max_examples = 10
    build_examples = 2

    @pytest.fixture(params=[
        {"N": 2, "M": 3, "channels": 8},
        {"N": 2, "M": 2, "channels": 8, "fusion": True, "scale": 4},
        {"N": 1, "M": 3, "channels": 8, "op_variant": "released_supernet", "fusion": True},
    ], ids=["n2m3", "fusion-x4", "n1-supernet-ops"])
    def space(self, request):
        return DeconasSpace(**request.param)
