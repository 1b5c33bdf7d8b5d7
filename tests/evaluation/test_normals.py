"""False alarms on normal images at a lesion sensitivity: hand-computed cases."""

import numpy as np
import pytest

from oxnet.evaluation import evaluate_detections, format_table, load_ground_truth
from oxnet.evaluation.normals import image_kinds, thresholds_at_sensitivity


def _img(i, **extra):
    return dict({"id": i, "height": 100, "width": 100, "file_name": f"{i}.png"}, **extra)


def _det(i, b, s, c=1):
    return {"image_id": i, "category_id": c, "bbox": b, "score": s}


HIT = [0, 0, 10, 10]  # every lesion box below is [0, 0, 10, 10] or [50, 50, 10, 10]
MISS = [80, 80, 10, 10]

# Images 1-3 have lesions (1: two, 2: two, 3: one = 5 lesions); 4-6 are normal (full, no box);
# 7 is weak (image-level only), 8 is full without boxes but with a positive image label (not normal),
# 9 is full with only a crowd box (not normal, no lesion).
CASE = {
    "images": [
        _img(1),
        _img(2),
        _img(3),
        _img(4),
        _img(5),
        _img(6, supervision="full"),
        _img(7, supervision="weak", image_labels={"c1": 0}),
        _img(8, supervision="full", image_labels={"c1": 1}),
        _img(9),
    ],
    "categories": [{"id": 1, "name": "c1"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": HIT, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": HIT, "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 1, "bbox": [50, 50, 10, 10], "iscrowd": 0},
        {"id": 5, "image_id": 3, "category_id": 1, "bbox": HIT, "iscrowd": 0},
        {"id": 6, "image_id": 9, "category_id": 1, "bbox": HIT, "iscrowd": 1},
    ],
}
# Hits (scores): 0.9 (img 1), 0.8 (img 2), 0.6 (img 3), 0.4 (img 1, second lesion); the lesion at
# [50, 50] of image 2 is never found. A duplicate on image 1 (0.85) and a miss on image 3 (0.7) are
# false positives on lesion images, not on normals.
DETS = [
    _det(1, HIT, 0.9),
    _det(1, HIT, 0.85),
    _det(1, [50, 50, 10, 10], 0.4),
    _det(2, HIT, 0.8),
    _det(3, HIT, 0.6),
    _det(3, MISS, 0.7),
    # normals: image 4 has 0.95, 0.65 and 0.3; image 5 has 0.5; image 6 none
    _det(4, MISS, 0.95),
    _det(4, MISS, 0.65),
    _det(4, MISS, 0.3),
    _det(5, MISS, 0.5),
    # not normal: weak image 7, positive-labelled full image 8, crowd image 9
    _det(7, MISS, 0.99),
    _det(8, MISS, 0.99),
    _det(9, MISS, 0.99),
]


def test_image_kinds():
    normal, lesion = image_kinds(load_ground_truth(CASE))
    assert np.flatnonzero(normal).tolist() == [3, 4, 5]  # images 4, 5, 6
    assert np.flatnonzero(lesion).tolist() == [0, 1, 2]  # images 1, 2, 3


def test_false_alarms_per_normal_image_hand_computed():
    n = evaluate_detections(CASE, DETS).metrics["normals"]
    assert (n["n_normal_images"], n["n_lesion_images"], n["n_lesions"]) == (3, 3, 5)
    # 5 lesions: 50 % needs ceil(2.5) = 3 hits -> threshold 0.6 (hits 0.9, 0.8, 0.6); 70 % needs
    # ceil(3.5) = 4 hits -> 0.4; 80 % needs 4 hits as well -> 0.4.
    assert n["score_threshold_at_sensitivity"] == {"0.5": 0.6, "0.7": 0.4, "0.8": 0.4}
    # At 0.6: detections 0.95 and 0.65 on image 4 -> 2 / 3 normal images; 1 of 3 flagged.
    # At 0.4: 0.95, 0.65 (image 4) and 0.5 (image 5) -> 3 / 3; 2 of 3 flagged.
    assert n["fp_per_normal_image_at_sensitivity"] == pytest.approx({"0.5": 2 / 3, "0.7": 1.0, "0.8": 1.0})
    assert n["normal_images_flagged_at_sensitivity"] == pytest.approx(
        {"0.5": 1 / 3, "0.7": 2 / 3, "0.8": 2 / 3}
    )
    assert n["sensitivities"] == [0.5, 0.7, 0.8]
    assert (
        "False alarms per normal image (3 normal, 3 lesion images) at lesion sensitivity 50%: 0.67, "
        "70%: 1.00, 80%: 1.00"
    ) in format_table(evaluate_detections(CASE, DETS).metrics)


def test_unreached_sensitivity_and_no_normals_are_none():
    # Without the 0.4 hit only 3 of 5 lesions are ever found: 70 % and 80 % are never reached.
    dets = [d for d in DETS if d["score"] != 0.4]
    n = evaluate_detections(CASE, dets).metrics["normals"]
    assert n["fp_per_normal_image_at_sensitivity"] == {"0.5": pytest.approx(2 / 3), "0.7": None, "0.8": None}
    # No normal image: thresholds still reported, false alarms None.
    no_normals = dict(CASE, images=[i for i in CASE["images"] if i["id"] not in (4, 5, 6)])
    dets = [d for d in DETS if d["image_id"] not in (4, 5, 6)]
    n = evaluate_detections(no_normals, dets).metrics["normals"]
    assert n["n_normal_images"] == 0 and n["score_threshold_at_sensitivity"]["0.5"] == 0.6
    assert n["fp_per_normal_image_at_sensitivity"] == {"0.5": None, "0.7": None, "0.8": None}
    # No lesion at all (only normals): nothing is defined.
    only = dict(CASE, images=[i for i in CASE["images"] if i["id"] in (4, 5, 6)], annotations=[])
    n = evaluate_detections(only, [d for d in DETS if d["image_id"] in (4, 5)], require_match=False).metrics[
        "normals"
    ]
    assert (n["n_normal_images"], n["n_lesions"]) == (3, 0)
    assert n["fp_per_normal_image_at_sensitivity"] == {"0.5": None, "0.7": None, "0.8": None}


def test_thresholds_are_the_kth_hit_score_with_ties_and_float_tolerance():
    scores = [0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    # 10 lesions: 70 % is 7 hits (0.7 x 10 = 7.000000000000001 in floating point) -> the 7th score.
    assert thresholds_at_sensitivity(scores, 10, (0.5, 0.7, 0.8)) == [0.6, 0.4, 0.3]
    assert thresholds_at_sensitivity(scores, 20, (0.5, 0.7)) == [0.1, None]
    assert thresholds_at_sensitivity([], 3, (0.5,)) == [None]
    assert thresholds_at_sensitivity([0.9], 0, (0.5,)) == [None]
    assert thresholds_at_sensitivity([0.8, 0.8, 0.5], 4, (0.5,)) == [0.8]  # a tie enters together


def test_max_dets_limits_false_alarms_as_it_limits_froc():
    # Only the top max_dets detections per image and class count, as in AP and FROC.
    n = evaluate_detections(CASE, DETS, max_dets=1).metrics["normals"]
    # hits left: 0.9 (img 1), 0.8 (img 2), 0.7 is a miss on img 3 and shadows its 0.6 hit -> 2 of 5
    assert n["score_threshold_at_sensitivity"] == {"0.5": None, "0.7": None, "0.8": None}
    n = evaluate_detections(CASE, DETS, max_dets=2).metrics["normals"]
    # hits 0.9, 0.8, 0.6 -> 50 % at 0.6; normals: image 4's top two (0.95, 0.65) and image 5's 0.5
    assert n["fp_per_normal_image_at_sensitivity"]["0.5"] == pytest.approx(2 / 3)
