"""The one-shot loop with sr-supernet's cosine schedule (the loop tells it epochs x child_steps) and its own
derivation images (``derive_data``): the tiny one-shot method of tests/oneshot_method.py, without retraining."""
from __future__ import annotations

import pytest

from tests import test_oneshot

oneshot_plugins = test_oneshot.oneshot_plugins  # the fixture


def test_loop_passes_total_steps_and_derives_on_derive_data(oneshot_plugins, tmp_path, monkeypatch):
    from nasengine.evaluators.supernet import SupernetEvaluator
    from nasengine.search import run_search
    from tests.oneshot_method import LOOP, REWARD_METRIC

    calls = {"setup": [], "derive": 0}
    setup, derive = SupernetEvaluator.setup, SupernetEvaluator.score_derivation

    def spy_setup(self, *a, **kw):
        calls["setup"].append(kw.get("total_steps"))
        return setup(self, *a, **kw)

    def spy_derive(self, model, batches=1):
        calls["derive"] += 1
        return derive(self, model, batches)

    monkeypatch.setattr(SupernetEvaluator, "setup", spy_setup)
    monkeypatch.setattr(SupernetEvaluator, "score_derivation", spy_derive)
    out = run_search(tmp_path / "r", method="tiny-oneshot", seed=0, progress=False,
                     overrides={"loop": {"retrain_top": 0},
                                "evaluator": {"schedule": "cosine", "min_lr": 1e-5, "derive_data": "Set5",
                                              "derive_images": "1-1"}})
    assert out.status == "done"
    total = LOOP["epochs"] * LOOP["child_steps"]
    assert calls["setup"] == [total] and calls["derive"] == LOOP["derive_samples"]
    from nasengine.store import ExperimentStore

    with ExperimentStore.open(tmp_path / "r") as store:
        rows = [r for r in store.candidates() if r.generation == LOOP["epochs"] + 1]
        derived = store.results()["derived"]
    assert len(rows) == LOOP["derive_samples"] and all(REWARD_METRIC in r.metrics for r in rows)
    assert derived["reward"] == pytest.approx(max(r.metrics[REWARD_METRIC] for r in rows))
