"""The top-level README's HNAS commands, run as a user types them (in a shell, from a scratch folder)."""
from __future__ import annotations

import json
import re

import pytest

from tests.readme_helpers import readme_command, shell


@pytest.mark.time_limit(900)
def test_readme_hnas_smoke_search(tmp_path):
    """The smoke search with its defaults: search at C = 4, derivation on Set5 images, retraining at C = 8."""
    line = readme_command("nasengine search hnas --preset smoke")
    done = shell(line, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "4 epochs done" in out and "derived (sample, 5 scored)" in out and "retrained 1/1: ok" in out
    run = re.search(r"--out (\S+)", line).group(1)
    results = json.loads(shell(f"nasengine show {run} --json", tmp_path).stdout)["results"]
    derived, (retrained,) = results["derived"], results["retrained"]
    # the reward PSNR as HNAS computes it and the repo's cost figure beside the true Mult-Adds (METHODS §2.5, §4)
    assert {"psnr_rgb_shave", "mult_adds", "mult_adds_executed", "mult_adds_conv2d_48px_x10"} <= set(derived["metrics"])
    assert retrained["key"] != derived["key"] and retrained["metrics"]["psnr"] > 0 and derived["model"]


def test_readme_hnas_plan_and_cost(tmp_path):
    done = shell(readme_command("nasengine search hnas --preset paper --plan"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "400 epochs x 200 supernet steps" in done.stdout and "300 controller steps" in done.stdout
    done = shell(readme_command("nasengine cost hnas:HNAS-A"), tmp_path)
    assert done.returncode == 0, done.stderr
    # issue 13's table / published_architectures.json "HNAS-A" (position 9)
    assert "974,019" in done.stdout and "357.2564G" in done.stdout
    assert "415.7669G" in done.stdout and "30.6306" in done.stdout
