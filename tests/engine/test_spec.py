"""The resolved run spec (nasengine.spec), the loop table of the run session, and the store-owned run lock."""
from __future__ import annotations

import attrs
import pytest

from nasengine.errors import ConfigError
from nasengine.search import LOOPS, Budget, RunLockedError, run_search
from nasengine.search.steady import SteadyLoop
from nasengine.spec import RoleSpec, RunSpec
from nasengine.store import ExperimentStore, RunLock

pytestmark = pytest.mark.usefixtures("fake_plugins")


def _cfg(plugins, overrides=None):
    return plugins.methods.get("fake").config(None, overrides)


def test_a_config_reads_as_one_frozen_spec(fake_plugins):
    cfg = _cfg(fake_plugins, {"reward": {"name": "objectives"}, "cost": {"model": "analytic"},
                              "executor": {"name": "inline", "device": "cpu", "workdirs": True, "threads": 1}})
    spec = RunSpec.from_config(fake_plugins, cfg, seed=7)
    assert (spec.method, spec.preset, spec.seed, spec.loop) == ("fake", "smoke", 7, "generational")
    assert spec.space == RoleSpec("fake-tiny", {}) and spec.controller == RoleSpec("fake-evo", {"population_size": 6})
    assert spec.reward.name == "objectives" and "name" not in spec.reward.options
    assert spec.cost == RoleSpec("analytic", {"lr_size": (32, 32)})
    assert spec.executor == RoleSpec("inline", {"threads": 1}) and (spec.device, spec.workdirs) == ("cpu", True)
    assert spec.budget == Budget(generations=4)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        spec.seed = 1
    with pytest.raises(TypeError):
        spec.controller.options["population_size"] = 2  # type: ignore[index]
    kwargs = spec.controller.kwargs()
    kwargs["population_size"] = 2  # a copy: the spec is unchanged
    assert spec.controller.options["population_size"] == 6


def test_unknown_sections_and_options_are_one_line_errors_naming_them(fake_plugins):
    with pytest.raises(ConfigError, match=r"^budgett: unknown config section; did you mean 'budget'\?") as exc:
        RunSpec.from_config(fake_plugins, {**_cfg(fake_plugins), "budgett": {"generations": 2}})
    assert "\n" not in str(exc.value)
    spec = RunSpec.from_config(fake_plugins, _cfg(fake_plugins, {"controller": {"populaton_size": 3}}))
    space, reward = spec.instantiate("space", fake_plugins), spec.instantiate("reward", fake_plugins)
    with pytest.raises(ConfigError, match=r"^controller.populaton_size: unknown option of .*'fake-evo'; "
                                          r"did you mean 'population_size'\?"):
        spec.instantiate("controller", fake_plugins, space, reward, seed=0)
    with pytest.raises(ConfigError, match="^space: must be a mapping"):
        RunSpec.from_config(fake_plugins, {**_cfg(fake_plugins), "space": 3})


def test_a_method_whose_loop_has_no_entry_is_refused_before_the_run_folder(fake_plugins, tmp_path, monkeypatch):
    # every loop a Method may name exists now; an engine without one (a loop removed) must still refuse cleanly
    monkeypatch.delitem(LOOPS, "differentiable")
    fake_plugins.methods.add("fake-diff", attrs.evolve(fake_plugins.methods.get("fake"), name="fake-diff",
                                                       loop="differentiable"))
    with pytest.raises(ConfigError, match=r"^method 'fake-diff' uses the differentiable loop, which this engine "
                                          r"does not have yet \(loops: generational, one-shot\)$"):
        run_search(tmp_path / "run", method="fake-diff", progress=False, plugins=fake_plugins)
    assert not (tmp_path / "run").exists()


def test_the_generational_loop_runs_a_controller_with_in_flight_steady_state():
    class Steady:
        in_flight = 2

    class Batch:
        in_flight = None

    assert LOOPS["generational"].for_controller(Steady()) is SteadyLoop
    assert LOOPS["generational"].for_controller(Batch()) is LOOPS["generational"]


def test_the_store_holds_the_run_lock_until_closed(tmp_path):
    run_search(tmp_path / "run", method="fake", overrides={"budget": {"generations": 1}}, progress=False)
    store = ExperimentStore.open(tmp_path / "run", lock=True)
    with pytest.raises(RunLockedError, match="pid"):
        ExperimentStore.open(tmp_path / "run", lock=True)
    ExperimentStore.open(tmp_path / "run").close()  # readers need no lock
    store.close()
    ExperimentStore.open(tmp_path / "run", lock=True).close()  # released with the store


def test_another_process_holding_the_lock_is_named(tmp_path):
    import subprocess
    import sys

    (tmp_path / "run").mkdir()
    code = ("import sys, time; from nasengine.store import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"being searched by another process \(pid {holder.pid}\)"):
            RunLock(tmp_path / "run").acquire()
    finally:
        holder.kill()
        holder.wait(10)
    with RunLock(tmp_path / "run"):  # the OS released the dead holder's lock
        pass
