"""A tiny gated space and its differentiable supernet, plus the ``tiny-diff`` method, for the differentiable
loop's tests (nothing FGNAS-specific); loadable as an extra plugin
(``NASENGINE_PLUGINS_EXTRA=tests.gated_space``, from the repository root).

``tiny-gated`` (options ``channels`` C, ``scale``, ``colors``): genome = C bits saying which hidden channels
live; decoded ``x -> conv3x3 "c1" (n channels) -> relu -> conv3x3 "c2" -> pixel_shuffle`` with n the number of
set bits (n = 0: ``x -> conv3x3 "c2" -> pixel_shuffle``). Its supernet (:class:`GatedSupernet`) has one gate
ψ per hidden channel (straight-through, :func:`nasengine.cost.st_gate`), ``cost_term`` from the engine's
:class:`~nasengine.cost.DifferentiableCost` and ``derive()`` with the sliced weights.

With ``NASENGINE_TEST_DIFF_STALL=S`` in the environment, a process that imports this module stalls (sleeps 10
minutes) when step S is done, before the loop records or checkpoints it: the resume test kills it there.
"""
from __future__ import annotations

import os
import time
from typing import Any

import attrs
import numpy as np

import nasengine
from nasengine.errors import ValidationError
from nasengine.graph import ArchGraph
from nasengine.method import Method
from nasengine.space import SearchSpace, check_fields

__all__ = ["TinyGatedSpace", "GatedSupernet", "tiny_diff_method", "LOOP"]

#: The loop section of the tiny-diff smoke preset.
LOOP = {"arch_lr": 0.05, "lam": 0.0, "record_every": 4, "log_every": 4, "checkpoint_every": 4, "retrain": True}


class TinyGatedSpace(SearchSpace):
    """See the module docstring."""

    def __init__(self, channels: int = 4, scale: int = 2, colors: int = 1):
        for name, value in (("channels", channels), ("scale", scale), ("colors", colors)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValidationError(f"must be a positive int, got {value!r}", field=name)
        self.C, self.scale, self.colors = channels, scale, colors

    def sample(self, rng):
        return tuple(int(v) for v in rng.integers(0, 2, size=self.C))

    def mutate(self, genome, rng):
        i = int(rng.integers(self.C))
        return tuple(1 - v if j == i else v for j, v in enumerate(genome))

    def crossover(self, a, b, rng):
        m = rng.integers(0, 2, size=self.C).astype(bool)
        return tuple(np.where(m, b, a).tolist()), tuple(np.where(m, a, b).tolist())

    def densest(self):
        return (1,) * self.C

    def validate(self, genome):
        if not isinstance(genome, tuple) or len(genome) != self.C or any(v not in (0, 1) for v in genome):
            raise ValidationError(f"must be {self.C} bits, got {genome!r}", field="bits")

    def decode(self, genome):
        self.validate(genome)
        n = sum(genome)
        g = ArchGraph()
        h = g.input(channels=self.colors)
        if n:
            h = g.add("relu", g.add("conv", h, out_channels=n, kernel=3, name="c1"))
        u = g.add("conv", h, out_channels=self.colors * self.scale ** 2, kernel=3, name="c2")
        g.output(g.add("pixel_shuffle", u, factor=self.scale))
        return g

    def to_json(self, genome):
        return {"bits": list(genome)}

    def from_json(self, data: Any):
        if not isinstance(data, dict):
            raise ValidationError(f"expected an object, got {type(data).__name__}", field="genome")
        check_fields(data, ("bits",))
        genome = tuple(data["bits"]) if isinstance(data["bits"], list) else data["bits"]
        self.validate(genome)
        return genome

    def vector_bounds(self):
        return np.zeros(self.C, dtype=np.int64), np.ones(self.C, dtype=np.int64)

    def vector_encode(self, genome):
        return np.array(genome, dtype=np.int64)

    def vector_decode(self, vector):
        return tuple(int(v) for v in np.asarray(vector).reshape(-1))

    def size(self):
        return 2 ** self.C

    def differentiable_supernet(self):
        return GatedSupernet(self)


@attrs.frozen
class Derived:
    genome: tuple
    module: Any


def GatedSupernet(space: TinyGatedSpace):
    """The supernet of ``space`` (a torch module; made here so that importing this module needs no torch)."""
    import torch
    import torch.nn as nn

    from nasengine.cost import DifferentiableCost, st_gate

    class _GatedSupernet(nn.Module):
        def __init__(self):
            super().__init__()
            self.space = space
            c, k = space.C, space.colors
            self.c1 = nn.Conv2d(k, c, 3, padding=1)
            self.c2 = nn.Conv2d(c, k * space.scale ** 2, 3, padding=1)
            self.psi = nn.Parameter(torch.ones(c))
            self._cost = {}

        def gates(self):
            return st_gate(self.psi, 0.5)

        def forward(self, x):
            h = torch.relu(self.c1(x)) * self.gates().view(1, -1, 1, 1)
            return nn.functional.pixel_shuffle(self.c2(h), self.space.scale)

        def param_groups(self, lr, arch_lr):
            return [{"params": [p for n, p in self.named_parameters() if n != "psi"], "lr": lr},
                    {"params": [self.psi], "lr": arch_lr}]

        def cost_term(self, lr_size=(16, 16)):
            key = tuple(lr_size)
            if key not in self._cost:
                self._cost[key] = DifferentiableCost(space.decode(space.densest()), lr_size=key)
            return self._cost[key]({"c1": self.gates().sum()})

        def genome(self):
            return tuple(int(v) for v in (self.psi.detach() > 0.5).tolist())

        def derive(self):
            from nasengine.builder import build
            from nasengine.graph import module_name

            genome = self.genome()
            graph = space.decode(genome)
            module = build(graph)
            mods = {graph.name(n): getattr(module, module_name(n, graph.op(n))) for n in graph if graph.name(n)}
            keep = torch.tensor([i for i, v in enumerate(genome) if v], dtype=torch.long)
            with torch.no_grad():
                if len(keep):
                    mods["c1"].weight.copy_(self.c1.weight[keep])
                    mods["c1"].bias.copy_(self.c1.bias[keep])
                    mods["c2"].weight.copy_(self.c2.weight[:, keep])
                else:  # the hidden layer is gone: c2 reads the image (this tiny test space's own rule)
                    mods["c2"].weight.zero_()
                mods["c2"].bias.copy_(self.c2.bias)
            return Derived(genome, module.eval())

    return _GatedSupernet()


def tiny_diff_method() -> Method:
    return Method(
        name="tiny-diff",
        space="tiny-gated",
        controller="random",
        evaluator="sr-train",
        loop="differentiable",
        description="tests: the differentiable loop on a tiny gated space",
        base={
            "space": {"channels": 4},
            "reward": {"objectives": [["psnr", "max"]], "constraints": []},
            "cost": {"lr_size": [32, 32]},
            "evaluator": {"patch_size": 16, "batch_size": 2, "steps": 12, "lr": 1e-3},
            "retrain": {"name": "sr-train", "steps": 2, "patch_size": 16, "batch_size": 2},
            "executor": {"name": "inline", "device": "cpu"},
        },
        presets={"smoke": {"loop": dict(LOOP)}},
    )


def _stall_for_tests() -> None:
    at = os.environ.get("NASENGINE_TEST_DIFF_STALL")
    if not at:
        return
    from nasengine.search.differentiable import DifferentiableLoop

    on_step = DifferentiableLoop.on_step

    def stalled(self, step, loss):
        if step == int(at):
            time.sleep(600)
        return on_step(self, step, loss)

    DifferentiableLoop.on_step = stalled


_stall_for_tests()


@nasengine.hookimpl
def nasengine_register_search_spaces(registry):
    registry.add("tiny-gated", TinyGatedSpace, description="tiny gated space for the differentiable loop's tests")


@nasengine.hookimpl
def nasengine_register_methods(registry):
    registry.add("tiny-diff", tiny_diff_method())
