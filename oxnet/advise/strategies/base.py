"""The interface of an annotation strategy: which images of a pool to box next."""

from dataclasses import dataclass

import numpy as np

from oxnet.utils.registry import NamedRegistry

__all__ = ["STRATEGY_REGISTRY", "Pick", "Strategy", "get_strategy", "strategy_names", "top_k"]

STRATEGY_REGISTRY = NamedRegistry("OXNET_ADVISE_STRATEGY")
STRATEGY_REGISTRY.__doc__ = """Annotation strategies of ``python -m oxnet.advise``, keyed by ``name``."""


@dataclass(frozen=True)
class Pick:
    """One chosen image: its index in the pool's signals, its strategy score (higher: box it
    sooner) and a sentence saying why."""

    index: int
    score: float
    reason: str


class Strategy:
    """Ranks the candidate images of a pool (:class:`oxnet.advise.signals.PoolSignals`).

    Subclasses set ``name`` (the registry key and ``--strategy`` value), ``needs`` (signals that must
    be present: ``"labels"`` the images' weak labels, ``"teacher"`` the mean teacher's detections,
    ``"features"`` backbone features, ``"global_scores"`` the global head's image-level scores) and
    implement :meth:`select`.
    """

    name = ""
    needs = ()
    description = ""

    def missing(self, signals):
        """The needed signals ``signals`` lacks, each with what would provide it ([] when none)."""
        attrs = {"teacher": "teacher_top"}
        out = []
        for need in self.needs:
            if getattr(signals, attrs.get(need, need), None) is None:
                out.append(signals.WHY_MISSING.get(need, need))
        return out

    def select(self, signals, budget, rng):
        """The ``budget`` images to box next, best first, as :class:`Pick` (fewer when the pool has
        fewer candidates). ``rng`` is a seeded ``numpy.random.Generator``."""
        raise NotImplementedError


def top_k(scores, budget, reasons):
    """The ``budget`` highest ``scores`` as Picks, ties broken by pool order (the lower index first);
    ``reasons(i)`` gives the sentence of image ``i``. NaN scores rank last."""
    scores = np.asarray(scores, dtype=np.float64)
    key = np.where(np.isnan(scores), -np.inf, scores)
    order = sorted(range(len(key)), key=lambda i: (-key[i], i))[: max(int(budget), 0)]
    return [Pick(int(i), float(scores[i]), reasons(int(i))) for i in order]


def get_strategy(name):
    """The registered strategy ``name`` (an instance); an unknown name lists the known ones."""
    return STRATEGY_REGISTRY.get(name)()


def strategy_names():
    return STRATEGY_REGISTRY.names()
