"""ChestX-Det10 / ChestX-Det JSON lists.

Each entry: ``{"file_name", "syms": [class, ...], "boxes": [[x1, y1, x2, y2], ...]}``.

The images are NIH ChestX-ray14 PNGs (1024x1024, the size recorded when images are missing); boxes are
xyxy in their pixels. An entry with no boxes is a negative ("full" with no boxes).
"""

import numpy as np

from oxnet.data.format import is_finite_number

from .common import (
    IMAGE_EXTENSIONS,
    ImportDataError,
    check_boxes_xywh,
    new_coco,
    read_json,
    resolve_images,
)
from .nih import NIH_PNG_SIZE

__all__ = ["load_chestx_det"]


def load_chestx_det(json_file, images=None, allow_missing_images=False, clip_boxes=False):
    """Import a ChestX-Det(10) JSON (plain or .gz) into an OXnet-COCO dict in its vocabulary.

    Entries are named ``entry N`` (1-based) in error messages.

    Returns:
        (dict, dict): the OXnet-COCO dict and a report of counts.
    """
    entries = read_json(json_file)
    if not isinstance(entries, list):
        raise ImportDataError(
            json_file, None, f"expected a JSON list of entries, got {type(entries).__name__}"
        )
    seen = {}
    box_rows, box_list, box_classes = [], [], []
    for i, e in enumerate(entries, 1):
        where = f"entry {i}"
        if not isinstance(e, dict) or not {"file_name", "syms", "boxes"} <= set(e):
            raise ImportDataError(json_file, where, "an entry needs 'file_name', 'syms' and 'boxes'")
        name = e["file_name"]
        if not isinstance(name, str) or not name:
            raise ImportDataError(json_file, where, f"'file_name' must be a non-empty string, got {name!r}")
        if name in seen:
            raise ImportDataError(json_file, where, f"duplicate image {name!r} (also entry {seen[name]})")
        seen[name] = i
        syms, boxes = e["syms"], e["boxes"]
        if not isinstance(syms, list) or not isinstance(boxes, list) or len(syms) != len(boxes):
            raise ImportDataError(
                json_file, where, f"'syms' and 'boxes' must be lists of equal length ({name})"
            )
        for s, b in zip(syms, boxes):
            if not isinstance(s, str) or not s:
                raise ImportDataError(
                    json_file, where, f"class name must be a non-empty string, got {s!r} ({name})"
                )
            if not isinstance(b, list) or len(b) != 4 or not all(is_finite_number(v) for v in b):
                raise ImportDataError(
                    json_file, where, f"box must be 4 numbers [x1, y1, x2, y2], got {b!r} ({name})"
                )
            box_rows.append(i)
            box_list.append(b)
            box_classes.append(s)

    names = [e["file_name"] for e in entries]
    paths, sizes, n_missing = resolve_images(names, images, allow_missing_images, json_file, IMAGE_EXTENSIONS)
    width = np.array([s[0] if s else NIH_PNG_SIZE for s in sizes], dtype=np.float64)
    height = np.array([s[1] if s else NIH_PNG_SIZE for s in sizes], dtype=np.float64)
    xyxy = np.asarray(box_list, np.float64).reshape(-1, 4)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    img_idx = np.asarray(box_rows, int) - 1
    rows = [f"entry {r}" for r in box_rows]
    xywh, clipped = check_boxes_xywh(
        xywh, width[img_idx], height[img_idx], np.array(rows, dtype=object), json_file, clip=clip_boxes
    )

    classes = sorted(set(box_classes))
    cat_id = {c: i + 1 for i, c in enumerate(classes)}
    coco = new_coco("chestx_det", "ChestX-Det (Liu, Lian, Yu 2020) on NIH ChestX-ray14 images")
    coco["categories"] = [{"id": i, "name": c} for c, i in cat_id.items()]
    for i, name in enumerate(names):
        coco["images"].append(
            {
                "id": i + 1,
                "file_name": paths[i] or name,
                "width": int(width[i]),
                "height": int(height[i]),
                "supervision": "full",
                "source": "chestx_det",
            }
        )
    for k, (b, c) in enumerate(zip(xywh, box_classes)):
        coco["annotations"].append(
            {
                "id": k + 1,
                "image_id": int(img_idx[k]) + 1,
                "category_id": cat_id[c],
                "bbox": [float(v) for v in b],
                "area": float(b[2] * b[3]),
                "iscrowd": 0,
            }
        )
    class_rows = {}
    for r, c in zip(box_rows, box_classes):
        class_rows.setdefault(c, (str(json_file), f"entry {r}"))
    report = {
        "images": len(names),
        "boxes": len(box_list),
        "missing_images": n_missing,
        "boxes_clipped": clipped,
        "class_rows": class_rows,
    }
    return coco, report
