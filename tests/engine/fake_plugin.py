"""A small fake plugin for the engine-core tests (store, executors, generational loop).

It brings a tiny search space (``fake-tiny``: depth x width x kernel x an unused ``tag`` gene, so two genomes
can decode to the same graph), a deterministic evolutionary controller (``fake-evo``), an evaluator
(``fake-eval``) that computes metrics from the graph's cost and the seed in microseconds and can be told to
sleep, raise, return NaN or kill its own process for chosen genomes, and a method ``fake`` tying them up.

Importable by module path, so worker processes load it too: ``NASENGINE_PLUGINS_EXTRA=tests.engine.fake_plugin``.
Reward, cost model and executors come from the built-in plugin; they are registered here only when the
built-in plugin did not (it is being written concurrently).
"""
from __future__ import annotations

import math
import os
import signal
import time
from typing import Sequence

import attrs
import numpy as np

import nasengine
from nasengine.controller import Controller, Result
from nasengine.errors import ValidationError
from nasengine.evaluator import EvalContext, Evaluator
from nasengine.graph import ArchGraph
from nasengine.method import Method
from nasengine.space import SearchSpace

GENES = ("depth", "width", "kernel", "tag")


@attrs.frozen
class TinyGenome:
    depth: int
    width: int
    kernel: int
    tag: int = 0


class TinySpace(SearchSpace):
    """conv-relu x depth, then conv -> pixel shuffle; ``tag`` does not change the network."""

    def __init__(self, scale: int = 2, depths: Sequence[int] = (1, 2, 3), widths: Sequence[int] = (4, 8, 16),
                 kernels: Sequence[int] = (1, 3), tags: Sequence[int] = (0, 1)):
        self.scale = int(scale)
        self.choices = {"depth": list(depths), "width": list(widths), "kernel": list(kernels), "tag": list(tags)}

    def sample(self, rng):
        return TinyGenome(**{k: v[int(rng.integers(len(v)))] for k, v in self.choices.items()})

    def mutate(self, genome, rng):
        gene = GENES[int(rng.integers(len(GENES)))]
        options = self.choices[gene]
        return attrs.evolve(genome, **{gene: options[int(rng.integers(len(options)))]})

    def crossover(self, a, b, rng):
        mask = rng.integers(2, size=len(GENES)).astype(bool)
        ca = {g: getattr(b if m else a, g) for g, m in zip(GENES, mask)}
        cb = {g: getattr(a if m else b, g) for g, m in zip(GENES, mask)}
        return TinyGenome(**ca), TinyGenome(**cb)

    def validate(self, genome):
        if not isinstance(genome, TinyGenome):
            raise ValidationError(f"expected a TinyGenome, got {type(genome).__name__}", "genome")
        for gene in GENES:
            if getattr(genome, gene) not in self.choices[gene]:
                raise ValidationError(f"{getattr(genome, gene)!r} not in {self.choices[gene]}", gene)

    def decode(self, genome):
        g = ArchGraph()
        h = g.input(channels=1)
        for _ in range(genome.depth):
            h = g.add("relu", g.add("conv", h, out_channels=genome.width, kernel=genome.kernel))
        u = g.add("conv", h, out_channels=self.scale * self.scale, kernel=3)
        g.output(g.add("pixel_shuffle", u, factor=self.scale))
        return g

    def to_json(self, genome):
        return attrs.asdict(genome)

    def from_json(self, data):
        if not isinstance(data, dict) or set(data) != set(GENES):
            raise ValidationError(f"expected an object with keys {', '.join(GENES)}, got {data!r}", "genome")
        genome = TinyGenome(**{k: int(data[k]) for k in GENES})
        self.validate(genome)
        return genome

    def vector_bounds(self):
        return np.zeros(len(GENES), dtype=int), np.array([len(self.choices[g]) - 1 for g in GENES])

    def vector_encode(self, genome):
        return np.array([self.choices[g].index(getattr(genome, g)) for g in GENES])

    def vector_decode(self, vector):
        return TinyGenome(**{g: self.choices[g][int(v)] for g, v in zip(GENES, vector)})

    def size(self):
        return math.prod(len(v) for v in self.choices.values())


class FakeEvolution(Controller):
    """Deterministic (mu + lambda)-style evolution: keep the best half by scalar reward, mutate it."""

    def __init__(self, space, reward, *, seed: int = 0, population_size: int = 6):
        super().__init__(space, reward, seed=seed, population_size=population_size)
        self.parents: list[tuple[dict, float]] = []  # (genome json, fitness)

    def ask(self, n=None):
        n = self.population_size if n is None else n
        if not self.parents:
            return [self.space.sample(self.rng) for _ in range(n)]
        out = []
        for _ in range(n):
            parent = self.parents[int(self.rng.integers(len(self.parents)))][0]
            out.append(self.space.mutate(self.space.from_json(parent), self.rng))
        return out

    def tell(self, results: Sequence[Result]):
        pool = self.parents + [
            (self.space.to_json(r.genome), r.reward if r.ok and r.reward is not None else -1e9) for r in results
        ]
        pool.sort(key=lambda p: (-p[1], sorted(p[0].items())))
        self.parents = pool[: max(1, self.population_size // 2)]

    def state_dict(self):
        return {**super().state_dict(), "parents": [(dict(g), f) for g, f in self.parents]}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.parents = [(dict(g), f) for g, f in state["parents"]]


class FakeRandom(Controller):
    """Uniform sampling (for ``controller.name`` overrides)."""

    def ask(self, n=None):
        return [self.space.sample(self.rng) for _ in range(self.population_size if n is None else n)]

    def tell(self, results):
        pass


def _matches(genome_json: dict, patterns: Sequence[dict]) -> bool:
    return any(all(genome_json.get(k) == v for k, v in p.items()) for p in patterns or ())


class FakeEvaluator(Evaluator):
    """Metrics from the graph's cost and the seed; ``fail_if`` / ``nan_if`` / ``die_if`` / ``exit_if`` /
    ``interrupt_if`` are lists of partial genomes (``{"width": 16}``) that raise / give NaN / SIGKILL the process /
    ``os._exit`` / raise KeyboardInterrupt (a Ctrl-C in the middle of an evaluation; only the first time
    when ``once_file`` names a marker file, created then);
    ``sleep`` seconds per evaluation (``sleep_if`` for chosen genomes only); ``report_threads`` adds torch's
    thread count as a metric; every evaluation fails while the file ``fail_while`` exists (a broken setup that
    the user then fixes)."""

    def __init__(self, sleep: float = 0.0, fail_if: Sequence[dict] = (), nan_if: Sequence[dict] = (),
                 die_if: Sequence[dict] = (), exit_if: Sequence[dict] = (), sleep_if: Sequence[dict] = (),
                 interrupt_if: Sequence[dict] = (), once_file: str | None = None, log: str | None = None,
                 report_threads: bool = False, fail_while: str | None = None):
        self.sleep = sleep
        self.fail_while = fail_while
        self.interrupt_if = interrupt_if
        self.once_file = once_file
        self.report_threads = report_threads
        self.fail_if, self.nan_if, self.die_if, self.exit_if = fail_if, nan_if, die_if, exit_if
        self.sleep_if = sleep_if
        self.log = log

    def _first_time(self) -> bool:
        if self.once_file is None:
            return True
        try:
            with open(self.once_file, "x"):
                return True
        except FileExistsError:
            return False

    def evaluate(self, graph, ctx: EvalContext):
        from nasengine.cost import analytic_cost

        genome = attrs.asdict(ctx.genome)
        if ctx.workdir:  # as a training evaluator keeps its checkpoints there
            os.makedirs(ctx.workdir, exist_ok=True)
        if self.log:  # one line per evaluation actually run (to count trainings)
            with open(self.log, "a") as f:
                f.write(f"{genome} {ctx.seed} {os.getpid()}\n")
        if self.sleep and (not self.sleep_if or _matches(genome, self.sleep_if)):
            time.sleep(self.sleep)
        if _matches(genome, self.die_if):
            os.kill(os.getpid(), signal.SIGKILL)
        if _matches(genome, self.exit_if):
            os._exit(3)
        if _matches(genome, self.interrupt_if) and self._first_time():
            raise KeyboardInterrupt
        if _matches(genome, self.fail_if):
            raise RuntimeError(f"told to fail on {genome}")
        if self.fail_while and os.path.exists(self.fail_while):
            raise RuntimeError(f"{self.fail_while} exists")
        cost = analytic_cost(graph, (16, 16))
        psnr = 30.0 + 2.0 * math.log10(cost.params) + (ctx.seed % 1000) / 1e4
        if _matches(genome, self.nan_if):
            psnr = float("nan")
        metrics = {"psnr": psnr, "ssim": 0.9 + (ctx.seed % 97) / 1e4}
        if self.report_threads:
            import torch

            metrics["torch_threads"] = torch.get_num_threads()
        return metrics


def fake_method() -> Method:
    return Method(
        name="fake",
        space="fake-tiny",
        controller="fake-evo",
        evaluator="fake-eval",
        description="tests: a tiny space, a deterministic evolution, an instant evaluator",
        base={
            "reward": {"objectives": [["psnr", "max"], ["mult_adds", "min"]], "constraints": []},
            "cost": {"lr_size": [32, 32]},
            "controller": {"population_size": 6},
        },
        presets={"smoke": {"budget": {"generations": 4}}},
    )


@nasengine.hookimpl
def nasengine_register_search_spaces(registry):
    registry.add("fake-tiny", TinySpace)


@nasengine.hookimpl
def nasengine_register_controllers(registry):
    registry.add("fake-evo", FakeEvolution)
    registry.add("fake-random", FakeRandom)


@nasengine.hookimpl
def nasengine_register_evaluators(registry):
    registry.add("fake-eval", FakeEvaluator)


@nasengine.hookimpl
def nasengine_register_methods(registry):
    registry.add("fake", fake_method())


@nasengine.hookimpl
def nasengine_register_rewards(registry):
    if "objectives" not in registry:
        from nasengine.reward import Reward

        registry.add("objectives", Reward.from_config)


@nasengine.hookimpl
def nasengine_register_cost_models(registry):
    if "analytic" not in registry:
        from nasengine.cost import AnalyticCostModel

        registry.add("analytic", AnalyticCostModel)


@nasengine.hookimpl
def nasengine_register_executors(registry):
    from nasengine.executors import BUILTIN_EXECUTORS

    for name, cls in BUILTIN_EXECUTORS.items():
        if name not in registry:
            registry.add(name, cls)
    registry.add("fake-parallel", _fake_parallel())
    registry.add("fake-shuffled", _fake_shuffled())
    registry.add("fake-lost", _fake_lost())


#: task ids in the order the ``fake-parallel`` executor pulled them
PULLED: list = []


def _fake_parallel():
    from nasengine.executors import InlineExecutor

    class FakeParallel(InlineExecutor):
        """In-process like ``inline``, but claims ``workers`` (default 2) parallel slots and records the
        order in which it pulls tasks (``PULLED``)."""

        name = "fake-parallel"

        def imap(self, tasks):
            def recorded():
                for task in tasks:
                    PULLED.append(task.task_id)
                    yield task
            return super().imap(recorded())

        @property
        def parallelism(self) -> int:
            return self.workers or 2

    return FakeParallel


def _fake_shuffled():
    import random

    from nasengine.executors import Executor, TaskSource, run_task

    class FakeShuffled(Executor):
        """In-process, with ``workers`` (default 3) evaluations "in flight" that finish in a random order drawn
        from ``order_seed``: what worker processes of uneven speed do, without processes or sleeps."""

        name = "fake-shuffled"
        can_wait = True

        def __init__(self, workers=None, *, order_seed: int = 0):
            super().__init__(workers)
            self.rng = random.Random(order_seed)

        @property
        def parallelism(self) -> int:
            return self.workers or 3

        def imap(self, tasks):
            source, running = TaskSource(tasks), []
            while True:
                while len(running) < self.parallelism and (task := source.take()) is not None:
                    running.append(task)
                if source.finished(len(running)):
                    return
                yield run_task(running.pop(self.rng.randrange(len(running))))

    return FakeShuffled


def _fake_lost():
    import attrs

    from nasengine.executors import ExecutorLost, InlineExecutor
    from nasengine.options import option, whole

    class FakeLost(InlineExecutor):
        """In-process like ``inline``, but its "backend" goes away after ``lose_after`` outcomes: the next
        ``imap`` step raises :class:`~nasengine.executors.ExecutorLost` (what the Ray executor does when its
        local instance dies)."""

        name = "fake-lost"

        @attrs.frozen(kw_only=True)
        class Options(InlineExecutor.Options):
            lose_after: int = option(3, whole(0), help="outcomes before the backend is lost")

        def imap(self, tasks):
            done = getattr(self, "_done", 0)
            for outcome in super().imap(tasks):
                if done >= self.lose_after:
                    raise ExecutorLost("the fake backend at 127.0.0.1:1 went away")
                done += 1
                self._done = done
                yield outcome

    return FakeLost
