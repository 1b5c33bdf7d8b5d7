"""``kcenter``: images unlike any already boxed, in the backbone's feature space."""

import numpy as np

from .base import STRATEGY_REGISTRY, Pick, Strategy

__all__ = ["KCenter", "k_center_greedy"]


def k_center_greedy(features, budget, centers=None, candidates=None):
    """Greedy k-center (Sener and Savarese, ICLR 2018): repeatedly take the candidate farthest (L2)
    from its nearest centre, then make it a centre. ``centers``: (b, D) starting centres (the boxed
    images); without them the first pick is the candidate farthest from the candidates' mean. Ties go
    to the lower index. Returns ``[(index, distance at the time of the pick)]``."""
    features = np.asarray(features, dtype=np.float64)
    idx = np.arange(len(features)) if candidates is None else np.asarray(candidates, dtype=int)
    if len(idx) == 0 or budget <= 0:
        return []
    x = features[idx]
    if centers is not None and len(centers):
        c = np.asarray(centers, dtype=np.float64)
        dist = np.sqrt(((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    else:
        dist = np.linalg.norm(x - x.mean(axis=0), axis=1)
    picks = []
    taken = np.zeros(len(idx), dtype=bool)
    for _ in range(min(int(budget), len(idx))):
        d = np.where(taken, -np.inf, dist)
        j = int(np.flatnonzero(d == d.max())[0])
        picks.append((int(idx[j]), float(dist[j])))
        taken[j] = True
        dist = np.minimum(dist, np.linalg.norm(x - x[j], axis=1))
    return picks


@STRATEGY_REGISTRY.register()
class KCenter(Strategy):
    """Score: the feature distance of the image to its nearest already boxed or already chosen image
    (:func:`k_center_greedy`), so the chosen images cover the pool. Features: the last ResNet stage
    averaged over the image, L2-normalized."""

    name = "kcenter"
    needs = ("features",)
    description = "the image least like any boxed or chosen one (k-center)"

    def select(self, signals, budget, rng):
        picks = k_center_greedy(signals.features, budget, signals.boxed_features)
        return [
            Pick(i, d, f"unlike the boxed images: feature distance {d:.3f} to the nearest one")
            for i, d in picks
        ]
