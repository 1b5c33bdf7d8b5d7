"""The soft focal loss with a mean teacher (SFL, Sec. 2.3, Eq. 7-8), Table 1 row 10, in two forms.

``OXNET.SFL.MODE dense`` (Eq. 8 as written): the teacher's dense probabilities on the weak view are
the student's soft targets on every anchor and class of every weak and unlabeled image.

``OXNET.SFL.MODE filtered`` (the authors' ``ConsistencyLoss``, LLYXC/OXnet ``retinanet/losses.py``):
per weak image, the teacher's detections (after its score threshold and NMS, as at inference) are
kept only when their class is labelled present in the image (none kept: no loss for that image).
Anchors with IoU < 0.4 or >= 0.5 to the kept boxes take the teacher's probabilities as soft targets
(Eq. 8), the band between is ignored, and the positive anchors (IoU >= 0.5) also regress towards
their teacher box (RetinaNet's box loss, ``loss_sfl_box``). Both terms are divided by the image's
number of positive anchors and averaged over the images. Unlabeled images have no labels to filter
with: ``OXNET.SFL.UNLABELED`` "dense" gives them the dense form, "skip" leaves them out (in either
mode: SFL on the weak stream only, as the authors' ``train_oxnet.py``).

The authors' forms of the filtered loss, each a switch whose default is ours: their teacher boxes
(``OXNET.SFL.TEACHER_BOXES``, :mod:`oxnet.modeling.teacher_boxes`), their box consistency
(``OXNET.SFL.BOX_LOSS authors``, :func:`authors_box_consistency`) and their batch-wide alpha
(``OXNET.SFL.ALPHA_BATCH_BUG``, :func:`batch_alpha_term`).
"""

import torch
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, pairwise_iou
from fvcore.nn import giou_loss, smooth_l1_loss

from oxnet.modeling.losses import soft_focal_loss

from .base import UNSUP_LOSS_REGISTRY, UnsupLoss, teacher_targets

__all__ = [
    "SoftFocalLoss",
    "SFL_MODES",
    "SFL_UNLABELED",
    "authors_box_consistency",
    "batch_alpha_term",
    "filter_teacher_boxes",
    "filtered_sfl_image",
]

SFL_MODES = ("dense", "filtered")
SFL_UNLABELED = ("dense", "skip")
BOX_LOSSES = ("retinanet", "authors")
#: The authors' box encoding: deltas divided by these (``BBoxTransform``'s std) and smooth L1's beta.
AUTHORS_BOX_STD, AUTHORS_SMOOTH_L1_BETA = (0.1, 0.1, 0.2, 0.2), 1.0 / 9.0
#: The authors' anchor assignment to teacher boxes: soft targets below / from these IoUs.
NEGATIVE_IOU, POSITIVE_IOU = 0.4, 0.5


def filter_teacher_boxes(boxes, classes, labels):
    """The teacher's boxes (n, 4) and classes (n,) whose class is labelled present (1) in ``labels`` (K,)."""
    keep = labels.to(classes.device)[classes] == 1 if len(classes) else classes.new_zeros(0, dtype=torch.bool)
    return boxes[keep], classes[keep]


def authors_box_consistency(pred_deltas, anchors, target_boxes, weights):
    """The authors' box consistency on one image's positive anchors (``losses.py`` l.244-292).

    Args:
        pred_deltas: (P, 4) the student's raw deltas, in the units of a box coder with ``weights``.
        anchors: (P, 4) the positive anchors; target_boxes: (P, 4) their teacher boxes.
        weights: the student's ``Box2BoxTransform`` weights.

    Returns:
        Smooth L1 (beta 1/9) between the student's and the teacher box's deltas, both divided by
        (0.1, 0.1, 0.2, 0.2), with the teacher box's sides clamped to >= 1 px before the log,
        averaged over the P x 4 entries.
    """
    std = pred_deltas.new_tensor(AUTHORS_BOX_STD)
    unscaled = pred_deltas / pred_deltas.new_tensor(weights)  # the deltas apply_deltas would use
    targets = target_boxes.clone()
    side = (targets[:, 2:] - targets[:, :2]).clamp(min=1.0)
    centre = (targets[:, 2:] + targets[:, :2]) / 2
    targets = torch.cat([centre - side / 2, centre + side / 2], dim=1)
    target = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0)).get_deltas(anchors, targets)
    loss = smooth_l1_loss(unscaled / std, target / std, beta=AUTHORS_SMOOTH_L1_BETA, reduction="sum")
    return loss / max(pred_deltas.numel(), 1)


def batch_alpha_term(weak_teacher_probs, alpha, eps):
    """The authors' SFL weight with their bug (``losses.py`` l.234): the (B', R, K) teacher
    probabilities of the batch's weak images give every weak image the same ``sum_b (eps + alpha
    q~_b)`` (R, K) instead of its own ``eps + alpha q~``."""
    return (weak_teacher_probs * alpha + eps).sum(dim=0)


def filtered_sfl_image(
    student_logits,
    student_deltas,
    teacher_probs,
    boxes,
    anchors,
    box2box_transform,
    alpha=0.9,
    eps=0.05,
    gamma=2.0,
    box_loss="smooth_l1",
    smooth_l1_beta=0.1,
    alpha_term=None,
):
    """The authors' consistency loss on one image against the kept teacher boxes.

    Args:
        student_logits: (R, K); student_deltas: (R, 4); teacher_probs: (R, K); boxes: (n, 4) kept
            teacher boxes (n >= 1) in the input frame; anchors: (R, 4).

    Returns:
        (classification loss, box loss, number of positive anchors): Eq. 8 summed over the anchors
        with IoU < 0.4 or >= 0.5 (every class), and RetinaNet's box loss towards the assigned teacher
        box summed over the anchors with IoU >= 0.5, each divided by max(positives, 1).
        ``box_loss`` "authors": :func:`authors_box_consistency` instead (a mean over the positive
        anchors' coordinates). ``alpha_term``: see :func:`oxnet.modeling.losses.soft_focal_loss`.
    """
    iou = pairwise_iou(Boxes(boxes), Boxes(anchors))  # (n, R)
    best, assigned = iou.max(dim=0)
    positive = best >= POSITIVE_IOU
    valid = (best < NEGATIVE_IOU) | positive
    num_pos = int(positive.sum())
    cls = soft_focal_loss(student_logits, teacher_probs, alpha, eps, gamma, alpha_term)
    cls = (cls * valid[:, None].to(cls.dtype)).sum() / max(num_pos, 1)
    if num_pos == 0:
        return cls, student_deltas.sum() * 0.0, 0
    pos_anchors, target_boxes = anchors[positive], boxes[assigned[positive]]
    pred = student_deltas[positive]
    if box_loss == "authors":
        weights = box2box_transform.weights
        return cls, authors_box_consistency(pred, pos_anchors, target_boxes, weights), num_pos
    if box_loss == "smooth_l1":
        target = box2box_transform.get_deltas(pos_anchors, target_boxes)
        reg = smooth_l1_loss(pred, target, beta=smooth_l1_beta, reduction="sum")
    elif box_loss == "giou":
        reg = giou_loss(box2box_transform.apply_deltas(pred, pos_anchors), target_boxes, reduction="sum")
    else:
        raise ValueError(f"unsupported box loss {box_loss!r}")
    return cls, reg / num_pos, num_pos


@UNSUP_LOSS_REGISTRY.register()
class SoftFocalLoss(UnsupLoss):
    name = "sfl"
    needs = ("teacher_probs",)  # on every image; filtered mode also needs the weak images' teacher boxes

    def __init__(self, cfg):
        super().__init__(cfg)
        s = cfg.OXNET.SFL
        if s.MODE not in SFL_MODES:
            raise ValueError(f"OXNET.SFL.MODE must be one of {SFL_MODES}, got {s.MODE!r}")
        if s.UNLABELED not in SFL_UNLABELED:
            raise ValueError(f"OXNET.SFL.UNLABELED must be one of {SFL_UNLABELED}, got {s.UNLABELED!r}")
        if s.BOX_LOSS not in BOX_LOSSES:
            raise ValueError(f"OXNET.SFL.BOX_LOSS must be one of {BOX_LOSSES}, got {s.BOX_LOSS!r}")
        self.mode, self.unlabeled = s.MODE, s.UNLABELED
        self.box_loss, self.alpha_batch_bug = s.BOX_LOSS, bool(s.ALPHA_BATCH_BUG)
        self.alpha, self.eps, self.gamma, self.weight = s.ALPHA, s.EPS, s.GAMMA, s.WEIGHT
        self.loss_names = ("loss_sfl",) + (("loss_sfl_box",) if self.mode == "filtered" else ())

    def check_inputs(self, inputs):
        if self.mode == "filtered":  # boxes are needed for the images that have labels
            labelled = [x for x in inputs if x.get("supervision") == "weak"]
            for key in ("teacher_boxes", "teacher_classes"):
                missing = [x.get("file_name", i) for i, x in enumerate(labelled) if key not in x]
                if missing:
                    raise ValueError(f"filtered SFL needs {key!r} from the mean teacher for {missing[:3]}")
        super().check_inputs(inputs)

    def forward(self, model, inputs, student_logits, student_deltas, anchors):
        targets = teacher_targets(inputs, student_logits, student_logits.device)
        weak = [j for j, x in enumerate(inputs) if x.get("supervision") == "weak"]
        if self.mode == "dense":  # Eq. 8 on every anchor and class
            keep = list(range(len(inputs))) if self.unlabeled == "dense" else weak
            if not keep:
                return {"loss_sfl": student_logits.sum() * 0.0}
            sel = torch.as_tensor(keep, device=student_logits.device)
            loss = soft_focal_loss(student_logits[sel], targets[sel], self.alpha, self.eps, self.gamma).sum()
            return {"loss_sfl": self.weight * self.normalize(model, loss, len(keep))}
        alpha_term = None
        if self.alpha_batch_bug and weak:
            alpha_term = batch_alpha_term(
                targets[torch.as_tensor(weak, device=targets.device)], self.alpha, self.eps
            )
        zero = student_logits.sum() * 0.0
        cls_total, box_total, counted = zero, zero + 0.0, 0
        anchor_boxes = None
        for j, x in enumerate(inputs):
            if x.get("supervision") != "weak" or "image_labels" not in x:
                if self.unlabeled == "dense":
                    dense = soft_focal_loss(student_logits[j], targets[j], self.alpha, self.eps, self.gamma)
                    cls_total = cls_total + dense.sum() / model.positives_per_image
                    counted += 1
                continue
            counted += 1
            boxes, _ = filter_teacher_boxes(
                x["teacher_boxes"].to(student_logits.device),
                x["teacher_classes"].to(student_logits.device),
                x["image_labels"],
            )
            if len(boxes) == 0:
                continue  # no teacher box of a labelled class: no loss for this image
            if anchor_boxes is None:
                anchor_boxes = anchors()
            cls, reg, _ = filtered_sfl_image(
                student_logits[j],
                student_deltas[j],
                targets[j],
                boxes,
                anchor_boxes,
                model.box2box_transform,
                self.alpha,
                self.eps,
                self.gamma,
                "authors" if self.box_loss == "authors" else model.box_reg_loss_type,
                model.smooth_l1_beta,
                alpha_term,
            )
            cls_total, box_total = cls_total + cls, box_total + reg
        n = max(counted, 1)
        return {"loss_sfl": self.weight * cls_total / n, "loss_sfl_box": self.weight * box_total / n}
