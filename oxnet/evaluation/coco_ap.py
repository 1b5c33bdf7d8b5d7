"""COCO average precision over IoU 0.40:0.75 (the paper's mAP), per class, with faster-coco-eval.

The precision array is computed once by ``faster_coco_eval.COCOeval_faster`` with the COCO rules
(greedy matching by score, 101 recall points, area ranges, ``maxDets``, ``useCats=1``); every number is
then read from it exactly as ``COCOeval.summarize`` does, but per class as well. The same numbers can be
computed with pycocotools (``backend="pycocotools"``, slower) to check an evaluation.
"""

import logging

import numpy as np

__all__ = ["PAPER_IOU_THRESHOLDS", "AREA_RANGES", "coco_average_precision", "verify_with_pycocotools"]

logger = logging.getLogger(__name__)

#: IoU thresholds of the paper's mAP: 0.40, 0.45, ..., 0.75 (Sec. 3.1).
PAPER_IOU_THRESHOLDS = tuple(np.round(np.linspace(0.4, 0.75, 8), 2).tolist())
#: COCO area ranges in square pixels of the evaluated image (the image file's pixel space).
AREA_RANGES = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
_AREA_KEYS = {"all": "mAP", "small": "APs", "medium": "APm", "large": "APl"}


def _silent(*args, **kwargs):
    pass


def _mean_valid(x):
    """Mean of the entries > -1 (COCOeval.summarize's rule); None when there is none."""
    x = x[x > -1]
    return float(np.mean(x)) if x.size else None


def _coco_inputs(gt, preds):
    """COCO dicts (images, categories, ground truth, detections) of the fully annotated images."""
    images = [
        {"id": gt.images[i]["id"], "height": gt.images[i]["height"], "width": gt.images[i]["width"]}
        for i in np.flatnonzero(gt.box_eval)
    ]
    cats = [{"id": int(c), "name": n} for c, n in zip(gt.cat_ids, gt.class_names)]
    g_ids = gt.image_ids[gt.ann_image].tolist()
    g_cat = gt.cat_ids[gt.ann_class].tolist()
    gt_anns = [
        {"id": int(a), "image_id": i, "category_id": c, "bbox": b, "area": ar, "iscrowd": int(cr)}
        for a, i, c, b, ar, cr in zip(
            gt.ann_ids.tolist(),
            g_ids,
            g_cat,
            gt.ann_boxes.tolist(),
            gt.ann_area.tolist(),
            gt.ann_crowd.tolist(),
        )
    ]
    keep = gt.box_eval[preds.image]
    d_ids = gt.image_ids[preds.image[keep]].tolist()
    d_cat = gt.cat_ids[preds.cls[keep]].tolist()
    d_box = preds.boxes[keep]
    d_area = (d_box[:, 2] * d_box[:, 3]).tolist()
    dt_anns = [
        {"id": j + 1, "image_id": i, "category_id": c, "bbox": b, "score": s, "area": ar, "iscrowd": 0}
        for j, (i, c, b, s, ar) in enumerate(
            zip(d_ids, d_cat, d_box.tolist(), preds.scores[keep].tolist(), d_area)
        )
    ]
    return images, cats, gt_anns, dt_anns


def _precision_faster_coco_eval(images, cats, gt_anns, dt_anns, thr, max_dets):
    from faster_coco_eval import COCO, COCOeval_faster

    coco_gt = COCO({"images": images, "categories": cats, "annotations": gt_anns}, print_function=_silent)
    coco_dt = COCO(print_function=_silent)
    coco_dt.dataset = {"images": images, "categories": cats, "annotations": dt_anns}
    coco_dt.createIndex()
    ev = COCOeval_faster(
        coco_gt,
        coco_dt,
        "bbox",
        print_function=_silent,
        ranges={k: list(v) for k, v in AREA_RANGES.items() if k != "all"},
    )
    return _run(ev, images, cats, thr, max_dets)


def _precision_pycocotools(images, cats, gt_anns, dt_anns, thr, max_dets):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt, coco_dt = COCO(), COCO()
        coco_gt.dataset = {"images": images, "categories": cats, "annotations": gt_anns}
        coco_dt.dataset = {"images": images, "categories": cats, "annotations": dt_anns}
        coco_gt.createIndex()
        coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.areaRng = [list(v) for v in AREA_RANGES.values()]
        ev.params.areaRngLbl = list(AREA_RANGES)
        return _run(ev, images, cats, thr, max_dets)


def _run(ev, images, cats, thr, max_dets):
    ev.params.iouThrs = thr
    ev.params.maxDets = [int(max_dets)]  # only the last maxDets enters the reported numbers
    ev.params.imgIds = [img["id"] for img in images]
    ev.params.catIds = [c["id"] for c in cats]
    ev.evaluate()
    ev.accumulate()
    return (
        np.asarray(ev.eval["precision"])[..., -1],
        list(ev.params.areaRngLbl),
        np.asarray(ev.params.recThrs),
    )


def coco_average_precision(
    gt, preds, iou_thresholds=PAPER_IOU_THRESHOLDS, max_dets=100, backend="faster-coco-eval"
):
    """AP metrics from :class:`GroundTruth` and :class:`Predictions` on the fully annotated images.

    Args:
        backend: "faster-coco-eval" (fast) or "pycocotools" (the reference implementation, for checks).

    Returns:
        dict with "overall" {mAP, AP40, AP75, APs, APm, APl} (mean over the classes with ground truth,
        None when no class has any), "per_class" [K] dicts with the same keys (None: no ground truth in
        that class or area range), "pr_recall" [R] and "pr_precision" [K, R] at the first IoU threshold
        (area "all"; rows of classes without ground truth are NaN).
    """
    thr = np.asarray(iou_thresholds, dtype=np.float64)
    inputs = _coco_inputs(gt, preds)
    if backend == "faster-coco-eval":
        precision, labels, rec_thrs = _precision_faster_coco_eval(*inputs, thr, max_dets)
    elif backend == "pycocotools":
        precision, labels, rec_thrs = _precision_pycocotools(*inputs, thr, max_dets)
    else:
        raise ValueError(f"unknown backend {backend!r}; use 'faster-coco-eval' or 'pycocotools'")

    t40 = _threshold_index(thr, 0.4)
    t75 = _threshold_index(thr, 0.75)
    a = labels.index("all")
    per_class = []
    for k in range(gt.num_classes):
        row = {key: _mean_valid(precision[:, :, k, labels.index(area)]) for area, key in _AREA_KEYS.items()}
        row["AP40"] = _mean_valid(precision[t40, :, k, a]) if t40 is not None else None
        row["AP75"] = _mean_valid(precision[t75, :, k, a]) if t75 is not None else None
        per_class.append(row)
    overall = {}
    for key in ("mAP", "AP40", "AP75", "APs", "APm", "APl"):
        vals = [r[key] for r in per_class if r[key] is not None]
        overall[key] = float(np.mean(vals)) if vals else None
    pr = precision[0, :, :, a].T.astype(np.float64)  # [K, R]
    pr[pr < 0] = np.nan
    return {
        "overall": overall,
        "per_class": per_class,
        "pr_recall": rec_thrs,
        "pr_precision": pr,
        "iou_thresholds": thr,
    }


def _threshold_index(thr, value):
    hit = np.flatnonzero(np.isclose(thr, value))
    return int(hit[0]) if len(hit) else None


def verify_with_pycocotools(result, tol=1e-9):
    """Recompute every AP number of an :class:`EvaluationResult` with pycocotools.

    Returns:
        (max_abs_difference, mismatches): the largest difference and a list of "class key: ours vs ref"
        strings for differences above ``tol`` or n/a disagreements.
    """
    s = result.metrics["settings"]
    ref = coco_average_precision(result.gt, result.preds, s["iou_thresholds"], s["max_dets"], "pycocotools")
    pairs = [("mean", k, result.metrics[k], v) for k, v in ref["overall"].items()]
    for name, row in zip(result.gt.class_names, ref["per_class"]):
        pairs += [(name, k, result.metrics["per_class"][name][k], v) for k, v in row.items()]
    worst, bad = 0.0, []
    for name, key, ours, theirs in pairs:
        if (ours is None) != (theirs is None):
            bad.append(f"{name} {key}: {ours} vs pycocotools {theirs}")
        elif ours is not None:
            worst = max(worst, abs(ours - theirs))
            if abs(ours - theirs) > tol:
                bad.append(f"{name} {key}: {ours!r} vs pycocotools {theirs!r}")
    return worst, bad
