"""``uncertainty``: the images the detector is least sure about."""

import numpy as np

from .base import STRATEGY_REGISTRY, Strategy, top_k

__all__ = ["binary_entropy", "Uncertainty"]


def binary_entropy(p):
    """Entropy in bits of a Bernoulli(p): 1 at p = 0.5, 0 at 0 and 1."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


@STRATEGY_REGISTRY.register()
class Uncertainty(Strategy):
    """Score: ``max_c H(s_c)``, the binary entropy of the student's highest box score ``s_c`` of each
    class (0 without a box), so an image whose best box of some class is near 0.5 ranks first. The
    least-confidence score of detection active learning, per class on the top box (the box a
    threshold would keep or drop)."""

    name = "uncertainty"
    description = "the detector's top box of some class is closest to 0.5"

    def select(self, signals, budget, rng):
        h = binary_entropy(signals.det_top) if len(signals) else np.zeros((0, 1))
        score = h.max(axis=1) if h.size else np.zeros(len(signals))
        cls = h.argmax(axis=1) if h.size else np.zeros(len(signals), dtype=int)

        def reason(i):
            c = int(cls[i])
            return (
                f"the detector is unsure: its top {signals.class_names[c]} box scores "
                f"{signals.det_top[i, c]:.2f}"
            )

        return top_k(score, budget, reason)
