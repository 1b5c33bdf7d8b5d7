"""Annotation strategies, one registered module each (:data:`STRATEGY_REGISTRY`)."""

from . import combined, kcenter, random_choice, teacher_student, uncertainty, weak_disagreement  # noqa: F401
from .base import STRATEGY_REGISTRY, Pick, Strategy, get_strategy, strategy_names, top_k

__all__ = ["STRATEGIES", "STRATEGY_REGISTRY", "Pick", "Strategy", "get_strategy", "strategy_names", "top_k"]

#: The registered strategies, the baseline first and the combination last.
STRATEGIES = ("random", "uncertainty", "weak_disagreement", "teacher_student", "kcenter", "combined")
