"""The plan of a search: the evaluator describes one evaluation, the loop the run (issue: a plan per loop and per
evaluator). The time measured here is stubbed where the arithmetic is the point; benchmarks/plan_accuracy.py
compares real estimates with real searches."""
from __future__ import annotations

import math

import pytest

import nasengine.train
from nasengine.plan import format_plan, search_plan
from nasengine.plugins import get_plugins
from nasengine.search.generational import GenerationalLoop
from nasengine.search.steady import SteadyLoop
from nasengine.spec import RunSpec


class _Ctl:
    def __init__(self, population_size, in_flight=None):
        self.population_size = population_size
        self.in_flight = in_flight


def _spec(budget):
    plugins = get_plugins()
    method = plugins.methods.get("simple")
    return RunSpec.from_config(plugins, method.config("smoke", {"budget": budget}), method=method)


@pytest.mark.parametrize("budget, evaluations, rounds", [
    ({"generations": 3}, 18, "3 generations of 6"),
    ({"candidates": 20}, 24, "4 generations of 6"),            # a started generation is finished
    ({"candidates": 20, "generations": 2}, 12, "2 generations of 6"),
])
def test_the_generational_plan_waits_for_each_generation(budget, evaluations, rounds):
    plan = GenerationalLoop.plan(_spec({**{"generations": None}, **budget}), _Ctl(6), 2.0, parallelism=4)
    assert (plan.evaluations, plan.rounds) == (evaluations, rounds)
    # each generation of 6 on 4 workers takes two rounds of the evaluation time
    assert plan.seconds == pytest.approx(evaluations / 6 * 2 * 2.0)


def test_the_steady_plan_has_no_barrier_and_the_seconds_budget_caps_both():
    spec = _spec({"generations": 3})
    assert SteadyLoop.plan(spec, _Ctl(6, in_flight=8), 2.0, parallelism=4).seconds == pytest.approx(math.ceil(18 / 4) * 2.0)
    # fewer in flight than workers: only that many evaluate at once
    assert SteadyLoop.plan(spec, _Ctl(6, in_flight=2), 2.0, parallelism=4).seconds == pytest.approx(18 / 2 * 2.0)
    capped = _spec({"generations": 3, "seconds": 5})
    assert GenerationalLoop.plan(capped, _Ctl(6), 2.0, 4).seconds == 5
    assert SteadyLoop.plan(capped, _Ctl(6, in_flight=4), 2.0, 4).seconds == 5
    assert GenerationalLoop.plan(spec, _Ctl(6), None, 4).seconds is None
    only_seconds = _spec({"generations": None, "seconds": 60})
    assert GenerationalLoop.plan(only_seconds, _Ctl(6), 2.0, 4).evaluations is None


def test_the_search_plan_adds_the_evaluators_time_and_the_loops_rounds(monkeypatch):
    monkeypatch.setattr(nasengine.train, "time_steps", lambda *a, **k: 0.01)
    monkeypatch.setattr(nasengine.train, "time_validation", lambda *a, **k: 0.5)
    plugins = get_plugins()
    method = plugins.methods.get("simple")
    plan = search_plan(method, method.config("smoke"), plugins=plugins)
    assert plan["seconds_per_candidate_here"] == pytest.approx(150 * 0.01 + 0.5)
    assert plan["parallelism"] == 2 and plan["candidates"] == 18 and plan["feasible_share"] == 1.0
    assert plan["seconds_here"] == pytest.approx(3 * math.ceil(6 / 2) * 2.0)
    text = format_plan(plan)
    assert "10 ms per step, 0 s validation -> 2 s per model; the search: 18 s on 2 worker(s)" in text
    assert "about 18 models (3 generations of 6)" in text
    steady = search_plan(method, method.config("smoke", {"controller": {"name": "evolution", "in_flight": 4}}),
                         plugins=plugins)
    assert steady["rounds"] == "steady-state, 4 in flight" and steady["seconds_here"] == pytest.approx(18 / 2 * 2.0)


def test_a_cost_constraint_lowers_the_time_by_the_share_it_rejects(monkeypatch):
    monkeypatch.setattr(nasengine.train, "time_steps", lambda *a, **k: 0.01)
    monkeypatch.setattr(nasengine.train, "time_validation", lambda *a, **k: 0.5)
    plugins = get_plugins()
    method = plugins.methods.get("simple")
    free = search_plan(method, method.config("smoke"), plugins=plugins)
    # a bound between the sampled costs: some samples fail it and are not trained
    bound = free["median_mult_adds"]
    capped = search_plan(method, method.config("smoke", {"reward": {"constraints": [["mult_adds", "max", bound]]}}),
                         plugins=plugins)
    assert 0 < capped["feasible_share"] < 1
    assert capped["seconds_here"] == pytest.approx(free["seconds_here"] * capped["feasible_share"])
    assert "fail a cost constraint: untrained" in format_plan(capped)


def test_a_plan_without_measuring_has_no_time():
    plugins = get_plugins()
    method = plugins.methods.get("simple")
    plan = search_plan(method, method.config("smoke"), plugins=plugins, measure=False)
    assert plan["seconds_here"] is None and plan["train_macs_per_candidate"] > 0
    assert "on this machine" not in format_plan(plan)
