"""Reports of a run: Pareto front, hypervolume, tables and plots.

Everything is computed from the experiment store (the single source of truth), so a report can be made of
a finished, interrupted or running search::

    rep = RunReport.load("runs/simple-smoke")
    print(rep.table())            # the front, best first
    rep.hypervolume               # of the normalised front (see below)
    rep.plots("runs/simple-smoke/report")

Hypervolume: objectives in minimisation form are normalised with ``ideal`` -> 0 and ``nadir`` -> 1 (by
default the best and worst values among the run's feasible candidates) and measured against the reference
point 1.1 in every objective (pymoo's HV). Pass the same ``ideal``/``nadir`` to compare runs.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from nasengine.controllers.pareto import hypervolume as _hv
from nasengine.controllers.pareto import non_dominated
from nasengine.errors import NasengineError
from nasengine.fileio import OutputError, os_error_text, write_atomic
from nasengine.reward import Reward
from nasengine.spec import RoleSpec, RunSpec
from nasengine.store import CandidateRecord, ExperimentStore

__all__ = ["RunReport", "front_of", "normalised_hypervolume", "objective_matrix", "run_spec"]

REF = 1.1


def objective_matrix(records: Sequence[CandidateRecord], reward: Reward) -> np.ndarray:
    """Rows of minimisation-form objective vectors of ``records``."""
    return np.array([reward.vector(r.metrics_all()) for r in records], dtype=float).reshape(len(records), -1)


def _feasible(records: Sequence[CandidateRecord], reward: Reward) -> list[CandidateRecord]:
    out, seen = [], set()
    for r in records:
        if r.status != "ok" or r.key in seen:
            continue
        metrics = r.metrics_all()
        try:
            vec = reward.vector(metrics)
        except KeyError:
            continue
        if not np.all(np.isfinite(vec)) or reward.violation(metrics) > 0:
            continue
        seen.add(r.key)
        out.append(r)
    return out


def front_of(records: Sequence[CandidateRecord], reward: Reward) -> list[CandidateRecord]:
    """Feasible, evaluated (``ok``), distinct architectures that no other one dominates, best first by the
    first objective."""
    feas = _feasible(records, reward)
    if not feas:
        return []
    F = objective_matrix(feas, reward)
    idx = non_dominated(F)
    front = [feas[i] for i in idx]
    return sorted(front, key=lambda r: (reward.vector(r.metrics_all())[0], r.generation, r.idx))


def normalised_hypervolume(records: Sequence[CandidateRecord], reward: Reward, *, ideal=None, nadir=None) -> float:
    """Hypervolume of the front of ``records`` after normalising (see the module docstring)."""
    feas = _feasible(records, reward)
    if not feas:
        return 0.0
    F = objective_matrix(feas, reward)
    lo = np.asarray(ideal, dtype=float) if ideal is not None else F.min(axis=0)
    hi = np.asarray(nadir, dtype=float) if nadir is not None else F.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return float(_hv((F - lo) / span, np.full(F.shape[1], REF)))


def missing_plugins(plugins, run) -> dict[str, str]:
    """``{plugin: version}`` of the plugins the run was made with that are not loaded in ``plugins``."""
    here = plugins.versions()
    return {name: version for name, version in sorted(run.plugins.items()) if name not in here}


def _made_with(plugins, run) -> str:
    missing = missing_plugins(plugins, run)
    if not missing:
        return ""
    return (f"; the run was made with plugin(s) not installed here: "
            f"{', '.join(f'{n} {v}'.strip() for n, v in missing.items())}")


def run_spec(plugins, run) -> RunSpec:
    """The resolved spec of a stored run (``run``: its :class:`~nasengine.store.RunRecord`); an error naming
    the plugins the run was made with that are missing here, when its method or roles are unknown."""
    try:
        return RunSpec.from_config(plugins, run.config, seed=run.seed, method=plugins.methods.get(run.method))
    except NasengineError as exc:
        note = _made_with(plugins, run)
        if not note:
            raise
        raise NasengineError(f"{exc}{note}") from None


class RunReport:
    """The records of a run with its reward (rebuilt from the stored config) and derived views."""

    def __init__(self, run, records: list[CandidateRecord], reward: Reward, run_dir: Path | None = None, *,
                 plugins=None, attempts: list[CandidateRecord] | None = None, results: dict | None = None):
        self.run = run
        #: named results of the run (the one-shot loop's ``derived`` genome and ``retrained`` rows)
        self.results = dict(results or {})
        self.plugins = plugins
        self.records = records  # each candidate's latest attempt
        self.attempts = list(attempts or [])  # the earlier attempts of retried candidates (history)
        self.reward = reward
        self.run_dir = run_dir
        self._describe = None

    def describe(self, record: CandidateRecord) -> str:
        """The space's one-line description of a record's genome (its JSON if the space is unavailable)."""
        if self._describe is None:
            self._describe = _compact
            try:
                from nasengine.plugins import get_plugins

                plugins = self.plugins or get_plugins()
                space = run_spec(plugins, self.run).instantiate("space", plugins)
                self._describe = lambda g: space.describe(space.from_json(g))
            except Exception:  # a report must work even without the plugin that made the run
                pass
        try:
            return self._describe(record.genome)
        except Exception:
            return _compact(record.genome)

    @classmethod
    def load(cls, run_dir, *, plugins=None) -> "RunReport":
        from nasengine.plugins import get_plugins

        plugins = plugins or get_plugins()
        store = ExperimentStore.open(run_dir)
        try:
            run = store.run
            records = store.candidates()
            attempts = store.attempts()
            results = store.results()
        finally:
            store.close()
        try:
            spec = run_spec(plugins, run)
        except NasengineError:  # the method's plugin is not loaded: the default reward of the stored config
            section = RoleSpec.of(run.config, "reward", "objectives")
            try:
                reward = Reward.from_config(**section.kwargs())
            except (TypeError, ValueError) as exc:
                raise NasengineError(f"{run_dir}: cannot rebuild the run's reward {section.name!r} ({exc})"
                                     f"{_made_with(plugins, run)}") from None
        else:
            if spec.reward.name in plugins.rewards:
                reward = spec.instantiate("reward", plugins)
            else:
                reward = Reward.from_config(**spec.reward.kwargs())
        return cls(run, records, reward, Path(run_dir), plugins=plugins, attempts=attempts, results=results)

    # ---- derived -----------------------------------------------------------------------------------------
    @property
    def ranked(self) -> list[CandidateRecord]:
        """The records the front is made of: every record, except in a one-shot run that derived a genome,
        where only the derivation's rows count (the others were scored with the shared weights of earlier
        epochs, the same architecture many times, and are not comparable with them)."""
        derived = self.results.get("derived")
        if isinstance(derived, dict) and isinstance(derived.get("generation"), int):
            return [r for r in self.records if r.generation == derived["generation"]]
        return self.records

    @property
    def front(self) -> list[CandidateRecord]:
        return front_of(self.ranked, self.reward)

    @property
    def hypervolume(self) -> float:
        return normalised_hypervolume(self.ranked, self.reward)

    @property
    def generations(self) -> list[int]:
        return sorted({r.generation for r in self.records})

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def fronts_by_generation(self) -> list[tuple[int, list[CandidateRecord], float]]:
        """For each generation g, the front of every candidate up to g and its hypervolume (normalised
        with the whole run's ideal/nadir, so the values are comparable)."""
        feas = _feasible(self.records, self.reward)
        if not feas:
            return [(g, [], 0.0) for g in self.generations]
        F = objective_matrix(feas, self.reward)
        ideal, nadir = F.min(axis=0), F.max(axis=0)
        out = []
        for g in self.generations:
            upto = [r for r in self.records if r.generation <= g]
            out.append((g, front_of(upto, self.reward),
                        normalised_hypervolume(upto, self.reward, ideal=ideal, nadir=nadir)))
        return out

    # ---- text -------------------------------------------------------------------------------------------
    def _columns(self) -> list[str]:
        cols = list(self.reward.metrics)
        for extra in ("psnr", "ssim", "mult_adds", "params"):
            if extra not in cols and any(extra in r.metrics_all() for r in self.records):
                cols.append(extra)
        return cols

    @staticmethod
    def _fmt(metric: str, value) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "-"
        if metric == "mult_adds":
            return f"{value / 1e9:.3f}G"
        if metric in ("params", "params_without_bias", "kernel_params"):
            return f"{int(value):,}"
        if metric == "ssim":
            return f"{value:.4f}"
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"

    def table(self, records: Sequence[CandidateRecord] | None = None, *, limit: int | None = None) -> str:
        """A text table (front by default): generation/index, metrics, the space's one-line description."""
        rows = list(self.front if records is None else records)[:limit]
        cols = self._columns()
        head = ["gen", "idx"] + cols + ["key", "genome"]
        body = []
        for r in rows:
            m = r.metrics_all()
            genome = self.describe(r)
            body.append([str(r.generation), str(r.idx)] + [self._fmt(c, m.get(c)) for c in cols]
                        + [r.key[:10], genome[:80]])
        widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
        lines = ["  ".join(v.rjust(w) if i < len(head) - 2 else v.ljust(w) for i, (v, w) in
                           enumerate(zip(row, widths))).rstrip() for row in [head] + body]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)

    def summary(self) -> str:
        run = self.run
        c = self.counts()
        parts = ", ".join(f"{v} {k}" for k, v in sorted(c.items()))
        objectives = ", ".join(f"{o.metric} ({o.direction})" for o in self.reward.objectives)
        cons = "; ".join(x.describe() for x in self.reward.constraints) or "none"
        missing = missing_plugins(self.plugins, run) if self.plugins is not None else {}
        note = (f"not installed here: plugin(s) {', '.join(f'{n} {v}'.strip() for n, v in missing.items())} "
                f"(genomes shown as stored)\n") if missing else ""
        return (f"run {self.run_dir}: method {run.method}, preset {run.preset}, seed {run.seed}, status {run.status}\n"
                + note +
                f"candidates: {len(self.records)} ({parts or 'none'}) over {len(self.generations)} generation(s)\n"
                f"objectives: {objectives}; constraints: {cons}\n"
                f"Pareto front: {len(self.front)} architecture(s), normalised hypervolume {self.hypervolume:.4f}"
                + self._derived_text())

    def _derived_text(self) -> str:
        """The one-shot loop's derived genome and the retraining's results (empty for other runs)."""
        derived = self.results.get("derived")
        if not isinstance(derived, dict):
            return ""
        if derived.get("samples") is not None:  # one-shot: the best of the derivation's children
            where = f" (of the derivation's {derived['samples']} children)"
        elif derived.get("steps") is not None:  # differentiable: the one architecture at the end of training
            where = f" (the architecture derived after {derived['steps']:,} steps)"
        else:
            where = ""
        reward = derived.get("reward")
        out = (f"{where}\n"
               f"derived architecture ({derived.get('derive', '?')}): {derived.get('text', derived.get('genome'))}"
               + (f" | reward {self._fmt('reward', reward)}" if reward is not None else "")
               + f" | key {str(derived.get('key'))[:10]}")
        metrics = derived.get("metrics") or {}
        shown = [c for c in ("params", "mult_adds") if c in metrics]
        if shown:
            out += " | " + ", ".join(f"{c} {self._fmt(c, metrics[c])}" for c in shown)
        for r in self.results.get("retrained") or []:
            m = r.get("metrics") or {}
            values = ", ".join(f"{k} {self._fmt(k, m[k])}" for k in ("psnr", "ssim") if k in m)
            model = r.get("model")
            how = "fine-tuned from the derived weights" if r.get("from") == "derived" else "retrained from scratch"
            out += (f"\n{how} #{r.get('idx', 0) + 1}: {r.get('status')}"
                    f" | key {str(r.get('key'))[:10]}" + (f" | {values}" if values else "")
                    + (f" | model {Path(self.run_dir) / model if self.run_dir else model}" if model else ""))
        return out

    # ---- a differentiable run's architecture over training ------------------------------------------------
    def trajectory(self) -> list[CandidateRecord]:
        """The rows of a differentiable run's architecture over training (generation 0, each with its ``step``
        metric), by step; empty for other runs."""
        rows = [r for r in self.records if r.generation == 0]
        if not rows or any("step" not in r.metrics for r in rows):
            return []
        return sorted((r for r in rows if r.status == "ok"), key=lambda r: r.metrics["step"])

    def trajectory_table(self) -> str:
        """The trajectory as a table: step, hard Mult-Adds, params, PSNR (and lambda when logged); '' if none."""
        rows = self.trajectory()
        if not rows:
            return ""
        cols = ["mult_adds", "params", "psnr"] + (["lambda"] if any("lambda" in r.metrics for r in rows) else [])
        head = ["step"] + cols
        def fmt(c, v):
            return f"{v:.3g}" if c == "lambda" and v is not None else self._fmt(c, v)

        body = [[f"{int(r.metrics['step']):,}"] + [fmt(c, r.metrics_all().get(c)) for c in cols] for r in rows]
        widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
        lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in [head] + body]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)

    def _trajectory_plot(self, out_dir: Path, plt) -> list[Path]:
        """``trajectory.png``: the hard Mult-Adds and PSNR of a differentiable run's architecture against the
        training steps (nothing for other runs)."""
        rows = self.trajectory()
        if not rows:
            return []
        steps = np.array([r.metrics["step"] for r in rows], dtype=float)
        fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
        mult = np.array([r.metrics_all().get("mult_adds", math.nan) for r in rows], dtype=float)
        ax.plot(steps, mult / 1e9, "o-", ms=3, c="tab:blue", label="hard Mult-Adds")
        ax.set_xlabel("training step")
        ax.set_ylabel("Mult-Adds (G)", color="tab:blue")
        psnr = np.array([r.metrics.get("psnr", math.nan) for r in rows], dtype=float)
        if np.isfinite(psnr).any():
            ax2 = ax.twinx()
            ax2.plot(steps, psnr, "s-", ms=3, c="tab:red", label="PSNR (masked supernet)")
            ax2.set_ylabel("PSNR (dB)", color="tab:red")
        lr = RoleSpec.of(self.run.config, "cost", "").options.get("lr_size", [480, 480])
        ax.set_title(f"{self.run.method} ({self.run.preset}): architecture over training, LR {lr[1]}x{lr[0]}",
                     fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / "trajectory.png"
        _save_figure(fig, path)
        plt.close(fig)
        return [path]

    def to_dict(self) -> dict:
        run = self.run

        def rec(r: CandidateRecord) -> dict:
            return {"generation": r.generation, "idx": r.idx, "key": r.key, "status": r.status, "genome": r.genome,
                    "params": r.params, "mult_adds": r.mult_adds, "metrics": r.metrics, "error": r.error,
                    "wall_seconds": r.wall_seconds, "cpu_seconds": r.cpu_seconds, "worker": r.worker}

        return {
            "run": {"dir": str(self.run_dir), "method": run.method, "preset": run.preset, "seed": run.seed,
                    "status": run.status, "plugins": run.plugins, "config": run.config,
                    "created": run.created, "updated": run.updated},
            "counts": self.counts(),
            "objectives": [[o.metric, o.direction] for o in self.reward.objectives],
            "hypervolume": self.hypervolume,
            "front": [rec(r) for r in self.front],
            "fronts_by_generation": [{"generation": g, "hypervolume": hv, "keys": [r.key for r in f]}
                                     for g, f, hv in self.fronts_by_generation()],
            "candidates": [rec(r) for r in self.records],
            "results": self.results,
            "earlier_attempts": [{**rec(r), "attempt": r.attempt} for r in self.attempts],
        }

    # ---- plots ------------------------------------------------------------------------------------------
    def plots(self, out_dir) -> list[Path]:
        """PSNR vs Mult-Adds, PSNR vs params, and the front over generations, as PNG files in ``out_dir`` (and a
        differentiable run's ``trajectory.png``: Mult-Adds and PSNR against the training steps)."""
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        out_dir = Path(out_dir)
        if out_dir.is_symlink():
            raise OutputError(f"{out_dir} is a symbolic link; refusing to write plots through it (remove it)")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{out_dir}: cannot make the plot folder ({os_error_text(exc)})") from None
        y_metric = next((o.metric for o in self.reward.objectives if o.direction == "max"), "psnr")
        ok = [r for r in self.records if r.status == "ok" and y_metric in r.metrics_all()]
        front_keys = {r.key for r in self.front}
        written = []
        for x_metric, fname in (("mult_adds", "psnr_vs_mult_adds.png"), ("params", "psnr_vs_params.png")):
            pts = [(r.metrics_all().get(x_metric), r.metrics_all()[y_metric], r.key in front_keys) for r in ok
                   if r.metrics_all().get(x_metric) is not None]
            fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
            if pts:
                xs, ys, on = (np.array(v, dtype=float) for v in zip(*pts))
                scale = 1e9 if x_metric == "mult_adds" else 1e3
                ax.scatter(xs[on == 0] / scale, ys[on == 0], s=14, c="0.6", label="evaluated")
                order = np.argsort(xs[on == 1])
                ax.plot(xs[on == 1][order] / scale, ys[on == 1][order], "o-", c="tab:red", ms=5,
                        label="Pareto front (all objectives)")
                ax.legend(loc="lower right", fontsize=8)
            ax.set_xlabel("Mult-Adds (G)" if x_metric == "mult_adds" else "params (K)")
            ax.set_ylabel(f"{y_metric} (dB)" if y_metric == "psnr" else y_metric)
            lr = RoleSpec.of(self.run.config, "cost", "").options.get("lr_size", [480, 480])
            ax.set_title(f"{self.run.method} ({self.run.preset}): {y_metric} vs {x_metric}, LR {lr[1]}x{lr[0]}",
                         fontsize=9)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            path = out_dir / fname
            _save_figure(fig, path)
            plt.close(fig)
            written.append(path)
        fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
        gens = self.fronts_by_generation()
        cmap = plt.get_cmap("viridis")
        for i, (g, front, hv) in enumerate(gens):
            pts = sorted((r.metrics_all().get("mult_adds", math.nan), r.metrics_all().get(y_metric, math.nan))
                         for r in front)
            if pts:
                xs, ys = zip(*pts)
                ax.plot(np.array(xs) / 1e9, ys, "o-", ms=3, c=cmap(i / max(1, len(gens) - 1)),
                        label=f"gen {g} (HV {hv:.3f})")
        if gens:
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xlabel("Mult-Adds (G)")
        ax.set_ylabel(y_metric)
        ax.set_title(f"{self.run.method}: front over generations", fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / "front_over_generations.png"
        _save_figure(fig, path)
        plt.close(fig)
        written.append(path)
        written += self._trajectory_plot(out_dir, plt)
        return written


def _save_figure(fig, path: Path) -> None:
    """A new file renamed into place: a symlink planted at ``path`` is replaced, its target never written."""
    write_atomic(path, lambda fh: fig.savefig(fh, format="png"))


def _compact(genome) -> str:
    import json

    return json.dumps(genome, separators=(",", ":"), sort_keys=True)
