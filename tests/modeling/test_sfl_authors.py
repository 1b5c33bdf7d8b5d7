"""The authors' forms of the filtered soft focal loss (``OXNET.SFL.BOX_LOSS authors``,
``OXNET.SFL.ALPHA_BATCH_BUG``) and SFL on the weak stream only, against a transcription of their
``ConsistencyLoss`` (LLYXC/OXnet ``retinanet/losses.py`` l.155-292)."""

import math
from types import SimpleNamespace

import pytest
import torch
from detectron2.modeling.box_regression import Box2BoxTransform

from oxnet.modeling.unsup.sfl import SoftFocalLoss, authors_box_consistency
from oxnet.testing import tiny_cfg

ANCHORS = torch.tensor(
    [
        [0.0, 0, 10, 10],
        [0, 0, 8, 8],
        [0, 0, 10, 4.5],
        [50, 50, 60, 60],
        [20, 20, 40, 40],
        [22, 20, 42, 41],
        [55, 50, 55.8, 60],
    ]
)


def _iou(a, b):
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _authors_consistency(p_all, q_all, reg_all, boxes_all, classes_all, labels_all, batch_bug):
    """ConsistencyLoss.forward in plain Python, per weak image j (probabilities p of the student, q of
    the teacher, regression in the authors' units): teacher boxes of labelled classes; targets q on
    anchors with max IoU < 0.4 or >= 0.5; focal weight alpha * |q - p|^2 with alpha = 0.05 + 0.9 q (the
    bug: summed over the batch's images, unclamped); BCE on probabilities clamped to [1e-4, 1 - 1e-4];
    sum / max(#positives, 1); box targets (dx, dy, log w, log h) / (0.1, 0.1, 0.2, 0.2) with the teacher
    box's sides clamped to 1 (centres from the unclamped box), smooth L1 at 1/9, mean over P x 4; then
    the mean over the weak images, an image without a kept box counting 0."""
    cls_losses, reg_losses = [], []
    anchors = ANCHORS.tolist()
    for j in range(len(p_all)):
        keep = [n for n, c in enumerate(classes_all[j]) if labels_all[j][c] == 1]
        boxes = [boxes_all[j][n] for n in keep]
        if not boxes:
            cls_losses.append(0.0)
            reg_losses.append(0.0)
            continue
        cls_sum, positives = 0.0, []
        for a, anchor in enumerate(anchors):
            ious = [_iou(anchor, b) for b in boxes]
            best = max(ious)
            if 0.4 <= best < 0.5:
                continue
            if best >= 0.5:
                positives.append((a, boxes[ious.index(best)]))
            for c in range(len(p_all[j][a])):
                p = min(max(p_all[j][a][c], 1e-4), 1 - 1e-4)
                q = min(max(q_all[j][a][c], 1e-4), 1 - 1e-4)
                if batch_bug:
                    alpha = sum(0.05 + 0.9 * q_all[b][a][c] for b in range(len(q_all)))
                else:
                    alpha = 0.05 + 0.9 * q
                bce = -(q * math.log(p) + (1 - q) * math.log(1 - p))
                cls_sum += alpha * abs(q - p) ** 2 * bce
        cls_losses.append(cls_sum / max(len(positives), 1))
        terms = []
        for a, box in positives:
            ax0, ay0, ax1, ay1 = anchors[a]
            aw, ah = ax1 - ax0, ay1 - ay0
            acx, acy = ax0 + 0.5 * aw, ay0 + 0.5 * ah
            gw, gh = box[2] - box[0], box[3] - box[1]
            gcx, gcy = box[0] + 0.5 * gw, box[1] + 0.5 * gh
            gw, gh = max(gw, 1.0), max(gh, 1.0)
            target = [
                (gcx - acx) / aw / 0.1,
                (gcy - acy) / ah / 0.1,
                math.log(gw / aw) / 0.2,
                math.log(gh / ah) / 0.2,
            ]
            for t, r in zip(target, reg_all[j][a]):
                d = abs(t - r)
                terms.append(0.5 * 9.0 * d * d if d <= 1.0 / 9.0 else d - 0.5 / 9.0)
        reg_losses.append(sum(terms) / len(terms) if terms else 0.0)
    return sum(cls_losses) / len(cls_losses), sum(reg_losses) / len(reg_losses)


def _batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 2, generator=g).clamp(-2.5, 2.5)
    teacher = torch.rand(2, 7, 2, generator=g) * 0.9 + 0.05
    deltas = torch.randn(2, 7, 4, generator=g) * 0.5
    # image 0: a box of class 0 (labelled present) around the first anchors and one of class 1 (not
    # labelled) elsewhere, and a 0.6 px wide box of class 0 (the last anchor's; its width is clamped to
    # 1 px before the log); image 1: only
    # a box of an unlabelled class, so no loss
    boxes = [
        [[0.0, 0, 10, 10], [21, 20, 41, 40], [55.0, 50, 55.6, 60]],
        [[0.0, 0, 9, 9]],
    ]
    classes = [[0, 1, 0], [1]]
    labels = [[1.0, 0.0], [1.0, 0.0]]
    return logits, teacher, deltas, boxes, classes, labels


def _ours(box_loss, batch_bug, weights=(10.0, 10.0, 5.0, 5.0)):
    logits, teacher, deltas, boxes, classes, labels = _batch()
    cfg = tiny_cfg("oxnet", num_classes=2)
    cfg.OXNET.SFL.MODE, cfg.OXNET.SFL.BOX_LOSS, cfg.OXNET.SFL.ALPHA_BATCH_BUG = (
        "filtered",
        box_loss,
        batch_bug,
    )
    cfg.OXNET.SFL.UNLABELED = "skip"
    model = SimpleNamespace(
        box2box_transform=Box2BoxTransform(weights=weights),
        box_reg_loss_type="smooth_l1",
        smooth_l1_beta=0.1,
        positives_per_image=torch.tensor(100.0),
    )
    inputs = [
        {
            "supervision": "weak",
            "teacher_probs": teacher[j],
            "teacher_boxes": torch.tensor(boxes[j]),
            "teacher_classes": torch.tensor(classes[j]),
            "image_labels": torch.tensor(labels[j]),
        }
        for j in range(2)
    ]
    out = SoftFocalLoss(cfg)(model, inputs, logits, deltas, lambda: ANCHORS)
    return out["loss_sfl"].item(), out["loss_sfl_box"].item()


@pytest.mark.parametrize("batch_bug", [False, True])
def test_authors_forms_equal_a_transcription_of_their_consistency_loss(batch_bug):
    logits, teacher, deltas, boxes, classes, labels = _batch()
    want_cls, want_reg = _authors_consistency(
        logits.sigmoid().tolist(), teacher.tolist(), deltas.tolist(), boxes, classes, labels, batch_bug
    )
    got_cls, got_reg = _ours("authors", batch_bug)
    assert got_cls == pytest.approx(want_cls, rel=1e-5)
    assert got_reg == pytest.approx(want_reg, rel=1e-5)
    assert want_reg > 0 and want_cls > 0


def test_our_defaults_differ_from_the_authors_forms():
    logits, teacher, deltas, boxes, classes, labels = _batch()
    p = logits.sigmoid().tolist()
    bug_cls, authors_reg = _authors_consistency(
        p, teacher.tolist(), deltas.tolist(), boxes, classes, labels, True
    )
    own_cls, _ = _authors_consistency(p, teacher.tolist(), deltas.tolist(), boxes, classes, labels, False)
    cls, reg = _ours("retinanet", False)
    assert cls == pytest.approx(own_cls, rel=1e-5) and cls != pytest.approx(bug_cls, rel=1e-3)
    assert reg != pytest.approx(authors_reg, rel=1e-3)  # RetinaNet's smooth L1 sum, unscaled


def test_authors_box_consistency_reads_the_students_deltas_in_its_own_box_coder_units():
    # the same boxes predicted by a student with weights (1, 1, 1, 1) and one with (10, 10, 5, 5)
    anchors, targets = ANCHORS[:2], torch.tensor([[1.0, 0, 11, 10], [0, 1, 8, 10]])
    unscaled = torch.tensor([[0.1, 0.0, 0.05, -0.02], [0.0, 0.1, 0.0, 0.2]])
    a = authors_box_consistency(unscaled, anchors, targets, (1.0, 1.0, 1.0, 1.0))
    b = authors_box_consistency(unscaled * torch.tensor([10.0, 10, 5, 5]), anchors, targets, (10.0, 10, 5, 5))
    assert a.item() == pytest.approx(b.item(), rel=1e-6) and a.item() > 0


def test_sfl_on_the_weak_stream_only_leaves_unlabeled_images_out_in_the_dense_form():
    g = torch.Generator().manual_seed(1)
    logits, teacher = torch.randn(3, 7, 2, generator=g), torch.rand(3, 7, 2, generator=g)
    levels = ["weak", "unlabeled", "weak"]
    inputs = [{"supervision": s, "teacher_probs": teacher[j]} for j, s in enumerate(levels)]
    model = SimpleNamespace(positives_per_image=torch.tensor(4.0))
    losses = {}
    for mode in ("dense", "skip"):
        cfg = tiny_cfg("oxnet", num_classes=2)
        cfg.OXNET.SFL.UNLABELED = mode
        losses[mode] = SoftFocalLoss(cfg)(model, inputs, logits, torch.zeros(3, 7, 4), lambda: ANCHORS).get(
            "loss_sfl"
        )
    from oxnet.modeling.losses import soft_focal_loss

    per_image = soft_focal_loss(logits, teacher).sum(dim=(1, 2))
    assert losses["dense"].item() == pytest.approx(per_image.sum().item() / (3 * 4.0), rel=1e-6)
    assert losses["skip"].item() == pytest.approx((per_image[0] + per_image[2]).item() / (2 * 4.0), rel=1e-6)
