"""Losses of the weak (Eq. 1) and unsupervised (Eq. 7-8) branches."""
import torch
from torch.nn import functional as F


def masked_bce_with_logits(logits, labels):
    """Image-level BCE of Eq. 1, ignoring uncertain and unknown labels.

    Args:
        logits: (B, N) global-head logits (``sigma^-1(p_c)``).
        labels: (B, N) with 1 (positive), 0 (negative) and -1 (uncertain or unknown: masked out).

    Returns:
        The sum over classes of Eq. 1 averaged over the images that have at least one known label
        (0 when no label is known).
    """
    valid = labels >= 0
    per_entry = F.binary_cross_entropy_with_logits(logits, labels.clamp(min=0).to(logits.dtype),
                                                   reduction="none")
    num_images = valid.any(dim=1).sum().clamp(min=1)
    return (per_entry * valid).sum() / num_images


def soft_focal_loss(student_logits, teacher_probs, alpha=0.9, eps=0.05, gamma=2.0):
    """Soft focal loss of Eq. 8, elementwise.

    ``L = (q~ * alpha + eps) * |q~ - q|^gamma * BCE(q, q~)`` with ``q = sigmoid(student_logits)``, the
    teacher's probability ``q~`` as the soft target, and ``BCE(q, q~) = -[q~ log q + (1-q~) log(1-q)]``
    (Eq. 8 writes the leading minus of Eq. 7 in front; the BCE term already carries it, so the loss
    is non-negative). ``q~`` is treated as a constant.

    Returns:
        A tensor of the same shape as the inputs (sum or normalize it yourself).
    """
    teacher_probs = teacher_probs.detach().to(student_logits.dtype)
    q = torch.sigmoid(student_logits)
    bce = F.binary_cross_entropy_with_logits(student_logits, teacher_probs, reduction="none")
    weight = (teacher_probs * alpha + eps) * (teacher_probs - q).abs().pow(gamma)
    return weight * bce
