"""Every AP number equals pycocotools' COCOeval with the same parameters (to 1e-9)."""

import contextlib
import copy
import io

import numpy as np
import pytest

from oxnet.evaluation import PAPER_IOU_THRESHOLDS, evaluate_detections
from oxnet.evaluation.synthetic import synthetic_coco

KEYS = ("mAP", "AP40", "AP75", "APs", "APm", "APl")


def _pycocotools_metrics(gt, preds, iou_thresholds, max_dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(preds))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
        ev.params.maxDets = [max_dets]
        ev.evaluate()
        ev.accumulate()
    p = ev.eval["precision"][..., -1]  # [T, R, K, A]
    t40 = np.flatnonzero(np.isclose(ev.params.iouThrs, 0.4))[:1]
    t75 = np.flatnonzero(np.isclose(ev.params.iouThrs, 0.75))[:1]
    area = {lbl: i for i, lbl in enumerate(ev.params.areaRngLbl)}

    def mean(x):
        x = x[x > -1]
        return float(x.mean()) if x.size else None

    overall = {
        "mAP": mean(p[:, :, :, area["all"]]),
        "AP40": mean(p[t40, :, :, area["all"]]),
        "AP75": mean(p[t75, :, :, area["all"]]),
        "APs": mean(p[:, :, :, area["small"]]),
        "APm": mean(p[:, :, :, area["medium"]]),
        "APl": mean(p[:, :, :, area["large"]]),
    }
    per_class = []
    for k in range(p.shape[2]):
        per_class.append(
            {
                "mAP": mean(p[:, :, k, area["all"]]),
                "AP40": mean(p[t40, :, k, area["all"]]),
                "AP75": mean(p[t75, :, k, area["all"]]),
                "APs": mean(p[:, :, k, area["small"]]),
                "APm": mean(p[:, :, k, area["medium"]]),
                "APl": mean(p[:, :, k, area["large"]]),
            }
        )
    return overall, per_class, ev.params.catIds


def _assert_close(ours, ref, what):
    if ref is None:
        assert ours is None, f"{what}: expected n/a, got {ours}"
    else:
        assert ours is not None and abs(ours - ref) <= 1e-9, f"{what}: {ours} != pycocotools {ref}"


@pytest.mark.parametrize(
    "seed,num_classes,missing,max_dets",
    [
        (0, 5, (2,), 100),
        (1, 9, (4, 9), 100),
        (2, 3, (), 3),  # maxDets truncation matters
    ],
)
def test_matches_pycocotools(seed, num_classes, missing, max_dets):
    gt, preds = synthetic_coco(
        num_images=150,
        num_classes=num_classes,
        gt_per_image=2.5,
        dets_per_image=12,
        image_size=(800, 1000),
        missing_classes=missing,
        seed=seed,
    )
    # Images without predictions, and ties in scores.
    rng = np.random.default_rng(seed)
    preds = [p for p in preds if p["image_id"] % 7 != 0]
    for p in preds[::5]:
        p["score"] = 0.5
    rng.shuffle(preds)
    ref, ref_cls, cat_ids = _pycocotools_metrics(gt, preds, PAPER_IOU_THRESHOLDS, max_dets)
    res = evaluate_detections(copy.deepcopy(gt), copy.deepcopy(preds), max_dets=max_dets).metrics

    # The data exercise all area ranges, and missing classes are n/a.
    sizes = [a["area"] for a in gt["annotations"]]
    assert min(sizes) < 32**2 and max(sizes) > 96**2 and any(32**2 < s < 96**2 for s in sizes)
    for key in KEYS:
        _assert_close(res[key], ref[key], key)
    by_id = {row["category_id"]: (name, row) for name, row in res["per_class"].items()}
    assert sorted(by_id) == list(cat_ids)
    for k, cid in enumerate(cat_ids):
        name, row = by_id[cid]
        for key in KEYS:
            _assert_close(row[key], ref_cls[k][key], f"{name} {key}")
        if cid in missing:
            assert row["num_gt"] == 0 and all(row[key] is None for key in KEYS)
    # Averages over the classes with ground truth only.
    present = [row["mAP"] for _, row in by_id.values() if row["num_gt"] > 0]
    assert res["mAP"] == pytest.approx(np.mean(present), abs=1e-12)


def test_other_iou_thresholds_match_pycocotools():
    gt, preds = synthetic_coco(num_images=60, num_classes=4, seed=5, image_size=(600, 600))
    thr = np.linspace(0.5, 0.95, 10)
    ref, _, _ = _pycocotools_metrics(gt, preds, thr, 100)
    res = evaluate_detections(gt, preds, iou_thresholds=thr).metrics
    for key in ("mAP", "AP75", "APs", "APm", "APl"):
        _assert_close(res[key], ref[key], key)
    assert res["AP40"] is None  # 0.4 is not among the thresholds
    assert res["settings"]["iou_thresholds"] == pytest.approx(thr.tolist())
