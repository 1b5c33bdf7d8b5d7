"""``combined``: the most contradicted (or uncertain) images, spread over the feature space."""

import numpy as np

from .base import STRATEGY_REGISTRY, Pick, Strategy
from .kcenter import k_center_greedy
from .uncertainty import Uncertainty
from .weak_disagreement import WeakDisagreement

__all__ = ["Combined"]


@STRATEGY_REGISTRY.register()
class Combined(Strategy):
    """Take the ``pool_factor x budget`` best images by weak-label disagreement (by detector
    uncertainty when the pool has no weak labels), then choose ``budget`` of them by k-center over
    the backbone features (starting from the boxed images), so that near-duplicate contradicted
    images are not all boxed. Each pick keeps its first strategy's score and reason."""

    name = "combined"
    description = "weak-label disagreement (else uncertainty), diversified by k-center"
    pool_factor = 3

    def select(self, signals, budget, rng):
        first = WeakDisagreement() if signals.labels is not None else Uncertainty()
        shortlist = first.select(signals, self.pool_factor * int(budget), rng)
        shortlist = [p for p in shortlist if not np.isnan(p.score)]
        if signals.features is None or len(shortlist) <= budget:
            return shortlist[: int(budget)]
        by_index = {p.index: p for p in shortlist}
        chosen = k_center_greedy(signals.features, budget, signals.boxed_features, list(by_index))
        return [
            Pick(i, by_index[i].score, f"{by_index[i].reason}; spread by k-center (distance {d:.3f})")
            for i, d in chosen
        ]
