"""The teacher's boxes for the filtered SFL, against a transcription of the authors' selection
(LLYXC/OXnet ``retinanet/model.py`` l.422-459, teacher in eval mode)."""

import pytest
import torch
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from oxnet.modeling.teacher_boxes import authors_teacher_boxes
from oxnet.testing import random_input, tiny_cfg


def _iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _authors_selection(probs, boxes, bug):
    """model.py l.431-452 as plain Python: scores = max over classes, keep > 0.01, greedy NMS at 0.5
    over all classes (highest score first), (score, class) = max over classes of the NMS output, keep
    score > 0.5; boxes = candidates[nms_idx[idxs]], or with the bug candidates[idxs]."""
    probs, boxes = probs.tolist(), boxes.tolist()
    cand = [i for i, p in enumerate(probs) if max(p) > 0.01]
    c_boxes, c_probs = [boxes[i] for i in cand], [probs[i] for i in cand]
    order = sorted(range(len(cand)), key=lambda j: -max(c_probs[j]))
    nms_idx = []
    for j in order:
        if all(_iou(c_boxes[j], c_boxes[k]) <= 0.5 for k in nms_idx):
            nms_idx.append(j)
    nms_scores = [max(c_probs[j]) for j in nms_idx]
    nms_class = [c_probs[j].index(max(c_probs[j])) for j in nms_idx]
    idxs = [n for n, s in enumerate(nms_scores) if s > 0.5]
    chosen = idxs if bug else [nms_idx[n] for n in idxs]
    return [c_boxes[j] for j in chosen], [nms_scores[n] for n in idxs], [nms_class[n] for n in idxs]


# Seven anchors' decoded boxes, two classes. Anchor 0 is below 0.01; 1 and 2 overlap (IoU 0.68) with
# different classes, so one NMS over all classes drops 2 where a per-class NMS keeps both; 3 (0.3) is a
# candidate that survives NMS but not the 0.5 cut; 4 and 6 are kept; 5 overlaps 4.
BOXES = torch.tensor(
    [
        [0.0, 0, 5, 5],
        [10, 10, 30, 30],
        [12, 12, 32, 32],
        [40, 0, 50, 10],
        [0, 40, 20, 60],
        [1, 41, 21, 61],
        [50, 50, 60, 60],
    ]
)
PROBS = torch.tensor(
    [[0.005, 0.001], [0.9, 0.2], [0.1, 0.8], [0.3, 0.05], [0.2, 0.7], [0.6, 0.1], [0.55, 0.52]]
)


@pytest.mark.parametrize("bug", [False, True])
def test_authors_teacher_boxes_equal_a_transcription_of_their_code(bug):
    boxes, scores, classes = authors_teacher_boxes(PROBS, BOXES, index_bug=bug)
    want_boxes, want_scores, want_classes = _authors_selection(PROBS, BOXES, bug)
    assert boxes.tolist() == want_boxes
    assert scores.tolist() == pytest.approx(want_scores)
    assert classes.tolist() == want_classes
    assert classes.tolist() == [0, 1, 0]  # anchors 1, 4, 6; 2 and 5 lost to the class-agnostic NMS
    if bug:  # the first three candidates in anchor order (1, 2, 3), not the kept 1, 4, 6
        assert boxes.tolist() == BOXES[[1, 2, 3]].tolist()
    else:
        assert boxes.tolist() == BOXES[[1, 4, 6]].tolist()


def _teacher_outputs(mode, bug=False):
    cfg = tiny_cfg("oxnet")
    cfg.OXNET.SFL.MODE = "filtered"
    cfg.OXNET.SFL.TEACHER_BOXES = mode
    cfg.OXNET.SFL.TEACHER_BOX_INDEX_BUG = bug
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = 0.05
    torch.manual_seed(0)
    from detectron2.modeling import build_model

    model = build_model(cfg).eval()
    with torch.no_grad():  # a head whose probabilities straddle 0.5 so that boxes survive the cut
        model.head.cls_score.bias.fill_(0.0)
        model.head.cls_score.weight.normal_(0, 0.002)
    x = random_input("weak", seed=3)
    x["image_weak"] = x["image"]
    with EventStorage(0):
        probs, detections = model.teacher_outputs([x])
    return model, x, probs, detections


def test_the_model_selects_the_authors_boxes_from_its_own_decoded_anchors():
    model, x, probs, detections = _teacher_outputs("authors")
    # the teacher's decoded, clipped anchors, computed here from the model's own outputs
    images, features, logits, deltas = model._run_network([x], "image_weak")
    model._bottom_up_features = None
    dense = torch.cat(model._transpose_dense_predictions([deltas], [4])[0], dim=1)[0]
    anchors = Boxes.cat(model.anchor_generator(features)).tensor
    decoded = Boxes(Box2BoxTransform(weights=model.box2box_transform.weights).apply_deltas(dense, anchors))
    decoded.clip(images.image_sizes[0])
    want_boxes, want_scores, want_classes = _authors_selection(probs[0], decoded.tensor, bug=False)
    got = detections[0]
    assert len(want_boxes) > 0
    assert torch.allclose(got.pred_boxes.tensor, torch.tensor(want_boxes), atol=1e-4)
    assert got.scores.tolist() == pytest.approx(want_scores, abs=1e-6)
    assert got.pred_classes.tolist() == want_classes
    assert (got.scores > 0.5).all()
    # one NMS over all classes: no two kept boxes overlap by more than 0.5; detectron2's inference
    # (the default) runs NMS per class and keeps such pairs of different classes
    from detectron2.structures import pairwise_iou

    def overlapping_pairs(det):
        iou = pairwise_iou(det.pred_boxes, det.pred_boxes).fill_diagonal_(0)
        return int((iou > 0.5).sum())

    _, _, _, inference = _teacher_outputs("inference")
    assert overlapping_pairs(got) == 0 and overlapping_pairs(inference[0]) > 0
