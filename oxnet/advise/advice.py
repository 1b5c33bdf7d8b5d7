"""Which images of a pool to box next: candidates, signals, the strategies' rankings, the advice file.

The advice file (JSON) is what the review page's annotation view (``python -m oxnet.serve --annotate
POOL --advice FILE``) orders its queue by::

    {"strategy": "combined", "budget": 50, "pool": "...", "weights": "...", "seed": 0,
     "candidates": 812, "already_boxed": 120,
     "images": [{"rank": 1, "image_id": 17, "file_name": "a.png", "score": 0.93, "reason": "..."}, ...],
     "others": {"uncertainty": [...]}, "skipped_strategies": {"teacher_student": "needs ..."}}
"""

import logging
import os

import numpy as np

from .strategies import STRATEGIES, get_strategy

__all__ = ["AdviceError", "candidates", "rank_pool", "advice_record"]

logger = logging.getLogger(__name__)


class AdviceError(ValueError):
    """Advice that cannot be given: a strategy whose signals are missing, an empty pool."""


def candidates(coco, exclude_ids=()):
    """``(candidate images, boxed images)`` of an OXnet-COCO dict: images whose supervision is not
    "full" are candidates (minus ``exclude_ids``, e.g. images already chosen); "full" ones are
    already boxed and are never advised."""
    exclude = set(exclude_ids)
    boxed = [img for img in coco["images"] if img.get("supervision", "full") == "full"]
    cands = [
        img for img in coco["images"] if img.get("supervision", "full") != "full" and img["id"] not in exclude
    ]
    return cands, boxed


def rank_pool(signals, strategies, budget, seed=0):
    """``({name: [Pick, ...]}, {name: why skipped})``: each strategy's ``budget`` picks over
    ``signals`` (a :class:`oxnet.advise.signals.PoolSignals`). A strategy whose signals are missing
    is skipped with the reason; the first one named must not be (:class:`AdviceError`)."""
    if budget < 1:
        raise AdviceError(f"the budget must be at least 1 image, got {budget}")
    rankings, skipped = {}, {}
    for n, name in enumerate(strategies):
        if name not in STRATEGIES:
            raise AdviceError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
        strategy = get_strategy(name)
        missing = strategy.missing(signals)
        if missing:
            why = f"needs {' and '.join(missing)}"
            if n == 0:
                raise AdviceError(f"strategy {name!r} {why}; choose another (--strategy)")
            logger.warning(f"skipped strategy {name!r}: it {why}")
            skipped[name] = why
            continue
        rankings[name] = strategy.select(signals, budget, np.random.default_rng(seed))
    return rankings, skipped


def _picks_json(picks, signals):
    return [
        {
            "rank": r + 1,
            "image_id": signals.image_ids[p.index],
            "file_name": signals.file_names[p.index],
            "score": None if np.isnan(p.score) else round(float(p.score), 6),
            "reason": p.reason,
        }
        for r, p in enumerate(picks)
    ]


def advice_record(signals, rankings, skipped, budget, seed, pool, weights, n_boxed):
    """The advice file's content (see the module docstring); the first ranking is ``images``."""
    names = list(rankings)
    return {
        "strategy": names[0],
        "budget": int(budget),
        "seed": int(seed),
        "pool": os.path.abspath(pool) if pool else None,
        "weights": os.path.abspath(weights) if weights else None,
        "candidates": len(signals),
        "already_boxed": int(n_boxed),
        "images": _picks_json(rankings[names[0]], signals),
        "others": {n: _picks_json(rankings[n], signals) for n in names[1:]},
        "skipped_strategies": skipped,
    }
