"""Loading and checking evaluation inputs: COCO / OXnet-COCO ground truth and COCO detection results.

Everything is turned into flat numpy arrays once, so the metrics can be computed without per-box
Python loops. Bad input raises :class:`EvaluationInputError` naming the file, the entry and the problem.
"""

import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "EvaluationInputError",
    "GroundTruth",
    "Predictions",
    "load_ground_truth",
    "load_predictions",
    "load_image_scores",
]

logger = logging.getLogger(__name__)

#: Fraction of boxes reaching past the image border above which xywh boxes are suspected to be xyxy.
XYXY_SUSPECT_FRACTION = 0.05


class EvaluationInputError(ValueError):
    """Ground truth or predictions that cannot be evaluated."""


_AMBIGUOUS = -1


def _path_parts(name):
    return [p for p in os.path.normpath(str(name)).replace("\\", "/").split("/") if p not in ("", ".")]


def _file_index(images):
    """{path suffix: image index} for every trailing part of each image's file_name; a suffix shared by
    several images maps to ``_AMBIGUOUS``, unless it is one image's whole file_name."""
    index, whole = {}, {}
    for i, img in enumerate(images):
        parts = _path_parts(img.get("file_name") or "")
        for start in range(len(parts)):
            key = "/".join(parts[start:])
            if start == 0:
                whole[key] = _AMBIGUOUS if key in whole else i
            elif key in index and index[key] != i:
                index[key] = _AMBIGUOUS
            else:
                index[key] = i
    index.update(whole)
    return index


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
    file_index: dict = field(repr=False, default_factory=dict)  # normalized file_name -> image index

    @property
    def num_classes(self):
        return len(self.cat_ids)

    def find_file(self, file_name):
        """Image index of a prediction's ``file_name``, or None. The name may be the ground truth's own
        ``file_name`` or a path ending with it (e.g. the absolute path a predictor was given):
        ``/data/run/images/a.png`` matches ``images/a.png`` or ``a.png``, the longest match wins.

        Raises:
            EvaluationInputError: the name matches several ground-truth images equally well.
        """
        parts = _path_parts(file_name)
        for start in range(len(parts)):
            i = self.file_index.get("/".join(parts[start:]))
            if i is _AMBIGUOUS:
                raise EvaluationInputError(
                    f"{self.source}: file name {file_name!r} matches several ground-truth images "
                    f"({'/'.join(parts[start:])!r}); give the image_id or a longer path"
                )
            if i is not None:
                return i
        return None


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

    images = data["images"]
    image_index, heights, widths, box_eval, labels = _read_gt_images(images, names, src)
    anns = _read_gt_annotations(data.get("annotations", []), images, image_index, class_index, box_eval, src)
    # Labels of full images completed from the boxes: a class with a box is positive.
    labels[anns["ann_image"], anns["ann_class"]] = 1
    return GroundTruth(
        source=src,
        images=images,
        categories=cats,
        cat_ids=cat_ids,
        class_names=names,
        image_ids=np.array([img["id"] for img in images]),
        heights=heights,
        widths=widths,
        box_eval=box_eval,
        labels=labels,
        **anns,
        image_index=image_index,
        class_index=class_index,
        file_index=_file_index(images),
    )


def _read_gt_images(images, names, src):
    """Check the ground-truth images (unique ids, positive sizes, known supervision, valid image labels).

    Returns:
        (dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray): {image id: index}, heights, widths,
        box_eval and the [I, K] labels from ``image_labels`` (full images: 0 where not given, others -1).
    """
    name_index = {n: k for k, n in enumerate(names)}
    n_img = len(images)
    image_index = {}
    heights = np.zeros(n_img, np.float64)
    widths = np.zeros(n_img, np.float64)
    box_eval = np.ones(n_img, bool)
    labels = np.full((n_img, len(names)), -1, np.int8)
    for i, img in enumerate(images):
        iid = img.get("id")
        if iid in image_index:
            raise EvaluationInputError(f"{src}: duplicate image id {iid}")
        image_index[iid] = i
        try:
            heights[i], widths[i] = float(img["height"]), float(img["width"])
        except (KeyError, TypeError, ValueError) as e:
            raise EvaluationInputError(
                f"{src}: image id {iid} ({img.get('file_name')!r}) lacks a numeric height/width"
            ) from e
        if not (np.isfinite(heights[i]) and np.isfinite(widths[i]) and heights[i] > 0 and widths[i] > 0):
            raise EvaluationInputError(
                f"{src}: image id {iid} ({img.get('file_name')!r}) has width {img['width']!r} and height "
                f"{img['height']!r}; both must be positive"
            )
        sup = img.get("supervision", "full")
        if sup not in ("full", "weak", "unlabeled"):
            raise EvaluationInputError(f"{src}: image id {iid} has unknown supervision {sup!r}")
        box_eval[i] = sup == "full"
        if sup == "full":
            labels[i] = 0
        for name, value in (img.get("image_labels") or {}).items():
            if name not in name_index:
                raise EvaluationInputError(
                    f"{src}: image id {iid} has image_labels for unknown category {name!r}"
                )
            if value not in (1, 0, -1):
                raise EvaluationInputError(
                    f"{src}: image id {iid}: image label {name!r}={value!r} is not 1, 0 or -1"
                )
            labels[i, name_index[name]] = value
    return image_index, heights, widths, box_eval, labels


def _read_gt_annotations(anns, images, image_index, class_index, box_eval, src):
    """Check the ground-truth boxes (known image and category, a full image, a positive finite size).

    Returns:
        dict: :class:`GroundTruth`'s ``ann_*`` arrays.
    """
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
                f"{src}: annotation id {aid} refers to unknown image id {a.get('image_id')}"
            )
        k = class_index.get(a.get("category_id"))
        if k is None:
            raise EvaluationInputError(
                f"{src}: annotation id {aid} has unknown category id {a.get('category_id')}"
            )
        box = a.get("bbox")
        if box is None or len(box) != 4:
            raise EvaluationInputError(f"{src}: annotation id {aid} has no 4-number 'bbox'")
        if not box_eval[i]:
            raise EvaluationInputError(
                f"{src}: annotation id {aid} is on image id {a['image_id']} whose supervision is "
                f"{images[i].get('supervision')!r}; only full images may have boxes"
            )
        ann_image[j], ann_class[j], ann_ids[j] = i, k, aid
        ann_boxes[j] = box
        ann_area[j] = a["area"] if "area" in a else box[2] * box[3]
        ann_crowd[j] = bool(a.get("iscrowd", 0))
    bad = np.flatnonzero(~np.isfinite(ann_boxes).all(1) | (ann_boxes[:, 2] <= 0) | (ann_boxes[:, 3] <= 0))
    if len(bad):
        raise EvaluationInputError(
            f"{src}: annotation id {ann_ids[bad[0]]} has a non-finite or non-positive width/height "
            f"(bbox {ann_boxes[bad[0]].tolist()}; COCO boxes are [x, y, width, height]); "
            f"{len(bad)} such box(es)"
        )
    return {
        "ann_image": ann_image,
        "ann_class": ann_class,
        "ann_boxes": ann_boxes,
        "ann_area": ann_area,
        "ann_crowd": ann_crowd,
        "ann_ids": ann_ids,
    }


def load_predictions(preds, gt, bbox_format="xywh", require_match=True):
    """Read a COCO results list (a path or a list of dicts) into :class:`Predictions` checked against ``gt``.

    Images are matched by ``file_name`` when an entry has one (see :meth:`GroundTruth.find_file`;
    ``demo/predict.py`` numbers images in the order it read them, so its ``image_id`` is not the
    ground truth's), else by ``image_id``. Classes are matched by ``category_name`` when an entry has
    one, else by ``category_id``.

    Args:
        bbox_format: "xywh" (COCO) or "xyxy" (converted to xywh).
        require_match: refuse predictions none of which can be scored (see Raises); the evaluator of a
            model being trained turns it off (an early model may well find nothing of the right class).

    Raises:
        EvaluationInputError: an image or category not in the ground truth (named with its entry), a
            malformed entry, negative widths/heights (typical of xyxy boxes given where COCO's xywh is
            expected), or predictions none of which can be scored: none on an image with box ground
            truth, or none of a class that has a ground-truth box.
    """
    if bbox_format not in ("xywh", "xyxy"):
        raise ValueError(f"bbox_format must be 'xywh' or 'xyxy', got {bbox_format!r}")
    data, src = _read_json(preds, "predictions")
    if isinstance(data, dict) and "annotations" in data:
        data = data["annotations"]
    if not isinstance(data, list):
        raise EvaluationInputError(
            f"{src}: expected a COCO results list of {{{{image_id, category_id, bbox, score}}}} objects"
        )
    warnings = []
    n = len(data)
    if n == 0:
        msg = f"{src}: the prediction list is empty; every AP and sensitivity is 0"
        logger.warning(msg)
        warnings.append(msg)
        return Predictions(
            src, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), warnings
        )
    try:
        image = match_image_entries(data, gt, src, warnings)
        if (image == LEFT_OUT).any():  # predictions on files outside the ground truth (warned)
            data = [d for d, i in zip(data, image) if i != LEFT_OUT]
            image = image[image != LEFT_OUT]
            n = len(data)
        boxes = np.array([d["bbox"] for d in data], dtype=np.float64)
        scores = np.array([d["score"] for d in data], dtype=np.float64)
        cls = _match_classes(data, gt, src, warnings)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, EvaluationInputError):
            raise
        bad = next((j for j, d in enumerate(data) if not _is_detection(d)), 0)
        raise EvaluationInputError(
            f"{src}: entry {bad} ({data[bad]!r:.200}) is not a detection with "
            "image_id or file_name, category_id or category_name, a 4-number bbox "
            "and score"
        ) from e
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise EvaluationInputError(f"{src}: every bbox must have 4 numbers")
    img_ids = gt.image_ids[image]
    bad = np.flatnonzero(~np.isfinite(boxes).all(1) | ~np.isfinite(scores))
    if len(bad):
        raise EvaluationInputError(
            f"{src}: entry {bad[0]} (image id {img_ids[bad[0]]}) has a non-finite bbox or score"
        )
    if bbox_format == "xyxy":
        boxes = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    bad = np.flatnonzero((boxes[:, 2] < 0) | (boxes[:, 3] < 0))
    if len(bad):
        hint = (
            "they look like [x1, y1, x2, y2] boxes; COCO results need [x, y, width, height] "
            "(pass bbox_format='xyxy' / --bbox-format xyxy to convert)"
            if bbox_format == "xywh"
            else "x2 < x1 or y2 < y1"
        )
        raise EvaluationInputError(
            f"{src}: {len(bad)} of {n} boxes have a negative width or height (first: entry {bad[0]}, "
            f"image id {img_ids[bad[0]]}, bbox {boxes[bad[0]].tolist()}); {hint}"
        )
    if require_match:
        _check_scorable(image, cls, gt, src)
    # Boxes reaching well past the image border: the usual sign of xyxy given as xywh.
    w, h = gt.widths[image], gt.heights[image]
    outside = (boxes[:, 0] + boxes[:, 2] > 1.05 * w + 1) | (boxes[:, 1] + boxes[:, 3] > 1.05 * h + 1)
    frac = outside.mean()
    if frac > XYXY_SUSPECT_FRACTION:
        msg = (
            f"{src}: {outside.sum()} of {n} boxes ({100 * frac:.1f}%) reach past the image border by more "
            "than 5%; if they are [x1, y1, x2, y2], convert them to COCO's [x, y, width, height] "
            "(bbox_format='xyxy' / --bbox-format xyxy)"
        )
        logger.warning(msg)
        warnings.append(msg)
    return Predictions(src, image, cls, boxes, scores, warnings)


def _is_detection(d):
    return (
        isinstance(d, dict)
        and {"bbox", "score"} <= set(d)
        and ("image_id" in d or "file_name" in d)
        and ("category_id" in d or "category_name" in d)
        and isinstance(d["bbox"], (list, tuple))
        and len(d["bbox"]) == 4
    )


def _warn(warnings, msg):
    logger.warning(msg)
    warnings.append(msg)


def _warn_ids_differ(warnings, src, data, entries, out, id_key, id_index, name_key, gt_ids, what):
    """Warn once when ``entries`` (matched by ``name_key`` to the ground-truth index ``out[j]``) also
    carry an ``id_key`` that the ground truth gives to another image or class."""
    differ = [j for j in entries if id_key in data[j] and id_index.get(data[j][id_key]) != out[j]]
    if differ:
        j = differ[0]
        right = gt_ids[out[j]]
        right = right.item() if hasattr(right, "item") else right
        _warn(
            warnings,
            f"{src}: {len(differ)} {what}(s) have a {id_key} that is not the ground truth's id "
            f"of their {name_key} (first: entry {j}, {id_key} {data[j][id_key]!r}, "
            f"{data[j][name_key]!r} is {id_key.replace('_', ' ')} {right!r}); "
            f"matched by {name_key}",
        )


#: :func:`match_image_entries`' index of an entry whose file is not in the ground truth.
LEFT_OUT = -2


def match_image_entries(data, gt, src, warnings, what="prediction"):
    """Ground-truth image index of each entry of ``data`` (dicts with ``file_name`` and/or ``image_id``):
    by ``file_name`` where an entry has one, else by ``image_id``.

    Entries on files that are not in the ground truth (a folder predicted whole, say) get
    :data:`LEFT_OUT`, with a warning that counts them; when no file name matches at all, or an
    ``image_id`` (without a file name) is unknown, it raises naming the entry."""
    by_name = [j for j, d in enumerate(data) if d.get("file_name") is not None]
    if len(by_name) < len(data):
        no_key = [j for j, d in enumerate(data) if d.get("file_name") is None and "image_id" not in d]
        if no_key:
            raise EvaluationInputError(f"{src}: entry {no_key[0]} has neither file_name nor image_id")
    out = np.full(len(data), -1, np.int64)
    if by_name:
        cache = {}
        for j in by_name:
            name = data[j]["file_name"]
            if name not in cache:
                cache[name] = gt.find_file(name)
            out[j] = LEFT_OUT if cache[name] is None else cache[name]
        unknown = [name for name, i in cache.items() if i is None]
        if len(unknown) == len(cache):
            raise EvaluationInputError(
                f"{src}: no file_name matches an image of the ground truth {gt.source} "
                f"(first: {unknown[0]!r}; "
                f"compared by trailing path components with its file_name entries, e.g. "
                f"{gt.images[0].get('file_name')!r}); are these predictions for another image set?"
            )
        if unknown:
            n_left = int((out == LEFT_OUT).sum())
            _warn(
                warnings,
                f"{src}: {n_left} {what}(s) on {len(unknown)} file(s) that are not in the ground "
                f"truth were left out (first: {unknown[0]!r})",
            )
        _warn_ids_differ(
            warnings,
            src,
            data,
            [j for j in by_name if out[j] >= 0],
            out,
            "image_id",
            gt.image_index,
            "file_name",
            gt.image_ids,
            what,
        )
    rest = [j for j in range(len(data)) if out[j] == -1]
    if rest:
        out[rest] = _lookup(
            [data[j]["image_id"] for j in rest], gt.image_index, src, "image id", gt.source, entries=rest
        )
    return out


def _match_classes(data, gt, src, warnings):
    """Class index of each detection: by ``category_name`` where given, else by ``category_id``."""
    name_index = {n: k for k, n in enumerate(gt.class_names)}
    by_name = [j for j, d in enumerate(data) if d.get("category_name") is not None]
    out = np.full(len(data), -1, np.int64)
    if by_name:
        out[by_name] = _lookup(
            [data[j]["category_name"] for j in by_name],
            name_index,
            src,
            "category name",
            gt.source,
            entries=by_name,
            known=", ".join(map(repr, gt.class_names)),
        )
        _warn_ids_differ(
            warnings,
            src,
            data,
            by_name,
            out,
            "category_id",
            gt.class_index,
            "category_name",
            gt.cat_ids,
            "detection",
        )
    rest = [j for j in range(len(data)) if out[j] == -1]
    if rest:
        out[rest] = _lookup(
            [data[j]["category_id"] for j in rest],
            gt.class_index,
            src,
            "category id",
            gt.source,
            entries=rest,
            known=", ".join(f"{int(c)} ({n})" for c, n in zip(gt.cat_ids, gt.class_names)),
        )
    return out


def _check_scorable(image, cls, gt, src):
    """Refuse predictions of which not one can be scored against a box: the sign of ids from another
    numbering (e.g. 0-based class indices against 1-based category ids, or images of another set)."""
    on_box_images = gt.box_eval[image]
    if not on_box_images.any():
        raise EvaluationInputError(
            f"{src}: none of the {len(image)} detections is on an image of {gt.source} that takes part in "
            "box evaluation (supervision 'full'); are these predictions for another image set?"
        )
    annotated = np.zeros(gt.num_classes, bool)
    annotated[gt.ann_class] = True
    if annotated.any() and not annotated[cls[on_box_images]].any():
        present = ", ".join(gt.class_names[k] for k in np.flatnonzero(annotated))
        raise EvaluationInputError(
            f"{src}: none of the detections has a class with ground-truth boxes in {gt.source} ({present}); "
            "are the category ids of another numbering (e.g. 0-based class indices)? Give category_name "
            "or the ground truth's category ids"
        )


def _lookup(values, index, src, what, gt_source, entries=None, known=None):
    """Map ids to indices; raise naming the first id missing from ``index`` (``entries``: the entry
    number of each value, default its position; ``known``: the valid values, for the message)."""
    uniq = {}
    mapped = np.empty(len(values), np.int64)
    for j, v in enumerate(values):
        try:
            k = uniq[v]
        except KeyError:
            k = uniq[v] = index.get(v, -1)
        except TypeError as e:
            entry = entries[j] if entries is not None else j
            raise EvaluationInputError(f"{src}: entry {entry} has {what} {v!r}, not a number or name") from e
        if k < 0:
            entry = entries[j] if entries is not None else j
            n_missing = len({u for u in values if index.get(u, -1) < 0})
            hint = f"; the ground truth has {known}" if known else ""
            raise EvaluationInputError(
                f"{src}: entry {entry} has {what} {v!r}, which is not in the ground truth {gt_source} "
                f"({n_missing} unknown {what}(s) in all){hint}"
            )
        mapped[j] = k
    return mapped


def load_image_scores(scores, gt):
    """Image-level class scores (e.g. OXnet's global head) as a [I, K] array, NaN where not given.

    ``scores`` is a path or the data, in either form:

    - a list of ``{"file_name" and/or "image_id", "global_scores": {category name: float}}`` (what
      ``demo/predict.py`` and the evaluator write as ``image_scores.json``), images matched as
      predictions are (by ``file_name`` when present);
    - a dict {image id (int or str): [K floats in category-id order] or {category name: float}}.
    """
    data, src = _read_json(scores, "image scores")
    out = np.full((len(gt.images), gt.num_classes), np.nan)
    if isinstance(data, list):
        bad = [j for j, d in enumerate(data) if not isinstance(d, dict) or "global_scores" not in d]
        if bad:
            raise EvaluationInputError(
                f"{src}: entry {bad[0]} ({data[bad[0]]!r:.200}) has no 'global_scores'"
            )
        rows = match_image_entries(data, gt, src, [], what="image score")
        items = [
            (i, d["global_scores"], d.get("file_name", d.get("image_id")))
            for i, d in zip(rows, data)
            if i != LEFT_OUT
        ]
    elif isinstance(data, dict):
        str_index = {str(k): v for k, v in gt.image_index.items()}
        items = []
        for key, value in data.items():
            i = gt.image_index.get(key, str_index.get(str(key)))
            if i is None:
                raise EvaluationInputError(f"{src}: image id {key!r} is not in the ground truth {gt.source}")
            items.append((i, value, key))
    else:
        raise EvaluationInputError(
            f"{src}: expected a list of {{file_name, image_id, global_scores}} or a "
            "mapping {image_id: scores}"
        )
    name_index = {n: k for k, n in enumerate(gt.class_names)}
    for i, value, key in items:
        if isinstance(value, dict):
            for name, s in value.items():
                if name not in name_index:
                    raise EvaluationInputError(
                        f"{src}: image {key!r}: unknown category {name!r}; the ground "
                        f"truth has {', '.join(map(repr, gt.class_names))}"
                    )
                out[i, name_index[name]] = float(s)
        else:
            if len(value) != gt.num_classes:
                raise EvaluationInputError(
                    f"{src}: image {key!r} has {len(value)} scores, expected {gt.num_classes}"
                )
            out[i] = np.asarray(value, dtype=np.float64)
    return out
