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


def _duplicated(gt, preds, counts, image_ids):
    """The dataset in which image ``image_ids[i]`` appears ``counts[i]`` times (new ids), with its
    detections copied: what a bootstrap weight of ``counts[i]`` stands for."""
    images, anns, dets = [], [], []
    by_image = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    det_by_image = {}
    for d in preds:
        det_by_image.setdefault(d["image_id"], []).append(d)
    info = {im["id"]: im for im in gt["images"]}
    for image_id, c in zip(image_ids, counts):
        for _ in range(int(c)):
            new = len(images) + 1
            images.append({**info[image_id], "id": new})
            anns += [
                {**a, "id": len(anns) + 1 + n, "image_id": new}
                for n, a in enumerate(by_image.get(image_id, []))
            ]
            dets += [{**d, "image_id": new} for d in det_by_image.get(image_id, [])]
    return {**gt, "images": images, "annotations": anns}, dets


def test_weighted_metrics_equal_the_metrics_of_the_resampled_dataset():
    from oxnet.evaluation.bootstrap import weighted_metrics

    gt, preds = synthetic_coco(num_images=30, num_classes=3, gt_per_image=2, dets_per_image=6, seed=4)
    result = evaluate_detections(gt, preds)
    n, metrics_of = weighted_metrics(result)
    ids = result.gt.image_ids[np.flatnonzero(result.gt.box_eval)]
    counts = np.bincount(np.random.default_rng(3).integers(0, n, n), minlength=n)
    dup_gt, dup_preds = _duplicated(gt, preds, counts, ids)
    resampled = evaluate_detections(dup_gt, dup_preds).metrics
    got = metrics_of(counts.astype(float))
    assert got["mAP"] == pytest.approx(resampled["mAP"], abs=1e-9)
    assert got["AP40"] == pytest.approx(resampled["AP40"], abs=1e-9)
    assert metrics_of(np.ones(n))["mAP"] == pytest.approx(result.metrics["mAP"], abs=1e-12)


def test_paired_bootstrap_over_seeds_and_images():
    from oxnet.evaluation.bootstrap import paired_bootstrap

    gt, _ = synthetic_coco(num_images=40, num_classes=2, gt_per_image=2, dets_per_image=8, seed=0)
    runs = [evaluate_detections(gt, synthetic_coco(40, 2, 2, 8, seed=0)[1]) for _ in range(3)]
    weaker = [evaluate_detections(gt, synthetic_coco(40, 2, 2, 8, seed=s)[1]) for s in (0, 0, 0)]
    same = paired_bootstrap(runs, weaker, n_boot=50)
    assert same["point"] == 0 and same["interval"] == [0.0, 0.0]
    # another row: detections of other draws, paired with the first row seed by seed
    better = [evaluate_detections(gt, synthetic_coco(40, 2, 2, 8, seed=s)[1]) for s in (1, 2, 3)]
    out = paired_bootstrap(better, runs, n_boot=200, seed=5)
    want = np.mean([b.metrics["mAP"] - r.metrics["mAP"] for b, r in zip(better, runs)])
    assert out["point"] == pytest.approx(want, abs=1e-12)
    lo, hi = out["interval"]
    assert lo < want < hi and out["seeds"] == 3 and out["images"] > 0
    assert paired_bootstrap(better, runs, n_boot=200, seed=5)["interval"] == out["interval"]
    with pytest.raises(ValueError, match="two or more"):
        paired_bootstrap(better[:1], runs[:1])
