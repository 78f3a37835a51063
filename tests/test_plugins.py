"""The plugin contract: discovery through the ``nasengine`` entry-point group, failure isolation, registry
errors, the environment switches, ``check_pending``, and a meta-test that every hook is documented,
implemented and tested (datasette's ``tests/test_docs.py``).

The example third-party plugin ``tests/plugins/nasengine-example`` is installed (editable) into the project
venv by ``dev.py``; by hand: ``.venv/bin/pip install -e tests/plugins/nasengine-example``.
"""
from __future__ import annotations

import importlib.metadata as md
import inspect
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pluggy
import pytest

import nasengine
from nasengine import hookspecs
from nasengine.controller import Result
from nasengine.controllers import BUILTIN_CONTROLLERS
from nasengine.genomefile import genome_document, load_architecture
from nasengine.plugins import ROLES, Plugins
from nasengine.registry import UnknownNameError
from nasengine.reward import Reward
from nasengine.spaces import SimpleSpace
from nasengine.testing import ControllerContract

REPO = Path(__file__).resolve().parents[1]
NASENGINE = Path(sys.executable).with_name("nasengine")
ENV_SWITCHES = ("NASENGINE_DISABLE_PLUGIN_AUTOLOAD", "NASENGINE_TRACE_PLUGINS", "NASENGINE_PLUGINS",
                "NASENGINE_PLUGINS_EXTRA")
EXAMPLE_CONTROLLER = "example-hill-climber"


# ---- helpers ----------------------------------------------------------------------------------------------------
def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    """Run the console script with the plugin switches cleared, then set to ``env``."""
    full = {k: v for k, v in os.environ.items() if k not in ENV_SWITCHES}
    full.update(env)
    return subprocess.run([str(NASENGINE), *args], capture_output=True, text=True, env=full, timeout=120)


def load(monkeypatch, *, entry_points: str = "example", extra: tuple = ()) -> Plugins:
    """Plugins made of the built-in one, the named entry points (no autoloading, so other installed plugins
    cannot interfere) and ``extra`` plugin objects."""
    for name in ENV_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NASENGINE_PLUGINS", entry_points)
    return Plugins(autoload=False, extra=extra)


def plugin_module(name: str, **hooks) -> types.ModuleType:
    """A plugin module made on the fly: ``hooks`` maps hook names to functions of ``registry``."""
    mod = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(mod, hook_name, nasengine.hookimpl(fn))
    return mod


def infos(plugins: Plugins) -> dict:
    return {p.name: p for p in plugins.plugins()}


def broken_distribution(root: Path) -> Path:
    """A folder to put on ``sys.path`` holding an installed distribution ``nasengine-broken`` 0.0.1 whose
    ``nasengine`` entry point ``broken`` names a module that raises on import."""
    (root / "broken_plugin.py").write_text("import nasengine_no_such_dependency  # noqa: F401\n")
    dist = root / "nasengine_broken-0.0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nasengine-broken\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text("[nasengine]\nbroken = broken_plugin\n")
    return root


class ArchitecturesPlugin:
    """Test plugin for the ``architectures`` role: one named genome file of the ``simple`` space."""

    def __init__(self, folder: Path):
        self.__name__ = "architectures-test"
        self.path = folder / "tiny.json"
        space = SimpleSpace(scale=2, channels="y")
        genome = space.sample(np.random.default_rng(0))
        doc = genome_document("simple", {"scale": 2, "channels": "y"}, space.to_json(genome), name="tiny")
        self.path.write_text(json.dumps(doc))

    @nasengine.hookimpl
    def nasengine_register_architectures(self, registry):
        registry.add("test:tiny", str(self.path))


#: Plugins whose hook implementations count for the meta-test (besides the built-in plugin).
TEST_PLUGINS = (ArchitecturesPlugin,)


@pytest.fixture(scope="module")
def example_module():
    try:
        import nasengine_example
    except ImportError:
        pytest.fail("the example plugin is not installed: run `python3 dev.py setup` "
                    "(or .venv/bin/pip install -e tests/plugins/nasengine-example)")
    return nasengine_example


# ---- the example plugin, found through its entry point ------------------------------------------------------------
def test_example_plugin_has_an_entry_point_in_the_nasengine_group(example_module):
    eps = [ep for ep in md.entry_points(group="nasengine") if ep.name == "example"]
    assert len(eps) == 1
    assert eps[0].value == "nasengine_example"
    assert eps[0].dist.version == md.version("nasengine-example") == example_module.__version__


def test_nasengine_plugins_lists_the_example_with_its_version_and_registrations(example_module):
    version = md.version("nasengine-example")
    proc = cli("plugins")
    lines = proc.stdout.splitlines()
    header = f"example {version}  (nasengine_example)"
    assert header in lines, proc.stdout + proc.stderr
    block = lines[lines.index(header) + 1:]
    block = block[: next((i for i, line in enumerate(block) if not line.startswith("    ")), len(block))]
    assert [line.split() for line in block] == [["controllers", EXAMPLE_CONTROLLER], ["methods", "example"]]

    proc = cli("plugins", "--json")
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert rows["example"] == {"name": "example", "version": version, "module": "nasengine_example", "error": None,
                               "registered": {"controllers": [EXAMPLE_CONTROLLER], "methods": ["example"]}}
    assert rows["builtin"]["error"] is None


def test_example_method_and_controller_are_registered_by_the_example_plugin(monkeypatch, example_module):
    plugins = load(monkeypatch)
    assert plugins.controllers.entry(EXAMPLE_CONTROLLER).plugin == "example"
    assert plugins.controllers.get(EXAMPLE_CONTROLLER) is example_module.HillClimber
    method = plugins.methods.get("example")
    assert (method.space, method.controller, method.evaluator) == ("simple", EXAMPLE_CONTROLLER, "sr-train")
    cfg = method.config("smoke")
    # The preset the end-to-end CLI test runs must stay tiny: 2 generations x 3 candidates, 30 steps, inline.
    assert cfg["budget"] == {"generations": 2}
    assert cfg["controller"]["population_size"] == 3
    assert cfg["evaluator"]["steps"] == 30
    assert cfg["executor"] == {"name": "inline", "threads": 1}
    assert plugins.versions()["example"] == md.version("nasengine-example")


def test_example_plugin_source_is_short_and_imports_nothing_private(example_module):
    source = Path(example_module.__file__).read_text()
    assert len(source.splitlines()) < 100
    imports = [line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert [m for m in imports if m.startswith("nasengine") and "._" in m] == []


# ---- a generic controller check (built-in controllers and the example's) ----------------------------------------
REWARD = Reward.from_config([["psnr", "max"], ["params", "min"]])


def synthetic_result(space: SimpleSpace, genome, i: int) -> Result:
    """A cheap deterministic stand-in for an evaluation; every 7th candidate fails."""
    key = space.genome_key(genome)
    if i % 7 == 3:
        return Result(genome=genome, key=key, status="failed")
    params = float(sum(layer.kernel ** 2 * layer.width for layer in genome.layers))
    psnr = 30.0 + math.log(params) + 0.5 * genome.residual - 0.3 * (genome.upsampler == "deconv")
    metrics = {"psnr": psnr, "params": params}
    return Result(genome=genome, key=key, status="ok", metrics=metrics, objectives=tuple(REWARD.vector(metrics)),
                  violation=0.0, reward=REWARD.scalar(metrics))


def step(controller, space, counter: list) -> list:
    """One generation: ask, check each genome is valid and survives JSON, tell synthetic results."""
    genomes = controller.ask()
    assert len(genomes) == controller.population_size
    results = []
    for genome in genomes:
        space.validate(genome)
        assert space.from_json(json.loads(json.dumps(space.to_json(genome)))) == genome
        results.append(synthetic_result(space, genome, counter[0]))
        counter[0] += 1
    controller.tell(results)
    return results


class TestExampleControllerContract(ControllerContract):
    """The example's controller, as the registry gives it, passes the engine's controller contract (the
    built-in controllers: tests/engine/test_controllers.py; every registered one: tests/test_registered.py)."""

    def make_space(self):
        return SimpleSpace(scale=2, channels="y", max_depth=4)

    @pytest.fixture
    def new_controller(self, monkeypatch, example_module):
        cls = load(monkeypatch).controllers.get(EXAMPLE_CONTROLLER)
        assert cls is example_module.HillClimber
        return lambda space, reward, seed: cls(space, reward, seed=seed, population_size=4)


def test_hill_climber_keeps_the_best_ok_genome_by_scalar_reward(example_module):
    space = SimpleSpace(scale=2, channels="y", max_depth=4)
    ctl = example_module.HillClimber(space, REWARD, seed=0, population_size=5)
    told = []
    counter = [0]
    for _ in range(4):
        told += step(ctl, space, counter)
    ok = [r for r in told if r.ok]
    best = max(ok, key=lambda r: r.reward)
    assert ctl.best == space.to_json(best.genome) and ctl.best_score == best.reward
    # Failed results and worse ones never replace the incumbent.
    worse = Result(genome=space.sample(ctl.rng), key="x", status="ok", metrics={"psnr": 0.0, "params": 1.0},
                   reward=best.reward - 1)
    ctl.tell([worse, Result(genome=worse.genome, key="y", status="failed")])
    assert ctl.best == space.to_json(best.genome)


# ---- failures are reported and skipped ------------------------------------------------------------------------
def test_a_plugin_that_fails_to_import_is_reported_and_skipped(monkeypatch, tmp_path, example_module):
    monkeypatch.syspath_prepend(str(broken_distribution(tmp_path)))
    with pytest.warns(RuntimeWarning, match="'broken'.*failed and was skipped.*nasengine_no_such_dependency"):
        plugins = load(monkeypatch, entry_points="broken,example")
    info = infos(plugins)
    assert info["broken"].version == "0.0.1"
    assert info["broken"].module == "broken_plugin"
    assert "ModuleNotFoundError" in info["broken"].error
    assert info["builtin"].error is None and info["example"].error is None
    assert EXAMPLE_CONTROLLER in plugins.controllers and "nsga2" in plugins.controllers
    assert "broken" not in plugins.versions()


def test_nasengine_plugins_shows_a_broken_plugin_as_failed_and_exits_1(tmp_path, example_module):
    site = broken_distribution(tmp_path)
    proc = cli("plugins", PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    broken = [line for line in lines if line.startswith("broken ")]
    assert len(broken) == 1 and "0.0.1" in broken[0] and "FAILED: ModuleNotFoundError" in broken[0]
    assert "nasengine_no_such_dependency" in broken[0]
    for name in ("builtin", "example"):  # the others still load
        line = next(line for line in lines if line.startswith(f"{name} "))
        assert "FAILED" not in line
    assert EXAMPLE_CONTROLLER in proc.stdout


def _raising_controllers(registry):
    raise RuntimeError("boom while registering controllers")


def _space_then_ok(registry):
    registry.add("raising-space", SimpleSpace)


def _never_called(registry):
    registry.add("raising-method", object())


def raising_plugin() -> types.ModuleType:
    """Registers a space, then raises in its controllers hook; its methods hook comes after that."""
    return plugin_module("raising", nasengine_register_search_spaces=_space_then_ok,
                         nasengine_register_controllers=_raising_controllers,
                         nasengine_register_methods=_never_called)


def test_a_plugin_whose_hook_raises_is_reported_and_skipped(monkeypatch, example_module):
    with pytest.warns(RuntimeWarning, match="'raising'.*failed and was skipped.*boom while registering"):
        plugins = load(monkeypatch, extra=(raising_plugin(),))
    info = infos(plugins)
    assert info["raising"].error == "RuntimeError: boom while registering controllers"
    assert info["builtin"].error is None and info["example"].error is None
    assert "raising-method" not in plugins.methods  # hooks after the failing one are not called
    assert {"random", "evolution", "nsga2", EXAMPLE_CONTROLLER} <= set(plugins.controllers.names())
    assert {"simple", "example"} <= set(plugins.methods.names())
    assert "raising" not in plugins.versions()


def test_a_skipped_plugin_leaves_nothing_registered(monkeypatch, example_module):
    """Skipped means skipped: what the plugin registered before its failing hook is withdrawn too (a method
    whose controller never registered must not stay half-usable)."""
    with pytest.warns(RuntimeWarning):
        plugins = load(monkeypatch, extra=(raising_plugin(),))
    assert "raising-space" not in plugins.spaces
    assert infos(plugins)["raising"].registered == {}


def _dup_random(registry):
    registry.add("random", object)


def _dup_example(registry):
    registry.add(EXAMPLE_CONTROLLER, object)


def test_duplicate_names_across_plugins_fail_the_later_plugin_naming_both(monkeypatch, example_module):
    """Plugins register in load order (built-in, entry points, extras): the first comes first, the later one
    gets the error naming both plugins and is skipped; the built-in plugin can never be knocked out."""
    dup = plugin_module("dup", nasengine_register_controllers=_dup_random)
    copycat = plugin_module("copycat", nasengine_register_controllers=_dup_example)
    with pytest.warns(RuntimeWarning, match="registered twice"):
        plugins = load(monkeypatch, extra=(dup, copycat))
    info = infos(plugins)
    assert info["builtin"].error is None and info["example"].error is None
    assert info["dup"].error == ("DuplicateNameError: controller 'random' is registered twice: "
                                 "by plugin 'builtin' and by plugin 'dup'")
    assert info["copycat"].error == (f"DuplicateNameError: controller {EXAMPLE_CONTROLLER!r} is registered "
                                     "twice: by plugin 'example' and by plugin 'copycat'")
    assert plugins.controllers.entry("random").plugin == "builtin"
    assert plugins.controllers.entry(EXAMPLE_CONTROLLER).plugin == "example"
    assert "simple" in plugins.methods and "sr-train" in plugins.evaluators


def test_unknown_names_list_the_known_ones_with_their_plugin(monkeypatch, example_module):
    plugins = load(monkeypatch)
    with pytest.raises(UnknownNameError) as err:
        plugins.controllers.get("hill-climber")
    message = str(err.value)
    assert message.startswith("unknown controller 'hill-climber'")
    for name in BUILTIN_CONTROLLERS:
        assert f"{name} (from builtin)" in message
    assert f"{EXAMPLE_CONTROLLER} (from example)" in message
    with pytest.raises(UnknownNameError, match="did you mean 'example'.*example \\(from example\\)"):
        plugins.methods.get("exampel")


# ---- environment switches ------------------------------------------------------------------------------------
def test_disable_autoload_loads_only_the_builtin_plugin(example_module):
    proc = cli("plugins", "--json", NASENGINE_DISABLE_PLUGIN_AUTOLOAD="1")
    assert proc.returncode == 0, proc.stderr
    assert [row["name"] for row in json.loads(proc.stdout)] == ["builtin"]


def test_disable_autoload_still_loads_the_entry_points_named_in_nasengine_plugins(monkeypatch, example_module):
    monkeypatch.setenv("NASENGINE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("NASENGINE_PLUGINS", "example")
    assert [p.name for p in Plugins().plugins()] == ["builtin", "example"]
    monkeypatch.delenv("NASENGINE_PLUGINS")
    assert [p.name for p in Plugins().plugins()] == ["builtin"]


def test_trace_prints_hook_calls_to_stderr(monkeypatch, capsys, example_module):
    monkeypatch.setenv("NASENGINE_TRACE_PLUGINS", "1")
    monkeypatch.setenv("NASENGINE_PLUGINS", "example")
    Plugins(autoload=False)
    err = capsys.readouterr().err
    builtin_hooks = set(ROLES) - {"nasengine_register_architectures"}  # the built-in plugin ships no named models
    for hook in sorted(builtin_hooks):
        assert f"{hook} -> plugin builtin" in err
    assert "nasengine_register_controllers -> plugin example" in err
    assert "nasengine_register_methods -> plugin example" in err

    monkeypatch.delenv("NASENGINE_TRACE_PLUGINS")
    Plugins(autoload=False)
    assert capsys.readouterr().err == ""


# ---- registries check the kind of what a plugin registers ---------------------------------------------------------
#: hook -> something of the wrong kind for its role (a number, a string, an instance where a class is expected)
WRONG_KINDS = {
    "nasengine_register_ops": 42,
    "nasengine_register_search_spaces": 42,
    "nasengine_register_controllers": "not a controller",
    "nasengine_register_evaluators": "sr-train",
    "nasengine_register_cost_models": SimpleSpace,  # a class, but of another role
    "nasengine_register_rewards": 3.5,
    "nasengine_register_methods": SimpleSpace,
    "nasengine_register_executors": object(),
    "nasengine_register_models": "bicubic",
    "nasengine_register_architectures": 7,
    "nasengine_register_search_options": {"key": "executor.x"},
    "nasengine_register_weight_layouts": "per_slot",
}


def test_every_role_has_a_wrong_kind_case():
    assert set(WRONG_KINDS) == set(ROLES)


@pytest.mark.parametrize("hook", sorted(WRONG_KINDS))
def test_registering_the_wrong_kind_fails_at_plugin_load_naming_the_plugin_and_the_role(monkeypatch, hook):
    attr, role = ROLES[hook]
    bad = WRONG_KINDS[hook]

    def register(registry):
        if hook == "nasengine_register_ops":
            registry.add(bad)
        else:
            registry.add("wrong-kind", bad)

    plugin = plugin_module("wrongkind", **{hook: register})
    with pytest.warns(RuntimeWarning, match="'wrongkind'.*failed and was skipped"):
        plugins = load(monkeypatch, entry_points="", extra=(plugin,))
    error = infos(plugins)["wrongkind"].error
    assert error.startswith("RegistrationError: plugin 'wrongkind' registered ")
    assert f" as {role}" in error or f" as an {role}" in error
    assert "expected " in error
    assert "wrong-kind" not in plugins.registry(attr) and infos(plugins)["builtin"].error is None


def test_the_right_kind_registers_through_a_plugin(monkeypatch):
    """The check is not a wall: a factory function for a factory role and a role subclass are taken."""
    from nasengine.controllers.random_search import RandomSearch

    class Mine(RandomSearch):
        """my controller"""

    def controllers(registry):
        registry.add("mine", Mine)

    def rewards(registry):
        registry.add("mine", lambda **options: Reward.from_config(**options))

    plugin = plugin_module("rightkind", nasengine_register_controllers=controllers,
                           nasengine_register_rewards=rewards)
    plugins = load(monkeypatch, entry_points="", extra=(plugin,))
    assert infos(plugins)["rightkind"].error is None
    assert plugins.controllers.get("mine") is Mine and plugins.controllers.entry("mine").description == "my controller"
    assert "mine" in plugins.rewards


def test_op_registry_is_a_registry():
    from nasengine.ops import OpCost, OpRegistry, OpSpec, builtin_registry
    from nasengine.registry import Registry

    reg = builtin_registry()
    assert isinstance(reg, OpRegistry) and isinstance(reg, Registry)
    assert reg.entry("conv").plugin == "builtin" and reg.plugin_of("conv") == "builtin"
    assert reg.entry("conv").description  # the op's doc, first line
    twin = reg.copy()
    twin.add(OpSpec("twin_only", 1, {}, lambda a, ins: ins[0], lambda a, ins: None, lambda a, ins, out: OpCost()),
             plugin="mine")
    assert "twin_only" in twin and "twin_only" not in reg and twin.plugin_of("twin_only") == "mine"
    assert isinstance(twin, OpRegistry) and len(twin) == len(reg) + 1


# ---- check_pending ---------------------------------------------------------------------------------------------
def _typo(registry):
    registry.add("never", object)


def test_check_pending_rejects_a_misspelled_hook_naming_it_and_the_plugin(monkeypatch):
    typo = plugin_module("typo_plugin", nasengine_register_spaces=_typo)
    with pytest.warns(RuntimeWarning, match="typo_plugin"):
        plugins = load(monkeypatch, entry_points="", extra=(typo,))
    error = infos(plugins)["typo_plugin"].error
    assert "unknown hook 'nasengine_register_spaces'" in error
    assert "did you mean 'nasengine_register_search_spaces'" in error
    assert "simple" in plugins.spaces and "never" not in plugins.spaces  # the others load, the typo is skipped


# ---- the architectures role (implemented by a test plugin) --------------------------------------------------------
def test_a_registered_architecture_resolves_by_name(monkeypatch, tmp_path):
    plugins = load(monkeypatch, entry_points="", extra=(ArchitecturesPlugin(tmp_path),))
    assert plugins.architectures.entry("test:tiny").plugin == "architectures-test"
    assert infos(plugins)["architectures-test"].registered == {"architectures": ["test:tiny"]}
    arch = load_architecture("test:tiny", plugins=plugins)
    assert arch.space_name == "simple" and arch.graph.scale == 2


# ---- meta-test: every hook documented, in ROLES, implemented, in the README (STYLE 13) --------------------------
HOOKS = sorted(name for name, obj in vars(hookspecs).items() if hasattr(obj, "nasengine_spec"))


def test_there_are_hooks():
    assert len(HOOKS) >= 10 and set(HOOKS) == set(ROLES)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_and_implemented(hook, example_module):
    import nasengine.builtin

    fn = getattr(hookspecs, hook)
    assert hook.startswith("nasengine_")
    assert (fn.__doc__ or "").strip(), f"{hook} has no docstring"
    assert list(inspect.signature(fn).parameters) == ["registry"]
    assert hook in hookspecs.__all__
    assert hook in ROLES
    implementers = [nasengine.builtin, example_module, *TEST_PLUGINS]
    assert any(hasattr(getattr(p, hook, None), "nasengine_impl") for p in implementers), \
        f"{hook} is implemented neither by the built-in plugin nor by a test plugin"


def test_every_hook_is_mentioned_in_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert [hook for hook in HOOKS if hook not in readme] == [], "hooks missing from README.md's plugin section"


def test_every_role_has_a_registry_on_the_facade(monkeypatch):
    plugins = load(monkeypatch, entry_points="")
    for hook, (attr, role) in ROLES.items():
        registry = plugins.registry(attr)
        assert getattr(registry, "kind", role) == role
