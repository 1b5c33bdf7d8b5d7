"""Global prototype alignment (GPA, Sec. 2.2): class features (Eq. 4), confidence-weighted EMA
prototypes (Eq. 5) and the intra-class / inter-class losses (Eq. 6)."""

import torch
from torch import distributed as dist
from torch import nn


def class_features(features: torch.Tensor, attention: torch.Tensor, view_bug: bool = False) -> torch.Tensor:
    """``F_c = sum_i M_i * R_c,i`` (Eq. 4).

    Args:
        features: (B, C, h, w) last-stage feature map M.
        attention: (B, K, h, w) normalized local attention R (Eq. 3).

    Returns:
        (B, K, C): one C-dimensional feature per image and class. Each class keeps its own spatial
        weighting; channels and classes are never mixed.

    ``view_bug`` (``OXNET.GPA.VIEW_BUG``, off by default) reproduces the authors' bug
    (``model.py`` l.322): they stack the features as (B, C, K) and reshape them with
    ``.contiguous().view(B, K, C)`` instead of permuting, so "class k's feature" holds channels of
    several classes.
    """
    if view_bug:
        b, c = features.shape[:2]
        k = attention.shape[1]
        return torch.einsum("bchw,bkhw->bck", features, attention).contiguous().view(b, k, c)
    return torch.einsum("bchw,bkhw->bkc", features, attention)


class PrototypeMemory(nn.Module):
    """Global class prototypes ``P`` (K, C), a buffer updated by Eq. 5.

    ``P <- beta * P + (1 - beta) * sum_k p_k F_k / sum_k p_k`` over the images of the batch that are
    labelled positive for the class, weighted by their confidence ``p_k``. ``beta`` is 0 at a
    class's first update and ``momentum`` (0.7) afterwards. Under ``torch.distributed`` the weighted
    sums are all-reduced first, so every process keeps the same prototypes.

    ``absent_decay`` (``OXNET.GPA.ABSENT_DECAY``): the authors' ``update_prototypes`` (``model.py``
    l.309-335) updates every class at every step; a class with no positive image in the batch has a
    weighted mean of 0, so its prototype becomes ``beta * P`` (it decays towards 0 by 0.7 per step).
    Eq. 5 as written (False, the default) leaves such a prototype as it is.
    """

    def __init__(self, num_classes: int, dim: int, momentum: float = 0.7, absent_decay: bool = False):
        super().__init__()
        self.momentum, self.absent_decay = momentum, absent_decay
        self.register_buffer("prototypes", torch.zeros(num_classes, dim))
        self.register_buffer("initialized", torch.zeros(num_classes, dtype=torch.bool))

    @torch.no_grad()
    def update(self, feats: torch.Tensor, confidence: torch.Tensor, mask: torch.Tensor):
        """Apply Eq. 5.

        Args:
            feats: (B, K, C) class features F (Eq. 4).
            confidence: (B, K) image-level probabilities p.
            mask: (B, K) bool, which (image, class) pairs take part (positives).
        """
        weights = confidence.detach().float() * mask
        weighted_sum = torch.einsum("bk,bkc->kc", weights, feats.detach().float())
        total = weights.sum(dim=0)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            packed = torch.cat([weighted_sum, total[:, None]], dim=1)
            dist.all_reduce(packed)
            weighted_sum, total = packed[:, :-1], packed[:, -1]
        present = total > 0
        if self.absent_decay:  # P <- beta * P + (1 - beta) * 0 for the initialized absent classes
            decay = ~present & self.initialized
            self.prototypes[decay] *= self.momentum
        if not present.any():
            return
        mean = weighted_sum[present] / total[present, None]
        beta = torch.where(self.initialized[present], self.momentum, 0.0)[:, None]
        self.prototypes[present] = beta * self.prototypes[present] + (1 - beta) * mean.to(self.prototypes)
        self.initialized |= present


def gpa_losses(
    feats: torch.Tensor,
    prototypes: torch.Tensor,
    mask: torch.Tensor,
    valid_classes: torch.Tensor,
    margin: float = 1.0,
):
    """Intra-class compactness and inter-class separability losses of Eq. 6.

    Args:
        feats: (B, K, C) class features F.
        prototypes: (K, C) prototypes P (treated as constants).
        mask: (B, K) bool, the (image, class) pairs whose feature F_c takes part (positives).
        valid_classes: (K,) bool, classes whose prototype exists.
        margin: delta.

    Returns:
        (intra, inter): ``mean d(F_c, P_c)`` over the selected pairs, and
        ``mean max(0, delta - d(F_j, P_c))`` over the selected pairs (j) and every other
        class c != j with a prototype. Zero (with a graph) when nothing is selected.

    The distance ``d(F, P) = ||F - P||_2^2 / C`` is Eq. 6's squared L2 norm divided by the feature
    width C, as the authors' code computes it (a mean over channels). Without the division the loss
    grows with the width of M (512 channels for ResNet-18, 2048 for ResNet-101): the intra term then
    dominates the detector's losses and is cheapest to lower by shrinking the last-stage features,
    while the margin delta = 1 is far below any distance, so the inter term never acts.
    """
    prototypes = prototypes.detach().to(feats.dtype)
    sq_dist = (feats[:, :, None, :] - prototypes[None, None, :, :]).pow(2).mean(-1)  # (B, j, c)
    k = prototypes.shape[0]
    own = torch.eye(k, dtype=torch.bool, device=feats.device)
    pair = mask & valid_classes[None, :]
    intra_terms = sq_dist.diagonal(dim1=1, dim2=2)[pair]
    inter_sel = mask[:, :, None] & (~own)[None] & valid_classes[None, None, :]
    inter_terms = (margin - sq_dist[inter_sel]).clamp(min=0)
    zero = feats.sum() * 0.0
    intra = intra_terms.mean() if intra_terms.numel() else zero
    inter = inter_terms.mean() if inter_terms.numel() else zero
    return intra, inter


#: The forms of Eq. 6 (``OXNET.GPA.FORM``).
GPA_FORMS = ("paper", "authors")


def gpa_losses_authors(
    feats: torch.Tensor,
    prototypes: torch.Tensor,
    mask: torch.Tensor,
    valid_classes: torch.Tensor,
    margin: float = 1.0,
):
    """Eq. 6 as the authors' ``GlobalContrastiveLoss`` computes it (LLYXC/OXnet, ``retinanet/losses.py``).

    The class feature of class j is the mean of F_j over the batch's images selected for j (one
    feature per class present in the batch, not one per image); with ``d`` the squared distance
    averaged over channels (as in :func:`gpa_losses`), intra is the mean of ``d(F_j, P_j)`` and inter
    the mean over c != j of ``((m - sqrt(d)) / m)^2 * max(m - sqrt(d(F_j, P_c)), 0)^2`` instead of the
    paper's hinge ``max(0, m - d)``; both over classes with a prototype.

    Returns:
        (intra, inter), zero (with a graph) when nothing is selected.
    """
    prototypes = prototypes.detach().to(feats.dtype)
    weights = mask.to(feats.dtype)  # (B, K)
    count = weights.sum(dim=0)  # (K,)
    present = (count > 0) & valid_classes
    zero = feats.sum() * 0.0
    if not present.any():
        return zero, zero + 0.0
    batch_feats = torch.einsum("bk,bkc->kc", weights, feats) / count.clamp(min=1)[:, None]  # (K, C)
    sq_dist = (batch_feats[:, None, :] - prototypes[None, :, :]).pow(2).mean(-1)  # (j, c)
    k = prototypes.shape[0]
    own = torch.eye(k, dtype=torch.bool, device=feats.device)
    intra_terms = sq_dist.diagonal()[present]
    other = present[:, None] & ~own & valid_classes[None, :]
    gap = margin - sq_dist[other].clamp(min=0).sqrt()
    inter_terms = (gap / margin).pow(2) * gap.clamp(min=0).pow(2)
    intra = intra_terms.mean()
    inter = inter_terms.mean() if inter_terms.numel() else zero + 0.0
    return intra, inter
