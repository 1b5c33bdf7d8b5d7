"""Loading and checking evaluation inputs: COCO / OXnet-COCO ground truth and COCO detection results.

Everything is turned into flat numpy arrays once, so the metrics can be computed without per-box
Python loops. Bad input raises :class:`EvaluationInputError` naming the file, the entry and the problem.
"""
import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["EvaluationInputError", "GroundTruth", "Predictions", "load_ground_truth", "load_predictions",
           "load_image_scores"]

logger = logging.getLogger(__name__)

#: Fraction of boxes reaching past the image border above which xywh boxes are suspected to be xyxy.
XYXY_SUSPECT_FRACTION = 0.05


class EvaluationInputError(ValueError):
    """Ground truth or predictions that cannot be evaluated."""


def _read_json(obj, what):
    if isinstance(obj, (str, os.PathLike)):
        try:
            with open(obj, encoding="utf-8") as f:
                return json.load(f), os.fspath(obj)
        except (OSError, json.JSONDecodeError) as e:
            raise EvaluationInputError(f"{what} file {obj}: cannot read JSON ({e})") from e
    return obj, f"<{what} in memory>"


@dataclass
class GroundTruth:
    """Ground truth as arrays: image index ``i`` is ``images[i]``, class index ``k`` is ``cat_ids[k]``."""

    source: str
    images: list
    categories: list
    cat_ids: np.ndarray  # [K] COCO category ids, sorted
    class_names: list  # [K]
    image_ids: np.ndarray  # [I]
    heights: np.ndarray  # [I]
    widths: np.ndarray  # [I]
    box_eval: np.ndarray  # [I] bool: image takes part in box metrics (supervision "full")
    labels: np.ndarray  # [I, K] int8 image-level labels 1 / 0 / -1 (unknown)
    ann_image: np.ndarray  # [G] image index
    ann_class: np.ndarray  # [G] class index
    ann_boxes: np.ndarray  # [G, 4] xywh
    ann_area: np.ndarray  # [G] COCO "area" (w * h when absent)
    ann_crowd: np.ndarray  # [G] bool
    ann_ids: np.ndarray  # [G]
    image_index: dict = field(repr=False, default_factory=dict)  # image id -> image index
    class_index: dict = field(repr=False, default_factory=dict)  # category id -> class index

    @property
    def num_classes(self):
        return len(self.cat_ids)


@dataclass
class Predictions:
    """Detections as arrays, in input order."""

    source: str
    image: np.ndarray  # [D] image index
    cls: np.ndarray  # [D] class index
    boxes: np.ndarray  # [D, 4] xywh
    scores: np.ndarray  # [D]
    warnings: list = field(default_factory=list)

    def __len__(self):
        return len(self.scores)


def load_ground_truth(gt):
    """Read COCO or OXnet-COCO ground truth (a path or a dict) into a :class:`GroundTruth`.

    Images whose ``supervision`` is "weak" or "unlabeled" take part in image-level metrics only (through
    their ``image_labels``); images without the field are fully annotated. For full images the labels are
    completed from the boxes as in :func:`oxnet.data.register_omni_coco`: a class with a box is 1, a class
    without one is 0 unless ``image_labels`` says otherwise.
    """
    data, src = _read_json(gt, "ground truth")
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise EvaluationInputError(f"{src}: not a COCO detection file (needs 'images' and 'categories')")
    cats = sorted(data["categories"], key=lambda c: c["id"])
    if not cats:
        raise EvaluationInputError(f"{src}: 'categories' is empty")
    cat_ids = np.array([c["id"] for c in cats], dtype=np.int64)
    if len(set(cat_ids.tolist())) != len(cat_ids):
        raise EvaluationInputError(f"{src}: duplicate category ids")
    names = [str(c.get("name", c["id"])) for c in cats]
    class_index = {int(c): k for k, c in enumerate(cat_ids)}
    name_index = {n: k for k, n in enumerate(names)}

    images = data["images"]
    n_img = len(images)
    image_index = {}
    heights = np.zeros(n_img, np.float64)
    widths = np.zeros(n_img, np.float64)
    box_eval = np.ones(n_img, bool)
    labels = np.full((n_img, len(cats)), -1, np.int8)
    for i, img in enumerate(images):
        iid = img.get("id")
        if iid in image_index:
            raise EvaluationInputError(f"{src}: duplicate image id {iid}")
        image_index[iid] = i
        try:
            heights[i], widths[i] = float(img["height"]), float(img["width"])
        except (KeyError, TypeError, ValueError) as e:
            raise EvaluationInputError(f"{src}: image id {iid} lacks a numeric height/width") from e
        sup = img.get("supervision", "full")
        if sup not in ("full", "weak", "unlabeled"):
            raise EvaluationInputError(f"{src}: image id {iid} has unknown supervision {sup!r}")
        box_eval[i] = sup == "full"
        if sup == "full":
            labels[i] = 0
        for name, value in (img.get("image_labels") or {}).items():
            if name not in name_index:
                raise EvaluationInputError(
                    f"{src}: image id {iid} has image_labels for unknown category {name!r}")
            if value not in (1, 0, -1):
                raise EvaluationInputError(
                    f"{src}: image id {iid}: image label {name!r}={value!r} is not 1, 0 or -1")
            labels[i, name_index[name]] = value

    anns = data.get("annotations", [])
    n_ann = len(anns)
    ann_image = np.zeros(n_ann, np.int64)
    ann_class = np.zeros(n_ann, np.int64)
    ann_boxes = np.zeros((n_ann, 4), np.float64)
    ann_area = np.zeros(n_ann, np.float64)
    ann_crowd = np.zeros(n_ann, bool)
    ann_ids = np.zeros(n_ann, np.int64)
    for j, a in enumerate(anns):
        aid = a.get("id", j + 1)
        i = image_index.get(a.get("image_id"))
        if i is None:
            raise EvaluationInputError(
                f"{src}: annotation id {aid} refers to unknown image id {a.get('image_id')}")
        k = class_index.get(a.get("category_id"))
        if k is None:
            raise EvaluationInputError(
                f"{src}: annotation id {aid} has unknown category id {a.get('category_id')}")
        box = a.get("bbox")
        if box is None or len(box) != 4:
            raise EvaluationInputError(f"{src}: annotation id {aid} has no 4-number 'bbox'")
        if not box_eval[i]:
            raise EvaluationInputError(
                f"{src}: annotation id {aid} is on image id {a['image_id']} whose supervision is "
                f"{images[i].get('supervision')!r}; only full images may have boxes")
        ann_image[j], ann_class[j], ann_ids[j] = i, k, aid
        ann_boxes[j] = box
        ann_area[j] = a["area"] if "area" in a else box[2] * box[3]
        ann_crowd[j] = bool(a.get("iscrowd", 0))
    bad = np.flatnonzero(~np.isfinite(ann_boxes).all(1) | (ann_boxes[:, 2] <= 0) | (ann_boxes[:, 3] <= 0))
    if len(bad):
        raise EvaluationInputError(
            f"{src}: annotation id {ann_ids[bad[0]]} has a non-finite or non-positive width/height "
            f"(bbox {ann_boxes[bad[0]].tolist()}; COCO boxes are [x, y, width, height]); "
            f"{len(bad)} such box(es)")
    # Labels of full images completed from the boxes: a class with a box is positive.
    labels[ann_image, ann_class] = 1
    return GroundTruth(
        source=src, images=images, categories=cats, cat_ids=cat_ids, class_names=names,
        image_ids=np.array([img["id"] for img in images]), heights=heights, widths=widths,
        box_eval=box_eval, labels=labels, ann_image=ann_image, ann_class=ann_class, ann_boxes=ann_boxes,
        ann_area=ann_area, ann_crowd=ann_crowd, ann_ids=ann_ids, image_index=image_index,
        class_index=class_index,
    )


def load_predictions(preds, gt, bbox_format="xywh"):
    """Read a COCO results list (a path or a list of dicts) into :class:`Predictions` checked against ``gt``.

    Args:
        bbox_format: "xywh" (COCO) or "xyxy" (converted to xywh).

    Raises:
        EvaluationInputError: unknown image id or category id (named), a malformed entry, or negative
            widths/heights (typical of xyxy boxes given where COCO's xywh is expected).
    """
    if bbox_format not in ("xywh", "xyxy"):
        raise ValueError(f"bbox_format must be 'xywh' or 'xyxy', got {bbox_format!r}")
    data, src = _read_json(preds, "predictions")
    if isinstance(data, dict) and "annotations" in data:
        data = data["annotations"]
    if not isinstance(data, list):
        raise EvaluationInputError(f"{src}: expected a COCO results list of "
                                   "{{image_id, category_id, bbox, score}} objects")
    warnings = []
    n = len(data)
    if n == 0:
        msg = f"{src}: the prediction list is empty; every AP and sensitivity is 0"
        logger.warning(msg)
        warnings.append(msg)
        return Predictions(src, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)),
                           np.zeros(0), warnings)
    try:
        img_ids = [d["image_id"] for d in data]
        cat_ids = [d["category_id"] for d in data]
        boxes = np.array([d["bbox"] for d in data], dtype=np.float64)
        scores = np.array([d["score"] for d in data], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        bad = next(j for j, d in enumerate(data) if not isinstance(d, dict) or not
                   {"image_id", "category_id", "bbox", "score"} <= set(d) or len(d["bbox"]) != 4)
        raise EvaluationInputError(f"{src}: entry {bad} ({data[bad]!r:.200}) is not a detection with "
                                   "image_id, category_id, a 4-number bbox and score") from e
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise EvaluationInputError(f"{src}: every bbox must have 4 numbers")

    image = _lookup(img_ids, gt.image_index, src, "image id", gt.source)
    cls = _lookup(cat_ids, gt.class_index, src, "category id", gt.source)
    bad = np.flatnonzero(~np.isfinite(boxes).all(1) | ~np.isfinite(scores))
    if len(bad):
        raise EvaluationInputError(f"{src}: entry {bad[0]} (image id {img_ids[bad[0]]}) has a non-finite "
                                   "bbox or score")
    if bbox_format == "xyxy":
        boxes = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    bad = np.flatnonzero((boxes[:, 2] < 0) | (boxes[:, 3] < 0))
    if len(bad):
        hint = ("they look like [x1, y1, x2, y2] boxes; COCO results need [x, y, width, height] "
                "(pass bbox_format='xyxy' / --bbox-format xyxy to convert)" if bbox_format == "xywh"
                else "x2 < x1 or y2 < y1")
        raise EvaluationInputError(
            f"{src}: {len(bad)} of {n} boxes have a negative width or height (first: entry {bad[0]}, "
            f"image id {img_ids[bad[0]]}, bbox {boxes[bad[0]].tolist()}); {hint}")
    # Boxes reaching well past the image border: the usual sign of xyxy given as xywh.
    w, h = gt.widths[image], gt.heights[image]
    outside = (boxes[:, 0] + boxes[:, 2] > 1.05 * w + 1) | (boxes[:, 1] + boxes[:, 3] > 1.05 * h + 1)
    frac = outside.mean()
    if frac > XYXY_SUSPECT_FRACTION:
        msg = (f"{src}: {outside.sum()} of {n} boxes ({100 * frac:.1f}%) reach past the image border by more "
               "than 5%; if they are [x1, y1, x2, y2], convert them to COCO's [x, y, width, height] "
               "(bbox_format='xyxy' / --bbox-format xyxy)")
        logger.warning(msg)
        warnings.append(msg)
    return Predictions(src, image, cls, boxes, scores, warnings)


def _lookup(values, index, src, what, gt_source):
    """Map ids to indices with a vectorized lookup; raise naming the first id missing from ``index``."""
    uniq, inverse = np.unique(np.asarray(values), return_inverse=True)
    mapped = np.array([index.get(v.item() if hasattr(v, "item") else v, -1) for v in uniq], dtype=np.int64)
    missing = np.flatnonzero(mapped < 0)
    if len(missing):
        first = uniq[missing[0]].item()  # a Python int/str: numpy 2 writes np.int64(7) for repr
        entry = int(np.flatnonzero(inverse == missing[0])[0])
        raise EvaluationInputError(
            f"{src}: entry {entry} has {what} {first!r}, which is not in the ground truth {gt_source} "
            f"({len(missing)} unknown {what}(s) in all)")
    return mapped[inverse]


def load_image_scores(scores, gt):
    """Image-level class scores (e.g. OXnet's global head) as a [I, K] array, NaN where not given.

    ``scores`` is a path or a dict {image id (int or str): [K floats in category-id order] or
    {category name: float}}.
    """
    data, src = _read_json(scores, "image scores")
    if not isinstance(data, dict):
        raise EvaluationInputError(f"{src}: expected {{image_id: scores}}")
    out = np.full((len(gt.images), gt.num_classes), np.nan)
    str_index = {str(k): v for k, v in gt.image_index.items()}
    name_index = {n: k for k, n in enumerate(gt.class_names)}
    for key, value in data.items():
        i = gt.image_index.get(key, str_index.get(str(key)))
        if i is None:
            raise EvaluationInputError(f"{src}: image id {key!r} is not in the ground truth {gt.source}")
        if isinstance(value, dict):
            for name, s in value.items():
                if name not in name_index:
                    raise EvaluationInputError(f"{src}: image id {key!r}: unknown category {name!r}")
                out[i, name_index[name]] = float(s)
        else:
            if len(value) != gt.num_classes:
                raise EvaluationInputError(
                    f"{src}: image id {key!r} has {len(value)} scores, expected {gt.num_classes}")
            out[i] = np.asarray(value, dtype=np.float64)
    return out
