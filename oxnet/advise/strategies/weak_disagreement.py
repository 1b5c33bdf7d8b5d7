"""``weak_disagreement``: images whose weak label the model contradicts."""

import numpy as np

from .base import STRATEGY_REGISTRY, Strategy, top_k

__all__ = ["WeakDisagreement", "disagreement"]


def disagreement(labels, det_top, global_scores=None):
    """``(score (n,), class (n,), source (n,))``: per image the largest ``|y_c - s_c|`` over its
    labelled classes (``y_c`` 1 or 0, NaN unknown and skipped), where ``s_c`` is the detector's top box
    score of class c or, when it disagrees more, the global head's probability (DAA's ``p_c``). NaN
    for an image without a labelled class; ``source`` is "detector" or "global head"."""
    labels = np.asarray(labels, dtype=np.float64)
    d_det = np.abs(labels - det_top)
    d = d_det
    from_global = np.zeros_like(d_det, dtype=bool)
    if global_scores is not None:
        d_glob = np.abs(labels - global_scores)
        from_global = d_glob > d_det
        d = np.where(from_global, d_glob, d_det)
    d = np.where(np.isnan(labels), -np.inf, d)
    cls = d.argmax(axis=1) if d.size else np.zeros(len(labels), dtype=int)
    score = d.max(axis=1) if d.size else np.zeros(len(labels))
    score = np.where(np.isinf(score), np.nan, score)
    rows = np.arange(len(labels))
    source = np.where(from_global[rows, cls], "global head", "detector") if d.size else np.array([])
    return score, cls, source


@STRATEGY_REGISTRY.register()
class WeakDisagreement(Strategy):
    """Score: :func:`disagreement`. An image labelled with a finding where the detector's best box of
    that class scores low (a likely missed lesion), or labelled without it where a box or the global
    head says it is there, ranks first. Images without any weak label rank last."""

    name = "weak_disagreement"
    needs = ("labels",)
    description = "the weak label says present and the model absent, or the reverse"

    def select(self, signals, budget, rng):
        score, cls, source = disagreement(signals.labels, signals.det_top, signals.global_scores)

        def reason(i):
            c = int(cls[i])
            name = signals.class_names[c]
            if np.isnan(score[i]):
                return "no weak label"
            said = "present" if signals.labels[i, c] == 1 else "absent"
            glob = "" if signals.global_scores is None else f", global head {signals.global_scores[i, c]:.2f}"
            return (
                f"labelled {name} {said}; detector's top box {signals.det_top[i, c]:.2f}{glob} "
                f"({source[i]} disagrees most)"
            )

        return top_k(score, budget, reason)
