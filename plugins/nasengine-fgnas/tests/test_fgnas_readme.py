"""The top-level README's FGNAS commands, run as a user types them (in a shell, from a scratch folder)."""
from __future__ import annotations

import json
import re

import pytest

from tests.readme_helpers import readme_command, shell


@pytest.mark.time_limit(900)
def test_readme_fgnas_smoke_search(tmp_path):
    """The smoke search with its defaults: prune with the differentiable Mult-Adds term, derive, fine-tune."""
    line = readme_command("nasengine search fgnas --preset smoke")
    done = shell(line, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "1000 steps done" in out and "fine-tuned: ok" in out and "step 0: L1" in out
    run = re.search(r"--out (\S+)", line).group(1)
    data = json.loads(shell(f"nasengine show {run} --json", tmp_path).stdout)
    derived = data["results"]["derived"]
    assert derived["steps"] == 1000 and derived["metrics"]["mult_adds"] > 0
    # the trajectory rows: the hard cost fell along the way (the smoke's lambda prunes ~3x)
    rows = sorted((r for r in data["candidates"] if r["generation"] == 0), key=lambda r: r["metrics"]["step"])
    assert len(rows) >= 2 and rows[-1]["mult_adds"] < 0.8 * rows[0]["mult_adds"]


def test_readme_fgnas_plan_and_cost(tmp_path):
    done = shell(readme_command("nasengine search fgnas --preset paper --plan"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2,000,000" in done.stdout
    done = shell(readme_command("nasengine cost fgnas:supernet-S"), tmp_path)
    assert done.returncode == 0, done.stderr
    # METHODS §3.1 / published_architectures.json "FGNAS-supernet" (the paper prints 292.3G: not asserted)
    assert "1,294,924" in done.stdout and "297.37" in done.stdout
