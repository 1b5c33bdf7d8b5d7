"""The OXnet-COCO dataset format: COCO detection JSON plus per-image supervision fields.

Each entry of ``images`` carries ``"supervision"`` (one of :data:`SUPERVISION_LEVELS`) and an optional
``"image_labels"`` dict ``{category name: 1 | 0 | -1}`` (positive / negative / uncertain; an absent
category is unknown). Only "full" images may have boxes; a full image without boxes is a true negative.
The format is documented in ``datasets/README.md``.
"""

import json
import math
import os
from collections import defaultdict

from oxnet.utils.atomic import atomic_write_json

__all__ = [
    "SUPERVISION_LEVELS",
    "LABEL_VALUES",
    "OmniFormatError",
    "validate_omni_coco",
    "read_omni_coco",
    "load_omni_coco",
    "write_omni_coco",
    "image_labels_from_boxes",
]

SUPERVISION_LEVELS = ("full", "weak", "unlabeled")
#: Image-label values: positive, negative, uncertain.
LABEL_VALUES = (1, 0, -1)
#: How far (pixels) a box may leave the image before it is an error.
BOX_TOLERANCE = 1.0
_MAX_LISTED_MISSING = 5


class OmniFormatError(ValueError):
    """An OXnet-COCO file breaks the format; the message names the file, the entry and the problem."""


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def is_finite_number(x):
    """A finite int or float (not a bool; an int beyond the float range is not finite)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def _check_id(entry, index, section, file):
    if not isinstance(entry, dict):
        raise OmniFormatError(f"{file}: {section}[{index}]: must be an object, got {type(entry).__name__}")
    if "id" not in entry:
        raise OmniFormatError(f"{file}: {section}[{index}]: field 'id' is missing")
    eid = entry["id"]
    if not (_is_int(eid) or (section != "categories" and isinstance(eid, str))):
        raise OmniFormatError(f"{file}: {section}[{index}]: field 'id' must be an integer, got {eid!r}")
    return eid


def _check_categories(coco, file):
    """Check the category list; return ``{category id: name}`` in file order."""
    names = {}
    for i, cat in enumerate(coco["categories"]):
        cid = _check_id(cat, i, "categories", file)
        name = cat.get("name")
        if not isinstance(name, str) or not name:
            raise OmniFormatError(f"{file}: category id={cid}: field 'name' must be a non-empty string")
        if cid in names:
            raise OmniFormatError(f"{file}: category id={cid}: duplicate category id")
        names[cid] = name
    seen = set()
    for cid, name in names.items():
        if name in seen:
            raise OmniFormatError(f"{file}: category id={cid}: duplicate category name {name!r}")
        seen.add(name)
    return names


def _check_top_level(coco, file):
    if not isinstance(coco, dict):
        raise OmniFormatError(f"{file}: top level must be a JSON object, got {type(coco).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            problem = "is missing" if key not in coco else f"must be a list, got {type(coco[key]).__name__}"
            raise OmniFormatError(f"{file}: top-level key '{key}' {problem}")


def _check_image(img, where, file, category_names, allow_unknown_sizes=False):
    sup = img.get("supervision")
    if sup not in SUPERVISION_LEVELS:
        problem = "is missing" if "supervision" not in img else f"has unknown value {sup!r}"
        raise OmniFormatError(
            f"{file}: {where}: field 'supervision' {problem}; must be one of {', '.join(SUPERVISION_LEVELS)}"
        )
    fname = img.get("file_name")
    if not isinstance(fname, str) or not fname:
        raise OmniFormatError(f"{file}: {where}: field 'file_name' must be a non-empty string")
    for key in ("width", "height"):
        value = img.get(key)
        if value is None and key in img:
            if allow_unknown_sizes:
                continue
            raise OmniFormatError(
                f"{file}: {where}: field '{key}' is null: the image size is unknown (the importer ran with "
                "--allow-missing-images and the file was absent); rerun the importer with --images to "
                "train or evaluate on this file"
            )
        if not is_finite_number(value) or value <= 0:
            problem = "is missing" if key not in img else f"must be a positive number, got {value!r}"
            raise OmniFormatError(f"{file}: {where}: field '{key}' {problem}")
    labels = img.get("image_labels", {})
    if not isinstance(labels, dict):
        raise OmniFormatError(
            f"{file}: {where}: field 'image_labels' must be an object {{category name: 1|0|-1}}, "
            f"got {type(labels).__name__}"
        )
    for name, value in labels.items():
        if name not in category_names:
            raise OmniFormatError(f"{file}: {where}: field 'image_labels' names unknown category {name!r}")
        if not _is_int(value) or value not in LABEL_VALUES:
            raise OmniFormatError(
                f"{file}: {where}: field 'image_labels' has value {value!r} for {name!r}; must be 1, 0 or -1"
            )
    if sup == "unlabeled" and labels:
        raise OmniFormatError(
            f"{file}: {where}: field 'image_labels' is set on an unlabeled image; use supervision 'weak'"
        )


def _check_box(ann, where, file, img):
    bbox = ann.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(is_finite_number(v) for v in bbox):
        raise OmniFormatError(
            f"{file}: {where}: field 'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}"
        )
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        raise OmniFormatError(f"{file}: {where}: field 'bbox' {bbox} has non-positive width or height")
    W, H = img["width"], img["height"]
    if W is None or H is None:  # unknown size (allowed by the caller): the box cannot be placed
        return
    t = BOX_TOLERANCE
    if x < -t or y < -t or x + w > W + t or y + h > H + t:
        raise OmniFormatError(
            f"{file}: {where}: field 'bbox' {bbox} lies outside the {W}x{H} image by more than {t:g} px"
        )


def _missing_files(file_names, image_root):
    """Return the entries of ``file_names`` absent under ``image_root`` (one directory listing per folder)."""
    by_dir = defaultdict(list)
    for name in file_names:
        path = os.path.join(image_root, name)
        by_dir[os.path.dirname(path)].append((name, os.path.basename(path)))
    missing = []
    for folder, entries in by_dir.items():
        try:
            present = set(os.listdir(folder or "."))
        except OSError:
            present = set()
        missing.extend(name for name, base in entries if base not in present)
    return missing


def validate_omni_coco(coco, json_file, image_root=None, check_files=True, allow_unknown_sizes=False):
    """Check that ``coco`` follows the OXnet-COCO format; raise :class:`OmniFormatError` otherwise.

    Args:
        coco (dict): the parsed JSON.
        json_file (str): the file it came from (named in error messages).
        image_root (str or None): folder that ``file_name`` is relative to.
        check_files (bool): also check that every image file exists (needs ``image_root``). All missing
            files are collected; the error gives their count and the first few.
        allow_unknown_sizes (bool): accept ``width``/``height`` ``null`` (what importers write for
            absent images with ``--allow-missing-images``); boxes of such images are checked for
            everything but lying inside the image. By default a null size is an error: such a file
            can be counted but not trained or evaluated on.
    """
    file = os.fspath(json_file)
    _check_top_level(coco, file)
    categories = _check_categories(coco, file)
    category_names = set(categories.values())

    images = {}
    for i, img in enumerate(coco["images"]):
        iid = _check_id(img, i, "images", file)
        if iid in images:
            raise OmniFormatError(f"{file}: image id={iid}: duplicate image id")
        _check_image(img, f"image id={iid}", file, category_names, allow_unknown_sizes)
        images[iid] = img

    ann_ids = set()
    box_classes = defaultdict(set)  # image id -> category names with a box
    for i, ann in enumerate(coco["annotations"]):
        aid = _check_id(ann, i, "annotations", file)
        if aid in ann_ids:
            raise OmniFormatError(f"{file}: annotation id={aid}: duplicate annotation id")
        ann_ids.add(aid)
        iid = ann.get("image_id")
        where = f"annotation id={aid} (image id={iid!r})"
        img = images.get(iid) if _is_int(iid) or isinstance(iid, str) else None
        if img is None:
            raise OmniFormatError(f"{file}: {where}: field 'image_id' refers to an unknown image")
        if img["supervision"] != "full":
            raise OmniFormatError(
                f"{file}: {where}: field 'supervision' of the image is {img['supervision']!r}; "
                "only 'full' images may have boxes"
            )
        cid = ann.get("category_id")
        if not _is_int(cid) or cid not in categories:
            raise OmniFormatError(f"{file}: {where}: field 'category_id' {cid!r} is not a known category id")
        _check_box(ann, where, file, img)
        crowd = ann.get("iscrowd", 0)
        if not _is_int(crowd) or crowd not in (0, 1):
            raise OmniFormatError(f"{file}: {where}: field 'iscrowd' must be 0 or 1, got {crowd!r}")
        box_classes[iid].add(categories[cid])

    for iid, names in box_classes.items():
        labels = images[iid].get("image_labels", {})
        for name in sorted(names):
            if labels.get(name, 1) != 1:
                raise OmniFormatError(
                    f"{file}: image id={iid}: field 'image_labels' says {labels[name]} for {name!r} "
                    f"but the image has a {name!r} box"
                )

    if check_files and image_root is not None:
        missing = _missing_files([img["file_name"] for img in coco["images"]], os.fspath(image_root))
        if missing:
            shown = ", ".join(repr(m) for m in missing[:_MAX_LISTED_MISSING])
            rest = len(missing) - _MAX_LISTED_MISSING
            more = f" (and {rest} more)" if rest > 0 else ""
            raise OmniFormatError(
                f"{file}: {len(missing)} of {len(images)} image files are missing under {image_root}: "
                f"{shown}{more}"
            )


def read_omni_coco(json_file):
    """Parse ``json_file`` (not validated); raise :class:`OmniFormatError` naming the file on bad JSON."""
    json_file = os.fspath(json_file)
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"OXnet-COCO file {json_file} does not exist")
    with open(json_file, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise OmniFormatError(f"{json_file}: invalid JSON: {e}") from None
        except UnicodeDecodeError as e:
            raise OmniFormatError(f"{json_file}: not UTF-8 text (byte {e.start}: {e.reason})") from None
        except RecursionError:
            raise OmniFormatError(f"{json_file}: invalid JSON: nested too deeply") from None


def image_labels_from_boxes(box_classes, num_classes, image_labels=None):
    """Complete the image labels of a fully annotated image from its boxes.

    A class with a box is positive (1); a class without a box is negative (0) unless ``image_labels``
    says otherwise (e.g. -1, uncertain).

    Args:
        box_classes (iterable[int]): contiguous class index of each box.
        num_classes (int): number of classes.
        image_labels (dict[int, int] or None): known labels {contiguous class index: 1|0|-1}.

    Returns:
        dict[int, int]: a label for every class 0..num_classes-1.
    """
    labels = {c: 0 for c in range(num_classes)}
    labels.update(image_labels or {})
    labels.update({int(c): 1 for c in box_classes})
    return labels


def load_omni_coco(json_file, image_root, check_files=True):
    """Read and validate an OXnet-COCO file; return ``(dataset_dicts, metadata)`` in detectron2's format.

    Dataset dicts carry the standard detectron2 keys (absolute ``file_name``, ``height``, ``width``,
    ``image_id``, ``annotations`` in ``BoxMode.XYWH_ABS`` with contiguous ``category_id``) plus
    ``supervision`` and ``image_labels`` ({contiguous class index: 1|0|-1}, completed from the boxes for
    full images, see :func:`image_labels_from_boxes`). ``patient_id``, ``view`` and ``source`` are passed
    through when present. Metadata has ``thing_classes`` (category names sorted by category id) and
    ``thing_dataset_id_to_contiguous_id``.
    """
    from detectron2.structures import BoxMode

    coco = read_omni_coco(json_file)
    validate_omni_coco(coco, json_file, image_root, check_files=check_files)

    cats = sorted(coco["categories"], key=lambda c: c["id"])
    id_map = {c["id"]: i for i, c in enumerate(cats)}
    name_to_index = {c["name"]: i for i, c in enumerate(cats)}
    meta = {"thing_classes": [c["name"] for c in cats], "thing_dataset_id_to_contiguous_id": id_map}

    anns_per_image = defaultdict(list)
    for ann in coco["annotations"]:
        anns_per_image[ann["image_id"]].append(ann)

    image_root = os.path.abspath(os.fspath(image_root))
    dicts = []
    for img in coco["images"]:
        annotations = [
            {
                "bbox": [float(v) for v in ann["bbox"]],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": id_map[ann["category_id"]],
                "iscrowd": int(ann.get("iscrowd", 0)),
            }
            for ann in anns_per_image.get(img["id"], [])
        ]
        labels = {name_to_index[k]: v for k, v in img.get("image_labels", {}).items()}
        if img["supervision"] == "full":
            labels = image_labels_from_boxes([a["category_id"] for a in annotations], len(cats), labels)
        record = {
            "file_name": os.path.join(image_root, img["file_name"]),
            "height": img["height"],
            "width": img["width"],
            "image_id": img["id"],
            "supervision": img["supervision"],
            "image_labels": labels,
            "annotations": annotations,
        }
        for key in ("patient_id", "view", "source"):
            if key in img:
                record[key] = img[key]
        dicts.append(record)
    return dicts, meta


def write_omni_coco(path, coco, validate=True, image_root=None):
    """Write an OXnet-COCO dict to ``path`` atomically, validating it first.

    Image files are checked only when ``image_root`` is given.
    """
    if validate:
        validate_omni_coco(coco, path, image_root, check_files=image_root is not None)
    atomic_write_json(path, coco)
