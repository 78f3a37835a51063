"""Helpers the CLI tests share: running ``nasengine`` in-process and a tiny genome file."""
from __future__ import annotations

import contextlib

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


@contextlib.contextmanager
def only_plugins(*modules):
    """While inside: the built-in plugin plus ``modules`` (imported plugin modules) are the process's plugins,
    here and, through ``NASENGINE_PLUGINS_EXTRA``, in every worker process (autoloading off); the previous
    plugins and environment are restored afterwards. Yields the plugins."""
    import warnings

    import pytest

    import nasengine.plugins as np_plugins

    mp = pytest.MonkeyPatch()
    mp.setenv("NASENGINE_PLUGINS_EXTRA", ",".join(m.__name__ for m in modules))
    mp.setenv("NASENGINE_DISABLE_PLUGIN_AUTOLOAD", "1")
    with warnings.catch_warnings():
        # The built-in plugin may be incomplete while the engine is being written; the extra modules fill in.
        warnings.simplefilter("ignore", RuntimeWarning)
        plugins = np_plugins.Plugins(autoload=False, extra=tuple(modules))
    previous = np_plugins.reset_plugins(plugins)
    try:
        yield plugins
    finally:
        np_plugins.reset_plugins(previous)
        mp.undo()
