"""Any COCO detection JSON (e.g. TBX11K) as full, weak or unlabeled OXnet-COCO data.

* ``full``: boxes kept.
* ``weak``: boxes turned into image labels (a class with a box is 1, every other class 0) and removed.
* ``unlabeled``: boxes (and any image labels) removed.
Removed boxes are counted in the report. Image fields other than the COCO ones (``patient_id``...) are
kept.
"""

import os

import numpy as np

from oxnet.data.format import SUPERVISION_LEVELS, is_finite_number

from .common import (
    ImportDataError,
    box_annotation,
    check_boxes_xywh,
    check_sizes,
    new_coco,
    read_json,
    resolve_paths,
)

__all__ = ["load_coco"]


def _is_id(v):
    """An image or category id: an integer or a string (not a bool, list or object)."""
    return isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))


def _checked_labels(labels, names, json_file, where):
    """The ``image_labels`` of a source image: {known category name: 1 | 0 | -1}."""
    if not isinstance(labels, dict):
        raise ImportDataError(
            json_file, where, f"'image_labels' must be an object, got {type(labels).__name__}"
        )
    for name, value in labels.items():
        if name not in names:
            raise ImportDataError(json_file, where, f"'image_labels' names unknown category {name!r}")
        if value not in (1, 0, -1) or not isinstance(value, int):
            raise ImportDataError(
                json_file, where, f"'image_labels' has value {value!r} for {name!r}; must be 1, 0 or -1"
            )
    return labels


def load_coco(json_file, images=None, allow_missing_images=False, supervision="full", clip_boxes=False):
    """Import a COCO detection JSON (plain or .gz) into an OXnet-COCO dict keeping its categories.

    Entries are named ``images[i]`` / ``annotations[i]`` (0-based, as in the file) in error messages.
    When image files are present their header size must match the JSON's ``width``/``height``.

    Returns:
        (dict, dict): the OXnet-COCO dict and a report of counts.
    """
    if supervision not in SUPERVISION_LEVELS:
        raise ValueError(f"supervision must be one of {SUPERVISION_LEVELS}, got {supervision!r}")
    src = read_json(json_file)
    if not (
        isinstance(src, dict)
        and isinstance(src.get("images"), list)
        and isinstance(src.get("categories"), list)
    ):
        raise ImportDataError(
            json_file, None, "not a COCO detection file (needs 'images' and 'categories' lists)"
        )
    anns = src.get("annotations", [])
    if not isinstance(anns, list):
        raise ImportDataError(json_file, None, "'annotations' must be a list")
    cats = _read_categories(src["categories"], json_file)
    index = _index_images(src["images"], json_file)
    W = np.array([img["width"] for img in src["images"]], np.float64)
    H = np.array([img["height"] for img in src["images"]], np.float64)
    check_sizes(W, H, np.array([f"images[{i}]" for i in range(len(W))], dtype=object), json_file)
    file_names = [img["file_name"] for img in src["images"]]
    sizes, n_missing = resolve_paths(file_names, images, allow_missing_images, json_file)
    _check_file_sizes(sizes, file_names, W, H, json_file)
    rows, img_idx, boxes, classes = _read_annotations(anns, index, cats, json_file)
    xywh, clipped = check_boxes_xywh(
        np.asarray(boxes, np.float64).reshape(-1, 4),
        W[img_idx],
        H[img_idx],
        np.array(rows, dtype=object),
        json_file,
        clip=clip_boxes,
    )

    coco = new_coco("coco", f"imported from {os.path.basename(os.fspath(json_file))}")
    if isinstance(src.get("info"), dict) and src["info"].get("description"):
        coco["info"]["description"] = src["info"]["description"]
    coco["categories"] = [{"id": cid, "name": n} for cid, n in cats.items()]
    per_image = {}
    for k, i in enumerate(img_idx):
        per_image.setdefault(int(i), []).append(k)
    for i, img in enumerate(src["images"]):
        box_ids = per_image.get(i, [])
        coco["images"].append(
            _convert_image(img, i, supervision, {cats[classes[k]] for k in box_ids}, cats, json_file)
        )
        if supervision == "full":
            for k in box_ids:
                coco["annotations"].append(
                    box_annotation(
                        len(coco["annotations"]) + 1,
                        i + 1,
                        classes[k],
                        xywh[k],
                        iscrowd=int(anns[k].get("iscrowd", 0)),
                    )
                )
    class_rows = {}
    for r, c in zip(rows, classes):
        class_rows.setdefault(cats[c], (str(json_file), r))
    report = {
        "images": len(src["images"]),
        "boxes": len(anns),
        "missing_images": n_missing,
        "boxes_clipped": clipped,
        "supervision": supervision,
        "boxes_removed": 0 if supervision == "full" else len(anns),
        "class_rows": class_rows,
    }
    return coco, report


def _read_categories(categories, json_file):
    """{category id: name} of the source's categories (integer ids, non-empty names, both unique)."""
    cats = {}
    for i, c in enumerate(categories):
        if not (
            isinstance(c, dict)
            and isinstance(c.get("id"), int)
            and not isinstance(c["id"], bool)
            and isinstance(c.get("name"), str)
            and c["name"]
        ):
            raise ImportDataError(
                json_file, f"categories[{i}]", "a category needs an integer 'id' and a 'name'"
            )
        if c["id"] in cats:
            raise ImportDataError(json_file, f"categories[{i}]", f"duplicate category id {c['id']}")
        if c["name"] in cats.values():
            raise ImportDataError(json_file, f"categories[{i}]", f"duplicate category name {c['name']!r}")
        cats[c["id"]] = c["name"]
    return cats


def _index_images(images, json_file):
    """{image id: position in ``images``}, checking each image's id, file_name (both unique) and numeric
    width and height."""
    index, names = {}, set()
    for i, img in enumerate(images):
        where = f"images[{i}]"
        if not (
            isinstance(img, dict)
            and _is_id(img.get("id"))
            and isinstance(img.get("file_name"), str)
            and img["file_name"]
        ):
            raise ImportDataError(
                json_file, where, "an image needs an 'id' (integer or string) and a non-empty 'file_name'"
            )
        if img["id"] in index:
            raise ImportDataError(
                json_file, where, f"duplicate image id {img['id']!r} (also images[{index[img['id']]}])"
            )
        if img["file_name"] in names:
            raise ImportDataError(json_file, where, f"duplicate file_name {img['file_name']!r}")
        for k in ("width", "height"):
            if not is_finite_number(img.get(k)):
                raise ImportDataError(json_file, where, f"'{k}' must be a number, got {img.get(k)!r}")
        index[img["id"]] = i
        names.add(img["file_name"])
    return index


def _check_file_sizes(sizes, file_names, W, H, json_file):
    """The image files found (``sizes``: (width, height) or None each) must have the JSON's sizes."""
    for i, size in enumerate(sizes):
        if size is not None and tuple(size) != (int(W[i]), int(H[i])):
            raise ImportDataError(
                json_file,
                f"images[{i}]",
                f"{file_names[i]} is {size[0]}x{size[1]} but the JSON says {W[i]:g}x{H[i]:g}",
            )


def _read_annotations(anns, index, cats, json_file):
    """Check the annotations against the images ``index`` and categories ``cats``.

    Returns:
        (list, np.ndarray, list, list): per annotation its place (``annotations[i]``), image position,
        bbox and category id.
    """
    rows, img_idx, boxes, classes = [], [], [], []
    for i, a in enumerate(anns):
        where = f"annotations[{i}]"
        if not isinstance(a, dict) or not _is_id(a.get("image_id")) or a["image_id"] not in index:
            got = a.get("image_id") if isinstance(a, dict) else a
            raise ImportDataError(json_file, where, f"'image_id' {got!r} is not an image id")
        if not _is_id(a.get("category_id")) or a["category_id"] not in cats:
            raise ImportDataError(
                json_file, where, f"'category_id' {a.get('category_id')!r} is not a category id"
            )
        crowd = a.get("iscrowd", 0)
        if crowd not in (0, 1) or not isinstance(crowd, int):
            raise ImportDataError(json_file, where, f"'iscrowd' must be 0 or 1, got {crowd!r}")
        b = a.get("bbox")
        if not isinstance(b, list) or len(b) != 4 or not all(is_finite_number(v) for v in b):
            raise ImportDataError(json_file, where, f"'bbox' must be 4 numbers [x, y, w, h], got {b!r}")
        rows.append(where)
        img_idx.append(index[a["image_id"]])
        boxes.append(b)
        classes.append(a["category_id"])
    return rows, np.asarray(img_idx, int), boxes, classes


def _convert_image(img, i, supervision, positive, cats, json_file):
    """The OXnet-COCO image of source image ``img`` (position ``i``), its other fields kept; ``positive``:
    the names of the classes it has boxes of (its labels when ``supervision`` is "weak")."""
    new = {k: v for k, v in img.items() if k not in ("supervision", "image_labels")}
    new.update(id=i + 1, supervision=supervision)
    if supervision == "weak":
        new["image_labels"] = {n: int(n in positive) for n in cats.values()}
    elif supervision == "full" and img.get("image_labels") is not None:
        new["image_labels"] = _checked_labels(
            img["image_labels"], set(cats.values()), json_file, f"images[{i}]"
        )
    return new
