"""Helpers the README tests share: a README command found by its start, run in a shell as a user types it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def readme_command(prefix: str) -> str:
    """The README line (in a code block, indented or not) starting with ``prefix``, its comment removed."""
    found = [line.strip() for line in README.splitlines() if line.strip().startswith(prefix)]
    assert len(found) == 1, f"README: expected one line starting with {prefix!r}, found {found}"
    return re.sub(r"\s+#.*$", "", found[0]).strip()


def shell(line: str, cwd: Path, *, timeout: float = 900) -> subprocess.CompletedProcess:
    """``line`` run by bash in ``cwd`` with this Python's scripts first on PATH and the plugins autoloaded."""
    env = {k: v for k, v in os.environ.items() if k not in ("NASENGINE_PLUGINS", "NASENGINE_DISABLE_PLUGIN_AUTOLOAD")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
