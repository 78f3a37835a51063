"""nasengine-example: a minimal third-party nasengine plugin, written to be copied.

The entry point ``example = "nasengine_example"`` (group ``nasengine``, in ``pyproject.toml``) makes the engine
load this module and call its ``@nasengine.hookimpl`` functions, each handed a registry. It brings:

* the controller ``example-hill-climber`` (:class:`HillClimber`), a (1+lambda) greedy local search that runs
  on any search space, since it uses only the space's ``sample`` / ``mutate`` / JSON;
* the method ``example``: that controller over the built-in ``simple`` space, with a ``smoke`` preset of
  2 generations x 3 candidates, 30 training steps each (well under a minute on 2 CPU cores)::

    pip install -e tests/plugins/nasengine-example
    nasengine plugins                                    # example 0.1.0, its controller and method
    nasengine search example --preset smoke --out runs/example --seed 0
    nasengine search simple --set controller.name=example-hill-climber   # the controller elsewhere

Only public engine modules are imported: ``nasengine`` (the marker), ``nasengine.controller``, ``nasengine.method``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import nasengine
from nasengine.controller import Controller, Result
from nasengine.method import Method

__version__ = "0.1.0"


class HillClimber(Controller):
    """(1+lambda) hill climbing: ask ``population_size`` mutations of the best genome told so far.

    "Best" is by the reward's scalar (larger is better; the loop sets ``Result.reward``), among ``ok``
    results; on a tie the incumbent stays. Until one candidate succeeded it asks random samples. The whole
    state is the rng, the incumbent (as the space's JSON) and its score, so a resumed search asks exactly
    what an uninterrupted one would. Options: ``population_size`` (lambda, default 4).
    """

    def __init__(self, space, reward, *, seed: int = 0, population_size: int = 4):
        super().__init__(space, reward, seed=seed, population_size=population_size)
        self.best: dict | None = None  # the incumbent genome as space.to_json (plain data for state_dict)
        self.best_score = -math.inf

    def ask(self, n: int | None = None) -> list:
        n = self.population_size if n is None else n
        if self.best is None:
            return [self.space.sample(self.rng) for _ in range(n)]
        parent = self.space.from_json(self.best)
        return [self.space.mutate(parent, self.rng) for _ in range(n)]

    def tell(self, results: Sequence[Result]) -> None:
        for r in results:
            if not r.ok:  # failed and infeasible candidates never become the incumbent
                continue
            score = float(r.reward if r.reward is not None else self.reward.scalar(r.metrics))
            if math.isfinite(score) and score > self.best_score:
                self.best, self.best_score = self.space.to_json(r.genome), score

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best": self.best, "best_score": self.best_score}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.best, self.best_score = state["best"], float(state["best_score"])


def example_method() -> Method:
    """The ``example`` method: :class:`HillClimber` over the built-in ``simple`` space, trained briefly."""
    return Method(
        name="example",
        description="(1+lambda) hill climbing over the built-in simple space (the plugin example)",
        space="simple",
        controller="example-hill-climber",
        evaluator="sr-train",
        base={"space": {"scale": 2, "channels": "y"},
              "reward": {"objectives": [["psnr", "max"], ["mult_adds", "min"]], "constraints": []},
              "cost": {"lr_size": [480, 480]}},
        presets={"smoke": {"space": {"max_depth": 3, "widths": [8, 12]},
                           "controller": {"population_size": 3},
                           "evaluator": {"train_data": "default", "val_data": "Set5", "patch_size": 32,
                                         "batch_size": 8, "steps": 30, "lr": 1e-3},
                           "budget": {"generations": 2},
                           "executor": {"name": "inline", "threads": 1}}},  # 1 thread: tiny nets, busy CPUs
    )


@nasengine.hookimpl
def nasengine_register_controllers(registry):
    registry.add("example-hill-climber", HillClimber)


@nasengine.hookimpl
def nasengine_register_methods(registry):
    registry.add("example", example_method())
