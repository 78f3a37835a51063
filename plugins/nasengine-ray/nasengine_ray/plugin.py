"""The entry point of the ``nasengine`` group: registers the ``ray`` executor.

Importing this module does not import Ray (that happens when the executor starts), so ``nasengine plugins``
stays fast and lists the executor even where Ray cannot be imported.
"""
from __future__ import annotations

import nasengine


@nasengine.hookimpl
def nasengine_register_executors(registry):
    from nasengine_ray.executor import RayExecutor

    registry.add("ray", RayExecutor)
