"""``random``: a seeded uniform draw, the baseline every other strategy is compared with."""

from .base import STRATEGY_REGISTRY, Pick, Strategy


@STRATEGY_REGISTRY.register()
class RandomChoice(Strategy):
    """``budget`` images drawn uniformly without replacement with the given seed; the score is
    1 for the first drawn, falling by 1 / budget per rank (an order, not a belief)."""

    name = "random"
    description = "a seeded uniform draw"

    def select(self, signals, budget, rng):
        n = len(signals)
        k = min(int(budget), n)
        order = rng.permutation(n)[:k]
        return [Pick(int(i), 1.0 - r / max(k, 1), "drawn at random") for r, i in enumerate(order)]
