"""Plugin-added ``search``/``resume`` options (``nasengine_register_search_options``) and executor overrides."""
from __future__ import annotations

import pytest

import nasengine
from nasengine.cli import EXIT_USAGE, build_parser, main
from nasengine.errors import ConfigError
from nasengine.options import SearchOption, search_option_overrides, validate_search_option
from nasengine.plugins import Plugins
from nasengine.search import apply_executor_args

ADDRESS = SearchOption(key="executor.address", executor="ray", help="the cluster", metavar="ADDR")
TIMEOUT = SearchOption(key="executor.task_timeout", type=float)
OTHER = SearchOption(key="executor.queue", executor="other")
OPTIONS = {"ray-address": ADDRESS, "task-timeout": TIMEOUT, "other-queue": OTHER}


def test_an_option_becomes_a_nested_override_and_selects_its_executor():
    overrides, executor = search_option_overrides(OPTIONS, {"ray-address": "head:6379", "task-timeout": None}, None)
    assert overrides == {"executor": {"address": "head:6379"}} and executor == "ray"
    overrides, executor = search_option_overrides(OPTIONS, {"task-timeout": 30.0}, None)
    assert overrides == {"executor": {"task_timeout": 30.0}} and executor is None
    assert search_option_overrides(OPTIONS, {"ray-address": "a:1"}, "ray")[1] == "ray"


def test_contradicting_executors_are_an_error_naming_the_option():
    with pytest.raises(ConfigError, match=r"--ray-address belongs to the 'ray' executor, not --executor process"):
        search_option_overrides(OPTIONS, {"ray-address": "a:1"}, "process")
    with pytest.raises(ConfigError, match=r"--other-queue \(other\), --ray-address \(ray\)"):
        search_option_overrides(OPTIONS, {"ray-address": "a:1", "other-queue": "q"}, None)


@pytest.mark.parametrize("name, obj, match", [
    ("Bad_Name", TIMEOUT, "lower-case"),
    ("seed", TIMEOUT, "CLI's own"),
    ("fine", SearchOption(key="nodots"), "dotted config path"),
    ("fine", object(), "must be a nasengine.options.SearchOption"),
])
def test_the_registry_rejects_bad_options_naming_them(name, obj, match):
    with pytest.raises(ConfigError, match=match):
        validate_search_option(name, obj)


def _options_plugin(registry):
    registry.add("queue-name", SearchOption(key="executor.queue", executor="inline", help="a queue"))


def test_a_plugin_option_appears_on_search_and_resume(monkeypatch, capsys):
    mod = type("M", (), {"nasengine_register_search_options": staticmethod(nasengine.hookimpl(_options_plugin))})
    monkeypatch.setenv("NASENGINE_PLUGINS", "")
    plugins = Plugins(autoload=False, extra=(mod,))
    entries = plugins.search_options.entries()
    assert {e.name for e in entries} >= {"queue-name", "task-timeout"}
    parser = build_parser(entries)
    args = parser.parse_args(["search", "simple", "--queue-name", "q1", "--task-timeout", "5"])
    assert args.plugin_option_queue_name == "q1" and args.plugin_option_task_timeout == 5.0
    args = parser.parse_args(["resume", "somewhere", "--queue-name", "q2"])
    assert args.plugin_option_queue_name == "q2"
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["search", "simple", "--task-timeout", "-1"])
    assert exc.value.code == EXIT_USAGE and "more than 0 seconds" in capsys.readouterr().err


def test_the_builtin_task_timeout_reaches_the_executor(capsys, tmp_path):
    # the inline executor has no timeout: its refusal proves the value got into the executor's options
    assert main(["search", "simple", "--task-timeout", "5", "--executor", "inline", "--out", str(tmp_path / "r")]) \
        == EXIT_USAGE
    assert "executor.task_timeout: unknown option of executor 'inline'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    with pytest.raises(SystemExit) as exc:
        main(["search", "simple", "--task-timeout", "0"])
    assert exc.value.code == EXIT_USAGE


def test_user_executor_options_survive_a_change_of_executor():
    cfg = {"executor": {"name": "process", "workers": 2, "start_method": "spawn", "task_timeout": 9}}
    # the preset's options of another executor go, what the user set explicitly stays
    out = apply_executor_args(cfg, "ray", None, {"executor": {"task_timeout": 9}})
    assert out["executor"] == {"name": "ray", "workers": 2, "task_timeout": 9}
    out = apply_executor_args(cfg, "ray", 3, None)
    assert out["executor"] == {"name": "ray", "workers": 3}
    assert apply_executor_args(cfg, None, None, None)["executor"] == cfg["executor"]


def test_swapping_the_controller_drops_the_presets_options_of_the_old_one():
    from nasengine.method import Method

    m = Method(name="t", space="simple", controller="nsga2", evaluator="sr-train",
               presets={"p": {"controller": {"population_size": 6, "crossover_prob": 0.7},
                              "evaluator": {"steps": 5}}}, default_preset="p")
    assert m.config("p")["controller"] == {"population_size": 6, "crossover_prob": 0.7}
    cfg = m.config("p", {"controller": {"name": "evolution", "tournament_size": 3}})
    assert cfg["controller"] == {"population_size": 6, "name": "evolution", "tournament_size": 3}
    # naming the same controller keeps everything
    assert m.config("p", {"controller": {"name": "nsga2"}})["controller"]["crossover_prob"] == 0.7
    assert m.config("p", {"evaluator": {"name": "other"}})["evaluator"] == {"name": "other"}


def test_a_plugin_registering_a_bad_option_is_reported_and_skipped(monkeypatch):
    def bad(registry):
        registry.add("seed", SearchOption(key="executor.seed"))

    mod = type("BadOptions", (), {"nasengine_register_search_options": staticmethod(nasengine.hookimpl(bad))})
    monkeypatch.setenv("NASENGINE_PLUGINS", "")
    with pytest.warns(RuntimeWarning):
        plugins = Plugins(autoload=False, extra=(mod,))
    assert "seed" not in plugins.search_options and "task-timeout" in plugins.search_options
    assert any("CLI's own" in (p.error or "") for p in plugins.plugins())
