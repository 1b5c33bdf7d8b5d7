"""Annotation advice: which weak or unlabeled images to box next (``python -m oxnet.advise``)."""

from .advice import AdviceError, advice_record, candidates, rank_pool
from .signals import PoolSignals, compute_signals, load_teacher
from .strategies import STRATEGIES, STRATEGY_REGISTRY, Pick, get_strategy

__all__ = [
    "STRATEGIES",
    "STRATEGY_REGISTRY",
    "AdviceError",
    "Pick",
    "PoolSignals",
    "advice_record",
    "candidates",
    "compute_signals",
    "get_strategy",
    "load_teacher",
    "rank_pool",
]
