"""nasengine-ray: send candidate evaluations to a Ray cluster (the ``ray`` executor).

``nasengine search METHOD --set executor.name=ray [--set executor.address=HEAD:6379]``; see
:class:`nasengine_ray.executor.RayExecutor` and the package README.
"""
from __future__ import annotations

from nasengine_ray.executor import RayExecutor

__all__ = ["RayExecutor"]
__version__ = "0.1.0"
