"""Helpers the CLI tests share: running ``nasengine`` in-process and a tiny genome file."""
from __future__ import annotations

import json
from pathlib import Path

from nasengine.cli import main


def run_cli(argv) -> int:
    """main() as the console script runs it: argparse errors raise SystemExit, ours return a code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def tiny_genome_file(folder: Path) -> Path:
    """``folder/tiny.json``: a one-conv x2 Y network (conv 3x3 to 4 channels, pixel shuffle) as a genome file."""
    from nasengine.genomefile import Architecture
    from nasengine.graph import ArchGraph

    g = ArchGraph()
    x = g.input(channels=1)
    g.output(g.add("pixel_shuffle", g.add("conv", x, out_channels=4, kernel=3), factor=2))
    path = Path(folder) / "tiny.json"
    path.write_text(json.dumps(Architecture(graph=g, name="tiny").document()))
    return path
