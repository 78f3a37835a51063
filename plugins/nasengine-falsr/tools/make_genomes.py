#!/usr/bin/env python3
"""Write the published FALSR architectures as genome files (``nasengine_falsr/genomes/*.json``).

Source: ``shared/reference/published_architectures.json`` (the released FALSR-A/B/C graphs as data; its
``FALSR-C`` entry's ``paper_figure_hypothesis`` gives ``FALSR-C-paper``, C without node 2 in the tail concat,
which reproduces the paper's 93.7G / 408K). Usage::

    python tools/make_genomes.py [path/to/published_architectures.json]

Re-running it rewrites identical files (the tests compare them with the reference too).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from nasengine.genomefile import genome_document
from nasengine_falsr.genome import Cell, FalsrGenome
from nasengine_falsr.plugin import RELEASED_MODELS
from nasengine_falsr.space import FalsrSpace

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "nasengine_falsr" / "genomes"
DEFAULT_SOURCE = HERE.parents[3] / "shared" / "reference" / "published_architectures.json"

_KIND = {("conv", 1): "conv", ("group_conv", 2): "group_conv_g2", ("group_conv", 4): "group_conv_g4",
         ("inverted_bottleneck", 2): "inverted_bottleneck_e2"}


def cell_of(entry: dict) -> Cell:
    """A reference cell entry ``{"type", "groups"|"expansion", "channels", "kernel", "blocks", "skip"}``."""
    kind = _KIND[(entry["type"], entry.get("groups", entry.get("expansion", 1)))]
    return Cell(kind, entry["channels"], entry["kernel"], bool(entry["skip"]), entry["blocks"])


def genome_of(arch: dict, tail_inputs=None) -> FalsrGenome:
    cells = arch["cells"]
    return FalsrGenome.from_inputs([cell_of(c) for c in cells], [c["inputs"] for c in cells],
                                   arch["tail_inputs"] if tail_inputs is None else tail_inputs)


def documents(reference: dict) -> dict[str, dict]:
    space = FalsrSpace(n_cells=7)
    out = {}
    table = {"FALSR-A": "234.7G / 1,021K (Table 1, Fig. 3)", "FALSR-B": "74.7G / 326K (Table 1, Fig. 4)",
             "FALSR-C": "93.7G / 408K (Table 1)"}
    for name in RELEASED_MODELS:
        genome = genome_of(reference[name]["architecture"])
        space.validate(genome)
        out[name] = genome_document(
            "falsr", space.options(), genome.to_json(), name=name,
            source=(f"{name} as released (official frozen graph {name}.pb of github.com/falsr/FALSR), converted "
                    f"from reference/published_architectures.json; paper: {table[name]}. Cells and inputs: "
                    f"{genome.describe()}"))
    hypothesis = reference["FALSR-C"]["paper_figure_hypothesis"]
    genome = genome_of(reference["FALSR-C"]["architecture"], hypothesis["tail_inputs"])
    space.validate(genome)
    out["FALSR-C-paper"] = genome_document(
        "falsr", space.options(), genome.to_json(), name="FALSR-C-paper",
        source=("FALSR-C without node 2 in the tail concat (reference/published_architectures.json, "
                "paper_figure_hypothesis): reproduces the paper's 93.7G / 408K; the released graph concatenates "
                f"nodes 0,2,6,7. Cells and inputs: {genome.describe()}"))
    return out


def dumps(doc: dict) -> str:
    """JSON text with one cell and one connection row per line."""
    genome = doc["genome"]

    def rows(items: list) -> str:
        return ",\n".join("      " + json.dumps(item) for item in items)

    body = (f'{{\n    "micro": [\n{rows(genome["micro"])}\n    ],\n'
            f'    "macro": [\n{rows(genome["macro"])}\n    ]\n  }}')
    text = json.dumps({**doc, "genome": "@GENOME@"}, indent=2)
    return text.replace('"@GENOME@"', body) + "\n"


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else DEFAULT_SOURCE
    reference = json.loads(source.read_text(encoding="utf-8"))
    OUT.mkdir(parents=True, exist_ok=True)
    for name, doc in documents(reference).items():
        path = OUT / f"{name}.json"
        path.write_text(dumps(doc), encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
