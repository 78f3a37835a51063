"""Load the plugin for its tests when it is not installed (no ``hnas`` entry point yet): name its module in
``NASENGINE_PLUGINS_EXTRA`` before the engine's plugin manager starts."""
from __future__ import annotations

import os
from importlib.metadata import entry_points

if not any(ep.name == "hnas" for ep in entry_points(group="nasengine")):
    extra = [m for m in os.environ.get("NASENGINE_PLUGINS_EXTRA", "").split(",") if m.strip()]
    if "nasengine_hnas.plugin" not in extra:
        os.environ["NASENGINE_PLUGINS_EXTRA"] = ",".join(extra + ["nasengine_hnas.plugin"])
