"""Smaller input problems of issue 11 item 8, through the CLI: ``--weights`` with a trained model file, an
image too small to score (the error names the file), and the divergence advice (``grad_clip``) that the
evaluator and ``nasengine train`` accept."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nasengine.cli import EXIT_OK, EXIT_USAGE, main
from nasengine.errors import DataError


def _run(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A model file as ``nasengine train`` writes it (an architecture of the simple space, initialised)."""
    from nasengine.checkpoints import save_trained_model
    from nasengine.plugins import get_plugins
    from nasengine.train import init_model, resolve_architecture

    space = get_plugins().spaces.get("simple")()
    graph = space.decode(space.sample(np.random.default_rng(0)))
    return save_trained_model(tmp_path_factory.mktemp("m") / "model.pt", resolve_architecture(graph),
                              init_model(graph, seed=0))


@pytest.mark.parametrize("command", ["upscale", "evaluate"])
def test_weights_with_a_trained_model_file_is_one_line(capsys, tmp_path, model_file, command):
    img = tmp_path / "in.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(img)
    argv = ["upscale", str(img), "-o", str(tmp_path / "out.png")] if command == "upscale" else \
        ["evaluate", "--data", "Set5"]
    code, _, err = _run(capsys, argv + ["--model", str(model_file), "--weights", "other.pth"])
    assert code == EXIT_USAGE
    assert err.strip().splitlines() == [
        f"nasengine {command}: error: --weights other.pth: {model_file} is a trained model file that holds its "
        "own weights; --weights goes with a registered model name"]
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("scale", [2, 4])
def test_a_1x1_image_error_names_the_file(capsys, tmp_path, scale):
    folder = tmp_path / "set"
    folder.mkdir()
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "tiny.png")
    code, _, err = _run(capsys, ["evaluate", "--model", "bicubic", "--data", str(folder), "--scale", str(scale)])
    assert code == EXIT_USAGE
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{folder / 'tiny.png'}: 1x1" in lines[0] and f"scale {scale}" in lines[0], err


def test_a_1x1_validation_image_names_the_file(tmp_path):
    from nasengine.sr.data import validation_set

    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(DataError, match=r"tiny\.png: 1x1 is too small to validate at scale 2"):
        validation_set([tmp_path / "tiny.png"], scale=2)


def test_the_divergence_advice_is_accepted(capsys, tmp_path):
    import re

    from nasengine.evaluators.training import TrainingEvaluator
    from nasengine.sr.trainer import TrainingDiverged

    advice = str(TrainingDiverged(7, float("nan")))
    setting = re.search(r"--set (evaluator\.grad_clip=\S+)", advice)
    assert setting and "nasengine train" in advice and "--grad-clip" in advice, advice
    code, out, err = _run(capsys, ["search", "simple", "--out", str(tmp_path / "run"), "--plan",
                                   "--set", setting.group(1)])
    assert code == EXIT_OK, err
    assert TrainingEvaluator(grad_clip=0.5).train_config.grad_clip == 0.5
    # nasengine train takes it as --grad-clip and checks it
    import json

    from nasengine.plugins import get_plugins

    space = get_plugins().spaces.get("simple")()
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(space.decode(space.sample(np.random.default_rng(0))).to_json()))
    code, _, err = _run(capsys, ["train", str(arch), "--out", str(tmp_path / "t"), "--grad-clip", "-1"])
    assert code == EXIT_USAGE and "grad_clip: must be > 0" in err, err
