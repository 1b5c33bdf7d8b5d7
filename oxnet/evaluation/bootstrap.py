"""Bootstrap 95% intervals over images for mAP, AP40, AP75, per-class mAP and the FROC mean.

Each replicate draws the fully annotated images with replacement; an image drawn ``c`` times weighs its
boxes and detections by ``c``. AP is recomputed with COCO's rules (greedy matching per IoU threshold,
101-point interpolated precision, area "all", the same ``max_dets``), so with unit weights it equals the
faster-coco-eval numbers; crowd boxes are ignored (not matched, not counted).
"""

import numpy as np

from .froc import match_detections, sensitivity_at

__all__ = ["bootstrap_intervals", "paired_bootstrap", "weighted_coco_ap", "weighted_metrics"]

REC_THRS = np.linspace(0.0, 1.0, 101)


def weighted_coco_ap(hits, weights, num_gt):
    """COCO AP (101-point interpolation) of detections sorted by decreasing score.

    Args:
        hits: [T, M] bool, detection matched at each IoU threshold.
        weights: [M] weight (image multiplicity) of each detection.
        num_gt: weighted number of ground-truth boxes (> 0).

    Returns:
        [T] AP per threshold.
    """
    tp = np.cumsum(hits * weights, axis=1)
    fp = np.cumsum(~hits * weights, axis=1)
    out = np.zeros(hits.shape[0])
    if hits.shape[1] == 0:
        return out
    rc = tp / num_gt
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
    for t in range(hits.shape[0]):
        idx = np.searchsorted(rc[t], REC_THRS, side="left")
        valid = idx < pr.shape[1]
        out[t] = pr[t, idx[valid]].sum() / len(REC_THRS)
    return out


def _percentile_interval(values, level):
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def weighted_metrics(result):
    """``(n, metrics)`` for an :class:`EvaluationResult`: its ``n`` box-evaluated images (in the ground
    truth's order) and a function of ``n`` image weights (an image drawn ``c`` times weighs ``c``)
    returning {"mAP", "AP40", "AP75", "froc_mean", "per_class"} recomputed with those weights; unit
    weights give the reported values."""
    gt, preds = result.gt, result.preds
    s = result.metrics["settings"]
    thr = np.asarray(s["iou_thresholds"])
    fps = result.metrics["froc"]["fps_per_image"]
    box_images = np.flatnonzero(gt.box_eval)
    pos = np.full(len(gt.images), -1)
    pos[box_images] = np.arange(len(box_images))
    # Image order of COCOeval: sorted image ids. Detections are ordered as COCO accumulates them.
    id_rank = np.empty(len(box_images), np.int64)
    id_rank[np.argsort(gt.image_ids[box_images], kind="stable")] = np.arange(len(box_images))
    det = np.flatnonzero(result.evaluated)
    order = np.lexsort((det, id_rank[pos[preds.image[det]]], -preds.scores[det]))
    det = det[order]
    hits = np.stack([match_detections(gt, preds, t, s["max_dets"])[0][det] for t in thr])  # [T, M]
    det_img = pos[preds.image[det]]
    det_cls = preds.cls[det]
    lesion = ~gt.ann_crowd
    gt_img, gt_cls = pos[gt.ann_image[lesion]], gt.ann_class[lesion]
    froc_hit = result.hit[det]
    # FROC: pooled detections by score; ties enter together (last index of each run of equal scores).
    f_order = np.argsort(-preds.scores[det], kind="stable")
    f_scores = preds.scores[det][f_order]
    f_last = np.r_[np.flatnonzero(np.diff(f_scores) != 0), len(f_scores) - 1] if len(f_scores) else []
    t40 = np.flatnonzero(np.isclose(thr, 0.4))[:1]
    t75 = np.flatnonzero(np.isclose(thr, 0.75))[:1]
    by_class = [np.flatnonzero(det_cls == k) for k in range(gt.num_classes)]

    def replicate(w):
        dw = w[det_img]
        n_gt = np.bincount(gt_cls, weights=w[gt_img], minlength=gt.num_classes)
        ap = np.full((gt.num_classes, len(thr)), np.nan)
        for k in np.flatnonzero(n_gt > 0):
            m = by_class[k]
            ap[k] = weighted_coco_ap(hits[:, m], dw[m], n_gt[k])
        froc = np.nan
        if n_gt.sum() > 0:
            tp = np.cumsum((froc_hit * dw)[f_order])
            fp = np.cumsum((~froc_hit * dw)[f_order])
            fpi = np.r_[0.0, fp[f_last] / w.sum()]
            sens = np.r_[0.0, tp[f_last] / n_gt.sum()]
            froc = float(np.mean(sensitivity_at(fpi, sens, fps)))
        return ap, froc

    def summary(ap, froc):
        valid = np.isfinite(ap[:, 0])
        mean = lambda x: float(np.mean(x[valid])) if valid.any() else np.nan  # noqa: E731
        return {
            "mAP": mean(ap.mean(1)),
            "AP40": mean(ap[:, t40].mean(1)) if len(t40) else np.nan,
            "AP75": mean(ap[:, t75].mean(1)) if len(t75) else np.nan,
            "froc_mean": froc,
            "per_class": ap.mean(1),
        }

    return len(box_images), lambda w: summary(*replicate(np.asarray(w, dtype=np.float64)))


def bootstrap_intervals(result, n_boot=1000, seed=0, level=0.95, progress=True):
    """Percentile bootstrap intervals over images for an :class:`EvaluationResult`.

    Returns:
        dict with "n", "seed", "level", "point" (unit-weight estimates, equal to the reported AP), and
        [low, high] intervals for "mAP", "AP40", "AP75", "froc_mean" and "per_class_mAP" {name: [lo, hi]}.
    """
    gt = result.gt
    n_images, metrics_of = weighted_metrics(result)
    point = metrics_of(np.ones(n_images))
    rng = np.random.default_rng(seed)
    samples = []
    it = range(n_boot)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="bootstrap", unit="replicate")
    for _ in it:
        n = n_images
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        samples.append(metrics_of(w))
    out = {
        "n": int(n_boot),
        "seed": int(seed),
        "level": level,
        "method": "percentile, resampling images",
        "point": {
            k: (None if not np.isfinite(point[k]) else point[k]) for k in ("mAP", "AP40", "AP75", "froc_mean")
        },
    }
    for key in ("mAP", "AP40", "AP75", "froc_mean"):
        out[key] = _percentile_interval([x[key] for x in samples], level)
    per_class = np.array([x["per_class"] for x in samples]).reshape(len(samples), gt.num_classes)
    out["per_class_mAP"] = {
        name: _percentile_interval(per_class[:, k], level) for k, name in enumerate(gt.class_names)
    }
    return out


def paired_bootstrap(runs, baseline_runs, key="mAP", n_boot=1000, seed=0, level=0.95):
    """The difference of ``key`` between two rows, paired by seed, with a percentile bootstrap interval
    over seeds x test images.

    Args:
        runs, baseline_runs: :class:`EvaluationResult` per seed, the i-th of each trained with the
            same seed, all evaluated on the same ground truth.

    Each replicate draws the seeds (pairs) with replacement and, once for all runs, the test images
    with replacement; its value is the mean over the drawn seeds of ``key(run) - key(baseline)``, both
    recomputed with the drawn image weights. Both sources of chance a reader cares about are in it:
    another seed, and another test set of the same kind.

    Returns:
        {"point": the mean paired difference (unit weights), "interval": [low, high] (None if no
        replicate is finite), "n": n_boot, "seeds": the number of pairs, "images": test images}.
    """
    if len(runs) != len(baseline_runs) or len(runs) < 2:
        raise ValueError(
            f"paired_bootstrap needs two or more pairs of runs, got {len(runs)} and {len(baseline_runs)}"
        )
    fns = [weighted_metrics(r) for r in list(runs) + list(baseline_runs)]
    n_images = {n for n, _ in fns}
    if len(n_images) != 1:
        raise ValueError(f"the runs were evaluated on different test sets ({sorted(n_images)} images)")
    n_images = n_images.pop()
    pairs = len(runs)
    values = lambda w: np.array([f(w)[key] for _, f in fns])  # noqa: E731
    diff = lambda v: v[:pairs] - v[pairs:]  # noqa: E731
    point = float(np.mean(diff(values(np.ones(n_images)))))
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, n_images, n_images), minlength=n_images).astype(np.float64)
        drawn = rng.integers(0, pairs, pairs)
        samples.append(float(np.mean(diff(values(w))[drawn])))
    return {
        "point": point,
        "interval": _percentile_interval(samples, level),
        "n": int(n_boot),
        "seeds": pairs,
        "images": n_images,
        "level": level,
    }
