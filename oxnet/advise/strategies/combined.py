"""``combined``: the most contradicted (or uncertain) images, spread over the feature space."""

import numpy as np

from .base import STRATEGY_REGISTRY, Pick, Strategy
from .kcenter import k_center_greedy
from .uncertainty import Uncertainty
from .weak_disagreement import WeakDisagreement

__all__ = ["Combined"]


@STRATEGY_REGISTRY.register()
class Combined(Strategy):
    """A shortlist of ``pool_factor x budget`` images: the most contradicted by weak-label
    disagreement, then (images without a weak label, or a pool without any) the most uncertain for the
    detector; from it ``budget`` images by k-center over the backbone features, starting from the
    boxed images, so that near-duplicate contradicted images are not all boxed. The score is the
    k-center distance at the time of the pick (the shortlist's score without features); the reason
    keeps why the image made the shortlist."""

    name = "combined"
    description = "weak-label disagreement (else uncertainty), diversified by k-center"
    pool_factor = 3

    def select(self, signals, budget, rng):
        size = self.pool_factor * int(budget)
        shortlist = []
        if signals.labels is not None:
            shortlist = [p for p in WeakDisagreement().select(signals, size, rng) if not np.isnan(p.score)]
        if len(shortlist) < size:
            taken = {p.index for p in shortlist}
            rest = [p for p in Uncertainty().select(signals, len(signals), rng) if p.index not in taken]
            shortlist += rest[: size - len(shortlist)]
        if signals.features is None or len(shortlist) <= budget:
            return shortlist[: int(budget)]
        by_index = {p.index: p for p in shortlist}
        chosen = k_center_greedy(signals.features, budget, signals.boxed_features, list(by_index))
        return [Pick(i, d, f"{by_index[i].reason}; spread by k-center (distance {d:.3f})") for i, d in chosen]
