"""The ``fgnas`` method on the engine's differentiable loop (METHODS §3.8 directional checks, tiny B = 2, C = 8,
40 steps): with λ = 0 few or no channels die; with a large λ the hard Mult-Adds fall. And the presets."""
from __future__ import annotations

TINY = {"space": {"blocks": 2, "channels": 8},
        "evaluator": {"steps": 40, "patch_size": 16, "batch_size": 2},
        "loop": {"arch_lr": 0.02, "record_every": 40, "checkpoint_every": 40, "record_psnr": False,
                 "retrain": False}}


def _run(tmp_path, name, loop):
    import torch

    from nasengine.search import run_search
    from nasengine.store import ExperimentStore

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        overrides = {**TINY, "loop": {**TINY["loop"], **loop}}
        assert run_search(tmp_path / name, method="fgnas", seed=0, progress=False, overrides=overrides).status == "done"
    finally:
        torch.set_num_threads(before)
    with ExperimentStore.open(tmp_path / name, lock=False) as store:
        first, last = store.candidates(generation=0)[0], store.candidates(generation=0)[-1]
        return first, last, store.results()["derived"]


def _alive(genome) -> int:
    blocks = sum(sum(sum(b[f]) for f in ("pw", "relu", "prelu", "tanh", "out")) for b in genome["blocks"])
    return sum(genome["head"]) + blocks + sum(genome["body_end"] or [])


def test_without_lambda_few_channels_die_and_with_a_large_lambda_mult_adds_fall(tmp_path):
    first, last, _ = _run(tmp_path, "zero", {"lam": 0.0, "lam_ratio": None})
    total = 8 * (1 + 5 * 2 + 1)  # every gate of B = 2, C = 8 with the body end (METHODS §3.2)
    assert _alive(first.genome) == total and _alive(last.genome) >= 0.9 * total  # λ = 0: (almost) all alive
    assert last.mult_adds >= 0.9 * first.mult_adds
    first, last, derived = _run(tmp_path, "large", {"lam_ratio": 20.0})
    assert last.mult_adds < 0.7 * first.mult_adds  # λR = 20·L1 at step 0: the cost term wins
    assert derived["metrics"]["mult_adds"] <= last.mult_adds


def test_presets_say_what_the_paper_and_smoke_runs_are():
    from nasengine.plugins import get_plugins

    m = get_plugins().methods.get("fgnas")
    assert m.loop == "differentiable" and m.default_preset == "smoke"
    paper = m.config("paper")
    assert paper["evaluator"]["steps"] == 2_000_000 and paper["evaluator"]["step_size"] == 1_000_000
    assert paper["evaluator"]["patch_size"] == 192 and paper["evaluator"]["batch_size"] == 16
    assert paper["loop"]["lam"] == 1e-9 and paper["loop"]["pixel_range"] == 255
    smoke = m.config("smoke")
    assert smoke["space"] == {**m.base["space"], "blocks": 4, "channels": 16} and smoke["loop"]["lam_ratio"] == 0.02


def test_paper_plan_says_the_schedule():
    from nasengine.plan import format_plan, search_plan
    from nasengine.plugins import get_plugins

    plugins = get_plugins()
    m = plugins.methods.get("fgnas")
    text = format_plan(search_plan(m, m.config("paper"), plugins=plugins, measure=False))
    assert "2,000,000 steps, Adam 0.0001 (architecture 0.0001), betas 0.9/0.999, batch 16, HR patch 192" in text
    assert "schedule x0.5 every 1,000,000 steps" in text and "L1 on 0-255 pixels" in text
    assert "fixed lambda 1e-09" in text and "no retraining" in text
