"""End to end, the way a plugin's reader runs it: the example third-party plugin
(``tests/plugins/nasengine-example``, installed by ``dev.py``) searched from the command line, then shown::

    nasengine search example --preset smoke --out RUN --seed 0
    nasengine show RUN --json

The ``smoke`` preset is 2 generations x 3 candidates of 30 training steps, in process: about 10 s on 2 CPU
cores (budget: under 60 s).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

NASENGINE = Path(sys.executable).with_name("nasengine")
ENV_SWITCHES = ("NASENGINE_DISABLE_PLUGIN_AUTOLOAD", "NASENGINE_TRACE_PLUGINS", "NASENGINE_PLUGINS",
                "NASENGINE_PLUGINS_EXTRA")


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ENV_SWITCHES}
    return subprocess.run([str(NASENGINE), *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """The example's smoke search, run once: (run folder, seconds it took)."""
    try:
        import nasengine_example  # noqa: F401
    except ImportError:
        pytest.fail("the example plugin is not installed: run `python3 dev.py setup` "
                    "(or .venv/bin/pip install -e tests/plugins/nasengine-example)")
    out = tmp_path_factory.mktemp("example") / "run"
    start = time.perf_counter()
    proc = cli("search", "example", "--preset", "smoke", "--out", str(out), "--seed", "0")
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"nasengine search failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return out, seconds


@pytest.fixture(scope="module")
def shown(example_run):
    out, _ = example_run
    proc = cli("show", str(out), "--json", timeout=120)
    assert proc.returncode == 0, f"nasengine show failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_search_example_smoke_runs_well_within_a_minute(example_run):
    _, seconds = example_run
    assert seconds < 60, f"the example's smoke search took {seconds:.1f} s; keep the preset tiny"


@pytest.mark.slow
def test_show_json_has_the_run_its_candidates_and_a_front(shown):
    assert {"run", "candidates", "front"} <= set(shown)
    assert shown["run"]["method"] == "example"
    assert shown["run"]["preset"] == "smoke"
    assert shown["run"]["seed"] == 0
    candidates = shown["candidates"]
    assert len(candidates) == 6  # 2 generations x 3 candidates
    assert {c["status"] for c in candidates} <= {"ok", "duplicate"}
    ok = [c for c in candidates if c["status"] == "ok"]
    assert ok
    for c in ok:
        assert math.isfinite(c["metrics"]["psnr"]) and c["metrics"]["psnr"] > 10
    assert 1 <= len(shown["front"]) <= len(ok)
    ok_keys = {c["key"] for c in ok}
    assert all(f["key"] in ok_keys for f in shown["front"])


@pytest.mark.slow
def test_the_run_records_the_example_plugin_and_its_controller_state(example_run, shown):
    """Every run records the plugins it ran with; the hill climber's stored state holds the best genome."""
    from importlib.metadata import version

    from nasengine.store import ExperimentStore

    out, _ = example_run
    with ExperimentStore.open(out) as store:
        assert store.run.plugins["example"] == version("nasengine-example")
        generation, state = store.load_controller_state()
    assert generation == 1
    ok = [c for c in shown["candidates"] if c["status"] == "ok"]
    best = max(ok, key=lambda c: c["metrics"]["psnr"])  # the reward's scalar: the first objective, psnr
    assert state["best"] == best["genome"]
    assert state["best_score"] == pytest.approx(best["metrics"]["psnr"])
