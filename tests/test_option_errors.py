"""Every misspelt or ill-typed ``--set ROLE.KEY`` of every registered method and role is one line on stderr,
exit code 2, and no run folder (issue 10 item 3). The errors happen before any training."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nasengine.cli import EXIT_USAGE, main
from nasengine.options import method_options
from nasengine.plugins import get_plugins

PLUGINS = get_plugins()
METHODS = [name for name in PLUGINS.methods.names() if PLUGINS.methods.get(name).loop == "generational"]
ROLES = ("space", "controller", "evaluator", "reward", "cost", "executor")
#: an option each role's base class checks, for implementations that declare none (signature fallback)
CHECKED_BY_THE_ROLE = {"controller": "population_size", "evaluator": "steps", "executor": "workers"}
#: options the run reads from the section itself (not the implementation's)
GENERIC = {"executor": {"device", "workdirs"}}


def _run(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def _ill_typed_key(method: str, role: str) -> str | None:
    """A real option of ``role`` in ``method``'s default preset that must refuse a nested list."""
    entry = next(r for r in method_options(PLUGINS, PLUGINS.methods.get(method)) if r["role"] == role)
    factory = {"space": PLUGINS.spaces, "controller": PLUGINS.controllers, "evaluator": PLUGINS.evaluators,
               "reward": PLUGINS.rewards, "cost": PLUGINS.cost_models,
               "executor": PLUGINS.executors}[role].get(entry["name"])
    from nasengine.options import options_class

    if options_class(factory) is not None:
        declared = [o["name"] for o in entry["options"] if o["type"] != "any value"
                    and o["name"] not in GENERIC.get(role, ()) and o["name"] != "workers"]
        return declared[0] if declared else None
    return CHECKED_BY_THE_ROLE.get(role)


CASES = [(m, r, "bogus_key", "1") for m in METHODS for r in ROLES]
CASES += [(m, r, key, "[[[]]]") for m in METHODS for r in ROLES if (key := _ill_typed_key(m, r))]


@pytest.mark.parametrize("method, role, key, value", CASES)
def test_a_bad_option_is_one_line_and_exit_2(capsys, tmp_path, method, role, key, value):
    out = tmp_path / "run"
    code, err = _run(capsys, ["search", method, "--preset", "smoke", "--out", str(out), "-q",
                              "--set", f"{role}.{key}={value}"])
    assert code == EXIT_USAGE, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"{role}.{key}:" in lines[0], err
    if key == "bogus_key":
        assert "unknown option" in lines[0] and "known:" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("setting, expected", [
    ("space.depthh=3", "space.depthh: unknown option of search space 'simple'"),
    ("reward.objectivs=[]", "reward.objectivs: unknown option of reward 'objectives'; did you mean 'objectives'?"),
    ("controller.name=example-hill-climber", None),
])
def test_the_issue_cases_from_the_shell(tmp_path, setting, expected):
    """The command itself (a fresh process): exit code 2 and one line, no traceback."""
    argv = ["search", "simple", "--out", str(tmp_path / "run"), "-q", "--set", setting]
    if expected is None:  # a controller with explicit keyword arguments does not take in_flight
        argv += ["--set", "controller.in_flight=2"]
        expected = "controller.in_flight: unknown option of controller 'example-hill-climber'; known: population_size"
    nasengine_bin = Path(sys.executable).with_name("nasengine")
    proc = subprocess.run([str(nasengine_bin), *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_an_ill_typed_budget_count_is_one_line(capsys, tmp_path):
    out = tmp_path / "run"
    code, err = _run(capsys, ["search", "simple", "--out", str(out), "-q", "--set", "budget.generations=x"])
    assert code == EXIT_USAGE and err.strip().splitlines() == [
        "nasengine search: error: budget.generations: must be none or a whole number >= 1, got 'x'"]
    assert not out.exists()


# --- issue 11 item 2: every section, the executor section's own keys, with and without --plan, and resume ---
from tests.engine.conftest import fake_plugins  # noqa: E402,F401  (the fixture, for the resume cases)

SECTION_CASES = [
    ("budgett.generations=1", "budgett: unknown config section; did you mean 'budget'?"),
    ("bogus.key=1", "bogus: unknown config section; known:"),
    ('budget.generations="three"', "budget.generations: must be none or a whole number >= 1, got 'three'"),
    ("executor.device=3", 'executor.device: must be "cpu", "cuda", "cuda:N", "mps" or "auto", got 3'),
    ("executor.device=gpu", "executor.device: must be"),
    ("executor.workdirs=x", "executor.workdirs: must be true or false, got 'x'"),
    ("executor.devise=cpu", "executor.devise: unknown option of executor 'process'; did you mean 'device'?"),
    ("executor.workers=x", "executor.workers: must be none or a whole number >= 1, got 'x'"),
    ("cost.lr_size=x", "cost.lr_size: must be a list of 2, each a whole number >= 1, got 'x'"),
    ("method.x=1", "method: not a section to override (the command names it: nasengine search METHOD)"),
    ("preset=full", "preset: not a section to override (choose it with --preset)"),
]


@pytest.mark.parametrize("plan", [False, True], ids=["run", "plan"])
@pytest.mark.parametrize("setting, expected", SECTION_CASES)
def test_a_bad_section_key_or_value_is_one_line_before_any_run_folder(capsys, tmp_path, setting, expected, plan):
    out = tmp_path / "run"
    code, err = _run(capsys, ["search", "simple", "--out", str(out), "-q", "--set", setting]
                     + (["--plan"] if plan else []))
    assert code == EXIT_USAGE, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert expected in lines[0], err
    assert not out.exists()


def test_the_executor_section_keys_are_listed_with_the_executor_options(capsys, tmp_path):
    code, err = _run(capsys, ["search", "simple", "--out", str(tmp_path / "run"), "-q", "--plan",
                              "--executor", "inline", "--set", "executor.bogus=1"])
    assert code == EXIT_USAGE
    assert err.strip().endswith("known: device, threads, workdirs, workers"), err


@pytest.fixture
def fake_run(tmp_path, capsys, fake_plugins):
    run = tmp_path / "run"
    code, err = _run(capsys, ["search", "fake", "--out", str(run), "-q", "--executor", "inline",
                              "--set", "budget.generations=1"])
    assert code == 0, err
    return run


@pytest.mark.parametrize("setting, expected", [
    ("budgett.generations=1", "budgett: a resume may only change budget, executor; did you mean 'budget'?"),
    ("bogus.key=1", "bogus: a resume may only change budget, executor"),
    ("space.depth=3", "space: a resume may only change budget, executor"),
    ('budget.generations="three"', "budget.generations: must be none or a whole number >= 1, got 'three'"),
    ("budget.generationz=3", "budget.generationz: unknown option of budget 'budget'; did you mean 'generations'?"),
    ("executor.device=3", 'executor.device: must be "cpu", "cuda", "cuda:N", "mps" or "auto", got 3'),
    ("executor.workdirs=x", "executor.workdirs: must be true or false, got 'x'"),
    ("executor.devise=cpu", "executor.devise: unknown option of executor 'inline'; did you mean 'device'?"),
])
def test_a_bad_resume_setting_is_one_line_and_changes_nothing(capsys, fake_run, setting, expected):
    from nasengine.store import ExperimentStore

    with ExperimentStore.open(fake_run) as store:
        before = (store.run.status, store.run.config, len(store.candidates()))
    code, err = _run(capsys, ["resume", str(fake_run), "-q", "--set", "budget.generations=2", "--set", setting])
    assert code == EXIT_USAGE, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and expected in lines[0], err
    with ExperimentStore.open(fake_run) as store:
        assert (store.run.status, store.run.config, len(store.candidates())) == before
