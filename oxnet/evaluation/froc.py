"""Lesion-level matching and FROC (sensitivity at a number of false positives per image).

A detection is a hit when its IoU with a not-yet-matched ground-truth box of the same class in the same
image is at least ``iou`` (0.4 by default); detections are taken greedily by decreasing score, each one
taking the unmatched box it overlaps most. As in the COCO evaluation, only the ``max_dets`` best
detections per image and class are considered and crowd boxes are not lesions (never matched, never
counted). The matching is vectorized: round ``r`` matches the ``r``-th detection of every
(image, class) group at once.
"""

import numpy as np

__all__ = ["FROC_FPS", "match_detections", "froc_curve", "sensitivity_at"]

#: False positives per image at which sensitivity is reported.
FROC_FPS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _xyxy(b):
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def match_detections(gt, preds, iou=0.4, max_dets=100):
    """Greedy same-class matching of detections to ground truth on the fully annotated images.

    Returns:
        (hit, evaluated): bool arrays over the detections. ``evaluated`` is False for detections on
        images without box annotation (weak/unlabeled) and beyond the ``max_dets`` best of their
        (image, class); ``hit`` is True for evaluated detections matched to a ground-truth box.
    """
    n, K = len(preds), gt.num_classes
    hit = np.zeros(n, bool)
    evaluated = gt.box_eval[preds.image] if n else np.zeros(0, bool)
    if n == 0:
        return hit, evaluated
    # Sort detections by (group, -score, input order) and rank them within their group.
    key = preds.image * K + preds.cls
    order = np.lexsort((np.arange(n), -preds.scores, key))
    skey = key[order]
    start = np.r_[0, np.flatnonzero(np.diff(skey)) + 1]
    rank = np.arange(n) - np.repeat(start, np.diff(np.r_[start, n]))
    evaluated[order[rank >= max_dets]] = False

    lesion = ~gt.ann_crowd & gt.box_eval[gt.ann_image]
    g_idx = np.flatnonzero(lesion)
    g_key = gt.ann_image[g_idx] * K + gt.ann_class[g_idx]
    g_order = np.argsort(g_key, kind="stable")
    g_idx, g_key = g_idx[g_order], g_key[g_order]
    uniq, g_start, g_count = np.unique(g_key, return_index=True, return_counts=True)
    if len(uniq) == 0:
        return hit, evaluated
    # Detections (in sorted order) whose group has ground truth.
    pos = np.searchsorted(uniq, skey)
    pos_c = np.minimum(pos, len(uniq) - 1)
    has_gt = (uniq[pos_c] == skey) & evaluated[order]
    sel = np.flatnonzero(has_gt)
    if len(sel) == 0:
        return hit, evaluated
    det = order[sel]
    grp = pos_c[sel]
    width = int(g_count.max())
    cols = g_start[grp][:, None] + np.arange(width)[None, :]
    valid = np.arange(width)[None, :] < g_count[grp][:, None]
    cand = g_idx[np.where(valid, cols, 0)]  # [M, width] ground-truth indices
    ious = _iou_rows(_xyxy(preds.boxes[det]), _xyxy(gt.ann_boxes)[cand])
    ious[~valid] = -1.0
    # Greedy rounds: detections of equal rank belong to different groups, so they never compete.
    taken = np.zeros(len(gt.ann_boxes), bool)
    det_rank = rank[sel]
    by_rank = np.argsort(det_rank, kind="stable")
    bounds = np.searchsorted(det_rank[by_rank], np.arange(det_rank.max() + 2))
    for r in range(det_rank.max() + 1):
        rows = by_rank[bounds[r] : bounds[r + 1]]
        if len(rows) == 0:
            continue
        cur = np.where(taken[cand[rows]], -1.0, ious[rows])
        best = np.argmax(cur, axis=1)
        ok = cur[np.arange(len(rows)), best] >= iou
        taken[cand[rows[ok], best[ok]]] = True
        hit[det[rows[ok]]] = True
    return hit, evaluated


def _iou_rows(a, b):
    """IoU of each box ``a[m]`` [M, 4] with the boxes ``b[m, j]`` [M, J, 4], all xyxy (COCO's formula)."""
    a = a[:, None, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def froc_curve(scores, hit, num_lesions, num_images):
    """FROC operating points from detections pooled over images.

    Thresholds are the distinct scores; tied detections enter together.

    Returns:
        (fps_per_image, sensitivity, thresholds) arrays in order of decreasing threshold, starting with the
        point (0, 0) of an infinite threshold.
    """
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    tp = np.cumsum(hit[order])
    fp = np.cumsum(~hit[order])
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1] if len(s) else np.zeros(0, np.int64)
    fpi = np.r_[0.0, fp[last] / max(num_images, 1)]
    sens = np.r_[0.0, tp[last] / num_lesions] if num_lesions else np.full(len(last) + 1, np.nan)
    return fpi, sens, np.r_[np.inf, s[last]]


def sensitivity_at(fpi, sens, fps=FROC_FPS):
    """Highest sensitivity at an operating point with at most ``f`` false positives per image, for each f."""
    fpi, sens = np.asarray(fpi), np.asarray(sens)
    # fpi is non-decreasing and sens non-decreasing along the curve: take the last point with fpi <= f.
    idx = np.searchsorted(fpi, np.asarray(fps, dtype=np.float64), side="right") - 1
    return sens[np.maximum(idx, 0)]
