"""Architecture files: a genome of a registered space, or a bare architecture graph, as JSON.

A **genome file** names its space and the space options, so that it is self-contained::

    {"schema": "nasengine.genome/1", "name": "FALSR-A", "space": "falsr",
     "options": {"n_cells": 7}, "genome": {...}, "source": "Chu et al. 2019, Fig. 5"}

A **graph file** is :meth:`nasengine.graph.ArchGraph.to_json` output (``"schema": "nasengine.graph/1"``).
Plugins ship published architectures as genome files and register them by name through
``nasengine_register_architectures``; anywhere a GENOME is expected, ``NAME`` (e.g. ``falsr:FALSR-A``) works
as well as a path.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from nasengine.errors import InputError, ValidationError

__all__ = ["Architecture", "load_architecture", "genome_document", "GENOME_SCHEMA"]

GENOME_SCHEMA = "nasengine.genome/1"


@attrs.frozen
class Architecture:
    """A resolved architecture: its graph, and (for genome files) the space and genome it came from."""

    graph: Any
    name: str
    space: Any = None
    space_name: str | None = None
    space_options: dict = attrs.field(factory=dict)
    genome: Any = None
    source: str = ""

    def document(self) -> dict:
        """The genome file content (or the graph JSON for a bare graph)."""
        if self.space is None:
            return self.graph.to_json()
        return genome_document(self.space_name, self.space_options, self.space.to_json(self.genome), name=self.name,
                               source=self.source)


def genome_document(space: str, options: dict, genome: dict, *, name: str = "", source: str = "") -> dict:
    return {"schema": GENOME_SCHEMA, "name": name, "space": space, "options": dict(options), "genome": genome,
            "source": source}


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); a genome file is JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply to be a genome or graph file") from None


def architecture_from_data(data: Any, *, origin: str, plugins=None) -> Architecture:
    """Parse a genome-file or graph-file document; errors name ``origin`` and the field."""
    from nasengine.graph import ArchGraph
    from nasengine.plugins import get_plugins

    if not isinstance(data, dict):
        raise ValidationError(f"{origin}: expected a JSON object, got {type(data).__name__}", field="(root)")
    schema = data.get("schema")
    if schema == GENOME_SCHEMA or ("genome" in data and "space" in data):
        plugins = plugins or get_plugins()
        space_name = data.get("space")
        if not isinstance(space_name, str):
            raise ValidationError(f"{origin}: 'space' must be a registered space name", field="space")
        options = data.get("options", {}) or {}
        if not isinstance(options, dict):
            raise ValidationError(f"{origin}: 'options' must be an object", field="options")
        try:
            cls = plugins.spaces.get(space_name)
        except KeyError as exc:
            raise InputError(f"{origin}: {exc}") from None
        try:
            space = cls(**options)
        except TypeError as exc:
            raise ValidationError(f"{origin}: bad space options: {exc}", field="options") from None
        try:
            genome = space.from_json(data.get("genome"))
            space.validate(genome)
            graph = space.decode(genome)
        except ValidationError as exc:
            raise ValidationError(f"{origin}: {exc}", field=None) from None
        return Architecture(graph=graph, name=str(data.get("name") or origin), space=space, space_name=space_name,
                            space_options=options, genome=genome, source=str(data.get("source", "")))
    if schema is not None and str(schema).startswith("nasengine.graph/") or "nodes" in data:
        try:
            graph = ArchGraph.from_json(data)
        except ValidationError as exc:
            raise ValidationError(f"{origin}: {exc}", field=None) from None
        return Architecture(graph=graph, name=origin)
    raise ValidationError(
        f"{origin}: not a genome file (schema {GENOME_SCHEMA!r}) nor a graph file (schema 'nasengine.graph/1')",
        field="schema",
    )


def load_architecture(spec: str | Path, *, plugins=None) -> Architecture:
    """Resolve ``spec``: a path to a genome/graph JSON file, or a registered architecture name."""
    from nasengine.plugins import get_plugins

    path = Path(spec)
    if path.is_file():
        return architecture_from_data(_read_json(path), origin=str(path), plugins=plugins)
    plugins = plugins or get_plugins()
    if str(spec) in plugins.architectures:
        target = Path(plugins.architectures.get(str(spec)))
        return architecture_from_data(_read_json(target), origin=str(spec), plugins=plugins)
    if path.suffix.lower() == ".json" or path.parent != Path("."):
        raise InputError(f"{spec}: no such file")
    known = ", ".join(plugins.architectures.names()) or "none registered"
    raise InputError(f"{spec!r} is neither a file nor a registered architecture (known: {known})")
