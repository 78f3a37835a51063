"""Every command through the CLI with its defaults (no --device: "auto"), on a tiny model trained a few steps;
the one device resolution (nasengine.device); a training whose post-training step fails keeps its checkpoint
and ``--resume`` finishes it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from nasengine.cli import EXIT_OK, EXIT_USAGE
from tests.cli_helpers import run_cli
from nasengine.device import device_name, resolve_device
from nasengine.errors import InputError
from nasengine.genomefile import Architecture
from nasengine.graph import ArchGraph

TRAIN = ["--steps", "3", "--patch-size", "16", "--batch-size", "2", "-q"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py



def tiny_genome(path):
    g = ArchGraph()
    x = g.input(channels=1)
    h = g.add("relu", g.add("conv", x, out_channels=4, kernel=3))
    g.output(g.add("pixel_shuffle", g.add("conv", h, out_channels=4, kernel=3), factor=2))
    path.write_text(json.dumps(Architecture(graph=g, name="tiny").document()))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``nasengine train GENOME --out DIR`` with its defaults (device auto) -> DIR/model.pt."""
    root = tmp_path_factory.mktemp("devices")
    genome = tiny_genome(root / "tiny.json")
    out = root / "trained"
    assert run_cli(["train", str(genome), "--out", str(out), *TRAIN]) == EXIT_OK
    return genome, out / "model.pt"


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(path)
    return path


def test_auto_is_cuda_if_available_else_cpu():
    assert resolve_device("auto") == resolve_device(None) == resolve_device("AUTO")
    assert device_name("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(torch.device("cpu")).type == "cpu"


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cpu:0:1"])
def test_a_bogus_device_is_one_input_error_naming_it(bad):
    with pytest.raises(InputError, match=f"device: .*got {bad!r}"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_cpu_build_is_one_input_error():
    with pytest.raises(InputError, match="device: CUDA is not available.*got 'cuda:1'"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("extra", [[], ["--device", "auto"]], ids=["defaults", "device-auto"])
def test_evaluate_a_trained_model_with_the_default_device(trained, extra, capsys):
    _, model = trained
    assert run_cli(["evaluate", "--model", str(model), "--json", *extra]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report[0]["sets"]["Set5"]["psnr"] > 5


@pytest.mark.parametrize("extra", [[], ["--device", "auto"]], ids=["defaults", "device-auto"])
def test_upscale_with_a_trained_model_and_the_default_device(trained, image, extra, tmp_path):
    _, model = trained
    out = tmp_path / "up.png"
    assert run_cli(["upscale", str(image), "--model", str(model), "-o", str(out), *extra]) == EXIT_OK
    with Image.open(out) as im:
        assert im.size == (24, 20)


def test_export_then_evaluate_and_upscale_the_torchscript_with_defaults(trained, image, tmp_path, capsys):
    _, model = trained
    scripted = tmp_path / "tiny.ts"
    assert run_cli(["export", str(model), "-o", str(scripted)]) == EXIT_OK
    assert run_cli(["evaluate", "--model", str(scripted), "-q"]) == EXIT_OK
    assert run_cli(["upscale", str(image), "--model", str(scripted), "-o", str(tmp_path / "up.png")]) == EXIT_OK
    assert "Set5" in capsys.readouterr().out


def test_cost_with_defaults(trained, capsys):
    genome, _ = trained
    assert run_cli(["cost", str(genome)]) == EXIT_OK
    assert "Mult-Adds" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["evaluate", "upscale", "train"])
def test_a_bad_device_is_one_line_and_exit_2(trained, image, command, tmp_path, capsys):
    genome, model = trained
    argv = {"evaluate": ["evaluate", "--model", str(model)],
            "upscale": ["upscale", str(image), "--model", str(model), "-o", str(tmp_path / "x.png")],
            "train": ["train", str(genome), "--out", str(tmp_path / "t"), *TRAIN]}[command]
    capsys.readouterr()
    assert run_cli([*argv, "--device", "gpu0"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'gpu0'" in err


def _boom(*args, **kwargs):
    raise RuntimeError("boom after the training")


@pytest.mark.parametrize("failing", ["nasengine.sr.evaluate.evaluate", "nasengine.checkpoints.save_trained_model"],
                         ids=["final-validation", "model-file"])
def test_the_checkpoint_is_written_before_the_post_training_steps(trained, failing, tmp_path, monkeypatch, capsys):
    genome, _ = trained
    out = tmp_path / "run"
    argv = ["train", str(genome), "--out", str(out), *TRAIN]
    with monkeypatch.context() as m:
        m.setattr(failing, _boom)
        with pytest.raises(RuntimeError, match="boom"):
            run_cli(argv)
    last = out / "checkpoints" / "last.pt"
    assert last.is_file() and torch.load(last, weights_only=False)["step"] == 3
    assert not (out / "model.pt").exists()
    capsys.readouterr()
    assert run_cli([*argv, "--resume"]) == EXIT_OK
    assert "3 steps" in capsys.readouterr().out and (out / "model.pt").is_file()
    assert torch.load(last, weights_only=False)["history"][-1]["step"] == 3  # the final validation is recorded


def test_upscale_and_evaluate_in_tiles(trained, tmp_path, capsys):
    """--tile N cuts the image into tiles that overlap by the model's receptive radius (from model.pt): the
    result is the whole image's (to the conv kernels' float rounding, hence at most 1 level after rounding)."""
    _, model = trained
    img = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (37, 45, 3), dtype=np.uint8)).save(img)
    outs = {}
    for tile in ("0", "8", "auto"):
        out = tmp_path / f"up-{tile}.png"
        assert run_cli(["upscale", str(img), "--model", str(model), "-o", str(out), "--tile", tile]) == EXIT_OK
        with Image.open(out) as im:
            outs[tile] = np.asarray(im).astype(int)
    assert outs["0"].shape == (74, 90, 3)
    assert np.abs(outs["8"] - outs["0"]).max() <= 1 and np.array_equal(outs["auto"], outs["0"])
    capsys.readouterr()
    psnr = {}
    for tile in ("0", "16"):
        assert run_cli(["evaluate", "--model", str(model), "--json", "--tile", tile]) == EXIT_OK
        psnr[tile] = json.loads(capsys.readouterr().out)[0]["sets"]["Set5"]["psnr"]
    assert psnr["16"] == pytest.approx(psnr["0"], abs=1e-3)


@pytest.mark.parametrize("bad", [["--tile", "-1"], ["--tile", "big"], ["--tile-overlap", "-2"]])
def test_bad_tile_options_exit_2(trained, image, bad, tmp_path, capsys):
    _, model = trained
    assert run_cli(["upscale", str(image), "--model", str(model), "-o", str(tmp_path / "x.png"), *bad]) == EXIT_USAGE
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
