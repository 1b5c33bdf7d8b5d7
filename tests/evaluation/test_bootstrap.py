"""Bootstrap intervals over images: unit weights reproduce the reported metrics; intervals are sane."""

import numpy as np
import pytest

from oxnet.evaluation import evaluate_detections
from oxnet.evaluation.bootstrap import weighted_coco_ap
from oxnet.evaluation.synthetic import synthetic_coco


def test_weighted_ap_hand_computed():
    # Two boxes; detections by score: hit, miss, hit -> precision 1 up to recall 0.5, 2/3 up to recall 1.
    hits = np.array([[True, False, True]])
    ap = weighted_coco_ap(hits, np.ones(3), 2)
    assert ap[0] == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)
    # Weight 2 on the first detection equals duplicating its image (2 boxes of 4 found at once).
    ap2 = weighted_coco_ap(np.array([[True, True, False, True]]), np.ones(4), 3)
    assert weighted_coco_ap(np.array([[True, False, True]]), np.array([2.0, 1, 1]), 3) == pytest.approx(ap2)


@pytest.mark.parametrize("max_dets", [100, 3])
def test_unit_weights_reproduce_reported_metrics(max_dets):
    gt, preds = synthetic_coco(
        num_images=80,
        num_classes=4,
        gt_per_image=2,
        dets_per_image=10,
        image_size=(500, 500),
        missing_classes=(2,),
        seed=21,
    )
    m = evaluate_detections(gt, preds, max_dets=max_dets, bootstrap=30, seed=1).metrics
    b = m["bootstrap"]
    for key in ("mAP", "AP40", "AP75"):
        assert b["point"][key] == pytest.approx(m[key], abs=1e-9)
    assert b["point"]["froc_mean"] == pytest.approx(m["froc"]["mean"], abs=1e-12)
    for key in ("mAP", "AP40", "AP75", "froc_mean"):
        lo, hi = b[key]
        assert 0 <= lo < hi <= 1
    assert b["per_class_mAP"]["class 2"] is None
    assert b["n"] == 30
    # Reproducible with the seed, different with another seed.
    again = evaluate_detections(gt, preds, max_dets=max_dets, bootstrap=30, seed=1).metrics["bootstrap"]
    other = evaluate_detections(gt, preds, max_dets=max_dets, bootstrap=30, seed=2).metrics["bootstrap"]
    assert again["mAP"] == b["mAP"] and other["mAP"] != b["mAP"]
