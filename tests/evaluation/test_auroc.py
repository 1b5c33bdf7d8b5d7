"""Image-level AUROC: hand-computed cases and the image labels of OXnet-COCO."""

import json

import numpy as np
import pytest

from oxnet.evaluation import auroc, evaluate_detections


def test_auroc_hand_computed():
    # Positives 0.35, 0.8 against negatives 0.1, 0.4: 3 of 4 pairs ordered correctly.
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # A tie counts one half: positives {0.5, 0.9}, negatives {0.5, 0.2} -> (0.5 + 1 + 1 + 1) / 4.
    assert auroc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == pytest.approx(0.875)
    assert auroc([0.9, 0.1], [0, 1]) == 0.0
    assert auroc([0.2, 0.3], [1, 1]) is None and auroc([0.2], [0]) is None


def _gt():
    images = [
        {"id": 1, "height": 100, "width": 100},  # full, box of c1
        {"id": 2, "height": 100, "width": 100},  # full, no box: negative for both
        {"id": 3, "height": 100, "width": 100, "supervision": "weak", "image_labels": {"c1": 1, "c2": 0}},
        {"id": 4, "height": 100, "width": 100, "supervision": "weak", "image_labels": {"c1": -1}},  # unknown
        {"id": 5, "height": 100, "width": 100, "supervision": "unlabeled"},  # unknown
        {"id": 6, "height": 100, "width": 100, "image_labels": {"c2": -1}},  # full, c2 uncertain
    ]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0}]
    cats = [{"id": 1, "name": "c1"}, {"id": 2, "name": "c2"}]
    return {"images": images, "annotations": anns, "categories": cats}


def test_auroc_global_and_top_local(tmp_path):
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.3},
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "score": 0.7},  # top local score 0.7
        {"image_id": 2, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.8},
        {"image_id": 3, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},  # weak image counts here
        {"image_id": 4, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.99},  # unknown label: left out
        {"image_id": 6, "category_id": 2, "bbox": [10, 10, 20, 20], "score": 0.5},
    ]
    # Class c1: positives images 1 (0.7), 3 (0.9); negatives 2 (0.8), 6 (0, no detection) -> 3/4.
    # Class c2: positives none -> n/a.
    scores = {
        "1": [0.6, 0.1],
        "2": [0.2, 0.3],
        "3": {"c1": 0.1, "c2": 0.4},
        "4": [0.5, 0.5],
        "5": [0.5, 0.5],
        "6": [0.3, 0.9],
    }
    path = tmp_path / "scores.json"
    path.write_text(json.dumps(scores))
    m = evaluate_detections(_gt(), dets, image_scores=str(path)).metrics
    c1, c2 = m["per_class"]["c1"], m["per_class"]["c2"]
    assert (c1["num_positive_images"], c1["num_negative_images"]) == (2, 2)
    assert (c2["num_positive_images"], c2["num_negative_images"]) == (0, 3)
    assert c1["auroc_local"] == pytest.approx(0.75)
    # Global c1: positives 0.6, 0.1 against negatives 0.2, 0.3 -> 2/4.
    assert c1["auroc_global"] == pytest.approx(0.5)
    assert c2["auroc_local"] is None and c2["auroc_global"] is None
    assert m["auroc"] == {"global": pytest.approx(0.5), "local": pytest.approx(0.75)}


def test_auroc_without_image_scores_is_na():
    m = evaluate_detections(_gt(), []).metrics
    assert m["auroc"]["global"] is None and m["per_class"]["c1"]["auroc_global"] is None
    # No detection at all: every image scores 0, a tie -> 0.5.
    assert m["per_class"]["c1"]["auroc_local"] == pytest.approx(0.5)


def test_image_scores_array_shape_is_checked():
    with pytest.raises(ValueError, match="shape"):
        evaluate_detections(_gt(), [], image_scores=np.zeros((6, 3)))
