"""The README commands added for `score`, `ops`, `cost --per-node` and `new-plugin`, run as a user types them
(in a shell, from a scratch folder holding the files they name)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from nasengine.genomefile import genome_document
from nasengine.plugins import get_plugins
from nasengine.sr.data import resolve_benchmark
from nasengine.sr.evaluate import prepare_pair
from nasengine.sr.image import save_image
from nasengine.sr.models import to_uint8

from tests.readme_helpers import readme_command, shell


def test_readme_score_command(tmp_path):
    line = readme_command("nasengine score ")
    folder = tmp_path / re.search(r"--sr (\S+)", line).group(1)
    folder.mkdir(parents=True)
    up = get_plugins().models.get("bicubic")(scale=2, weights=None, device="cpu")
    for path in resolve_benchmark("Set5")[1]:
        lr, _ = prepare_pair(path, 2)
        save_image(folder / f"{Path(path).stem}_x2_bicubic.png", to_uint8(up.upscale(lr)))
    done = shell(line, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "33.6396" in done.stdout and "0.92922" in done.stdout and "butterfly" in done.stdout


def test_readme_cost_per_node_and_ops_commands(tmp_path):
    line = readme_command("nasengine cost exports/gen2-3.json")
    space = get_plugins().spaces.get("simple")(scale=2, channels="y", max_depth=3)
    genome = space.sample(np.random.default_rng(0))
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "gen2-3.json").write_text(
        json.dumps(genome_document("simple", {"scale": 2, "channels": "y", "max_depth": 3}, space.to_json(genome))))
    done = shell(line, tmp_path)
    assert done.returncode == 0, done.stderr
    header, rule, *rows = done.stdout.splitlines()[1:]
    assert header.split() == ["node", "name", "op", "out", "(WxH)", "params", "biases", "Mult-Adds", "share"]
    assert set(rule) == {"-"} and rows and all("NodeCost(" not in r for r in rows)
    assert any(" conv " in r and "480x480" in r for r in rows)

    done = shell(readme_command("nasengine ops "), tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "conv  (1 input; plugin builtin)" in out and "pixel_shuffle" in out and "relu" not in out
    assert "out_channels: int, required -- output channels" in out and "cost convention:" in out


def test_ops_json_lists_every_registered_op(tmp_path):
    done = shell("nasengine ops --json", tmp_path)
    data = json.loads(done.stdout)
    assert [o["name"] for o in data["ops"]] == get_plugins().ops.names()
    conv = next(o for o in data["ops"] if o["name"] == "conv")
    assert {"name": "stride", "type": "int", "required": False, "default": 1,
            "doc": "stride (divides the spatial scale)"} in conv["attrs"]
    assert conv["doc"] and conv["arity"] == 1
    bad = shell("nasengine ops no_such_op", tmp_path)
    assert bad.returncode == 2 and "unknown op 'no_such_op'" in bad.stderr


def test_readme_new_plugin_commands(tmp_path):
    done = shell(readme_command("nasengine new-plugin "), tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "plugins-src" / "nasengine-my-nas" / "tests" / "test_plugin.py").is_file()
    done = shell(readme_command("PYTHONPATH=plugins-src/nasengine-my-nas "), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "my-nas-elite-mutation" in done.stdout
