"""The entry point of the ``nasengine`` group: registers the ``ray`` executor and ``--ray-address``.

Importing this module does not import Ray (that happens when the executor starts), so ``nasengine plugins``
stays fast and lists the executor even where Ray cannot be imported.
"""
from __future__ import annotations

import nasengine
from nasengine.options import SearchOption


@nasengine.hookimpl
def nasengine_register_executors(registry):
    from nasengine_ray.executor import RayExecutor

    registry.add("ray", RayExecutor)


@nasengine.hookimpl
def nasengine_register_search_options(registry):
    registry.add("ray-address", SearchOption(
        key="executor.address", executor="ray", metavar="ADDR",
        help="evaluate on the Ray cluster at ADDR (HEAD:6379, or auto for the cluster this machine belongs to); "
             "without it --executor ray starts a local Ray instance"))
