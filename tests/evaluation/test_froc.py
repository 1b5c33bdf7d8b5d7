"""FROC: a hand-computed case, the greedy matching against a plain loop, and its rules."""

import numpy as np
import pytest

from oxnet.evaluation import evaluate_detections, load_ground_truth, load_predictions, match_detections
from oxnet.evaluation.froc import _iou_rows, _xyxy, froc_curve, sensitivity_at
from oxnet.evaluation.synthetic import synthetic_coco


def _gt(images, anns, num_classes=1, image_extra=None):
    image_extra = image_extra or {}
    return {
        "images": [
            dict({"id": i, "height": 100, "width": 100, "file_name": f"{i}.png"}, **image_extra.get(i, {}))
            for i in images
        ],
        "categories": [{"id": c + 1, "name": f"c{c + 1}"} for c in range(num_classes)],
        "annotations": [
            {"id": j + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for j, (i, c, b) in enumerate(anns)
        ],
    }


def _det(i, c, b, s):
    return {"image_id": i, "category_id": c, "bbox": b, "score": s}


# Image 1: one lesion, hit by d1 (0.9), duplicated by d2 (0.8, a false positive), and d3 (0.7) elsewhere.
# Image 2: two lesions, hit by d4 (0.85) and by d5 (0.6, IoU 0.45); d6 (0.95) is elsewhere.
HAND_GT = _gt([1, 2], [(1, 1, [0, 0, 10, 10]), (2, 1, [0, 0, 10, 10]), (2, 1, [50, 50, 10, 10])])
HAND_DETS = [
    _det(1, 1, [0, 0, 10, 10], 0.9),
    _det(1, 1, [0, 0, 10, 10], 0.8),
    _det(1, 1, [70, 70, 10, 10], 0.7),
    _det(2, 1, [0, 0, 10, 10], 0.85),
    _det(2, 1, [50, 50, 10, 4.5], 0.6),
    _det(2, 1, [30, 30, 5, 5], 0.95),
]


def test_froc_hand_computed():
    froc = evaluate_detections(HAND_GT, HAND_DETS).metrics["froc"]
    # Operating points (FP/image, sensitivity):
    # (0.5, 0), (0.5, 1/3), (0.5, 2/3), (1, 2/3), (1.5, 2/3), (1.5, 1).
    expected = [0, 0, 2 / 3, 2 / 3, 1, 1, 1]
    assert froc["fps_per_image"] == [0.125, 0.25, 0.5, 1, 2, 4, 8]
    assert froc["sensitivity"] == pytest.approx(expected, abs=1e-12)
    assert froc["mean"] == pytest.approx(13 / 21, abs=1e-12)
    assert froc["class_mean"]["sensitivity"] == pytest.approx(expected, abs=1e-12)


def test_froc_iou_is_configurable():
    # At IoU 0.5 the IoU-0.45 detection d5 becomes a false positive: at most 2 of 3 lesions found.
    froc = evaluate_detections(HAND_GT, HAND_DETS, froc_iou=0.5).metrics["froc"]
    assert froc["sensitivity"] == pytest.approx([0, 0, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3], abs=1e-12)


def test_operating_point_rule():
    fpi, sens, thr = froc_curve(np.array([0.9, 0.8, 0.8, 0.1]), np.array([True, False, True, False]), 4, 2)
    # Tied scores enter together: the point after 0.8 has 1 FP and 2 hits.
    assert fpi.tolist() == [0, 0, 0.5, 1.0] and sens.tolist() == [0, 0.25, 0.5, 0.5]
    assert thr[1:].tolist() == [0.9, 0.8, 0.1]
    assert sensitivity_at(fpi, sens, [0.25, 0.5, 1, 10]).tolist() == [0.25, 0.5, 0.5, 0.5]


def _loop_matching(gt, preds, iou, max_dets):
    """Reference: one detection at a time, by score, taking the best-overlapping free box of its class."""
    hit = np.zeros(len(preds), bool)
    taken = set()
    for i in range(len(gt.images)):
        for k in range(gt.num_classes):
            d = np.flatnonzero((preds.image == i) & (preds.cls == k))
            d = d[np.argsort(-preds.scores[d], kind="stable")][:max_dets]
            g = np.flatnonzero((gt.ann_image == i) & (gt.ann_class == k))
            for j in d:
                if len(g) == 0:
                    continue
                ious = _iou_rows(_xyxy(preds.boxes[j : j + 1]), _xyxy(gt.ann_boxes[g])[None])[0]
                best, best_iou = None, -1.0
                for gi, v in zip(g, ious):
                    if gi not in taken and v > best_iou:
                        best, best_iou = gi, v
                if best is not None and best_iou >= iou:
                    taken.add(best)
                    hit[j] = True
    return hit


@pytest.mark.parametrize("iou,max_dets", [(0.4, 100), (0.6, 100), (0.4, 2)])
def test_vectorized_matching_equals_loop(iou, max_dets):
    gt_dict, pred_list = synthetic_coco(
        num_images=40, num_classes=3, gt_per_image=4, dets_per_image=15, image_size=(300, 300), seed=7
    )
    gt = load_ground_truth(gt_dict)
    preds = load_predictions(pred_list, gt)
    hit, evaluated = match_detections(gt, preds, iou=iou, max_dets=max_dets)
    ref = _loop_matching(gt, preds, iou, max_dets)
    assert hit.sum() > 20
    np.testing.assert_array_equal(hit, ref)
    if max_dets == 100:
        assert evaluated.all()
    else:
        counts = np.bincount(preds.image[evaluated] * 3 + preds.cls[evaluated])
        assert counts.max() == 2 and (~evaluated).any()


def test_weak_and_unlabeled_images_are_left_out_of_box_metrics():
    gt = _gt(
        [1, 2, 3],
        [(1, 1, [0, 0, 10, 10])],
        image_extra={2: {"supervision": "weak", "image_labels": {"c1": 1}}, 3: {"supervision": "unlabeled"}},
    )
    dets = [
        _det(1, 1, [0, 0, 10, 10], 0.9),
        _det(2, 1, [0, 0, 10, 10], 0.95),
        _det(3, 1, [5, 5, 10, 10], 0.99),
    ]
    res = evaluate_detections(gt, dets)
    m = res.metrics
    assert m["settings"]["num_images_box_eval"] == 1 and m["settings"]["num_predictions_evaluated"] == 1
    assert m["froc"]["sensitivity"][0] == 1.0  # no false positive from the weak/unlabeled images
    assert m["mAP"] == pytest.approx(1.0)
    assert res.evaluated.tolist() == [True, False, False]
