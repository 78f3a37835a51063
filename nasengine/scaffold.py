"""``nasengine new-plugin NAME``: a working plugin package made from the templates in ``nasengine/templates/plugin``.

:func:`new_plugin` writes ``DIR/<dist>/`` holding ``pyproject.toml`` (the ``nasengine`` entry point),
``README.md``, ``<module>/__init__.py`` (a controller and a method registered through hooks) and
``tests/test_plugin.py`` (:class:`nasengine.testing.ControllerContract` on the controller). ``NAME`` is a
lower-case name such as ``my-nas``: the distribution is ``nasengine-my-nas``, the module ``nasengine_my_nas``,
the registered names ``my-nas`` (method) and ``my-nas-elite-mutation`` (controller).
"""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from nasengine.errors import InputError

__all__ = ["new_plugin", "plugin_names"]

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
#: template file (under templates/plugin) -> path in the new package; {module} is replaced
_FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "package/__init__.py.tmpl": "{module}/__init__.py",
    "tests/test_plugin.py.tmpl": "tests/test_plugin.py",
}


def plugin_names(name: str) -> dict[str, str]:
    """``{"name", "dist", "module"}`` of the plugin ``name`` (``my-nas`` -> ``nasengine-my-nas``,
    ``nasengine_my_nas``); a leading ``nasengine-`` in ``name`` is dropped. Raises
    :class:`~nasengine.errors.InputError` for a name that is not lower-case letters and digits joined by ``-``."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InputError(f"plugin name {name!r}: use lower-case letters and digits joined by '-', e.g. my-nas")
    short = name[len("nasengine-"):] if name.startswith("nasengine-") and len(name) > len("nasengine-") else name
    return {"name": short, "dist": f"nasengine-{short}", "module": "nasengine_" + short.replace("-", "_")}


def new_plugin(name: str, directory=".") -> Path:
    """Write the plugin package ``name`` into ``directory/<dist>`` and return that folder. Raises
    :class:`~nasengine.errors.InputError` for a bad name or when the folder already exists (nothing is
    overwritten)."""
    names = plugin_names(name)
    target = Path(directory) / names["dist"]
    if target.exists():
        raise InputError(f"{target}: already exists; choose another --dir or remove it")
    root = resources.files("nasengine") / "templates" / "plugin"
    texts = {}
    for template, rel in _FILES.items():
        text = (root / template).read_text(encoding="utf-8")
        for key, value in names.items():
            text = text.replace("{{" + key + "}}", value)
        texts[rel.format(**names)] = text
    for rel, text in texts.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
