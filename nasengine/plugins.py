"""The plugin manager: loads the built-in plugin and every ``nasengine`` entry point, fills the registries.

Core code never calls ``pm.hook.*`` directly; it asks :func:`get_plugins` for the typed facade and reads its
registries (``plugins.spaces.get("simple")``).

Environment switches:

* ``NASENGINE_DISABLE_PLUGIN_AUTOLOAD=1`` — load only the built-in plugin (and those named in
  ``NASENGINE_PLUGINS``, a comma-separated list of entry-point names).
* ``NASENGINE_TRACE_PLUGINS=1`` — print every hook call and registration to stderr.
* ``NASENGINE_PLUGINS_EXTRA=pkg.mod,...`` — also load these modules as plugins (no entry point needed).

A plugin that fails to import or to register is reported (a warning, ``nasengine plugins``) and skipped;
the others load normally.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
import traceback
import warnings
from typing import TYPE_CHECKING, Any, Callable

import attrs
import pluggy

from nasengine import hookspecs
from nasengine.registry import Accepts, Registry
from nasengine.options import validate_search_option

if TYPE_CHECKING:
    from nasengine.controller import Controller
    from nasengine.cost import CostModel
    from nasengine.evaluator import Evaluator
    from nasengine.executors import Executor
    from nasengine.layouts import WeightLayout
    from nasengine.method import Method
    from nasengine.ops import OpRegistry
    from nasengine.options import SearchOption
    from nasengine.reward import Reward
    from nasengine.space import SearchSpace

__all__ = ["Plugins", "PluginInfo", "get_plugins", "reset_plugins", "ENTRY_POINT_GROUP", "BUILTIN_PLUGINS"]

ENTRY_POINT_GROUP = "nasengine"
#: The engine's own implementations, registered through the same path as any plugin.
BUILTIN_PLUGINS = ("nasengine.builtin",)

#: hook name -> (registry attribute, role name used in messages)
ROLES = {
    "nasengine_register_ops": ("ops", "operation"),
    "nasengine_register_search_spaces": ("spaces", "search space"),
    "nasengine_register_controllers": ("controllers", "controller"),
    "nasengine_register_evaluators": ("evaluators", "evaluator"),
    "nasengine_register_cost_models": ("cost_models", "cost model"),
    "nasengine_register_rewards": ("rewards", "reward"),
    "nasengine_register_methods": ("methods", "method"),
    "nasengine_register_executors": ("executors", "executor"),
    "nasengine_register_models": ("models", "model"),
    "nasengine_register_architectures": ("architectures", "architecture"),
    "nasengine_register_search_options": ("search_options", "search option"),
    "nasengine_register_weight_layouts": ("weight_layouts", "weight layout"),
}

#: registry attribute -> what its role takes (checked when a plugin registers, so a wrong kind fails at load)
ACCEPTS = {
    "ops": Accepts.instance("nasengine.ops:OpSpec"),
    "spaces": Accepts.subclass("nasengine.space:SearchSpace"),
    "controllers": Accepts.subclass("nasengine.controller:Controller"),
    "evaluators": Accepts.subclass("nasengine.evaluator:Evaluator"),
    "cost_models": Accepts.subclass("nasengine.cost:CostModel"),
    "rewards": Accepts.factory(),
    "methods": Accepts.instance("nasengine.method:Method"),
    "executors": Accepts.subclass("nasengine.executors:Executor"),
    "models": Accepts.factory(),
    "architectures": Accepts.path(),
    "search_options": Accepts.instance("nasengine.options:SearchOption"),
    "weight_layouts": Accepts.subclass("nasengine.layouts:WeightLayout"),
}

#: registry attribute -> a further check every registered object must pass (``validate(name, obj)``)
_VALIDATORS = {"search_options": validate_search_option}


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@attrs.define
class PluginInfo:
    """One plugin: its name, distribution version, module, and the error that stopped it (if any)."""

    name: str
    version: str
    module: str
    error: str | None = None
    registered: dict[str, list[str]] = attrs.field(factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class Plugins:
    """Typed facade over the pluggy manager and the registries it fills."""

    # One registry per role (ROLES), made by _new_registries.
    ops: OpRegistry
    spaces: Registry[type[SearchSpace]]
    controllers: Registry[type[Controller]]
    evaluators: Registry[type[Evaluator]]
    cost_models: Registry[type[CostModel]]
    rewards: Registry[Callable[..., Reward]]
    methods: Registry[Method]
    executors: Registry[type[Executor]]
    models: Registry[Callable[..., Any]]
    architectures: Registry[str | os.PathLike]
    search_options: Registry[SearchOption]
    weight_layouts: Registry[type[WeightLayout]]

    def __init__(self, *, autoload: bool | None = None, extra: tuple = ()):
        self.pm = pluggy.PluginManager("nasengine")
        self.pm.add_hookspecs(hookspecs)
        self.trace = _truthy("NASENGINE_TRACE_PLUGINS")
        if self.trace:
            self.pm.trace.root.setwriter(lambda msg: sys.stderr.write(msg))
            self.pm.enable_tracing()
        self.info: dict[str, PluginInfo] = {}
        self._shared: dict[str, Any] = {}
        self._new_registries()
        if autoload is None:
            autoload = not _truthy("NASENGINE_DISABLE_PLUGIN_AUTOLOAD")
        self._load_builtin()
        self._load_entry_points(autoload)
        for obj in extra:
            # no distribution to ask (NASENGINE_PLUGINS_EXTRA, or an object): the module's own __version__, if any
            self._register(obj, getattr(obj, "__name__", repr(obj)), version=str(getattr(obj, "__version__", "")),
                           module=getattr(obj, "__name__", ""))
        self._check_pending()
        self._fill_registries()

    # ---- loading --------------------------------------------------------------------------------------
    def _register(self, plugin, name: str, version: str, module: str) -> None:
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # a plugin with a malformed hookimpl must not break the others
            self._failed(name, version, module, exc)
            return
        self.info[name] = PluginInfo(name, version, module)

    def _failed(self, name: str, version: str, module: str, exc: BaseException) -> None:
        err = f"{type(exc).__name__}: {exc}"
        self.info[name] = PluginInfo(name, version, module, error=err)
        warnings.warn(f"nasengine plugin {name!r} ({module}) failed and was skipped: {err}", RuntimeWarning,
                      stacklevel=3)
        if self.trace:
            traceback.print_exception(exc, file=sys.stderr)

    def _load_builtin(self) -> None:
        from nasengine import __version__

        for modname in BUILTIN_PLUGINS:
            self._register(importlib.import_module(modname), "builtin", __version__, modname)

    def _load_entry_points(self, autoload: bool) -> None:
        wanted = {n.strip() for n in os.environ.get("NASENGINE_PLUGINS", "").split(",") if n.strip()}
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if not autoload and ep.name not in wanted:
                continue
            if ep.name in self.info:
                continue
            version = getattr(ep.dist, "version", "") if getattr(ep, "dist", None) else ""
            try:
                plugin = ep.load()
            except Exception as exc:
                self._failed(ep.name, version, ep.value, exc)
                continue
            self._register(plugin, ep.name, version, ep.value)

    def _check_pending(self) -> None:
        """pluggy's ``check_pending``, but a plugin implementing a hook that does not exist (a misspelling) is
        reported and skipped like one that fails to import, with a hint at the closest real hook."""
        import difflib

        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                plugin = exc.plugin
                name = self.pm.get_name(plugin) or repr(plugin)
                info = self.info.get(name)
                self.pm.unregister(plugin)
                msg = str(exc)
                unknown = [h for h in dir(plugin) if h.startswith("nasengine_") and h not in ROLES]
                close = []
                if unknown:
                    tail = unknown[0].removeprefix("nasengine_register_")
                    close = [h for h in ROLES if tail and tail in h] or difflib.get_close_matches(unknown[0], list(ROLES), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self._failed(name, info.version if info else "", info.module if info else "",
                             pluggy.PluginValidationError(plugin, msg + hint))

    def _new_registries(self) -> None:
        from nasengine.ops import OpRegistry

        self.ops = OpRegistry()
        for attr, role in ROLES.values():
            if attr != "ops":
                setattr(self, attr, Registry(role, _VALIDATORS.get(attr), accepts=ACCEPTS[attr]))

    def _fill_registries(self) -> None:
        # A plugin that fails while registering is skipped entirely: the registries are filled again without
        # it, so nothing it registered before failing stays (at most one extra pass per failing plugin).
        while not self._fill_once():
            self._new_registries()

    def _fill_once(self) -> bool:
        for info in self.info.values():
            info.registered = {}
        for hook_name, (attr, _role) in ROLES.items():
            registry = getattr(self, attr)
            caller = getattr(self.pm.hook, hook_name)
            # Call each implementation on its own, in registration order (built-in first, then entry points
            # by name, then extras), so that the registry knows which plugin brought what, the first plugin
            # to claim a name keeps it, and one failing plugin does not stop the others.
            for impl in caller.get_hookimpls():
                name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
                info = self.info.get(name)
                if info is not None and info.error:
                    continue
                registry.current_plugin = name
                before = set(registry.names())
                if self.trace:
                    sys.stderr.write(f"nasengine: {hook_name} -> plugin {name}\n")
                try:
                    impl.function(**{arg: registry for arg in impl.argnames})
                except Exception as exc:
                    self._failed(name, info.version if info else "", info.module if info else "", exc)
                    registry.current_plugin = "unknown"
                    return False
                added = sorted(set(registry.names()) - before)
                if info is not None and added:
                    info.registered.setdefault(attr, []).extend(added)
            registry.current_plugin = "unknown"
        return True

    # ---- queries -------------------------------------------------------------------------------------
    def plugins(self) -> list[PluginInfo]:
        """Loaded (and failed) plugins, built-in first."""
        return sorted(self.info.values(), key=lambda p: (p.name != "builtin", p.name))

    def versions(self) -> dict[str, str]:
        """``{plugin: version}`` of the plugins that loaded (recorded with every run)."""
        return {p.name: p.version for p in self.plugins() if not p.error}

    def registry(self, attr: str) -> Registry:
        return getattr(self, attr)

    def shared(self, key: str, factory: Callable[[], Any]) -> Any:
        """The object ``factory()`` made the first time ``key`` is asked, kept as long as this facade: what
        library code derives from the registries and shares (the executors' cache of constructed evaluators),
        so that it lives and dies with the plugins it came from instead of in a module global."""
        if key not in self._shared:
            self._shared[key] = factory()
        return self._shared[key]


_PLUGINS: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin facade (loaded on first use).

    Modules named in ``NASENGINE_PLUGINS_EXTRA`` (comma-separated import paths) are loaded as extra plugins
    too: it reaches every process of a run (executor workers inherit the environment), which is how tests
    and scripts give worker processes a plugin that has no entry point. One that fails to import is reported
    and skipped.
    """
    global _PLUGINS
    if _PLUGINS is None:
        extra = []
        for modname in (m.strip() for m in os.environ.get("NASENGINE_PLUGINS_EXTRA", "").split(",")):
            if not modname:
                continue
            try:
                extra.append(importlib.import_module(modname))
            except Exception as exc:
                warnings.warn(f"nasengine plugin module {modname!r} (NASENGINE_PLUGINS_EXTRA) failed to import "
                              f"and was skipped: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
        # Installed before it loads: a plugin that builds a graph while it registers (default op registry)
        # gets this facade, with the ops registered so far, instead of loading the plugins again.
        _PLUGINS = Plugins.__new__(Plugins)
        try:
            _PLUGINS.__init__(extra=tuple(extra))
        except BaseException:
            _PLUGINS = None
            raise
    return _PLUGINS


def reset_plugins(plugins: Plugins | None = None) -> Plugins | None:
    """Forget the loaded plugins (tests), or install ``plugins`` as the process-wide facade; returns the
    facade installed before (to put it back)."""
    global _PLUGINS
    previous, _PLUGINS = _PLUGINS, plugins
    return previous
