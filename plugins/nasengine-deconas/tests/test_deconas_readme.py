"""The top-level README's DeCoNAS commands, run as a user types them (in a shell, from a scratch folder)."""
from __future__ import annotations

import json
import re

import pytest

from tests.readme_helpers import readme_command, shell


@pytest.mark.time_limit(900)
def test_readme_deconas_smoke_search_export_and_upscale(tmp_path):
    """The smoke search end to end with its defaults (search, derivation, retraining), then the README's next
    two lines on its run folder: export (the derived architecture first, trained) and upscale with the run."""
    line = readme_command("nasengine search deconas --preset smoke")
    done = shell(line, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "8 epochs done" in out and "derived (sample, 10 scored)" in out and "retrained 1/1: ok" in out
    run = re.search(r"--out (\S+)", line).group(1)
    data = json.loads(shell(f"nasengine show {run} --json", tmp_path).stdout)
    assert data["results"]["derived"]["model"]

    done = shell(readme_command(f"nasengine export {run} "), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("derived: trained")

    from PIL import Image

    from nasengine.sr.data import resolve_benchmark

    Image.open(resolve_benchmark("Set5")[1][0]).crop((0, 0, 40, 32)).save(tmp_path / "photo.png")
    done = shell(readme_command(f"nasengine upscale photo.png --model {run}"), tmp_path)
    assert done.returncode == 0, done.stderr
    (made,) = tmp_path.glob("photo_x2*.png")  # named after the model: photo_x2_top1-<key>.png
    assert Image.open(made).size == (80, 64)


def test_readme_deconas_plan_and_cost(tmp_path):
    done = shell(readme_command("nasengine search deconas --preset paper --plan"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "200 epochs x 1,000 supernet steps" in done.stdout and "19,500 updates" in done.stdout
    assert "derivation: 100 samples" in done.stdout
    done = shell(readme_command("nasengine cost deconas:DeCoNASNet"), tmp_path)
    assert done.returncode == 0, done.stderr
    # METHODS.md §1.11 / published_architectures.json "DeCoNASNet"
    assert "1,713,795" in done.stdout and "387.3817G" in done.stdout
