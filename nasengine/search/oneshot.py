"""The one-shot search loop (ENAS-style; DeCoNAS, HNAS): children of a weight-sharing supernet, a controller
that learns from their rewards on validation data, then a derivation and a retraining from scratch.

Epochs are numbered from 1. Each epoch:

1. **supernet**: ``child_steps`` mini-batches, each training the shared weights
   (:class:`nasengine.supernet.Supernet`) on one child drawn by ``controller.sample(1)``, through the run's
   shared-weights evaluator (``ev.train_step``);
2. **controller** (epochs ``>= controller_start``; DeCoNAS's "after epoch 5" is ``controller_start: 6``):
   ``controller_steps`` updates, each scoring the ``controller.ask()`` children with the shared weights on the
   next validation batch and telling their results (one policy update per ``tell``). A controller with a
   ``start_epoch(epoch)`` method hears of each such epoch first (optional; HNAS restarts its baseline and steps
   its learning rate there).

Every scored child is an ordinary candidate row (generation = the epoch, ``idx`` = its place in the epoch;
costs from the cost model plus ``space.genome_metrics``, metrics from the evaluator's ``score``) with status
``ok`` (``failed`` for a non-finite metric). An architecture scored again is a new row: each row is a
measurement at another weight state, none is a ``duplicate``.

After the last epoch, **derive**: ``derive_samples`` children from ``controller.sample`` (or the one
``controller.argmax()`` with ``derive: argmax``), each scored on ``derive_batches`` validation batches (the same
batches for every child unless ``derive_same_batches`` is off), recorded as generation ``epochs + 1``; the best
by reward is the run's derived genome (the store's ``derived`` result; ``nasengine show`` prints it). Then
**retrain** the best ``retrain_top`` distinct architectures from scratch through the executor with the
``retrain`` section's evaluator (default ``sr-train``), as ordinary tasks recorded in generation ``epochs + 2``
(with the protocol ``psnr`` / ``ssim``); ``loop.retrain_space`` overrides space options for it (HNAS searches at
8 channels and retrains at 64), and those rows carry the overridden architecture's key and costs. Each
retraining runs in its own folder of the run, ``retrained/top{rank}-{key[:10]}/`` (:func:`retrained_folder`),
and keeps its trained model there (``model.pt``, with its checkpoints, which a killed retraining continues:
``EvalContext.keep_model``); the store's ``retrained`` result lists each one's ``model`` path (relative to the
run folder; ``None`` when no file was left), and the ``derived`` result the derived architecture's.
``nasengine export RUN`` exports that model first (named ``derived``), ``nasengine evaluate`` / ``upscale
--model RUN`` use it. A run's Pareto front is that of its derivation rows (see
:func:`nasengine.report.front_of` and :class:`nasengine.report.RunReport`).

After every ``checkpoint_every`` epochs (and the last), the shared weights, the evaluator's state (optimizer,
data position), the controller's state and the torch / numpy / Python RNG states are written atomically to
``checkpoints/oneshot-eNNNNN.state`` (the store's state codec: data, never a pickle) and recorded in the store
with their sha256. A run killed at any moment resumes from the last checkpoint: the epochs after it run again
from the same states, so they sample and score the same children (on CPU exactly), and the rows they already
recorded are reused (a different genome at a stored place is a :class:`~nasengine.store.StoreError`, as in the
generational loop). The ``seconds`` budget stops the loop at an epoch boundary (resumable); the ``candidates``
and ``generations`` budgets do not apply (the loop is bounded by ``loop.epochs``).
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any

import attrs
import numpy as np

from nasengine.device import device_name
from nasengine.errors import ConfigError, NasengineError
from nasengine.options import anything, choice, flag, mapping, option, string, whole
from nasengine.search.loop import LoopPlan
from nasengine.search.records import LoopEnd
from nasengine.search.retraining import at_space
from nasengine.search.trainingloop import WeightTrainingLoop
from nasengine.space import canonical_json
from nasengine.store import CandidateRecord

__all__ = ["OneShotLoop", "OneShotOptions", "CHECKPOINT_NAME", "CHECKPOINT_FORMAT", "RETRAINED_FOLDER",
           "retrained_folder"]

log = logging.getLogger("nasengine.search")

#: The checkpoint's name in the store (and the stem of its files under ``checkpoints/``).
CHECKPOINT_NAME = "oneshot"
#: The ``format`` entry of a checkpoint's state.
CHECKPOINT_FORMAT = "nasengine.oneshot/1"
#: The run's subfolder with one folder per retrained architecture (:func:`retrained_folder`).
RETRAINED_FOLDER = "retrained"


@attrs.frozen(kw_only=True)
class OneShotOptions:
    """The ``loop`` section of a one-shot method."""

    epochs: int = option(10, whole(1), help="epochs of supernet (and controller) training, numbered from 1")
    child_steps: int = option(100, whole(0), help="supernet mini-batches per epoch, each on one sampled child")
    controller_steps: int = option(10, whole(0), help="controller updates per epoch (one ask + tell each)")
    controller_start: int = option(1, whole(1),
                                   help="first epoch (1-based) with controller updates (DeCoNAS: 6, after epoch 5)")
    derive_samples: int = option(100, whole(1), help="children sampled and scored at the end (derive: sample)")
    derive_batches: int = option(1, whole(1), help="validation batches each derivation child is scored on")
    derive: str = option("sample", choice("sample", "argmax"),
                         help="sample: best of derive_samples sampled children; argmax: the greedy decoding")
    derive_same_batches: bool = option(True, flag,
                                       help="score every derivation child on the same validation batches")
    retrain_top: int = option(0, whole(0), help="retrain the best K derived architectures from scratch (0: none)")
    checkpoint_every: int = option(1, whole(1), help="write a checkpoint every this many epochs (and after the last)")
    retrain_space: dict = option({}, mapping(string(), anything),
                                 help="space options the retraining overrides (HNAS: search at channels 8, retrain at "
                                      "64); the retrained rows' costs are those of the overridden space")


def retrained_folder(rank: int, key: str) -> str:
    """The folder (relative to the run folder) of the retraining of the ``rank``-th (0-based) best derived
    architecture, whose key is ``key``: its trained model (``model.pt``) and checkpoints."""
    return f"{RETRAINED_FOLDER}/top{rank + 1}-{key[:10]}"


def _setup_evaluator(ev, supernet, *, scale: int, seed: int, device: str, total_steps: int) -> None:
    """``ev.setup(...)``, telling the run's number of shared-weights steps (a learning-rate schedule needs it)
    to an evaluator whose ``setup`` takes ``total_steps``."""
    import inspect

    try:
        params = inspect.signature(ev.setup).parameters
        takes = "total_steps" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        takes = False
    extra = {"total_steps": total_steps} if takes else {}
    ev.setup(supernet, scale=scale, seed=seed, device=device, **extra)


class OneShotLoop(WeightTrainingLoop):
    """Epochs of shared-weight and controller training, then derivation and retraining (module docstring)."""

    Options = OneShotOptions
    # a scoring with the shared weights of its epoch cannot be repeated (retries = False, the base's)
    checkpoint_name, checkpoint_format = CHECKPOINT_NAME, CHECKPOINT_FORMAT
    checkpoint_unit, checkpoint_letter, checkpoint_digits = "epoch", "e", 5
    loop_words = checkpoint_words = "one-shot"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.opts: OneShotOptions
        self.supernet = None

    # ---- checks and plan -------------------------------------------------------------------------------
    @classmethod
    def check(cls, spec, plugins, controller: Any) -> None:
        opts = cls.options(spec)
        cls.check_budget(spec, f"loop.epochs (now {opts.epochs})")
        for name in ("sample", "ask", "tell", "state_dict", "load_state_dict"):
            if not callable(getattr(controller, name, None)):
                raise ConfigError(f"controller {spec.controller.name!r} has no {name}(); the one-shot loop needs "
                                  "sample, ask, tell and state_dict / load_state_dict")
        if opts.derive == "argmax" and not callable(getattr(controller, "argmax", None)):
            raise ConfigError(f"loop.derive: controller {spec.controller.name!r} has no argmax(); use derive: sample")
        evaluator_cls = spec.factory("evaluator", plugins)
        for name in ("setup", "train_step", "score", "state_dict", "load_state_dict"):
            if not callable(getattr(evaluator_cls, name, None)):
                raise ConfigError(f"evaluator {spec.evaluator.name!r} is no shared-weights evaluator (it has no "
                                  f"{name}()); a one-shot method needs one, e.g. sr-supernet")
        if opts.retrain_top:
            cls.retrain_evaluator(spec, plugins)  # its options, checked before any run folder exists
            if opts.retrain_space:
                cls.retrain_space_of(spec, plugins)

    @staticmethod
    def updates(opts: OneShotOptions) -> int:
        """Controller updates the whole run makes."""
        return max(0, opts.epochs - opts.controller_start + 1) * opts.controller_steps

    @classmethod
    def total(cls, spec, controller: Any) -> int | None:
        """The rows the run records: every controller update's children, the derivation and the retraining."""
        opts = cls.options(spec)
        pop = max(1, int(getattr(controller, "population_size", 1) or 1))
        return cls.updates(opts) * pop + (1 if opts.derive == "argmax" else opts.derive_samples) + opts.retrain_top

    @classmethod
    def plan(cls, spec, controller: Any, eval_seconds: float | None, parallelism: int, **context: Any) -> LoopPlan:
        """What the epochs, the derivation and the retraining run; with ``context["measure"]``, their time here
        from a few timed supernet steps and scorings (and the retrain evaluator's own plan)."""
        opts = cls.options(spec)
        pop = max(1, int(getattr(controller, "population_size", 1) or 1))
        updates = cls.updates(opts)
        n_derive = 1 if opts.derive == "argmax" else opts.derive_samples
        evaluations = cls.total(spec, controller)
        rounds = (f"{opts.epochs:,} epochs x {opts.child_steps:,} supernet steps; {opts.controller_steps:,} "
                  f"controller steps of {pop} per epoch from epoch {opts.controller_start} ({updates:,} updates)")
        derive = ("derivation: the argmax child" if opts.derive == "argmax" else
                  f"derivation: {n_derive:,} samples") + f" x {opts.derive_batches:,} validation batch(es)"
        details = [f"one-shot: {rounds}", derive]
        retrain_seconds = None
        timing = cls._measure(spec, controller, context) if context.get("measure") else None
        if opts.retrain_top:  # its time is measured only with the search's (which needs the data here)
            work, retrain_seconds = cls.plan_retrain(spec, {**context, "measure": timing is not None})
            details.append(f"retrain the top {opts.retrain_top} from scratch with {work}")
        else:
            details.append("no retraining (loop.retrain_top: 0)")
        seconds = None
        if timing is not None:
            t_step, t_score, t_update = timing
            epoch_supernet = opts.child_steps * t_step
            epoch_controller = opts.controller_steps * t_update
            seconds = (opts.epochs * epoch_supernet + updates * t_update + n_derive * opts.derive_batches * t_score)
            share = epoch_controller / max(1e-9, epoch_supernet + epoch_controller)
            details.append(f"measured here ({context.get('device', 'cpu')}): {t_step * 1000:.0f} ms per supernet "
                           f"step, {t_update * 1000:.0f} ms per controller update (ask {pop}, score, tell), "
                           f"{t_score * 1000:.0f} ms per child scoring; the controller's share of an epoch with "
                           f"controller updates: {share:.0%}")
            if opts.retrain_top and retrain_seconds is not None:
                seconds += math.ceil(opts.retrain_top / max(1, parallelism)) * retrain_seconds
        return LoopPlan(evaluations, rounds, cls.within_budget(spec, seconds), tuple(details))

    @classmethod
    def _measure(cls, spec, controller: Any, context: dict) -> tuple[float, float, float] | None:
        """``(seconds per supernet step, per child scoring, per controller update)`` measured on a few
        children of ``controller`` (a throwaway: the plan's), or ``None`` when the evaluator's data is
        missing here. An update is what the loop does: ask, score each child on one batch, tell."""
        import torch

        from nasengine.controller import Result
        from nasengine.supernet import Supernet

        space, evaluator, plugins = context.get("space"), context.get("evaluator"), context.get("plugins")
        if space is None or evaluator is None or plugins is None:
            return None
        try:
            evaluator.check()
        except NasengineError:
            return None
        threads = context.get("threads")
        before = torch.get_num_threads()
        rng_state = torch.get_rng_state()
        try:
            if threads:
                torch.set_num_threads(int(threads))
            device = context.get("device", "cpu")
            sn = Supernet(space).to(device)
            opts = cls.options(spec)
            _setup_evaluator(evaluator, sn, scale=int(space.decode(space.densest()).scale), seed=0, device=device,
                             total_steps=opts.epochs * opts.child_steps)
            # a step of the loop builds its child (a sampled child is rarely cached): timed with the step
            evaluator.train_step(sn.child(controller.sample(1)[0]))  # warm-up
            t0 = time.perf_counter()
            for genome in controller.sample(3):
                evaluator.train_step(sn.child(genome))
            t_step = (time.perf_counter() - t0) / 3
            t0 = time.perf_counter()
            for genome in controller.sample(3):
                evaluator.score(sn.child_of_graph(space.decode(genome)), batches=1)
            t_score = (time.perf_counter() - t0) / 3
            cost_model = spec.instantiate("cost", plugins)
            t0, n = time.perf_counter(), 2
            for _ in range(n):
                genomes = list(controller.ask())
                results = []
                for genome in genomes:
                    graph = space.decode(genome)
                    metrics = {k: float(v) for k, v in cost_model.metrics(graph).items()}
                    metrics.update({k: float(v) for k, v in space.genome_metrics(genome).items()})
                    metrics.update(evaluator.score(sn.child_of_graph(graph), batches=1))
                    results.append(Result(genome=genome, key=graph.key(), status="ok", metrics=metrics,
                                          reward=float(controller.reward.scalar(metrics))))
                controller.tell(results)
            t_update = (time.perf_counter() - t0) / n
        finally:
            close = getattr(evaluator, "close", None)
            if callable(close):
                close()
            torch.set_num_threads(before)
            torch.set_rng_state(rng_state)
        return t_step, t_score, t_update

    def describe(self) -> str:
        o = self.opts
        return (f"; one-shot: {o.epochs} epochs x {o.child_steps} supernet steps, {o.controller_steps} controller "
                f"steps from epoch {o.controller_start}")

    # ---- the run ---------------------------------------------------------------------------------------
    def run(self, latest: tuple[int, dict] | None, records: list) -> LoopEnd:
        try:
            return self._run()
        finally:
            close = getattr(self.ctx.evaluator, "close", None)
            if callable(close):  # e.g. the sr-supernet evaluator's prefetch thread
                close()

    def _run(self) -> LoopEnd:
        from nasengine.supernet import Supernet

        ctx, opts = self.ctx, self.opts
        ev, space = ctx.evaluator, ctx.space
        self.device = device_name(ctx.spec.device)
        seed = int(ctx.spec.seed)
        self._seed(seed)  # the shared weights' initialisation and every later draw come from the run seed
        self.supernet = Supernet(space).to(self.device)
        scale = int(space.decode(space.densest()).scale)
        _setup_evaluator(ev, self.supernet, scale=scale, seed=seed, device=self.device,
                         total_steps=opts.epochs * opts.child_steps)
        start = 1
        ck = ctx.store.load_checkpoint(CHECKPOINT_NAME)
        if ck is not None:
            self._restore(ck)
            start = ck.epoch + 1
            ctx.progress.line(f"resuming after epoch {ck.epoch} from {ck.path}")
        budget = ctx.budget
        for epoch in range(start, opts.epochs + 1):
            if budget.seconds is not None and ctx.elapsed() >= budget.seconds:
                if epoch > 1 and (epoch - 1) % opts.checkpoint_every:
                    self._checkpoint(epoch - 1)  # a later resume goes on from here, even between checkpoints
                return LoopEnd(epoch - 1, f"seconds budget reached ({ctx.elapsed():.1f}/{budget.seconds:g} s) "
                                          f"after epoch {epoch - 1}; resume with a larger budget to go on")
            t0 = time.perf_counter()
            loss = self._train_supernet(epoch)
            rewards = self._train_controller(epoch) if epoch >= opts.controller_start else []
            if epoch % opts.checkpoint_every == 0 or epoch == opts.epochs:
                self._checkpoint(epoch)
            ctx.store.set_elapsed(ctx.elapsed())
            line = f"epoch {epoch}/{opts.epochs}: supernet loss {loss:.4g}"
            if rewards:
                line += f" | {len(rewards)} children scored, mean reward {np.mean(rewards):.4g}"
            line += self._stats_text() + f" | {time.perf_counter() - t0:.1f} s"
            ctx.progress.line(line)
        if budget.seconds is not None and ctx.elapsed() >= budget.seconds:
            return LoopEnd(opts.epochs, f"seconds budget reached ({ctx.elapsed():.1f}/{budget.seconds:g} s) "
                                        "before the derivation; resume with a larger budget to derive")
        best = self._derive()
        if opts.retrain_top:
            self._retrain(best)
        derived = ctx.store.results().get("derived") or {}
        return LoopEnd(opts.epochs, f"{opts.epochs} epochs done; derived {derived.get('text', '?')}")

    # ---- phases ----------------------------------------------------------------------------------------
    def _stats_text(self) -> str:
        stats = getattr(self.ctx.controller, "stats", None)
        values = stats() if callable(stats) else {}
        return "".join(f" | {k} {values[k]:.4g}" for k in ("baseline", "entropy") if values.get(k) is not None)

    def _train_supernet(self, epoch: int) -> float:
        ctx, opts = self.ctx, self.opts
        losses = []
        for step in range(opts.child_steps):
            genome = ctx.controller.sample(1)[0]
            loss = float(ctx.evaluator.train_step(self.supernet.child(genome)))
            if not math.isfinite(loss):
                raise NasengineError(f"supernet training diverged: loss {loss} at epoch {epoch} step {step + 1} on "
                                     f"child {canonical_json(ctx.space.to_json(genome))}; lower evaluator.lr")
            losses.append(loss)
            self._show(f"epoch {epoch}/{opts.epochs} supernet {step + 1}/{opts.child_steps} loss {loss:.4g}",
                       force=step == 0)
        return float(np.mean(losses)) if losses else float("nan")

    def _train_controller(self, epoch: int) -> list[float]:
        ctx, opts = self.ctx, self.opts
        start = getattr(ctx.controller, "start_epoch", None)
        if callable(start):  # optional hook: e.g. HNAS resets its baseline and steps its rate per epoch
            start(epoch)
        idx, rewards = 0, []
        for step in range(opts.controller_steps):
            genomes = list(ctx.controller.ask())
            recs = []
            for genome in genomes:
                recs.append(self._score(epoch, idx, genome, 1))
                idx += 1
            results = [ctx.result(g, r) for g, r in zip(genomes, recs)]
            ctx.controller.tell(results)
            rewards += [r.reward for r in results if r.reward is not None and math.isfinite(r.reward)]
            self._show(f"epoch {epoch}/{opts.epochs} controller {step + 1}/{opts.controller_steps} "
                       f"mean reward {np.mean(rewards) if rewards else float('nan'):.4g}{self._stats_text()}",
                       force=step == 0)
        return rewards

    def _differs(self, g: int, i: int) -> tuple[str, str]:
        return f"resuming epoch {g}, the controller drew a different genome at idx {i}", "drawn"

    def _score(self, g: int, i: int, genome: Any, batches: int, derive: bool = False) -> CandidateRecord:
        """Score ``genome`` with the shared weights on the next ``batches`` validation batches (``derive``: with
        the evaluator's ``score_derivation`` where it has one, e.g. its own derivation images); its row at
        ``(g, i)`` (the stored one of an earlier session, after checking it is the same genome)."""
        ctx = self.ctx
        graph = ctx.space.decode(genome)
        t0, c0 = time.perf_counter(), time.process_time()
        score = getattr(ctx.evaluator, "score_derivation", None) if derive else None
        score = score if callable(score) else ctx.evaluator.score
        metrics = {k: float(v) for k, v in score(self.supernet.child_of_graph(graph), batches=batches).items()}
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return self._row(g, i, genome, metrics, wall, cpu, graph=graph,
                         failed="non-finite metric(s) with the shared weights")

    def _derive(self) -> CandidateRecord:
        ctx, opts = self.ctx, self.opts
        g = opts.epochs + 1
        genomes = [ctx.controller.argmax()] if opts.derive == "argmax" else list(ctx.controller.sample(opts.derive_samples))
        start = ctx.evaluator.state_dict() if opts.derive_same_batches else None
        recs = []
        for i, genome in enumerate(genomes):
            if start is not None:
                ctx.evaluator.load_state_dict(start)
            recs.append(self._score(g, i, genome, opts.derive_batches, derive=True))
            self._show(f"derive {i + 1}/{len(genomes)}", force=i == 0)
        ok = [(r, ctx.result(None, r).reward) for r in recs if r.status == "ok"]
        if not ok:
            raise NasengineError(f"derivation: none of the {len(recs)} derived children scored a finite reward")
        best, reward = max(ok, key=lambda x: x[1])  # the first of equals
        text = ctx.space.describe(ctx.space.from_json(best.genome)) if hasattr(ctx.space, "describe") else \
            canonical_json(best.genome)
        ctx.store.set_result("derived", {
            "genome": best.genome, "key": best.key, "generation": best.generation, "idx": best.idx,
            "reward": reward, "metrics": best.metrics_all(), "text": text, "derive": opts.derive,
            "samples": len(recs)})
        ctx.progress.line(f"derived ({opts.derive}, {len(recs)} scored): {text} | reward {reward:.4g}")
        return best

    def _retrain(self, best: CandidateRecord) -> None:
        """The ``retrain_top`` best distinct derived architectures, trained from scratch through the executor,
        each keeping its model in its :func:`retrained_folder`."""
        from nasengine.train import MODEL_FILE

        ctx, opts, spec = self.ctx, self.opts, self.ctx.spec
        g = opts.epochs + 2
        scored = [(ctx.result(None, r).reward, r) for r in ctx.store.candidates(status="ok", generation=g - 1)]
        scored.sort(key=lambda x: -x[0])  # stable: the first of equals first
        top, seen = [], set()
        for _, rec in scored:
            if rec.key not in seen:
                seen.add(rec.key)
                top.append(rec)
        top = top[:opts.retrain_top]
        rs = self.retrain_spec(spec)
        space = ctx.space
        if opts.retrain_space:
            from nasengine.plugins import get_plugins

            space = self.retrain_space_of(spec, get_plugins())
        tasks, infos = [], {}
        for i, rec in enumerate(top):
            if ctx.store.get(g, i) is not None:
                continue
            if opts.retrain_space:  # the architecture at the retraining's options: its own key and costs
                rec = at_space(rec, space, ctx.cost_model)
            # always a folder in the run (whatever executor.workdirs says): the trained model is kept there
            workdir = (ctx.store.run_dir / retrained_folder(i, rec.key)).absolute()  # for workers elsewhere
            task, seed = self._retrain_task(g, i, rec, str(workdir), keep_model=True)
            tasks.append(task)
            infos[task.task_id] = (i, rec, seed)
        if tasks:
            ctx.progress.line(f"retraining {len(tasks)} of the top {len(top)} derived architecture(s) with {rs.name}")
            self._show("retrain", force=True)
            for outcome in ctx.executor.imap(ctx.submit(t) for t in tasks):
                i, rec, seed = infos.pop(outcome.task_id)
                self._record_retrained(g, i, rec, seed, outcome, f"retrained {i + 1}/{len(top)}")
        entries, genomes = [], []
        for r in ctx.store.candidates(generation=g):
            model = f"{retrained_folder(r.idx, r.key)}/{MODEL_FILE}"
            found = r.status == "ok" and (ctx.store.run_dir / model).is_file()
            entries.append({"idx": r.idx, "key": r.key, "status": r.status, "metrics": r.metrics,
                            "model": model if found else None})
            genomes.append(canonical_json(r.genome))
        ctx.store.set_result("retrained", entries)
        derived = ctx.store.results().get("derived")
        if isinstance(derived, dict):
            # matched by genome: with loop.retrain_space the retrained architecture has a key of its own
            want = canonical_json(derived.get("genome"))
            model = next((e["model"] for e, gj in zip(entries, genomes) if gj == want and e["model"]), None)
            ctx.store.set_result("derived", {**derived, "model": model})
        if any(e["status"] == "ok" and not e["model"] for e in entries):
            log.warning("the retraining left no model file under %s/%s (an evaluator that keeps none, or "
                        "workers without the run folder)", ctx.store.run_dir, RETRAINED_FOLDER)

    # ---- checkpoints -----------------------------------------------------------------------------------
    def _checkpoint(self, epoch: int) -> None:
        """The state after ``epoch``: shared weights, evaluator, controller, RNGs (the base's
        :meth:`~nasengine.search.trainingloop.WeightTrainingLoop._write_checkpoint`)."""
        ctx = self.ctx
        self._write_checkpoint(epoch, {
            "supernet": {k: v.detach().cpu() for k, v in self.supernet.state_dict().items()},
            "evaluator": ctx.evaluator.state_dict(), "controller": ctx.controller.state_dict(),
            "rng": self._rng_states()})

    def _checkpoint_recorded(self, epoch: int) -> None:
        self.ctx.store.save_controller_state(epoch, self.ctx.controller.state_dict())

    def _restore(self, ck) -> None:
        ctx = self.ctx
        state = self._read_checkpoint(ck)
        self.supernet.load_state_dict(state["supernet"])
        ctx.evaluator.load_state_dict(state["evaluator"])
        ctx.controller.load_state_dict(state["controller"])
        self._set_rng_states(state["rng"])
