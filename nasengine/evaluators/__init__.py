"""Concrete evaluators shipped with the engine (the role itself is :mod:`nasengine.evaluator`)."""
from nasengine.evaluators.supernet import SupernetEvaluator
from nasengine.evaluators.training import TrainingEvaluator

__all__ = ["SupernetEvaluator", "TrainingEvaluator"]
