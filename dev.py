#!/usr/bin/env python3
"""Bootstrap and run nasengine from a source checkout.

    python3 dev.py main            # the main job (see README)
    python3 dev.py test [ARGS]     # the whole test suite (ARGS go to pytest)
    python3 dev.py nasengine ARGS  # any `nasengine` command inside the project's virtualenv
    python3 dev.py setup           # only create / update the virtualenv

The virtualenv lives in ``.venv`` (override with ``NASENGINE_VENV``). It is created on first use and
re-synchronised whenever a ``pyproject.toml`` of the engine or of a plugin changes. torch is installed
first, pinned to the CPU build (``torch==2.13.0``) so that no multi-GB CUDA build is pulled on a CPU
machine; GPU users set ``NASENGINE_TORCH="torch==2.x.y"`` (any pip requirement) or pre-install torch in
the virtualenv, and the package metadata itself only asks for ``torch>=2.2``.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("NASENGINE_VENV", ROOT / ".venv"))
TORCH_REQ = os.environ.get("NASENGINE_TORCH", "torch==2.13.0")
STAMP = VENV / ".nasengine-stamp"

# The main job: what `python3 dev.py main` runs (a short search on the embedded default data).
MAIN_JOB = ["nasengine", "search", "simple", "--preset", "smoke"]


def _bin(name: str) -> Path:
    sub = "Scripts" if os.name == "nt" else "bin"
    return VENV / sub / name


def _plugins() -> list[Path]:
    """First-party plugins present in plugins/ (each a folder with a pyproject.toml), and the example
    third-party plugins the test suite installs from tests/plugins/."""
    found = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
    return found + sorted(p.parent for p in (ROOT / "tests" / "plugins").glob("*/pyproject.toml"))


def _requirement(folder: Path) -> str:
    """``folder`` as an editable requirement, with its ``test`` extra when it declares one."""
    text = (folder / "pyproject.toml").read_text(encoding="utf-8")
    return f"{folder}[test]" if "\ntest = [" in text or "\ntest=[" in text else str(folder)


def _fingerprint() -> str:
    h = hashlib.sha256(TORCH_REQ.encode())
    for f in [ROOT / "pyproject.toml", Path(__file__).resolve()] + [p / "pyproject.toml" for p in _plugins()]:
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _run(cmd: list, **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def setup(quiet: bool = False) -> None:
    fp = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == fp and _bin("nasengine").exists():
        return
    if not _bin("python").exists():
        print(f"creating virtualenv {VENV}", flush=True)
        _run([sys.executable, "-m", "venv", VENV])
    py = _bin("python")
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    have_torch = subprocess.run([str(py), "-c", "import torch"], capture_output=True).returncode == 0
    if not have_torch:
        _run(pip + [TORCH_REQ])
    _run(pip + ["-e", f"{ROOT}[test]"] + [a for p in _plugins() for a in ("-e", _requirement(p))])
    STAMP.write_text(fp)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    cmd, rest = argv[0], argv[1:]
    try:
        setup()
    except subprocess.CalledProcessError as exc:
        print(f"dev.py: installing into {VENV} failed (exit {exc.returncode})", file=sys.stderr)
        return 1
    env = dict(os.environ)
    env["PATH"] = f"{_bin('python').parent}{os.pathsep}{env.get('PATH', '')}"
    if cmd == "setup":
        return 0
    if cmd == "main":
        return subprocess.run(MAIN_JOB + rest, env=env).returncode
    if cmd == "test":
        return subprocess.run([str(_bin("python")), "-m", "pytest", *rest], cwd=ROOT, env=env).returncode
    if cmd == "nasengine":
        return subprocess.run(["nasengine", *rest], env=env).returncode
    print(f"dev.py: unknown command {cmd!r} (use main, test, nasengine or setup)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
