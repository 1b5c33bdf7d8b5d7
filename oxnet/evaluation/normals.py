"""False alarms on normal images: how often a detector flags a healthy chest at a given lesion sensitivity.

A *normal* image is a fully annotated (``supervision`` "full") image without any box and without a
positive or uncertain image label: a radiologist looked and found nothing. A *lesion* image is a fully
annotated image with at least one (non-crowd) box. AP and the pooled FROC mix both kinds of false
positives; a screening reader wants them apart, at the operating points a detector would be used at:

* the score threshold ``t(s)`` at which the lesion sensitivity reaches ``s`` (50, 70, 80 %): the
  highest score such that the detections scoring at least ``t(s)`` hit ``ceil(s * lesions)`` lesions
  (a hit as in :mod:`oxnet.evaluation.froc`: same class, IoU >= ``froc_iou`` with a not yet matched
  box, greedy by score, top ``max_dets`` detections per image and class);
* at that threshold, the mean number of detections per normal image (every one a false alarm) and the
  fraction of normal images with at least one detection.

Both are None when the sensitivity is never reached (too few hits among the detections, which stop
at the model's test score threshold) or when there are no normal images (false alarms only).
"""

import math

import numpy as np

__all__ = ["SENSITIVITIES", "image_kinds", "thresholds_at_sensitivity", "normal_image_metrics"]

#: Lesion sensitivities at which false alarms on normal images are reported.
SENSITIVITIES = (0.5, 0.7, 0.8)

DEFINITION = (
    "normal image: supervision 'full', no box, no positive or uncertain image label; at the "
    "highest score threshold whose detections hit the given fraction of all lesions (FROC hit "
    "definition), the mean number of detections per normal image and the fraction of normal "
    "images with at least one; None where the sensitivity is never reached or there is no "
    "normal image"
)


def _key(s):
    return f"{s:g}"


def image_kinds(gt):
    """(normal, lesion): [I] bool arrays over the ground truth's images (see the module docstring)."""
    any_box = np.zeros(len(gt.images), bool)
    any_box[gt.ann_image] = True
    lesion = np.zeros(len(gt.images), bool)
    lesion[gt.ann_image[~gt.ann_crowd]] = True
    lesion &= gt.box_eval
    normal = gt.box_eval & ~any_box & (gt.labels == 0).all(axis=1)
    return normal, lesion


def thresholds_at_sensitivity(hit_scores, num_lesions, sensitivities=SENSITIVITIES):
    """Score thresholds at which the hits reach each sensitivity (None when they never do).

    ``hit_scores``: the scores of the detections that hit a lesion (each hit is a distinct lesion).
    The threshold for sensitivity ``s`` is the ``k``-th highest hit score, ``k = ceil(s * num_lesions)``
    (with a tolerance for floating point: 0.7 x 10 lesions needs 7 hits, not 8).
    """
    s = np.sort(np.asarray(hit_scores, np.float64))[::-1]
    out = []
    for sens in sensitivities:
        if num_lesions <= 0:
            out.append(None)
            continue
        k = max(int(math.ceil(sens * num_lesions - 1e-9)), 1)
        out.append(float(s[k - 1]) if k <= len(s) else None)
    return out


def normal_image_metrics(gt, preds, hit, evaluated, sensitivities=SENSITIVITIES):
    """False alarms on the normal images at the lesion sensitivities ``sensitivities``.

    Args:
        gt (GroundTruth), preds (Predictions): as loaded by :mod:`oxnet.evaluation.inputs`.
        hit, evaluated: [D] bool arrays of :func:`oxnet.evaluation.froc.match_detections`.

    Returns:
        dict: ``n_normal_images``, ``n_lesion_images``, ``n_lesions``, ``sensitivities`` and, keyed by
        the sensitivity as text ("0.5", "0.7", "0.8"), ``score_threshold_at_sensitivity``,
        ``fp_per_normal_image_at_sensitivity`` and ``normal_images_flagged_at_sensitivity``.
    """
    normal, lesion = image_kinds(gt)
    n_normal, n_lesion_images = int(normal.sum()), int(lesion.sum())
    n_lesions = int((~gt.ann_crowd).sum())  # boxes are on full images only (load_ground_truth)
    hit = np.asarray(hit, bool)
    evaluated = np.asarray(evaluated, bool)
    thresholds = thresholds_at_sensitivity(preds.scores[hit & evaluated], n_lesions, sensitivities)
    on_normal = evaluated & normal[preds.image] if len(preds) else np.zeros(0, bool)
    normal_scores, normal_image = preds.scores[on_normal], preds.image[on_normal]
    fp, flagged = {}, {}
    for s, t in zip(sensitivities, thresholds):
        if t is None or n_normal == 0:
            fp[_key(s)] = flagged[_key(s)] = None
            continue
        above = normal_scores >= t
        fp[_key(s)] = float(above.sum()) / n_normal
        flagged[_key(s)] = len(np.unique(normal_image[above])) / n_normal
    return {
        "n_normal_images": n_normal,
        "n_lesion_images": n_lesion_images,
        "n_lesions": n_lesions,
        "sensitivities": [float(s) for s in sensitivities],
        "score_threshold_at_sensitivity": {_key(s): t for s, t in zip(sensitivities, thresholds)},
        "fp_per_normal_image_at_sensitivity": fp,
        "normal_images_flagged_at_sensitivity": flagged,
        "definition": DEFINITION,
    }
