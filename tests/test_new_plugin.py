"""`nasengine new-plugin`: a plugin package scaffolded from the templates shipped in the wheel (issue 11 item 10)."""
from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nasengine.cli import EXIT_OK, EXIT_USAGE, main
from nasengine.scaffold import plugin_names

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "nasengine" / "templates"


def _env(package: Path, module: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NASENGINE_PLUGINS", "NASENGINE_DISABLE_PLUGIN_AUTOLOAD")}
    env["PYTHONPATH"] = os.pathsep.join([str(package), str(REPO), env.get("PYTHONPATH", "")])
    env["NASENGINE_PLUGINS_EXTRA"] = module
    return env


def test_scaffolded_plugin_loads_and_its_tests_pass(tmp_path):
    done = subprocess.run([sys.executable, "-m", "nasengine", "new-plugin", "my-nas", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=_env(tmp_path, ""))
    assert done.returncode == EXIT_OK, done.stderr
    package = tmp_path / "nasengine-my-nas"
    assert f"wrote {package / 'pyproject.toml'}" in done.stdout
    pyproject = (package / "pyproject.toml").read_text()
    assert 'name = "nasengine-my-nas"' in pyproject
    assert '[project.entry-points.nasengine]\nmy-nas = "nasengine_my_nas"\n' in pyproject
    env = _env(package, "nasengine_my_nas")
    listed = subprocess.run([sys.executable, "-m", "nasengine", "plugins"], capture_output=True, text=True,
                            timeout=120, env=env)
    assert listed.returncode == EXIT_OK, listed.stdout + listed.stderr
    assert "my-nas-elite-mutation" in listed.stdout
    assert "nasengine_my_nas 0.1.0  (nasengine_my_nas)" in listed.stdout  # no distribution: the module's version
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                           cwd=package, capture_output=True, text=True, timeout=600, env=env)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout


def test_templates_are_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["nasengine"]
    files = [p.relative_to(REPO / "nasengine").as_posix() for p in TEMPLATES.rglob("*") if p.is_file()]
    assert files and all(any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in data)
                         for f in files)


def test_names():
    assert plugin_names("my-nas") == {"name": "my-nas", "dist": "nasengine-my-nas", "module": "nasengine_my_nas"}
    assert plugin_names("nasengine-abc2")["module"] == "nasengine_abc2"


@pytest.mark.parametrize("name", ["My-Nas", "my_nas", "1nas", "my--nas", "nas-", ""])
def test_bad_name_is_one_line_exit_2(name, tmp_path, capsys):
    assert main(["new-plugin", name, "--dir", str(tmp_path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"plugin name {name!r}" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "nasengine-abc").mkdir()
    (tmp_path / "nasengine-abc" / "keep.txt").write_text("mine")
    assert main(["new-plugin", "abc", "--dir", str(tmp_path)]) == EXIT_USAGE
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "nasengine-abc").iterdir()] == ["keep.txt"]
