"""Dual attention alignment (DAA, Sec. 2.1): local attention from RetinaNet's class maps (Eq. 2)
and attention-weighted pooling of the global class activation map (Eq. 3)."""

import torch
from torch.nn import functional as F


def local_attention(
    cls_logits: list[torch.Tensor], num_classes: int, out_size, align_corners: bool = False
) -> torch.Tensor:
    """Local attention ``A`` of Eq. 2 on the global head's grid.

    For each FPN level the sigmoid class maps are maxed over the anchors; for each image and class,
    the level whose map has the highest peak is chosen (Eq. 2) and resized (bilinear) to
    ``out_size``. Gradients flow back into the RetinaNet classification head. ``align_corners``:
    the resize's corner convention (the authors' code uses True; False is PyTorch's default and
    keeps each map's pixel centres in place).

    Args:
        cls_logits: per level, (B, A*K, H_l, W_l) logits as produced by ``RetinaNetHead``
            (anchor-major channel layout, as detectron2's ``permute_to_N_HWA_K`` assumes).
        num_classes: K.
        out_size: (h, w) of the global class activation map X.

    Returns:
        (B, K, h, w) non-negative attention maps.
    """
    resized, peaks = [], []
    for logits in cls_logits:
        b, ak, h, w = logits.shape
        probs = logits.view(b, ak // num_classes, num_classes, h, w).sigmoid()
        attn = probs.max(dim=1).values  # max over anchors: (B, K, H_l, W_l)
        peaks.append(attn.flatten(2).max(dim=2).values)  # (B, K)
        resized.append(
            F.interpolate(attn, size=tuple(out_size), mode="bilinear", align_corners=align_corners)
        )
    level = torch.stack(peaks, dim=2).argmax(dim=2)  # (B, K): the level with the highest peak
    stacked = torch.stack(resized, dim=2)  # (B, K, L, h, w)
    index = level[:, :, None, None, None].expand(-1, -1, 1, *stacked.shape[-2:])
    return stacked.gather(2, index).squeeze(2)


def normalize_attention(attention: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``R_c = A_c / sum_i A_c`` (Eq. 3): each (image, class) map sums to one."""
    return attention / attention.flatten(2).sum(dim=2).clamp(min=eps)[:, :, None, None]


def daa_logits(cam: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """DAA pooling (Eq. 3) before the sigmoid: ``sum_i [X_c * R_c]_i``.

    Args:
        cam: (B, K, h, w) global class activation map X.
        attention: (B, K, h, w) normalized local attention R.

    Returns:
        (B, K) logits; ``p_c = sigmoid(logits)``.
    """
    return (cam * attention).flatten(2).sum(dim=2)


#: Which classes' image labels train the detector through R (``OXNET.GLOBAL_HEAD.ATTENTION_GRAD``).
ATTENTION_GRAD_MODES = ("all", "positive", "none")


def gate_attention(attention: torch.Tensor, labels: torch.Tensor, mode: str = "all") -> torch.Tensor:
    """R with its gradient kept only where ``mode`` says; the values are unchanged.

    "all" (Eq. 3 as written): every class's image label reaches the RetinaNet classification head.
    "positive": only the classes present in the image (label 1). For an absent class, the gradient
    of -log(1 - p_c) with respect to R_c raises the normalized attention where X_c is low, i.e. it
    moves the detector's scores for that class rather than lowering them; with "positive" such a
    label still trains X_c but leaves the detector alone. (Measured as an ablation, it was worse:
    BENCHMARKS.md.)
    "none": R is a constant; DAA then trains only the global head.

    Args:
        attention: (B, K, h, w) normalized local attention R.
        labels: (B, K) image labels, 1 present, 0 absent, -1 unknown.
    """
    if mode == "all":
        return attention
    if mode == "none":
        return attention.detach()
    if mode == "positive":
        keep = (labels == 1)[:, :, None, None]
        return torch.where(keep, attention, attention.detach())
    raise ValueError(f"attention gradient mode must be one of {ATTENTION_GRAD_MODES}, got {mode!r}")
