"""Methods: named recipes (space + controller + evaluator + reward + loop + presets).

A method is pure data. A preset is a nested dict of options; ``Method.config(preset, overrides)`` merges
the method's ``base`` config, the preset and user overrides (``{"budget": {"candidates": 20}}`` or dotted
``"budget.candidates=20"`` strings from the command line). Budgets are configuration, never code paths:
the ``paper`` and ``smoke`` presets of a method run the same code.

Config sections: ``space``, ``controller``, ``evaluator``, ``reward``, ``cost`` (``lr_size``,
``model``), ``budget`` (``candidates``, ``generations``, ``seconds``), ``executor`` (``name``,
``workers``); :class:`nasengine.spec.RunSpec` reads them (once) for search, plan, report and export.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Mapping

import attrs

from nasengine.errors import ConfigError

__all__ = ["Method", "deep_merge", "apply_overrides", "override_at", "parse_override", "LOOPS"]

LOOPS = ("generational", "one-shot", "differentiable")


def deep_merge(base: Mapping, update: Mapping) -> dict:
    """A new dict: ``base`` recursively updated with ``update`` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


#: options that mean the same to every implementation of a role, kept when an override swaps the implementation
ROLE_GENERIC_OPTIONS = {"controller": ("population_size", "max_tries"), "evaluator": (),
                        "executor": ("workers", "device", "workdirs")}


#: The executor of a config whose ``executor`` section names none.
DEFAULT_EXECUTOR = "inline"


def apply_overrides(cfg: Mapping, overrides: Mapping, defaults: Mapping[str, str] | None = None) -> dict:
    """``cfg`` with ``overrides`` merged in. When an override swaps a role's implementation (``--set
    controller.name=random`` on a method whose preset configures its own controller; ``--executor ray`` on a
    preset made for worker processes), the options ``cfg`` gave the old one would not fit the new one: of
    those only the generic ones (``ROLE_GENERIC_OPTIONS``) stay. ``defaults``: each role's implementation
    when its section names none (the executor's is :data:`DEFAULT_EXECUTOR`)."""
    defaults = {"executor": DEFAULT_EXECUTOR, **(defaults or {})}
    out = dict(cfg)
    for role, generic in ROLE_GENERIC_OPTIONS.items():
        section, wanted = out.get(role), overrides.get(role)
        if not isinstance(section, Mapping) or not isinstance(wanted, Mapping) or "name" not in wanted:
            continue
        if wanted["name"] != (section.get("name") or defaults.get(role)):
            out[role] = {k: v for k, v in section.items() if k in generic}
    return deep_merge(out, overrides)


def override_at(path: str, value: Any) -> dict:
    """``("budget.candidates", 20)`` -> ``{"budget": {"candidates": 20}}``."""
    out: dict = {}
    node = out
    keys = [k for k in path.split(".") if k]
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return out


def parse_override(text: str) -> dict:
    """``"budget.candidates=20"`` -> ``{"budget": {"candidates": 20}}`` (values parsed as JSON when they can be)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    path, _, raw = text.partition("=")
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {text!r} has no key before '='")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return override_at(".".join(keys), value)


def _loop(_inst, _attr, value):
    if value not in LOOPS:
        raise ConfigError(f"method.loop must be one of {', '.join(LOOPS)}, got {value!r}")


@attrs.frozen
class Method:
    """A named recipe. ``space``/``controller``/``evaluator`` are registry names; ``base`` the common
    config; ``presets`` maps a preset name to the config it changes; ``default_preset`` is used when the
    user names none."""

    name: str
    space: str
    controller: str
    evaluator: str
    description: str = ""
    loop: str = attrs.field(default="generational", validator=_loop)
    reward: str = "objectives"
    cost_model: str = "analytic"
    base: Mapping[str, Any] = attrs.field(factory=dict)
    presets: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    default_preset: str = "smoke"
    paper: str = ""

    def config(self, preset: str | None = None, overrides: Mapping | None = None) -> dict:
        """The full config of ``preset`` (default: ``default_preset``) with ``overrides`` applied."""
        preset = preset or self.default_preset
        if preset not in self.presets:
            known = ", ".join(sorted(self.presets)) or "none"
            raise ConfigError(f"method {self.name!r} has no preset {preset!r}; presets: {known}")
        for section, how in (("method", "the command names it: nasengine search METHOD"),
                             ("preset", "choose it with --preset")):
            if section in (overrides or {}):
                raise ConfigError(f"{section}: not a section to override ({how})")
        cfg = deep_merge(self.base, self.presets[preset])
        cfg = apply_overrides(cfg, overrides or {}, {"controller": self.controller, "evaluator": self.evaluator})
        cfg.setdefault("space", {})
        cfg.setdefault("controller", {})
        cfg.setdefault("evaluator", {})
        cfg.setdefault("reward", {})
        cfg.setdefault("budget", {})
        cfg["method"] = self.name
        cfg["preset"] = preset
        return cfg
