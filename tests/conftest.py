"""Shared test configuration: hypothesis profiles and the location of the benchmark data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]

settings.register_profile(
    "default", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("ci", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow],
                          derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


def shared_benchmarks() -> Path | None:
    """Folder holding Set5/Set14/B100 HR images: $NASENGINE_DATA/benchmarks or the checkout's ../shared/data."""
    roots = [Path(p) for p in os.environ.get("NASENGINE_DATA", "").split(os.pathsep) if p]
    roots.append(REPO.parent / "shared" / "data")
    for root in roots:
        for cand in (root / "benchmarks", root):
            if (cand / "Set14" / "HR").is_dir() and (cand / "B100" / "HR").is_dir():
                return cand
    return None


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    path = shared_benchmarks()
    if path is None:
        pytest.skip("benchmark sets not found: set NASENGINE_DATA or place ../shared/data beside the checkout")
    return path


@pytest.fixture
def one_torch_thread():
    """Torch on one CPU thread for the test (deterministic timings and no oversubscription), restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
