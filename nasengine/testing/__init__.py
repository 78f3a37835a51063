"""The test kit shipped to plugin authors: hypothesis strategies (and contract tests) for nasengine objects.

``arch_graphs()`` draws random valid SR architecture graphs; ``random_arch_graph(seed)`` draws one without
hypothesis. See :mod:`nasengine.testing.strategies`. ``SearchSpaceContract`` and ``ControllerContract``
(:mod:`nasengine.testing.contract`) are test classes a plugin author subclasses to check a space or a
controller in a few lines.
"""
from __future__ import annotations

from nasengine.testing.strategies import BLOCKS, arch_graphs, random_arch_graph

__all__ = ["arch_graphs", "random_arch_graph", "BLOCKS"]

# ---- search-space genomes: strategies (nasengine.testing.genomes) and contract tests (.contract) -------------
# Bound here, after the submodule import, so that ``nasengine.testing.genomes`` the *function* is what
# ``from nasengine.testing import genomes`` gives. hypothesis is imported when a strategy is made.
from nasengine.testing.genomes import fuzzed_json, genome_pairs, genomes, seeds, vectors  # noqa: E402

__all__ += ["genomes", "genome_pairs", "vectors", "seeds", "fuzzed_json", "SearchSpaceContract",
            "ControllerContract"]


def __getattr__(name: str):
    # The contract classes need pytest; import them only when asked for.
    if name in ("SearchSpaceContract", "ControllerContract"):
        from nasengine.testing import contract

        return getattr(contract, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def stored_candidates(run_dir) -> int:
    """Candidates recorded so far in the run folder ``run_dir``, read without locking or writing (0 while the
    store does not exist yet): for tests that kill a search once it has recorded enough."""
    import sqlite3
    from pathlib import Path

    from nasengine.store import STORE_FILE

    path = Path(run_dir) / STORE_FILE
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def sigkill_when_stored(cmd, run_dir, at_least: int, *, timeout: float = 60.0, cwd=None) -> None:
    """Run the search command ``cmd`` (an argv list) and SIGKILL it once ``run_dir`` holds ``at_least``
    candidates: the crash a resume must survive. An ``AssertionError`` (with the end of its stderr) when the
    search ends on its own first or records nothing new for ``timeout`` seconds."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while stored_candidates(run_dir) < at_least:
            if proc.poll() is not None:
                raise AssertionError(f"the search ended before it was killed: {proc.stderr.read().decode()[-3000:]}")
            assert time.monotonic() < deadline, "the search made no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


__all__ += ["stored_candidates", "sigkill_when_stored"]
