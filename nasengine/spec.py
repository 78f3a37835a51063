"""The resolved spec of a run: one frozen reading of a method config, shared by search, plan, report and export.

A method config (``Method.config(preset, overrides)``, or the config a run stored) has one section per role,
each a registry name plus the options of that implementation, and a ``budget``::

    space:      {name?, **options}            # name defaults to method.space
    controller: {name?, population_size, ...} # name defaults to method.controller
    evaluator:  {name?, **options}            # name defaults to method.evaluator
    reward:     {name?, objectives, constraints, penalty}   # name defaults to method.reward
    cost:       {model?, lr_size: [480, 480], ...}          # model defaults to method.cost_model
    executor:   {name?, workers?, device: auto, workdirs: false, ...executor options}
    budget:     {candidates?, generations?, seconds?, stall_generations, failed_generations}
    loop:       {**options of the method's loop}               # the one-shot loop's epochs, steps, ...
    retrain:    {name?, **options}            # the one-shot loop's final training (name defaults to sr-train)

:meth:`RunSpec.from_config` reads it once (an unknown section is a one-line error with a did-you-mean);
:meth:`RunSpec.instantiate` builds a role through :func:`nasengine.options.construct`, so a wrong option is a
one-line :class:`~nasengine.errors.ConfigError` naming ``role.option``::

    spec = RunSpec.from_config(plugins, method.config("smoke"), seed=0)
    space = spec.instantiate("space", plugins)
    reward = spec.instantiate("reward", plugins)
    controller = spec.instantiate("controller", plugins, space, reward, seed=spec.seed)
"""
from __future__ import annotations

import copy
import difflib
import re
import types
from typing import TYPE_CHECKING, Any, Mapping

import attrs

from nasengine.errors import ConfigError
from nasengine.options import OptionError, check_options, construct, flag, optional, string, whole

if TYPE_CHECKING:  # pragma: no cover
    from nasengine.method import Method
    from nasengine.search.budget import Budget

__all__ = ["RunSpec", "RoleSpec", "ROLES", "SECTIONS", "DEFAULT_RETRAIN"]

#: The roles of a run, in the order they are built; each is a config section.
ROLES = ("space", "reward", "cost", "controller", "evaluator", "executor")
#: Every section a config may have (``loop``: the options the method's loop declares; ``retrain``: the evaluator
#: of a one-shot search's final from-scratch training).
SECTIONS = ROLES + ("budget", "loop", "retrain", "method", "preset")
#: The evaluator of a ``retrain`` section that names none.
DEFAULT_RETRAIN = "sr-train"
#: The registry (attribute of the plugins facade) of each role.
REGISTRIES = {"space": "spaces", "controller": "controllers", "evaluator": "evaluators", "reward": "rewards",
              "cost": "cost_models", "executor": "executors"}
#: The key that names a section's implementation (``cost.model``; ``name`` elsewhere).
NAME_KEYS = {"cost": "model"}
#: Options of the executor section that go to each task, not to the executor.
TASK_OPTIONS = ("device", "workdirs")
#: Options every implementation of a role takes as a constructor argument of the role's base class, not as one
#: of its declared options (``Executor(workers=...)``).
BASE_OPTIONS = {"executor": ("workers",)}

#: The torch devices a task may name.
_DEVICE = re.compile(r"^(cpu|cuda|cuda:\d+|mps|auto)$")


def _task_checks() -> dict:
    """The check of each of :data:`TASK_OPTIONS` (``executor.device=3`` is a one-line error)."""
    device = string().where(lambda v: bool(_DEVICE.match(v.lower())), '"cpu", "cuda", "cuda:N", "mps" or "auto"')
    return {"device": device, "workdirs": flag}


def _frozen(options: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return types.MappingProxyType(copy.deepcopy(dict(options or {})))


@attrs.frozen
class RoleSpec:
    """One role of a run: the registry ``name`` of its implementation and the ``options`` it is made with."""

    name: str
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen)

    @classmethod
    def of(cls, cfg: Mapping[str, Any], role: str, default: str) -> "RoleSpec":
        """The ``role`` section of ``cfg``: its name (``default`` when it names none) and the other keys."""
        section = cfg.get(role)
        if section is not None and not isinstance(section, Mapping):
            raise ConfigError(f"{role}: must be a mapping of options, got {section!r}")
        options = dict(section or {})
        name = options.pop(NAME_KEYS.get(role, "name"), None) or default
        if not isinstance(name, str):
            raise ConfigError(f"{role}.{NAME_KEYS.get(role, 'name')}: must be a registered name, got {name!r}")
        return cls(name, options)

    def kwargs(self) -> dict[str, Any]:
        """The options as a new plain dict (deep copy)."""
        return copy.deepcopy(dict(self.options))


@attrs.frozen
class RunSpec:
    """Everything a run is, read once from its config (see the module docstring).

    ``device`` and ``workdirs`` are the executor section's per-task options; ``loop_options`` the ``loop``
    section (checked by the loop, :meth:`nasengine.search.loop.Loop.check`); ``retrain`` the ``retrain``
    section (an evaluator and its options; ``None`` when the config has none); ``config`` the config it was
    read from (stored with the run).
    """

    method: str
    preset: str | None
    seed: int
    loop: str
    space: RoleSpec
    controller: RoleSpec
    evaluator: RoleSpec
    reward: RoleSpec
    cost: RoleSpec
    executor: RoleSpec
    budget: "Budget"
    device: str = "auto"
    workdirs: bool = False
    loop_options: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen)
    retrain: RoleSpec | None = None
    config: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen, eq=False, repr=False)

    @classmethod
    def from_config(cls, plugins, cfg: Mapping[str, Any], *, seed: int = 0,
                    method: "Method | None" = None) -> "RunSpec":
        """The spec of config ``cfg`` (of ``method``, default: the registered method ``cfg["method"]``)."""
        from nasengine.method import DEFAULT_EXECUTOR
        from nasengine.search.budget import Budget

        unknown = [k for k in cfg if k not in SECTIONS]
        if unknown:
            key = unknown[0]
            near = difflib.get_close_matches(str(key), SECTIONS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ";"
            raise ConfigError(f"{key}: unknown config section{hint} known: {', '.join(SECTIONS)}")
        if method is None:
            if not cfg.get("method"):
                raise ConfigError("method: the config names no method")
            method = plugins.methods.get(cfg["method"])
        executor = RoleSpec.of(cfg, "executor", DEFAULT_EXECUTOR)
        ex_options = executor.kwargs()
        checks = _task_checks()
        try:
            device = checks["device"].value("device", ex_options.pop("device", "auto")).lower()
            workdirs = checks["workdirs"].value("workdirs", ex_options.pop("workdirs", False))
        except OptionError as exc:
            raise exc.under("executor") from None
        cost = RoleSpec.of(cfg, "cost", method.cost_model)
        cost_options = cost.kwargs()
        loop_section = cfg.get("loop")
        if loop_section is not None and not isinstance(loop_section, Mapping):
            raise ConfigError(f"loop: must be a mapping of options, got {loop_section!r}")
        retrain = RoleSpec.of(cfg, "retrain", DEFAULT_RETRAIN) if cfg.get("retrain") is not None else None
        lr_size = cost_options.get("lr_size", (480, 480))
        cost_options["lr_size"] = tuple(lr_size) if isinstance(lr_size, (list, tuple)) else lr_size
        return cls(
            method=method.name, preset=cfg.get("preset"), seed=int(seed), loop=method.loop,
            space=RoleSpec.of(cfg, "space", method.space),
            controller=RoleSpec.of(cfg, "controller", method.controller),
            evaluator=RoleSpec.of(cfg, "evaluator", method.evaluator),
            reward=RoleSpec.of(cfg, "reward", method.reward),
            cost=RoleSpec(cost.name, cost_options),
            executor=RoleSpec(executor.name, ex_options),
            # the one-shot and differentiable loops are bounded by their own epochs (loop.epochs)
            budget=Budget.from_config(cfg.get("budget"), bounded=method.loop == "generational"),
            device=device, workdirs=workdirs, loop_options=loop_section or {}, retrain=retrain, config=cfg,
        )

    def role(self, role: str) -> RoleSpec:
        if role not in ROLES:
            raise ConfigError(f"{role}: not a role; roles: {', '.join(ROLES)}")
        return getattr(self, role)

    def factory(self, role: str, plugins) -> Any:
        """The registered implementation of ``role`` (an unknown name is an error listing the known ones)."""
        return getattr(plugins, REGISTRIES[role]).get(self.role(role).name)

    def check(self, role: str, plugins, /, *args: Any, **fixed: Any) -> None:
        """What :meth:`instantiate` checks of ``role``'s options, without making it (``search --plan`` checks
        the executor's options so, without starting workers): a one-line error naming ``role.option``."""
        spec = self.role(role)
        options = spec.kwargs()
        base = {k: options.pop(k) for k in BASE_OPTIONS.get(role, ()) if k in options}
        if base.get("workers") is not None:  # what the base class checks (Executor(workers=...))
            try:
                optional(whole(1)).value("workers", base["workers"])
            except OptionError as exc:
                raise exc.under(role) from None
        try:
            check_options(role, spec.name, self.factory(role, plugins), options, *args, **base, **fixed)
        except OptionError as exc:
            raise self._section_error(role, plugins, exc) from None

    def instantiate(self, role: str, plugins, /, *args: Any, **fixed: Any) -> Any:
        """``role``'s implementation made with its options (and ``args`` / ``fixed`` before them), through
        :func:`nasengine.options.construct`: a wrong option is a one-line error naming ``role.option``."""
        spec = self.role(role)
        options = spec.kwargs()
        base = {k: options.pop(k) for k in BASE_OPTIONS.get(role, ()) if k in options}
        try:
            return construct(role, spec.name, self.factory(role, plugins), options, *args, **base, **fixed)
        except OptionError as exc:
            raise self._section_error(role, plugins, exc) from None

    def _section_error(self, role: str, plugins, exc: OptionError) -> OptionError:
        """``exc``, with an unknown key of the executor section weighed against the section's own keys too
        (``executor.devise``: did you mean 'device'?)."""
        if role != "executor" or not exc.reason.startswith("unknown option"):
            return exc
        from nasengine.options import _unknown, declared_options

        own = {d.name for d in declared_options(self.factory(role, plugins))}
        known = own | set(TASK_OPTIONS) | set(BASE_OPTIONS.get(role, ()))
        return _unknown(role, self.role(role).name, exc.option, known)
