"""The first CLI commands: `nasengine evaluate` and `nasengine upscale` (issue 2), and their errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nasengine.cli import EXIT_OK, EXIT_USAGE, main
from tests.cli_helpers import run_cli


def test_evaluate_bicubic_set5_table(capsys):
    # PROTOCOL.md regression target, Set5 x2 bicubic (rgb pipeline): 33.6396 / 0.92922
    assert main(["evaluate", "--model", "bicubic", "--data", "Set5", "--scale", "2", "-q"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Set5" in out and "33.639" in out


def test_evaluate_json_y_pipeline(capsys):
    # PROTOCOL.md "Y first" pipeline: Set5 x2 33.6614 / 0.92988
    assert main(["evaluate", "--data", "Set5", "--pipeline", "y", "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert abs(data[0]["sets"]["Set5"]["psnr"] - 33.6614) < 1e-3



@pytest.mark.parametrize(
    "argv, needle",
    [
        (["evaluate", "--scale", "0"], "scale"),
        (["evaluate", "--scale", "-2"], "scale"),
        (["evaluate", "--scale", "two"], "scale"),
        (["evaluate", "--model", "nosuchmodel"], "nosuchmodel"),
        (["evaluate", "--data", "/no/such/folder"], "/no/such/folder"),
        (["evaluate", "--pipeline", "cmyk"], "pipeline"),
        (["upscale", "/no/such/image.png"], "/no/such/image.png"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, needle, capsys):
    assert run_cli(argv) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1, err


def test_upscale_bicubic(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "out" / "x3.png"
    assert main(["upscale", str(src), "--model", "bicubic", "--scale", "3", "-o", str(out)]) == EXIT_OK
    with Image.open(out) as im:
        assert im.size == (69, 51) and im.mode == "RGB"


@pytest.mark.parametrize("content", [b"this is not an image\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00"])
def test_upscale_bad_file_names_it(tmp_path, capsys, content):
    bad = tmp_path / "broken.png"
    bad.write_bytes(content)
    assert main(["upscale", str(bad), "-o", str(tmp_path / "o.png")]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert "broken.png" in err and len(err.splitlines()) == 1


def test_console_script_runs():
    exe = shutil.which("nasengine") or str(__import__("pathlib").Path(sys.executable).with_name("nasengine"))
    proc = subprocess.run([exe, "evaluate", "--scale", "1"], capture_output=True, text=True)
    assert proc.returncode == EXIT_USAGE
    assert "scale" in proc.stderr
