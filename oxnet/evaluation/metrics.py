"""The whole OXnet metric set from ground truth and detections: COCO AP, FROC and image-level AUROC."""

import logging
from dataclasses import dataclass, field

import numpy as np

from .auroc import image_auroc, top_local_scores
from .coco_ap import AREA_RANGES, PAPER_IOU_THRESHOLDS, coco_average_precision
from .froc import FROC_FPS, froc_curve, match_detections, sensitivity_at
from .inputs import load_ground_truth, load_image_scores, load_predictions
from .normals import normal_image_metrics

__all__ = ["EvaluationResult", "evaluate_detections", "format_table", "AP_KEYS"]

logger = logging.getLogger(__name__)

AP_KEYS = ("mAP", "AP40", "AP75", "APs", "APm", "APl")
AREA_SPACE = (
    "box areas in square pixels of the image as given in the ground truth (the image file's "
    "pixel space, i.e. detections in original image coordinates, not the resized network input)"
)


@dataclass
class EvaluationResult:
    """Metrics (``metrics``: JSON-ready, fractions in [0, 1], None for n/a) plus what the reports draw."""

    metrics: dict
    gt: object = field(repr=False)
    preds: object = field(repr=False)
    hit: np.ndarray = field(repr=False)  # [D] detection matched at the FROC IoU
    evaluated: np.ndarray = field(repr=False)  # [D] detection taken into the box metrics
    pr_recall: np.ndarray = field(repr=False)
    pr_precision: np.ndarray = field(repr=False)  # [K, R] at the first IoU threshold
    froc_points: dict = field(repr=False)  # name -> (fps_per_image, sensitivity)


def evaluate_detections(
    gt,
    predictions,
    image_scores=None,
    iou_thresholds=PAPER_IOU_THRESHOLDS,
    max_dets=100,
    froc_iou=0.4,
    froc_fps=FROC_FPS,
    bbox_format="xywh",
    bootstrap=0,
    seed=0,
    require_match=True,
):
    """Evaluate detections against ground truth.

    Args:
        gt: COCO / OXnet-COCO ground truth (path, dict or :class:`GroundTruth`).
        predictions: COCO results list (path, list or :class:`Predictions`).
        image_scores: optional image-level class scores (path, dict, or [I, K] array in ground-truth image
            order), e.g. OXnet's global head, for the image-level AUROC.
        iou_thresholds: IoU thresholds averaged by mAP (the paper: 0.40:0.05:0.75).
        max_dets: detections per image and class taken into AP and FROC (COCO's maxDets).
        froc_iou: IoU for a FROC hit.
        froc_fps: false positives per image at which FROC sensitivity is reported.
        bootstrap: number of bootstrap replicates over images for 95% intervals (0: none), stored under
            ``metrics["bootstrap"]`` (see :mod:`oxnet.evaluation.bootstrap`).
        require_match: refuse predictions none of which can be scored (see
            :func:`oxnet.evaluation.inputs.load_predictions`).

    Class averages are over the classes with at least one ground-truth box (in the area range, for
    APs/APm/APl); other classes are n/a (None). FROC "sensitivity" pools all lesions of all classes
    (hits / lesions against all false positives / images); "class_mean" averages the per-class curves.
    ``metrics["normals"]`` counts the normal and lesion images and gives the false alarms per normal
    image at 50/70/80 % lesion sensitivity (:mod:`oxnet.evaluation.normals`).
    """
    if not hasattr(gt, "box_eval"):
        gt = load_ground_truth(gt)
    if hasattr(predictions, "scores"):
        preds = predictions
    else:
        preds = load_predictions(predictions, gt, bbox_format, require_match)
    warnings = list(preds.warnings)

    ap = coco_average_precision(gt, preds, iou_thresholds, max_dets)
    hit, evaluated = match_detections(gt, preds, froc_iou, max_dets)
    froc = _froc(gt, preds, hit, evaluated, froc_fps)
    local = image_auroc(top_local_scores(preds, len(gt.images), gt.num_classes), gt.labels)
    glob = None if image_scores is None else _global_auroc(image_scores, gt, warnings)

    metrics = dict(ap["overall"])
    metrics["per_class"] = _per_class(gt, ap, froc, glob, local)
    metrics["froc"] = {
        "fps_per_image": [float(f) for f in froc_fps],
        "sensitivity": _floats(froc.pooled),
        "mean": None if froc.pooled is None else float(np.mean(froc.pooled)),
        "class_mean": {
            "sensitivity": _floats(froc.class_mean),
            "mean": None if froc.class_mean is None else float(np.mean(froc.class_mean)),
        },
    }
    metrics["auroc"] = {"global": None if glob is None else _mean(glob), "local": _mean(local)}
    # false alarms on normal (box-free, fully annotated) images at 50/70/80 % lesion sensitivity
    metrics["normals"] = normal_image_metrics(gt, preds, hit, evaluated)
    metrics["settings"] = _settings(
        gt, preds, evaluated, froc, iou_thresholds, max_dets, froc_iou, global_scores=glob is not None
    )
    metrics["warnings"] = warnings
    result = EvaluationResult(
        metrics, gt, preds, hit, evaluated, ap["pr_recall"], ap["pr_precision"], froc.points
    )
    if bootstrap:
        from .bootstrap import bootstrap_intervals

        metrics["bootstrap"] = bootstrap_intervals(result, n_boot=bootstrap, seed=seed)
    return result


@dataclass
class _Froc:
    """FROC of one evaluation: lesion counts, curves and sensitivities at the operating points."""

    n_lesions: np.ndarray  # [K] ground-truth boxes (not crowd) per class
    n_box_images: int  # images taking part in box evaluation
    points: dict  # name -> (fps_per_image, sensitivity): "all lesions", then each class with lesions
    pooled: np.ndarray  # sensitivity of all lesions pooled at each operating point (None: no lesions)
    per_class: list  # [K] sensitivities at the operating points (None: class without lesions)
    class_mean: np.ndarray  # mean of the per-class sensitivities (None: no class has lesions)


def _froc(gt, preds, hit, evaluated, froc_fps):
    """FROC of the ``evaluated`` detections (``hit``: FROC hits), pooled over all lesions and per class."""
    n_box_images = int(gt.box_eval.sum())
    lesion = ~gt.ann_crowd
    n_lesions = np.bincount(gt.ann_class[lesion], minlength=gt.num_classes)
    points = {}
    fpi, sens, _ = froc_curve(preds.scores[evaluated], hit[evaluated], int(n_lesions.sum()), n_box_images)
    points["all lesions"] = (fpi, sens)
    pooled = sensitivity_at(fpi, sens, froc_fps) if n_lesions.sum() else None
    per_class = []
    for k in range(gt.num_classes):
        m = evaluated & (preds.cls == k)
        if n_lesions[k] == 0:
            per_class.append(None)
            continue
        fpi_k, sens_k, _ = froc_curve(preds.scores[m], hit[m], int(n_lesions[k]), n_box_images)
        points[gt.class_names[k]] = (fpi_k, sens_k)
        per_class.append(sensitivity_at(fpi_k, sens_k, froc_fps))
    valid = [s for s in per_class if s is not None]
    class_mean = np.mean(valid, axis=0) if valid else None
    return _Froc(n_lesions, n_box_images, points, pooled, per_class, class_mean)


def _global_auroc(image_scores, gt, warnings):
    """Per-class AUROC of image-level scores (path, dict or [I, K] array); images with known labels
    but no score are left out, with a warning appended to ``warnings``."""
    K = gt.num_classes
    scores = image_scores if isinstance(image_scores, np.ndarray) else load_image_scores(image_scores, gt)
    if scores.shape != (len(gt.images), K):
        raise ValueError(f"image scores have shape {scores.shape}, expected {(len(gt.images), K)}")
    missing = int(((gt.labels >= 0) & ~np.isfinite(scores)).any(1).sum())
    if missing:
        msg = (
            f"{missing} image(s) with known labels have no image-level score; AUROC (global) leaves them out"
        )
        logger.warning(msg)
        warnings.append(msg)
    return image_auroc(scores, gt.labels)


def _per_class(gt, ap, froc, glob, local):
    """{class name: its counts, AP metrics, FROC sensitivities and AUROCs}."""
    per_class = {}
    for k, name in enumerate(gt.class_names):
        row = {
            "category_id": int(gt.cat_ids[k]),
            "num_gt": int(froc.n_lesions[k]),
            "num_positive_images": int((gt.labels[:, k] == 1).sum()),
            "num_negative_images": int((gt.labels[:, k] == 0).sum()),
        }
        row.update(ap["per_class"][k])
        sens = froc.per_class[k]
        row["froc"] = _floats(sens)
        row["froc_mean"] = None if sens is None else float(np.mean(sens))
        row["auroc_global"] = None if glob is None else glob[k]
        row["auroc_local"] = local[k]
        per_class[name] = row
    return per_class


def _settings(gt, preds, evaluated, froc, iou_thresholds, max_dets, froc_iou, global_scores):
    """``metrics["settings"]``: the evaluation's parameters, what they mean, and what was evaluated."""
    return {
        "iou_thresholds": [float(t) for t in np.asarray(iou_thresholds)],
        "max_dets": int(max_dets),
        "area_ranges": {k: list(v) for k, v in AREA_RANGES.items()},
        "area_space": AREA_SPACE,
        "class_average": "mean over the classes with at least one ground-truth box (in the area range)",
        "froc_iou": float(froc_iou),
        "froc_hit": (
            f"same class, IoU >= {froc_iou} with a not yet matched box, greedy by score; "
            f"top {max_dets} detections per image and class"
        ),
        "froc_pooling": (
            "'sensitivity': all lesions of all classes pooled; 'class_mean': mean of the "
            "per-class FROC sensitivities"
        ),
        "froc_operating_point": "highest sensitivity with at most the given false positives per image",
        "auroc_local_score": "highest detection score of the class in the image (0 when none)",
        "auroc_global_score": "image-level class score (global head)" if global_scores else None,
        "num_images": len(gt.images),
        "num_images_box_eval": froc.n_box_images,
        "num_gt_boxes": int(froc.n_lesions.sum()),
        "num_predictions": len(preds),
        "num_predictions_evaluated": int(evaluated.sum()),
        "ground_truth": gt.source,
        "predictions": preds.source,
    }


def _mean(values):
    """Mean of the values that are not None (None when there are none)."""
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _floats(values):
    """An array of sensitivities as a list of floats; None stays None."""
    return None if values is None else [float(v) for v in values]


def percent_text(v):
    """A fraction as percent text with one decimal, "n/a" for None (tables and reports)."""
    return "n/a" if v is None else f"{100 * v:.1f}"


def per_class_rows(metrics):
    """Rows (cells as strings, percent) per class plus a "mean" row: class, #GT, the AP keys, FROC
    mean, global and local AUROC."""
    rows = []
    for name, r in metrics["per_class"].items():
        rows.append(
            [name, str(r["num_gt"])]
            + [percent_text(r[k]) for k in AP_KEYS]
            + [percent_text(r[k]) for k in ("froc_mean", "auroc_global", "auroc_local")]
        )
    rows.append(
        ["mean", str(metrics["settings"]["num_gt_boxes"])]
        + [percent_text(metrics[k]) for k in AP_KEYS]
        + [
            percent_text(v)
            for v in (
                metrics["froc"]["class_mean"]["mean"],
                metrics["auroc"]["global"],
                metrics["auroc"]["local"],
            )
        ]
    )
    return rows


def format_table(metrics):
    """A plain-text table of the metrics in percent with one decimal (n/a where undefined)."""
    head = ["class", "#GT"] + list(AP_KEYS) + ["FROC", "AUC-g", "AUC-l"]
    rows = per_class_rows(metrics)
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]

    def fmt(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    rule = "-" * len(fmt(head))
    lines = [fmt(head), rule] + [fmt(r) for r in rows[:-1]] + [rule, fmt(rows[-1])]
    froc = metrics["froc"]
    if froc["sensitivity"] is not None:
        pts = ", ".join(f"{f:g}: {100 * s:.1f}" for f, s in zip(froc["fps_per_image"], froc["sensitivity"]))
        lines.append(
            f"FROC (all lesions, IoU >= {metrics['settings']['froc_iou']:g}) sensitivity at "
            f"FP/image {pts}; mean {percent_text(froc['mean'])}"
        )
    normals = metrics.get("normals")
    if normals and normals["n_normal_images"]:
        fp = normals["fp_per_normal_image_at_sensitivity"]
        pts = ", ".join(
            f"{100 * float(s):.0f}%: " + ("n/a" if v is None else f"{v:.2f}") for s, v in fp.items()
        )
        lines.append(
            f"False alarms per normal image ({normals['n_normal_images']} normal, "
            f"{normals['n_lesion_images']} lesion images) at lesion sensitivity {pts}"
        )
    b = metrics.get("bootstrap")
    if b:
        iv = lambda x: "n/a" if x is None else f"[{100 * x[0]:.1f}, {100 * x[1]:.1f}]"  # noqa: E731
        lines.append(
            f"Bootstrap {100 * b['level']:.0f}% intervals over images ({b['n']} replicates): "
            + ", ".join(f"{k} {iv(b[k])}" for k in ("mAP", "AP40", "AP75", "froc_mean"))
        )
    return "\n".join(lines)
