"""Losses of the weak (Eq. 1) and unsupervised (Eq. 7-8) branches."""

import torch
from torch.nn import functional as F

#: Reductions of the image-level BCE (``OXNET.GLOBAL_HEAD.BCE_REDUCTION``).
BCE_REDUCTIONS = ("mean", "sum_classes")


def masked_bce_with_logits(logits, labels, reduction="mean"):
    """Image-level BCE of Eq. 1, ignoring uncertain and unknown labels.

    Eq. 1 sums the BCE over the classes of an image; the authors' code (``GlobalClassificationLoss``)
    averages it over images x classes, so their image-label loss weighs 1/K of Eq. 1 against the
    detector's losses. We follow the code by default (``"mean"``): with Eq. 1's sum the image labels'
    gradient into the shared detection head outweighs the focal loss's as K grows (1.7x on the
    nine-class synthetic preset, against 0.18x at the code's scale). ``"sum_classes"`` is Eq. 1.

    Args:
        logits: (B, N) global-head logits (``sigma^-1(p_c)``).
        labels: (B, N) with 1 (positive), 0 (negative) and -1 (uncertain or unknown: masked out).
        reduction: "mean": the mean over the known (image, class) entries; "sum_classes": the sum over
            classes averaged over the images that have at least one known label.

    Returns:
        A scalar, 0 when no label is known.
    """
    if reduction not in BCE_REDUCTIONS:
        raise ValueError(f"BCE reduction must be one of {BCE_REDUCTIONS}, got {reduction!r}")
    valid = labels >= 0
    per_entry = F.binary_cross_entropy_with_logits(
        logits, labels.clamp(min=0).to(logits.dtype), reduction="none"
    )
    denominator = valid.sum().clamp(min=1) if reduction == "mean" else valid.any(dim=1).sum().clamp(min=1)
    return (per_entry * valid).sum() / denominator


def soft_focal_loss(student_logits, teacher_probs, alpha=0.9, eps=0.05, gamma=2.0, alpha_term=None):
    """Soft focal loss of Eq. 8, elementwise.

    ``L = (q~ * alpha + eps) * |q~ - q|^gamma * BCE(q, q~)`` with ``q = sigmoid(student_logits)``, the
    teacher's probability ``q~`` as the soft target, and ``BCE(q, q~) = -[q~ log q + (1-q~) log(1-q)]``
    (Eq. 8 writes the leading minus of Eq. 7 in front; the BCE term already carries it, so the loss
    is non-negative). ``q~`` is treated as a constant. ``alpha_term`` (broadcastable to the inputs)
    replaces ``q~ * alpha + eps`` (the authors' batch-wide alpha, ``OXNET.SFL.ALPHA_BATCH_BUG``).

    Returns:
        A tensor of the same shape as the inputs (sum or normalize it yourself).
    """
    teacher_probs = teacher_probs.detach().to(student_logits.dtype)
    q = torch.sigmoid(student_logits)
    bce = F.binary_cross_entropy_with_logits(student_logits, teacher_probs, reduction="none")
    if alpha_term is None:
        alpha_term = teacher_probs * alpha + eps
    weight = alpha_term.detach().to(q.dtype) * (teacher_probs - q).abs().pow(gamma)
    return weight * bce


def weak_negative_focal_loss(logits, labels, alpha=0.25, gamma=2.0):
    """RetinaNet's focal loss with target 0 on every anchor of every class labelled absent.

    An image-level "no <class>" says that no anchor of that class is a lesion: for that class the image
    is as informative as a box-free fully labelled image. Classes labelled 1 or -1 (unknown) get no loss.

    Args:
        logits: (B, R, K) dense class logits of B weak images over all anchors.
        labels: (B, K) image labels 1 / 0 / -1.

    Returns:
        The sum over images, anchors and absent classes (normalize it like RetinaNet's loss).
    """
    from fvcore.nn import sigmoid_focal_loss

    absent = (labels == 0).to(logits.dtype)[:, None, :]  # (B, 1, K)
    loss = sigmoid_focal_loss(logits, torch.zeros_like(logits), alpha=alpha, gamma=gamma, reduction="none")
    return (loss * absent).sum()
