"""nasengine.train (one training implementation: evaluator, CLI, retraining) and nasengine.export (TorchScript,
ONNX, genome files; an exported TorchScript is a model `evaluate` and `upscale` accept)."""
from __future__ import annotations

import json

import attrs
import numpy as np
import pytest
import torch
from PIL import Image

from nasengine.cli import EXIT_OK, EXIT_USAGE
from tests.cli_helpers import run_cli
from nasengine.errors import InputError, ValidationError
from nasengine.evaluator import EvalContext
from nasengine.evaluators import TrainingEvaluator
from nasengine.graph import ArchGraph
from nasengine.sr.models import channels_of
from nasengine.sr.trainer import TrainConfig
from nasengine.train import TrainRecipe, train_architecture, train_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def tiny_graph(channels: int = 1, scale: int = 2) -> ArchGraph:
    g = ArchGraph()
    x = g.input(channels=channels)
    h = g.add("relu", g.add("conv", x, out_channels=8, kernel=3))
    g.output(g.add("pixel_shuffle", g.add("conv", h, out_channels=channels * scale * scale, kernel=3), factor=scale))
    return g


def recipe(steps: int = 4, **kw) -> TrainRecipe:
    cfg = TrainConfig(lr=1e-3, batch_size=2, steps=steps, device="cpu", **kw)
    return TrainRecipe(config=cfg, patch_size=16, patches_per_epoch=64)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)



def test_channels_of_is_the_one_mapping():
    assert (channels_of(1), channels_of(3)) == ("y", "rgb")
    with pytest.raises(ValidationError, match="input.channels") as exc:
        channels_of(2)
    assert exc.value.field == "input.channels"
    with pytest.raises(ValidationError, match="input.channels"):
        train_model(tiny_graph(channels=2), recipe())


def test_recipe_and_data_are_checked_before_training(tmp_path):
    from nasengine.errors import ConfigError, DataError

    with pytest.raises(ConfigError, match="^evaluator.val_pipeline: .*'cmyk'"):
        TrainingEvaluator(val_pipeline="cmyk")
    with pytest.raises(DataError, match="NoSuchSet"):
        train_architecture(tiny_graph(), tmp_path, attrs.evolve(recipe(), val_data="NoSuchSet"))
    assert not (tmp_path / "checkpoints").exists()
    with pytest.raises(ValidationError, match="^graph: .*input.channels"):
        train_architecture(tiny_graph(channels=2), tmp_path, recipe())


def test_the_evaluator_trains_with_train_model():
    graph = tiny_graph()
    ev = TrainingEvaluator(steps=4, batch_size=2, patch_size=16, lr=1e-3, patches_per_epoch=64)
    metrics = ev.evaluate(graph, EvalContext(seed=11))
    done = train_model(graph, ev.recipe, seed=11, device="cpu")
    assert metrics["psnr"] == done.metrics["psnr"] and metrics["ssim"] == done.metrics["ssim"]
    assert metrics["train_loss"] == done.final_loss and metrics["steps"] == 4.0
    assert metrics["train_seconds"] > 0


def test_the_evaluator_keeps_its_model_and_continues_its_checkpoint(tmp_path):
    """keep_model (a one-shot run's retraining): model.pt + checkpoints/ in the workdir; run again on a folder
    whose checkpoint stopped early (a killed retraining), it continues it and ends as a straight training."""
    from nasengine.checkpoints import load_trained_module
    from nasengine.genomefile import Architecture

    graph = tiny_graph()
    opts = {"batch_size": 2, "patch_size": 16, "lr": 1e-3, "patches_per_epoch": 64, "checkpoint_every": 2}
    arch = Architecture(graph=graph, name="top1-abc")
    straight = TrainingEvaluator(steps=4, **opts).evaluate(
        graph, EvalContext(seed=5, workdir=str(tmp_path / "a"), keep_model=True, architecture=arch))
    assert (tmp_path / "a" / "checkpoints" / "last.pt").is_file()
    kept, module = load_trained_module(tmp_path / "a" / "model.pt")
    assert kept.graph.key() == graph.key()
    assert torch.load(tmp_path / "a" / "model.pt", weights_only=True)["metrics"]["psnr"] == straight["psnr"]
    # the "killed" retraining: its checkpoint after 2 of 4 steps (a 2-step training's last one), no model.pt
    TrainingEvaluator(steps=2, **opts).evaluate(graph, EvalContext(seed=5, workdir=str(tmp_path / "b"), keep_model=True))
    (tmp_path / "b" / "model.pt").unlink()
    steps = []
    resumed = TrainingEvaluator(steps=4, **opts).evaluate(
        graph, EvalContext(seed=5, workdir=str(tmp_path / "b"), keep_model=True,
                           report=lambda step, total: steps.append(step)))
    assert steps == [3, 4]  # only what the checkpoint had left
    assert resumed["psnr"] == straight["psnr"] and resumed["train_loss"] == straight["train_loss"]
    _, again = load_trained_module(tmp_path / "b" / "model.pt")
    assert same_weights(again, module)
    # without keep_model a workdir only holds the trainer's checkpoint, as before
    TrainingEvaluator(steps=2, **opts).evaluate(graph, EvalContext(seed=5, workdir=str(tmp_path / "c")))
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["last.pt"]


def test_the_evaluator_owns_its_training_data_and_reuses_it(monkeypatch):
    built = []
    original = TrainRecipe.dataset

    def counting(self, *args, **kwargs):
        built.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TrainRecipe, "dataset", counting)
    ev = TrainingEvaluator(steps=2, batch_size=2, patch_size=16, patches_per_epoch=64)
    results = [ev.evaluate(tiny_graph(), EvalContext(seed=s)) for s in (1, 2, 1)]
    assert len(built) == 1  # decoded once, whatever the candidate's seed
    assert results[0] == {**results[2], "train_seconds": results[0]["train_seconds"]}
    assert results[0]["train_loss"] != results[1]["train_loss"]  # the seed still picks the patches
    other = TrainingEvaluator(steps=2, batch_size=2, patch_size=16, patches_per_epoch=64)
    other.evaluate(tiny_graph(), EvalContext(seed=1))
    assert len(built) == 2  # not a process-wide cache: another evaluator decodes its own
    ev.evaluate(tiny_graph(channels=3), EvalContext(seed=1))
    assert len(built) == 3 and built[-1][1] == "rgb"


def test_train_architecture_writes_a_model_and_resumes_exactly(tmp_path):
    graph = tiny_graph()
    straight = train_architecture(graph, tmp_path / "a", recipe(6, schedule="cosine"), progress=False)
    assert straight.path == tmp_path / "a" / "model.pt" and (tmp_path / "a" / "checkpoints" / "last.pt").is_file()
    saved = torch.load(straight.path, weights_only=True)
    assert saved["channels"] == "y" and saved["scale"] == 2 and saved["metrics"] == straight.metrics

    class Stop(Exception):
        pass

    def stop(step, loss):
        if step == 4:
            raise Stop

    with pytest.raises(Stop):
        train_architecture(graph, tmp_path / "b", recipe(6, schedule="cosine", checkpoint_every=3),
                           callback=stop, progress=False)
    resumed = train_architecture(graph, tmp_path / "b", recipe(6, schedule="cosine", checkpoint_every=3),
                                 resume=True, progress=False)
    assert resumed.result.losses == straight.result.losses
    assert same_weights(resumed.module, straight.module)
    assert resumed.metrics == straight.metrics


def test_train_export_torchscript_and_evaluate_it(tmp_path, capsys):
    from nasengine.genomefile import Architecture

    genome = tmp_path / "tiny.json"
    genome.write_text(json.dumps(Architecture(graph=tiny_graph(), name="tiny").document()))
    out = tmp_path / "trained"
    assert run_cli(["train", str(genome), "--out", str(out), "--steps", "6", "--patch-size", "16",
                    "--batch-size", "2", "-q", "--device", "cpu"]) == EXIT_OK
    model = out / "model.pt"
    scripted = tmp_path / "tiny-ts.pt"
    assert run_cli(["export", str(model), "-o", str(scripted)]) == EXIT_OK
    capsys.readouterr()
    psnr = {}
    for name, path in (("model", model), ("torchscript", scripted), ("folder", out)):  # the train --out folder too
        assert run_cli(["evaluate", "--model", str(path), "--data", "Set5", "--json"]) == EXIT_OK
        psnr[name] = json.loads(capsys.readouterr().out)[0]["sets"]["Set5"]["psnr"]
    assert psnr["torchscript"] == pytest.approx(psnr["model"], abs=1e-9) and psnr["folder"] == psnr["model"]
    assert run_cli(["evaluate", "--model", str(tmp_path)]) == EXIT_USAGE
    assert f"{tmp_path}: neither a run folder nor a folder with a trained model (model.pt)" in capsys.readouterr().err
    img = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(img)
    assert run_cli(["upscale", str(img), "--model", str(scripted), "-o", str(tmp_path / "up.png")]) == EXIT_OK
    with Image.open(tmp_path / "up.png") as im:
        assert im.size == (24, 20)
    # the wrong scale, and a TorchScript nasengine did not write: one line each
    capsys.readouterr()
    assert run_cli(["evaluate", "--model", str(scripted), "--scale", "3"]) == EXIT_USAGE
    assert "x2, not x3" in capsys.readouterr().err
    foreign = tmp_path / "foreign.pt"
    torch.jit.trace(torch.nn.Upsample(scale_factor=2), torch.rand(1, 1, 4, 4)).save(str(foreign))
    assert run_cli(["evaluate", "--model", str(foreign)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert "nasengine.json" in err and len(err.splitlines()) == 1


def test_export_all_writes_models_and_genome_files(tmp_path):
    from nasengine.export import exportable_file, export_all, load_torchscript_model
    from nasengine.genomefile import Architecture, load_architecture

    genome = tmp_path / "rgb.json"
    genome.write_text(json.dumps(Architecture(graph=tiny_graph(channels=3, scale=3), name="rgb").document()))
    items = exportable_file(str(genome))
    assert len(items) == 1 and not items[0].trained
    done = export_all(items, tmp_path / "out", lr_size=(8, 8))
    assert [d.path.name for d in done] == ["rgb.pt"] and done[0].genome == tmp_path / "out" / "rgb.json"
    assert load_architecture(done[0].genome).graph.key() == items[0].architecture.graph.key()
    up = load_torchscript_model(done[0].path)
    assert (up.scale, up.channels, up.name) == (3, "rgb", "rgb")
    assert up.upscale(np.zeros((5, 7, 3), np.uint8)).shape == (15, 21, 3)
    with pytest.raises(InputError, match="x3, not x2"):
        load_torchscript_model(done[0].path, scale=2)


def test_a_worker_reuses_the_evaluator_and_its_training_data(monkeypatch):
    from nasengine.executors import EvalTask, clear_instance_cache, run_task
    from nasengine.spaces.simple import SimpleSpace

    built = []
    original = TrainRecipe.dataset
    monkeypatch.setattr(TrainRecipe, "dataset", lambda self, *a, **k: built.append(a) or original(self, *a, **k))
    space = SimpleSpace(max_depth=3)
    options = {"steps": 2, "batch_size": 2, "patch_size": 16, "patches_per_epoch": 64}
    clear_instance_cache()
    try:
        for n in range(3):
            genome = space.sample(np.random.default_rng(n))
            task = EvalTask(task_id=f"t{n}", space="simple", space_options={"max_depth": 3},
                            genome=json.dumps(space.to_json(genome)), evaluator="sr-train",
                            evaluator_options=options, seed=100 + n, device="cpu", threads=1)
            outcome = run_task(task)
            assert outcome.ok, outcome.error
    finally:
        clear_instance_cache()
    assert len(built) == 1
