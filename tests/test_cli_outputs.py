"""`train`, `export` and `upscale` print every file they wrote (issue 11 item 10)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from nasengine.cli import EXIT_OK, main
from nasengine.genomefile import genome_document
from nasengine.plugins import get_plugins
from nasengine.sr.image import save_image


def _genome(tmp_path: Path) -> Path:
    options = {"scale": 2, "channels": "y", "max_depth": 2, "widths": [4]}
    space = get_plugins().spaces.get("simple")(**options)
    path = tmp_path / "g.json"
    genome = space.to_json(space.sample(np.random.default_rng(1)))
    path.write_text(json.dumps(genome_document("simple", options, genome)))
    return path


def test_train_export_upscale_print_what_they_wrote(tmp_path, capsys):
    genome = _genome(tmp_path)
    out = tmp_path / "m"
    assert main(["train", str(genome), "--out", str(out), "--steps", "2", "--patch-size", "32", "--batch-size", "2",
                 "-q"]) == EXIT_OK
    text = capsys.readouterr().out
    assert f"model: {out / 'model.pt'}" in text and f"checkpoints: {out / 'checkpoints'}" in text
    assert (out / "model.pt").is_file() and (out / "checkpoints").is_dir()

    assert main(["export", str(genome), "-o", str(tmp_path / "ex")]) == EXIT_OK
    text = capsys.readouterr().out
    model, genome_out = re.search(r"-> (\S+) \(genome: (\S+)\)", text).groups()
    assert Path(model).is_file() and Path(genome_out).is_file()

    img = tmp_path / "in.png"
    save_image(img, np.zeros((12, 10, 3), np.uint8))
    assert main(["upscale", str(img), "--model", str(out / "model.pt")]) == EXIT_OK
    written = re.search(r"-> (\S+) \(20x24\)", capsys.readouterr().out).group(1)
    assert Path(written).is_file() and Path(written).name == "in_x2_g.png"  # the model name was a path
