"""Unsupervised losses of the semi-supervised baselines of Table 1, adapted to RetinaNet.

Every function works on dense RetinaNet outputs: logits or probabilities of shape (..., R, K) over
all anchors R of all FPN levels and the K classes, and returns an elementwise loss of the same shape
(sum or normalize it yourself; :class:`oxnet.modeling.OXNet` sums over anchors and classes and
divides by the number of images times the running number of positive anchors per box-labeled image,
as for the soft focal loss). Targets from a teacher are treated as constants.

Adaptations to a dense detector (the OXnet paper does not detail how it adapted them):

* Pi model (Laine & Aila, ICLR 2017): squared difference between the class probabilities of two
  stochastic views of the same image, both passed through the student with gradients.
* Mean Teacher (Tarvainen & Valpola, NeurIPS 2017): squared difference between the student's class
  probabilities (strong view) and the EMA teacher's (weak view).
* MMT-PSM (Zhou et al., MICCAI 2020): the teacher's self-ensemble over several perturbed views is
  the target; perturbation-sensitive sample mining keeps the anchors whose teacher probability varies
  most across the views (Zhou et al. mine proposals; here every anchor of every class is a sample).
  Their mask-guided feature distillation has no counterpart without masks and is left out.
* FocalMix (Wang et al., CVPR 2020): soft-target focal loss on MixUp of unlabeled images with their
  sharpened soft targets. Images of equal size share their anchors, so mixing two images and their
  anchor targets with the same weight keeps targets aligned. The targets come from the mean teacher
  on the weak view instead of the student's own average over augmentations.
"""

import torch
from torch.nn import functional as F

__all__ = [
    "pi_consistency",
    "mean_teacher_consistency",
    "sharpen",
    "psm_select",
    "mmt_psm_consistency",
    "soft_target_focal_loss",
    "mixup",
]


def pi_consistency(logits_a, logits_b):
    """Pi model: ``(sigmoid(a) - sigmoid(b))^2``, with gradients through both views."""
    return (torch.sigmoid(logits_a) - torch.sigmoid(logits_b)).pow(2)


def mean_teacher_consistency(student_logits, teacher_probs):
    """Mean Teacher: ``(sigmoid(student) - teacher)^2``; the teacher's probabilities are constants."""
    return (torch.sigmoid(student_logits) - teacher_probs.detach().to(student_logits.dtype)).pow(2)


def sharpen(probs, temperature=0.5):
    """Temperature sharpening of independent (sigmoid) probabilities:
    ``p^(1/T) / (p^(1/T) + (1 - p)^(1/T))`` (MixMatch's sharpening for one binary variable).
    ``T = 1`` is the identity; ``T < 1`` pushes probabilities towards 0 or 1."""
    if temperature <= 0:
        raise ValueError(f"sharpening temperature must be > 0, got {temperature}")
    if temperature == 1:
        return probs
    p = probs.clamp(1e-6, 1 - 1e-6)
    # in log space: sigmoid(logit(p) / T) equals the formula above and never divides 0 by 0
    return torch.sigmoid(torch.logit(p) / temperature)


def psm_select(teacher_std, fraction=0.1):
    """Perturbation-sensitive sample mining: a mask (..., R, K), per image, of the ``fraction`` of
    anchor-class entries whose teacher probability varies most across perturbed views (``teacher_std``)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"selected fraction must be in (0, 1], got {fraction}")
    flat = teacher_std.flatten(-2)
    k = max(1, int(round(fraction * flat.shape[-1])))
    idx = flat.topk(k, dim=-1).indices
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(-1, idx, True)
    return mask.view_as(teacher_std)


def mmt_psm_consistency(student_logits, teacher_mean, teacher_std, fraction=0.1):
    """MMT-PSM: squared difference to the teacher's self-ensemble ``teacher_mean`` on the entries
    selected by :func:`psm_select` (zero elsewhere)."""
    mask = psm_select(teacher_std, fraction)
    return mean_teacher_consistency(student_logits, teacher_mean) * mask


def soft_target_focal_loss(logits, targets, alpha=0.25, gamma=2.0):
    """FocalMix's soft-target focal loss:
    ``-alpha q |q - p|^gamma log p - (1 - alpha)(1 - q) |q - p|^gamma log(1 - p)`` with ``p =
    sigmoid(logits)`` and soft target ``q``. For ``q`` in {0, 1} it is RetinaNet's focal loss; it is
    zero where ``p = q``."""
    q = targets.detach().to(logits.dtype)
    p = torch.sigmoid(logits)
    modulation = (q - p).abs().pow(gamma)
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    return -modulation * (alpha * q * log_p + (1 - alpha) * (1 - q) * log_not_p)


def mixup(images, targets, lam, perm):
    """MixUp of a batch with a permutation of itself: ``lam * x + (1 - lam) * x[perm]`` for the
    images (B, C, H, W) and their dense targets (B, R, K) alike. FocalMix (like MixMatch) uses
    ``lam = max(l, 1 - l)`` with ``l ~ Beta(a, a)``, so each mixed image stays closest to its own."""
    return lam * images + (1 - lam) * images[perm], lam * targets + (1 - lam) * targets[perm]
