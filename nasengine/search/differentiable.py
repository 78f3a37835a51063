"""The differentiable search loop (FGNAS; any pruning or DARTS-style method): one supernet whose weights and
architecture parameters are trained together by gradient descent, then the discrete architecture it settles on
is derived and retrained.

The space provides the supernet (:meth:`nasengine.space.SearchSpace.differentiable_supernet`), a
``torch.nn.Module`` with this protocol (nothing else of it is read)::

    net = space.differentiable_supernet()
    net(lr)                              # LR batch -> SR batch (the loop feeds pixels in the chosen range)
    net.param_groups(lr, arch_lr)        # Adam groups: the weights at lr, the architecture parameters at arch_lr
    net.cost_term(lr_size=(h, w))        # the differentiable Mult-Adds R: a nasengine.cost.SoftCost (its
                                         # mult_adds) or a 0-dim tensor; at hard (straight-through) gates its
                                         # forward value is the architecture's cost
    net.genome()                         # the hard genome now (a genome of the space)
    net.derive()                         # optional: the derived network with weights, an object with .genome
                                         # (the genome it realises) and .module (torch module of decode(genome))

The training is the SR trainer's (:class:`nasengine.sr.trainer.Trainer`) through its training-step hook
(:class:`nasengine.search.diffstep.DifferentiableStep`): ``loss = L1 + lambda * R``, L1 on pixels in ``[0, 1]`` or ``0-255``
(``loop.pixel_range``: the network then sees and makes 0-255 pixels, the EDSR convention) and R at the training
LR patch or at ``loop.cost_lr_size`` (METHODS §3.4: lambda means nothing without both). The data, the optimiser
settings, the step budget and the schedule come from the run's ``evaluator`` section, an ``sr-train`` one (its
:class:`~nasengine.train.TrainRecipe`); the architecture parameters get ``loop.arch_lr`` and follow the same
schedule.

Lambda (``loop.lam_mode``): ``fixed`` (the paper's: ``loop.lam``; with ``loop.lam_ratio`` the lambda of step 0 is
chosen so that ``lambda * R = lam_ratio * L1`` on the first batch, then kept) or ``target`` (an engine
extension, not a paper's: every ``target_every`` steps ``lambda <- lambda * exp(target_eta * (R_hard / T - 1))``
with ``T = loop.target_mult_adds`` and R_hard the hard Mult-Adds at the cost model's ``lr_size``, so lambda
rises while the architecture is above the budget and falls below it). The lambda in force is part of the
training step's state (checkpointed).

Rows. Generation 0 records the architecture over time: row ``i`` is the hard genome after step
``i * record_every`` (row 0: before training; a last row at the final step), with its costs from the cost model
(plus ``space.genome_metrics``), and as metrics ``step``, the last step's ``l1``, ``cost_term``, ``lambda``,
``lambda_r_over_l1`` and (``record_psnr``) the protocol ``psnr`` / ``ssim`` of the masked supernet on the
evaluator's ``val_data``; ``nasengine show`` plots Mult-Adds and PSNR against the rows. Every row is a measurement,
none a duplicate. Generation 1 row 0 is the **derived** architecture (``net.derive()``'s genome, else
``net.genome()``), with the PSNR / SSIM of the derived network with its supernet weights when ``derive()`` gives
them (also written to ``derived/model.pt``); it is the store's ``derived`` result. With ``loop.retrain`` the
derived genome is then trained from scratch through the executor with the ``retrain`` section's evaluator
(default ``sr-train``), recorded as generation 2; ``loop.retrain_space`` overrides space options for it (FGNAS:
x3/x4 from an x2 search, the tail widened, METHODS §3.6) and the row carries that architecture's key and costs.
With ``loop.retrain_from: derived`` the derived network is fine-tuned from its supernet weights instead, in the
driver with the retrain section's recipe (an ``sr-train`` one), its model in ``retrained/model.pt``.

Checkpoints: every ``checkpoint_every`` steps and after the last, the trainer's whole state (supernet with its
architecture parameters, Adam, schedule, step, losses, torch RNG, the training step's lambda) plus numpy /
Python RNG states go atomically to ``checkpoints/differentiable-sNNNNNNNNN.state`` (the state codec: data, never
a pickle), recorded in the store with their sha256. A run killed at any moment resumes from the last
checkpoint and ends with exactly the gates and rows of an uninterrupted run (on the CPU). A ``seconds`` budget
stops after a step (with a checkpoint there); the ``candidates`` / ``generations`` budgets do not apply.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import attrs

from nasengine.device import device_name
from nasengine.errors import ConfigError, NasengineError
from nasengine.options import anything, choice, flag, mapping, option, optional, positive, real, sequence, string, whole
from nasengine.search.loop import LoopPlan
from nasengine.search.records import LoopEnd, candidate_seed
from nasengine.search.retraining import at_space, retrain_evaluator, retrain_spec
from nasengine.search.trainingloop import WeightTrainingLoop, finite, outcome_text
from nasengine.store import CandidateRecord

__all__ = ["DifferentiableLoop", "DifferentiableOptions", "time_steps", "CHECKPOINT_NAME", "CHECKPOINT_FORMAT"]

log = logging.getLogger("nasengine.search")

#: The checkpoint's name in the store (and the stem of its files under ``checkpoints/``).
CHECKPOINT_NAME = "differentiable"
#: The ``format`` entry of a checkpoint's state.
CHECKPOINT_FORMAT = "nasengine.differentiable/1"
#: Generations of the rows: the architecture over time, the derived one, its retraining.
TRAJECTORY, DERIVED, RETRAINED = 0, 1, 2


@attrs.frozen(kw_only=True)
class DifferentiableOptions:
    """The ``loop`` section of a differentiable method (the training budget, lr and schedule are the
    ``evaluator`` section's)."""

    arch_lr: float = option(1e-4, positive, help="Adam learning rate of the architecture parameters (gates)")
    lam: float = option(1e-9, real(0.0), help="lambda, the weight of the cost term R (fixed mode: kept)")
    lam_mode: str = option("fixed", choice("fixed", "target"),
                           help="fixed: lambda as given; target: steered toward target_mult_adds (extension)")
    lam_ratio: float | None = option(None, optional(positive),
                                     help="choose lambda at step 0 so that lambda*R = lam_ratio*L1 (none: lam)")
    target_mult_adds: float | None = option(None, optional(positive),
                                            help="target mode: the Mult-Adds budget at the cost model's lr_size")
    target_eta: float = option(0.1, positive, help="target mode: lambda *= exp(eta * (R_hard / T - 1))")
    target_every: int = option(100, whole(1), help="target mode: steps between lambda updates")
    pixel_range: int = option(1, choice(1, 255), help="L1 (and the network's pixels) on [0, 1] or 0-255")
    cost_lr_size: tuple | None = option(None, optional(sequence(whole(1), length=2)),
                                        help="LR size [h, w] of the cost term R (none: the training LR patch)")
    record_every: int = option(100, whole(1), help="record the hard architecture every this many steps")
    record_psnr: bool = option(True, flag, help="score the masked supernet on val_data at every record")
    log_every: int = option(100, whole(1), help="a progress line every this many steps")
    checkpoint_every: int = option(1000, whole(1), help="write a checkpoint every this many steps (and the last)")
    retrain: bool = option(True, flag, help="train the derived architecture with the retrain section")
    retrain_from: str = option("scratch", choice("scratch", "derived"),
                               help="retrain from scratch (through the executor) or fine-tune the derived weights "
                                    "(in the driver, with the retrain section's recipe)")
    retrain_space: dict = option({}, mapping(string(), anything),
                                 help="space options the retraining overrides (FGNAS x3/x4 from an x2 search: "
                                      "{scale: 3}); only from scratch")


def time_steps(space, recipe, opts: DifferentiableOptions, *, device: str = "cpu", threads: int | None = None,
               steps: int = 3, warmup: int = 2) -> dict[str, float]:
    """Seconds per training step (median of ``steps``, after ``warmup`` steps each, random patches of the
    recipe's batch and patch size, Adam) of: ``plain`` -- the supernet's densest graph built as an ordinary
    network, L1 only; ``gated`` -- the differentiable supernet, L1 only (gates in the forward pass, both parameter
    groups); ``differentiable`` -- the loop's step, L1 + lambda * R (gates and the cost term). The three are
    timed interleaved, one step of each in turn, so that a warming machine (allocator, caches, clocks) or
    another process's load falls on all three alike rather than on the one timed first. Torch's RNG is
    restored."""
    import torch

    from nasengine.search.diffstep import DifferentiableStep as Step
    from nasengine.sr.models import channels_of
    from nasengine.train import _threads, init_model

    graph = space.decode(space.densest())
    scale, c = int(graph.scale), 1 if channels_of(graph.input_channels) == "y" else 3
    batch, lr_side = recipe.config.batch_size, recipe.patch_size // scale
    cost_size = tuple(opts.cost_lr_size) if opts.cost_lr_size else (lr_side, lr_side)
    cuda = str(device).startswith("cuda")
    rng = torch.get_rng_state()
    try:
        with _threads(threads):
            gen = torch.Generator().manual_seed(0)
            x = torch.rand(batch, c, lr_side, lr_side, generator=gen).to(device)
            y = torch.rand(batch, c, lr_side * scale, lr_side * scale, generator=gen).to(device)
            runs = {}
            model = init_model(graph, seed=0, init_std=recipe.init_std).to(device)
            adam = torch.optim.Adam(model.parameters(), lr=recipe.config.lr, betas=recipe.config.betas)
            runs["plain"] = (lambda m=model: (torch.nn.functional.l1_loss(m(x), y), None), adam)
            for name, with_cost in (("gated", False), ("differentiable", True)):
                torch.manual_seed(0)
                net = space.differentiable_supernet().to(device)
                step = Step(lr=recipe.config.lr, arch_lr=opts.arch_lr, lam=opts.lam, lr_size=cost_size,
                            pixel_range=opts.pixel_range, with_cost=with_cost)
                adam = torch.optim.Adam(step.param_groups(net), lr=recipe.config.lr, betas=recipe.config.betas)
                runs[name] = (lambda n=net, s=step: s(n, x, y, 1), adam)
            times = {name: [] for name in runs}
            for i in range(warmup + steps):
                for name, (loss_of, adam) in runs.items():
                    if cuda:
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    loss, _ = loss_of()
                    adam.zero_grad()
                    loss.backward()
                    adam.step()
                    if cuda:
                        torch.cuda.synchronize()
                    if i >= warmup:
                        times[name].append(time.perf_counter() - t0)
    finally:
        torch.set_rng_state(rng)
    return {name: float(sorted(t)[len(t) // 2]) for name, t in times.items()}


class _Stop(Exception):
    """The seconds budget ran out after a step (raised from the trainer's callback, caught by the loop)."""

    def __init__(self, step: int):
        self.step = step


class DifferentiableLoop(WeightTrainingLoop):
    """Weights and architecture trained together, then derivation and retraining (module docstring)."""

    Options = DifferentiableOptions
    # a row is a measurement of the supernet at its step: it cannot be repeated (retries = False, the base's)
    checkpoint_name, checkpoint_format = CHECKPOINT_NAME, CHECKPOINT_FORMAT
    checkpoint_unit, checkpoint_letter, checkpoint_digits = "step", "s", 9
    loop_words, checkpoint_words = "differentiable", "differentiable-loop"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.opts: DifferentiableOptions
        self.net = None
        self.trainer = None
        self._logs: dict[str, float] = {}

    # ---- checks and plan -------------------------------------------------------------------------------
    @classmethod
    def check(cls, spec, plugins, controller: Any) -> None:
        from nasengine.space import SearchSpace

        opts = cls.options(spec)
        cls.check_budget(spec, "the evaluator's training budget (evaluator.steps)")
        if opts.lam_mode == "target" and opts.target_mult_adds is None:
            raise ConfigError("loop.target_mult_adds: lam_mode 'target' needs a Mult-Adds budget, got None")
        if opts.lam_mode == "target" and opts.lam == 0:
            raise ConfigError("loop.lam: lam_mode 'target' multiplies lambda, so it must start > 0, got 0")
        space_cls = spec.factory("space", plugins)
        if getattr(space_cls, "differentiable_supernet", None) is SearchSpace.differentiable_supernet:
            raise ConfigError(f"space {spec.space.name!r} has no differentiable_supernet(); the differentiable "
                              "loop needs one")
        evaluator = spec.instantiate("evaluator", plugins)
        if getattr(evaluator, "recipe", None) is None:
            raise ConfigError(f"evaluator {spec.evaluator.name!r} has no training recipe; the differentiable loop "
                              "trains with the evaluator section of an sr-train evaluator (data, lr, steps, schedule)")
        if evaluator.recipe.config.steps is None:
            raise ConfigError("evaluator.steps: the differentiable loop trains a number of steps (epochs / seconds "
                              "budgets are not supported there; use budget.seconds to stop early)")
        if opts.retrain:
            ev = cls.retrain_evaluator(spec, plugins)
            if opts.retrain_space:
                cls.retrain_space_of(spec, plugins)
            if opts.retrain_from == "derived":
                if opts.retrain_space:
                    raise ConfigError(f"loop.retrain_from: 'derived' fine-tunes the derived weights in the search's "
                                      f"own space; with loop.retrain_space {opts.retrain_space} the architecture "
                                      "changes (METHODS §3.6: x3/x4 retrain from scratch), use retrain_from 'scratch'")
                if getattr(ev, "recipe", None) is None:
                    raise ConfigError(f"retrain.name: fine-tuning (loop.retrain_from 'derived') trains with the retrain "
                                      f"evaluator's recipe; {retrain_spec(spec).name!r} has none (use sr-train)")

    @staticmethod
    def _steps(spec, plugins=None, evaluator=None) -> int:
        if evaluator is None:
            evaluator = spec.instantiate("evaluator", plugins)
        return int(evaluator.recipe.config.steps)

    @classmethod
    def rows(cls, opts: DifferentiableOptions, steps: int) -> int:
        """Rows of generation 0: step 0, every ``record_every`` steps, and the last step."""
        return 1 + steps // opts.record_every + (1 if steps % opts.record_every else 0)

    @classmethod
    def total(cls, spec, controller: Any) -> int | None:
        from nasengine.plugins import get_plugins

        opts = cls.options(spec)
        try:
            steps = cls._steps(spec, get_plugins())
        except Exception:  # noqa: BLE001 - only the progress bar's total
            return None
        return cls.rows(opts, steps) + 1 + int(opts.retrain)

    @classmethod
    def plan(cls, spec, controller: Any, eval_seconds: float | None, parallelism: int, **context: Any) -> LoopPlan:
        """Steps, schedule, lambda and records; with ``context["measure"]`` the time of a step here (timed on the
        supernet, :func:`time_steps`) and of a record's validation, plus the retraining's own plan."""
        opts = cls.options(spec)
        plugins = context.get("plugins")
        evaluator = context.get("evaluator")
        if evaluator is None and plugins is not None:
            evaluator = spec.instantiate("evaluator", plugins)
        recipe = evaluator.recipe
        cfg = recipe.config
        steps = int(cfg.steps)
        if cfg.schedule == "step":
            sched = f"x{cfg.gamma:g} every {cfg.step_size:,} steps"
        else:
            sched = "constant" if cfg.schedule == "constant" else f"cosine to {cfg.min_lr:g}"
        rows = cls.rows(opts, steps)
        rounds = f"{steps:,} steps of weights and architecture, {rows} records"
        if opts.lam_mode == "target":
            lam = (f"lambda from {opts.lam:g} steered toward {opts.target_mult_adds:.4g} Mult-Adds every "
                   f"{opts.target_every} steps (eta {opts.target_eta:g}; engine extension)")
        elif opts.lam_ratio is not None:
            lam = f"lambda chosen at step 0 so that lambda*R = {opts.lam_ratio:g}*L1, then fixed"
        else:
            lam = f"fixed lambda {opts.lam:g}"
        size = "the training LR patch" if opts.cost_lr_size is None else "LR {}x{}".format(*opts.cost_lr_size)
        details = [f"differentiable: {steps:,} steps, Adam {cfg.lr:g} (architecture {opts.arch_lr:g}), betas "
                   f"{cfg.betas[0]:g}/{cfg.betas[1]:g}, batch {cfg.batch_size}, HR patch {recipe.patch_size}, "
                   f"schedule {sched}, data {recipe.train_data}",
                   f"loss: L1 on {'0-255' if opts.pixel_range == 255 else '[0, 1]'} pixels + lambda * R (R at "
                   f"{size}); {lam}",
                   f"records every {opts.record_every:,} steps" + (f" with PSNR on {recipe.val_data}"
                                                                    if opts.record_psnr and recipe.val_data else "")
                   + f"; checkpoints every {opts.checkpoint_every:,} steps"]
        retrain_seconds = None
        measure = bool(context.get("measure")) and cls.data_here(context)
        if opts.retrain:
            work, retrain_seconds = cls.plan_retrain(spec, {**context, "measure": measure})
            how = "fine-tune the derived network (its weights)" if opts.retrain_from == "derived" else \
                "retrain the derived architecture from scratch"
            at = (" at space options " + ", ".join(f"{k} {v}" for k, v in opts.retrain_space.items())
                  if opts.retrain_space else "")
            details.append(f"then derive and {how}{at} with {work}")
        else:
            details.append("then derive (no retraining: loop.retrain false)")
        seconds = None
        space = context.get("space")
        if measure and space is not None:
            device = context.get("device", "cpu")
            t = time_steps(space, recipe, opts, device=device, threads=context.get("threads"))
            t_val = 0.0
            if opts.record_psnr and recipe.val_data:
                from nasengine.train import time_validation

                try:
                    t_val = time_validation(space.decode(space.densest()), recipe, device=device,
                                            threads=context.get("threads"))
                except NasengineError:
                    t_val = 0.0
            seconds = steps * t["differentiable"] + rows * t_val
            details.append(f"measured here ({device}): {t['differentiable'] * 1000:.0f} ms per step (plain "
                           f"supernet step {t['plain'] * 1000:.0f} ms, gated without the cost term "
                           f"{t['gated'] * 1000:.0f} ms), {t_val:.2f} s per record's validation")
            if opts.retrain and retrain_seconds is not None:
                seconds += retrain_seconds
        return LoopPlan(rows + 1 + int(opts.retrain), rounds, cls.within_budget(spec, seconds), tuple(details))

    def describe(self) -> str:
        o = self.opts
        return f"; differentiable: lambda {o.lam_mode}, records every {o.record_every} steps"

    # ---- the run ---------------------------------------------------------------------------------------
    def run(self, latest, records: list) -> LoopEnd:
        from nasengine.search.diffstep import DifferentiableStep
        from nasengine.sr.models import channels_of
        from nasengine.sr.trainer import Trainer

        ctx, opts = self.ctx, self.opts
        space, ev = ctx.space, ctx.evaluator
        recipe = ev.recipe
        self.device = device_name(ctx.spec.device)
        seed = int(ctx.spec.seed)
        self._seed(seed)  # the supernet's initialisation comes from the run seed
        self.net = space.differentiable_supernet()
        graph = space.decode(space.densest())
        self.scale, self.channels = int(graph.scale), channels_of(graph.input_channels)
        lr_side = recipe.patch_size // self.scale
        config = recipe.config.evolve(seed=seed % 2**31, device=self.device, val_every=0, checkpoint_every=0)
        cost_size = tuple(opts.cost_lr_size) if opts.cost_lr_size else (lr_side, lr_side)
        target_size = getattr(ctx.cost_model, "lr_size", None) or cost_size
        self.train_step = DifferentiableStep(lr=config.lr, arch_lr=opts.arch_lr, lam=opts.lam, lr_size=cost_size,
                         pixel_range=opts.pixel_range, lam_mode=opts.lam_mode, lam_ratio=opts.lam_ratio,
                         target_mult_adds=opts.target_mult_adds, target_eta=opts.target_eta,
                         target_every=opts.target_every, target_lr_size=target_size)
        dataset = ev.dataset(self.scale, self.channels, seed % 2**31) if hasattr(ev, "dataset") else \
            recipe.dataset(self.scale, self.channels, seed % 2**31)
        dataset.seed = seed % 2**31
        self.total_steps = int(config.steps)
        self.trainer = Trainer(self.net, dataset, config, progress=False, callback=self, train_step=self.train_step)
        ck = ctx.store.load_checkpoint(CHECKPOINT_NAME)
        if ck is not None:
            self._restore(ck)
            ctx.progress.line(f"resuming after step {ck.epoch} from {ck.path}")
        else:
            self._record(0)
        try:
            self.trainer.fit()
        except _Stop as stop:
            return LoopEnd(0, f"seconds budget reached ({ctx.elapsed():.1f}/{ctx.budget.seconds:g} s) after step "
                              f"{stop.step}; resume with a larger budget to go on")
        ctx.store.set_elapsed(ctx.elapsed())
        best, module = self._derive()
        if opts.retrain and opts.retrain_from == "derived":
            self._finetune(best, module)
        elif opts.retrain:
            self._retrain(best)
        derived = ctx.store.results().get("derived") or {}
        return LoopEnd(1, f"{self.total_steps} steps done; derived {derived.get('text', '?')}")

    # ---- trainer callback ------------------------------------------------------------------------------
    def on_logs(self, step: int, logs: dict) -> None:
        if step == 1:
            self.ctx.progress.line("step 0: " + self._logs_text(logs))
        self._logs = dict(logs)

    def on_step(self, step: int, loss: float) -> None:
        ctx, opts = self.ctx, self.opts
        last = step == self.total_steps
        self._show(f"step {step}/{self.total_steps} loss {loss:.4g} " + self._logs_text(self._logs), force=step == 1)
        if step % opts.log_every == 0 or last:
            ctx.progress.line(f"step {step}/{self.total_steps}: loss {loss:.4g}, {self._logs_text(self._logs)}")
        if step % opts.record_every == 0 or last:
            self._record(step)
        stop = ctx.budget.seconds is not None and ctx.elapsed() >= ctx.budget.seconds
        if step % opts.checkpoint_every == 0 or last or stop:
            self._checkpoint(step)
            ctx.store.set_elapsed(ctx.elapsed())
        if stop and not last:
            raise _Stop(step)

    @staticmethod
    def _logs_text(logs: dict) -> str:
        names = (("l1", "L1"), ("cost_term", "R"), ("lambda", "lambda"), ("lambda_r_over_l1", "lambda*R/L1"))
        return ", ".join(f"{label} {logs[k]:.4g}" for k, label in names if k in logs)

    # ---- rows ------------------------------------------------------------------------------------------
    def _differs(self, g: int, i: int) -> tuple[str, str]:
        return f"resuming, the supernet holds a different genome at row ({g}, {i})", "now"

    def _validate(self, module) -> dict[str, float]:
        """Protocol PSNR / SSIM of ``module`` (trained on ``pixel_range`` pixels) on the evaluator's val_data."""
        from nasengine.search.diffstep import range_wrapper
        from nasengine.sr.evaluate import evaluate
        from nasengine.sr.models import TorchUpscaler

        recipe = self.ctx.evaluator.recipe
        if not recipe.val_data:
            return {}
        was = module.training
        try:
            rep = evaluate(TorchUpscaler(range_wrapper(module, self.opts.pixel_range), scale=self.scale,
                                         channels=self.channels, device=self.device),
                           [recipe.val_data], scale=self.scale, pipeline=recipe.val_pipeline)
        finally:
            module.train(was)
        (mean,) = rep.sets
        return {"psnr": float(mean.psnr), "ssim": float(mean.ssim)}

    def _record(self, step: int) -> CandidateRecord:
        """Row of generation 0 for the architecture after ``step`` steps."""
        opts = self.opts
        i = step // opts.record_every + (1 if step % opts.record_every else 0)
        if self.ctx.store.get(TRAJECTORY, i) is not None:
            return self._row(TRAJECTORY, i, self.net.genome(), {}, 0.0)
        t0 = time.perf_counter()
        metrics = {"step": float(step)}
        if step:
            metrics.update({k: float(v) for k, v in self._logs.items()})
        if opts.record_psnr:
            metrics.update(self._validate(self.net))
        return self._row(TRAJECTORY, i, self.net.genome(), metrics, time.perf_counter() - t0)

    def _derive(self) -> CandidateRecord:
        ctx = self.ctx
        t0 = time.perf_counter()
        metrics = {"step": float(self.total_steps)}
        derive = getattr(self.net, "derive", None)
        weights = None
        if callable(derive):
            d = derive()
            genome, module = d.genome, getattr(d, "module", None)
            if module is not None:
                module = module.to(self.device)
                weights = module
                metrics.update(self._validate(module))
        else:
            genome = self.net.genome()
        rec = self._row(DERIVED, 0, genome, metrics, time.perf_counter() - t0)
        text = ctx.space.describe(genome)
        model_path = None
        if weights is not None and ctx.store.get(DERIVED, 0) is not None:
            model_path = self._save_derived(genome, weights, rec.metrics)
        ctx.store.set_result("derived", {
            "genome": rec.genome, "key": rec.key, "generation": rec.generation, "idx": rec.idx,
            "metrics": rec.metrics_all(), "text": text, "derive": "weights" if weights is not None else "genome",
            "model": model_path, "pixel_range": self.opts.pixel_range, "steps": self.total_steps})
        shown = ", ".join(f"{k} {rec.metrics[k]:.4g}" for k in ("psnr", "ssim") if k in rec.metrics)
        ctx.progress.line(f"derived: {text} | Mult-Adds {rec.mult_adds:.4g}, params {rec.params:.4g}"
                          + (f" | with the supernet's weights: {shown}" if shown else ""))
        return rec, weights

    def _save_derived(self, genome, module, metrics: dict) -> str:
        """``derived/model.pt``: the derived architecture with the supernet's weights (for pixel_range 255 the
        module works on 0-255 pixels; the store's ``derived`` result says so)."""
        from nasengine.checkpoints import save_trained_model
        from nasengine.genomefile import Architecture

        spec = self.ctx.spec
        arch = Architecture(graph=self.ctx.space.decode(genome), name="derived", space=self.ctx.space,
                            space_name=spec.space.name, space_options=spec.space.kwargs(), genome=genome,
                            source=f"{spec.method} run {self.ctx.store.run_dir}")
        path = save_trained_model(self.ctx.store.run_dir / "derived" / "model.pt", arch, module.cpu(),
                                  metrics=dict(metrics))
        return str(Path(path).relative_to(self.ctx.store.run_dir))

    def _retrain(self, best: CandidateRecord) -> None:
        """The derived architecture trained from scratch through the executor (generation 2), decoded with
        ``loop.retrain_space``'s options over the run's (its row: that architecture's key and costs)."""
        ctx, spec, opts = self.ctx, self.ctx.spec, self.opts
        if ctx.store.get(RETRAINED, 0) is None:
            rs = retrain_spec(spec)
            if opts.retrain_space:
                from nasengine.plugins import get_plugins

                best = at_space(best, self.retrain_space_of(spec, get_plugins()), ctx.cost_model)
            workdir = str(ctx.store.run_dir / "work" / "retrain-000") if spec.workdirs else None
            task, seed = self._retrain_task(RETRAINED, 0, best, workdir)
            ctx.progress.line(f"retraining the derived architecture from scratch with {rs.name}"
                              + (f" at {opts.retrain_space}" if opts.retrain_space else ""))
            self._show("retrain", force=True)
            for outcome in ctx.executor.imap([ctx.submit(task)]):
                self._record_retrained(RETRAINED, 0, best, seed, outcome, "retrained")
        ctx.store.set_result("retrained", [{"idx": r.idx, "key": r.key, "status": r.status, "metrics": r.metrics}
                                           for r in ctx.store.candidates(generation=RETRAINED)])

    def _finetune(self, best: CandidateRecord, module) -> None:
        """The derived network fine-tuned from its supernet weights with the retrain section's recipe, in the
        driver (generation 2; its model in ``retrained/model.pt``). Not resumable midway: a killed run fine-tunes
        again from the same derived weights."""
        from nasengine.plugins import get_plugins
        from nasengine.search.diffstep import range_wrapper
        from nasengine.train import train_model

        ctx, spec = self.ctx, self.ctx.spec
        if module is None:
            raise NasengineError(f"loop.retrain_from: 'derived' needs the derived weights, but space "
                                 f"{spec.space.name!r}'s supernet has no derive() giving a module")
        if ctx.store.get(RETRAINED, 0) is None:
            rs = retrain_spec(spec)
            recipe = retrain_evaluator(spec, get_plugins()).recipe
            seed = candidate_seed(spec.seed, best.key)
            ctx.progress.line(f"fine-tuning the derived network from its supernet weights with {rs.name}'s recipe")
            self._show("fine-tune", force=True)
            graph = ctx.space.decode(ctx.space.from_json(best.genome))
            t0 = time.perf_counter()
            status, error, metrics, path = "ok", None, {}, None
            try:
                # the network trained on pixel_range pixels is fed and read in [0, 1] like any sr-train model
                done = train_model(graph, recipe, seed=seed, device=self.device,
                                   model=range_wrapper(module.to(self.device), self.opts.pixel_range))
                metrics = dict(done.metrics)
            except NasengineError as exc:
                status, error = "failed", str(exc)
            if status == "ok" and not finite(metrics):
                status, error = "failed", f"non-finite metric(s): {metrics}"
            if status == "ok":
                from nasengine.checkpoints import save_trained_model
                from nasengine.genomefile import Architecture

                arch = Architecture(graph=graph, name="fine-tuned", space=ctx.space, space_name=spec.space.name,
                                    space_options=spec.space.kwargs(), genome=ctx.space.from_json(best.genome),
                                    source=f"{spec.method} run {ctx.store.run_dir}, fine-tuned")
                path = save_trained_model(ctx.store.run_dir / "retrained" / "model.pt", arch, module.cpu(),
                                          metrics=dict(metrics))
            ctx.record(CandidateRecord(
                generation=RETRAINED, idx=0, key=best.key, genome=best.genome, status=status, params=best.params,
                mult_adds=best.mult_adds, costs=dict(best.costs), metrics=metrics, error=error,
                wall_seconds=time.perf_counter() - t0, cpu_seconds=0.0, worker="driver", seed=seed))
            ctx.progress.line(outcome_text("fine-tuned", status, metrics, error) + (f" -> {path}" if path else ""))
        ctx.store.set_result("retrained", [{"idx": r.idx, "key": r.key, "status": r.status, "metrics": r.metrics,
                                            "from": "derived"}
                                           for r in ctx.store.candidates(generation=RETRAINED)])

    # ---- checkpoints -----------------------------------------------------------------------------------
    def _checkpoint(self, step: int) -> None:
        """The state after ``step``: the trainer's whole state and the numpy / Python RNGs (the base's
        :meth:`~nasengine.search.trainingloop.WeightTrainingLoop._write_checkpoint`)."""
        trainer = self.trainer.state_dict(seconds=self.ctx.elapsed())
        trainer["model"] = {k: v.detach().cpu() for k, v in trainer["model"].items()}  # a plain dict: data
        self._write_checkpoint(step, {"trainer": trainer, "rng": self._rng_states(torch_too=False)})

    def _restore(self, ck) -> None:
        state = self._read_checkpoint(ck)
        self.trainer.load_state_dict(state["trainer"], source=str(self.ctx.store.run_dir / ck.path))
        self._set_rng_states(state["rng"])
