"""Export architectures and trained models: TorchScript, ONNX, and genome files (library; the CLI prints).

    from nasengine.export import exportable_file, export_all

    items = exportable_file("runs/x/model.pt")       # a trained model, or a genome/graph file or name
    for done in export_all(items, "exports", format="torchscript", lr_size=(32, 32)):
        print(done.name, done.path, done.trained)

A TorchScript file carries what ``nasengine evaluate --model`` / ``upscale --model`` need to use it (scale,
channels, name, architecture) as the extra file ``nasengine.json``: :func:`load_torchscript_model` reads it.
A run's Pareto front becomes exportables with :func:`front_exportables`; what ``nasengine export RUN`` exports
of a run (a one-shot run's derived architecture, with its retrained weights, first) is :func:`run_exportables`,
and :func:`model_in_folder` is the trained-model file that ``--model RUN`` / ``--model DIR`` stands for.
"""
from __future__ import annotations

import logging

import json
import zipfile
from pathlib import Path
from typing import Any, Sequence

import attrs

from nasengine.errors import InputError, NasengineError

log = logging.getLogger("nasengine.export")

__all__ = ["FORMATS", "Exportable", "Exported", "exportable_file", "front_exportables", "run_exportables",
           "run_model", "model_in_folder", "export_module", "export_all", "is_torchscript", "load_torchscript_model",
           "METADATA_FILE", "DERIVED_NAME"]

FORMATS = ("torchscript", "onnx")
#: The extra file of an exported TorchScript archive that describes the model.
METADATA_FILE = "nasengine.json"
_SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
_SINGLE_SUFFIXES = (".pt", ".onnx", ".ts")
#: The export name of a one-shot run's derived architecture.
DERIVED_NAME = "derived"


@attrs.frozen
class Exportable:
    """One thing to export: a name, its :class:`~nasengine.genomefile.Architecture`, and its trained module
    (``None``: the architecture only, exported with fresh weights)."""

    name: str
    architecture: Any
    module: Any = None

    @property
    def trained(self) -> bool:
        return self.module is not None


@attrs.frozen
class Exported:
    """One written export: ``path`` (the model), ``genome`` (its genome file, when exported into a folder)."""

    name: str
    path: Path
    trained: bool
    genome: Path | None = None


def exportable_file(spec: str) -> list[Exportable]:
    """A trained model file (``.pt``/``.pth`` from ``nasengine train``), or a genome/graph file or registered
    architecture name."""
    from nasengine.genomefile import load_architecture

    path = Path(spec)
    if path.is_file() and path.suffix in (".pt", ".pth"):
        from nasengine.checkpoints import load_trained_module

        arch, module = load_trained_module(path)
        return [Exportable(path.stem, arch, module)]
    arch = load_architecture(spec)
    return [Exportable(Path(arch.name).stem.replace(":", "_"), arch)]


def front_exportables(records, space_name: str, space_options: dict, *, source) -> list[Exportable]:
    """Genome files of a run's Pareto front (``records``: :class:`nasengine.report.RunReport` ``front``), named
    ``gen{generation}-{idx}``, in the space ``space_name`` with ``space_options``."""
    from nasengine.genomefile import architecture_from_data, genome_document

    out = []
    for r in records:
        doc = genome_document(space_name, space_options, r.genome, name=f"gen{r.generation}-{r.idx}",
                              source=f"{source} (generation {r.generation}, idx {r.idx})")
        out.append(Exportable(doc["name"], architecture_from_data(doc, origin=doc["name"])))
    if not out:
        raise NasengineError(f"{source}: the run has no Pareto front yet (no successful candidate)")
    return out


def _retrained_models(run_dir: Path, results: dict) -> list[tuple[dict, Path]]:
    """``(entry, model file)`` of each retraining of the store's ``retrained`` result whose model file exists
    (its ``model`` path, else the folder the one-shot loop gives it), best first."""
    from nasengine.search.oneshot import retrained_folder
    from nasengine.train import MODEL_FILE

    out = []
    for e in results.get("retrained") or []:
        if not isinstance(e, dict) or e.get("status") != "ok":
            continue
        rel = e.get("model") or f"{retrained_folder(int(e.get('idx', 0)), str(e.get('key', '')))}/{MODEL_FILE}"
        if (run_dir / rel).is_file():
            out.append((e, run_dir / rel))
    return sorted(out, key=lambda x: int(x[0].get("idx", 0)))


def _run_results(run_dir: Path) -> dict:
    from nasengine.store import ExperimentStore

    with ExperimentStore.open(run_dir) as store:
        return store.results()


def _derived_model(run_dir: Path, results: dict) -> Path | None:
    """The retrained model file of the ``derived`` result: its recorded ``model`` path (set by the loop, which
    matches the retraining by genome: ``loop.retrain_space`` gives the retrained architecture a key of its own),
    else the retraining with the derived key; ``None`` when there is no such file."""
    derived = results.get("derived")
    if not isinstance(derived, dict):
        return None
    if derived.get("model") and (run_dir / derived["model"]).is_file():
        return run_dir / derived["model"]
    return next((p for e, p in _retrained_models(run_dir, results) if e.get("key") == derived.get("key")), None)


def run_model(run_dir) -> Path:
    """The trained-model file of a one-shot run's derived architecture (its retraining's ``model.pt``); an
    :class:`InputError` saying why when the run has none."""
    run_dir = Path(run_dir)
    results = _run_results(run_dir)
    derived = results.get("derived")
    if not isinstance(derived, dict):
        raise InputError(f"{run_dir}: the run has no derived architecture (a finished one-shot search has one), "
                         "so no retrained model; export its front (nasengine export RUN) and train one "
                         "(nasengine train GENOME --out DIR)")
    path = _derived_model(run_dir, results)
    if path is not None:
        return path
    if derived.get("model"):
        raise InputError(f"{run_dir}: the derived architecture's model file {derived['model']} is missing")
    raise InputError(f"{run_dir}: the derived architecture was not retrained (loop.retrain_top: 0, or the "
                     "retraining failed or has not run yet, or an older nasengine kept no model), so the run holds "
                     "no trained model of it; train it with nasengine train (nasengine export RUN writes its genome "
                     "file)")


def model_in_folder(folder) -> Path:
    """The trained-model file a folder stands for: a run folder's derived architecture's (:func:`run_model`), or
    the ``model.pt`` of a ``nasengine train --out`` folder (or of a run's ``retrained/...`` folder)."""
    from nasengine.store import ExperimentStore
    from nasengine.train import MODEL_FILE

    folder = Path(folder)
    if ExperimentStore.exists(folder):
        return run_model(folder)
    if (folder / MODEL_FILE).is_file():
        return folder / MODEL_FILE
    raise InputError(f"{folder}: neither a run folder nor a folder with a trained model ({MODEL_FILE})")


def run_exportables(run_dir, *, plugins=None) -> list[Exportable]:
    """What ``nasengine export RUN`` exports of a run: a one-shot run's derived architecture first, named
    :data:`DERIVED_NAME` (with its retrained weights when the run kept them, else the architecture only), then
    its other retrained models (``retrained-top{rank}``, trained), then the genome files of the Pareto front's
    other architectures (``gen{generation}-{idx}``, see :func:`front_exportables`)."""
    from nasengine.checkpoints import load_trained_module
    from nasengine.genomefile import architecture_from_data, genome_document
    from nasengine.report import RunReport, run_spec

    run_dir = Path(run_dir)
    rep = RunReport.load(run_dir, plugins=plugins)
    space = run_spec(rep.plugins, rep.run).space
    derived = rep.results.get("derived")
    items, keys = [], set()
    if isinstance(derived, dict) and derived.get("genome") is not None:
        keys.add(derived.get("key"))
        path = _derived_model(run_dir, rep.results)
        if path is not None:
            keys.update(e.get("key") for e, p in _retrained_models(run_dir, rep.results) if p == path)
            arch, module = load_trained_module(path)
            items.append(Exportable(DERIVED_NAME, arch, module))
        else:
            doc = genome_document(space.name, space.kwargs(), derived["genome"], name=DERIVED_NAME,
                                  source=f"{run_dir} (derived, generation {derived.get('generation')}, "
                                         f"idx {derived.get('idx')})")
            items.append(Exportable(DERIVED_NAME, architecture_from_data(doc, origin=DERIVED_NAME)))
    for entry, path in _retrained_models(run_dir, rep.results):
        if entry.get("key") in keys:
            continue
        keys.add(entry.get("key"))
        arch, module = load_trained_module(path)
        items.append(Exportable(f"retrained-top{int(entry.get('idx', 0)) + 1}", arch, module))
    front = [r for r in rep.front if r.key not in keys]
    if front:
        items += front_exportables(front, space.name, space.kwargs(), source=run_dir)
    if not items:
        raise NasengineError(f"{run_dir}: the run has no Pareto front yet (no successful candidate)")
    return items


def _metadata(architecture, name: str | None) -> dict:
    from nasengine.errors import ValidationError
    from nasengine.sr.models import channels_of

    graph = architecture.graph
    try:
        channels = channels_of(graph.input_channels)
    except ValidationError:  # not an image network: exported all the same, not usable as an upscaler
        channels = None
    return {"format": "nasengine.torchscript/1", "name": name or architecture.name, "scale": int(graph.scale),
            "channels": channels, "architecture": architecture.document()}


def export_module(module, architecture, target, *, format: str = "torchscript",
                  lr_size: tuple[int, int] = (32, 32), name: str | None = None) -> Path:
    """Write ``module`` (the network of ``architecture``) to ``target`` as TorchScript (traced on an LR input of
    ``lr_size`` = (height, width), with the model's description, named ``name`` (default the architecture's),
    as :data:`METADATA_FILE`) or ONNX (opset of
    torch's exporter; input ``lr``, output ``sr``, dynamic batch and spatial size)."""
    import torch

    if format not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    target = Path(target)
    module.eval()
    example = torch.rand(1, architecture.graph.input_channels, lr_size[0], lr_size[1])
    if format == "torchscript":
        scripted = torch.jit.trace(module, example)
        scripted.save(str(target), _extra_files={METADATA_FILE: json.dumps(_metadata(architecture, name))})
        return target
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise NasengineError("ONNX export needs the onnx package: pip install 'nasengine[onnx]'") from None
    axes = {0: "batch", 2: "height", 3: "width"}
    try:
        import onnxscript  # noqa: F401 - torch's torch.export-based exporter needs it
    except ImportError:
        onnxscript = None
    if onnxscript is not None:
        try:
            dims = {i: torch.export.Dim(n, min=1 if i == 0 else 2, max=64 if i == 0 else 8192) for i, n in axes.items()}
            torch.onnx.export(module, (example,), str(target), input_names=["lr"], output_names=["sr"],
                              dynamic_shapes=(dims,), dynamo=True, external_data=False, verbose=False)
            return target
        except Exception as exc:  # noqa: BLE001 - an op torch.export cannot trace with free sizes
            log.warning("ONNX: torch.export could not export %s with dynamic sizes (%s); using the "
                        "TorchScript-based exporter", name or architecture.name, str(exc).splitlines()[0][:200])
    # Without onnxscript (not in the `onnx` extra's environment), or as a fallback: the legacy exporter.
    torch.onnx.export(module, example, str(target), input_names=["lr"], output_names=["sr"],
                      dynamic_axes={"lr": axes, "sr": axes}, dynamo=False)
    return target


def export_all(items: Sequence[Exportable], output, *, format: str = "torchscript",
               lr_size: tuple[int, int] = (32, 32), overwrite: bool = True) -> list[Exported]:
    """Export ``items``: one item to ``output`` when it names a file (``.pt``, ``.onnx``, ``.ts``); otherwise
    each item to ``output/NAME.pt`` (``.onnx``) with its genome file ``output/NAME.json``. An untrained item is
    built with fresh weights. ``overwrite=False``: an :class:`InputError` naming the first file that exists
    already, before anything is written."""
    from nasengine.builder import build
    from nasengine.fileio import refuse_overwrite

    out = Path(output)
    single = len(items) == 1 and out.suffix in _SINGLE_SUFFIXES
    for item in items:
        for target in ([out] if single else [out / f"{item.name}{_SUFFIX.get(format, '')}",
                                             out / f"{item.name}.json"]):
            refuse_overwrite(target, force=overwrite)
    if not single:
        out.mkdir(parents=True, exist_ok=True)
    done = []
    for item in items:
        module = item.module if item.trained else build(item.architecture.graph)
        target = out if single else out / f"{item.name}{_SUFFIX.get(format, '')}"
        export_module(module, item.architecture, target, format=format, lr_size=lr_size, name=item.name)
        genome = None
        if not single:
            genome = out / f"{item.name}.json"
            genome.write_text(json.dumps(item.architecture.document(), indent=2))
        done.append(Exported(item.name, target, item.trained, genome))
    return done


def is_torchscript(path) -> bool:
    """Whether ``path`` is a TorchScript archive (what ``torch.jit.save`` writes)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_torchscript_model(path, *, scale: int | None = None, device: str = "auto"):
    """A :class:`nasengine.sr.models.TorchUpscaler` for a TorchScript file written by :func:`export_module`
    (``nasengine export``); ``scale`` must match if given. Its ``receptive_radius`` (the overlap of tiled
    inference) comes from the architecture stored in the file when this process can read it."""
    import torch

    from nasengine.device import resolve_device
    from nasengine.sr.models import TorchUpscaler

    path = Path(path)
    extra = {METADATA_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location=resolve_device(device), _extra_files=extra)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError or its own types
        raise InputError(f"{path}: not a readable TorchScript file ({type(exc).__name__}: {exc})") from None
    try:
        meta = json.loads(extra[METADATA_FILE])
        model_scale, channels, name = int(meta["scale"]), meta["channels"], str(meta["name"])
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path}: a TorchScript file without nasengine's {METADATA_FILE} (scale, channels); "
                         "export it with `nasengine export`") from None
    if channels is None:
        raise InputError(f"{path}: the network does not take 1 (Y) or 3 (RGB) channels: not an upscaler")
    if scale is not None and int(scale) != model_scale:
        raise InputError(f"{path}: this model upscales x{model_scale}, not x{scale}")
    radius = None
    if isinstance(meta.get("architecture"), dict):
        try:
            from nasengine.genomefile import architecture_from_data
            from nasengine.receptive import overlap_for

            radius = overlap_for(architecture_from_data(meta["architecture"], origin=str(path)).graph)
        except NasengineError:  # a space or op this process lacks: tiles get the default overlap
            radius = None
    return TorchUpscaler(module, scale=model_scale, channels=channels, name=name, device=device,
                         receptive_radius=radius)
