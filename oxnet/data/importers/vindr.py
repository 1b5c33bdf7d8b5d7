"""VinDr-CXR (VinBigData) ``train.csv``: one row per reader finding, three readers per image.

Columns: image_id, class_name, class_id, rad_id, x_min, y_min, x_max, y_max (DICOM pixels). A
"No finding" row has no box; every other row must have one.

Fusion rule (default ``fusion="wbf"``): for each image, the boxes of all readers are fused per class
with weighted boxes fusion (``ensemble_boxes.weighted_boxes_fusion``, Solovyev et al. 2021): each
reader is one model with weight 1, each box has score 1, boxes of one class overlapping with IoU >
``iou_thr`` (0.55) are averaged. Each fused box records ``num_readers``, the number of readers whose
boxes it merged; ``min_readers`` (default 1: keep every finding) drops fused boxes with fewer readers,
counted in the report. ``fusion="none"`` keeps every reader's box with its ``rad_id``.
"""

import numpy as np

from .common import (
    DICOM_EXTENSIONS,
    IMAGE_EXTENSIONS,
    ImportDataError,
    box_annotation,
    check_boxes_xywh,
    new_coco,
    numeric_column,
    read_csv_table,
    resolve_images,
)

__all__ = ["load_vindr", "NO_FINDING"]

NO_FINDING = "No finding"
COLUMNS = {
    "image": ["image_id"],
    "class_name": ["class_name"],
    "class_id": ["class_id"],
    "rad_id": ["rad_id"],
    "x_min": ["x_min"],
    "y_min": ["y_min"],
    "x_max": ["x_max"],
    "y_max": ["y_max"],
}


def _fuse(xyxy, labels, readers, iou_thr):
    """Weighted boxes fusion of one image's boxes; returns (xyxy, labels, num_readers)."""
    from ensemble_boxes import weighted_boxes_fusion

    names = sorted(set(readers))
    # WBF needs [0, 1] coordinates; IoU is shift and scale invariant (the origin matters for boxes of
    # images of unknown size, which may have negative coordinates)
    origin = float(xyxy.min())
    scale = float(xyxy.max()) - origin + 1.0
    boxes_list, scores_list, labels_list = [], [], []
    for r in names:
        m = readers == r
        boxes_list.append(((xyxy[m] - origin) / scale).tolist())
        scores_list.append([1.0] * int(m.sum()))
        labels_list.append(labels[m].tolist())
    boxes, scores, out_labels = weighted_boxes_fusion(
        boxes_list, scores_list, labels_list, iou_thr=iou_thr, skip_box_thr=0.0, conf_type="avg"
    )
    num = np.rint(np.asarray(scores) * len(names)).astype(int)
    return np.asarray(boxes, np.float64) * scale + origin, np.asarray(out_labels).astype(int), num


def load_vindr(
    train_csv,
    images=None,
    allow_missing_images=False,
    fusion="wbf",
    iou_thr=0.55,
    min_readers=1,
    clip_boxes=False,
):
    """Import VinDr-CXR ``train.csv`` into an OXnet-COCO dict in VinDr's vocabulary (all images "full").

    Args:
        train_csv (str): ``train.csv`` or ``train.csv.gz``.
        images (str or None): folder of the DICOMs (``<image_id>.dicom``; searched recursively).
        allow_missing_images (bool): record missing images; their size is unknown (``None``).
        fusion (str): "wbf" (fuse the readers' boxes, see the module docstring) or "none".
        iou_thr (float): IoU threshold of the fusion.
        min_readers (int): fused boxes merged from fewer readers are dropped (and counted).
        clip_boxes (bool): clip boxes leaving the image instead of failing.

    Returns:
        (dict, dict): the OXnet-COCO dict and a report of counts.
    """
    if fusion not in ("wbf", "none"):
        raise ValueError(f"fusion must be 'wbf' or 'none', got {fusion!r}")
    df, class_id = _read_rows(train_csv)
    lines = df["line"].to_numpy()
    coords, has_box, no_finding = _read_boxes(df, train_csv)

    image_ids = list(dict.fromkeys(df["image"]))
    row_of = {k: i for i, k in enumerate(image_ids)}
    img_idx = df["image"].map(row_of).to_numpy()
    paths, sizes, n_missing = resolve_images(
        image_ids, images, allow_missing_images, train_csv, DICOM_EXTENSIONS + IMAGE_EXTENSIONS
    )
    width = np.array([s[0] if s else np.nan for s in sizes], dtype=np.float64)
    height = np.array([s[1] if s else np.nan for s in sizes], dtype=np.float64)
    xywh, clipped = _checked_xywh(
        coords, has_box, width[img_idx], height[img_idx], lines, train_csv, clip_boxes
    )
    classes, class_rows = _finding_classes(df, class_id, no_finding, train_csv)
    cat_id = {c: i + 1 for i, c in enumerate(classes)}

    readers = df["rad_id"].to_numpy()
    names = df["class_name"].to_numpy()
    order = np.argsort(img_idx, kind="stable")
    bounds = np.searchsorted(img_idx[order], np.arange(len(image_ids) + 1))
    coco = new_coco("vindr", "VinDr-CXR (Nguyen et al., Scientific Data 2022)")
    coco["categories"] = [{"id": i, "name": c} for c, i in cat_id.items()]
    report = {
        "rows": len(df),
        "images": len(image_ids),
        "boxes_before_fusion": int(has_box.sum()),
        "missing_images": n_missing,
        "boxes_clipped": clipped,
        "fusion": fusion,
        "dropped_below_min_readers": 0,
    }
    all_no_finding = 0
    from tqdm import tqdm

    for i, key in enumerate(tqdm(image_ids, desc="VinDr images", unit="img", mininterval=2, disable=None)):
        rows = order[bounds[i] : bounds[i + 1]]
        img_readers = sorted(set(readers[rows]))
        nf_readers = sorted(set(readers[rows][no_finding[rows]]))
        all_no_finding += len(nf_readers) == len(img_readers) and not has_box[rows].any()
        w, h = width[i], height[i]
        img = {
            "id": i + 1,
            "file_name": paths[i] or f"{key}.dicom",
            "width": None if np.isnan(w) else int(w),
            "height": None if np.isnan(h) else int(h),
            "supervision": "full",
            "source": "vindr",
            "readers": img_readers,
            "readers_no_finding": nf_readers,
        }
        coco["images"].append(img)
        rows = rows[has_box[rows]]
        if not len(rows):
            continue
        found, dropped = _image_boxes(rows, xywh, names, readers, cat_id, fusion, iou_thr, min_readers)
        report["dropped_below_min_readers"] += dropped
        for box, c, extra in found:
            coco["annotations"].append(
                box_annotation(len(coco["annotations"]) + 1, i + 1, c, box, digits=2, **extra)
            )
    report["images_all_readers_no_finding"] = int(all_no_finding)
    report["boxes"] = len(coco["annotations"])
    report["class_rows"] = class_rows
    return coco, report


def _read_rows(train_csv):
    """``train.csv`` as a table, checked: rows present, no empty image, class or reader, one
    ``class_id`` per class name. Returns (table, class_id per row)."""
    df = read_csv_table(train_csv, COLUMNS)
    if not len(df):
        raise ImportDataError(train_csv, None, "the file has a header but no rows")
    lines = df["line"].to_numpy()
    for col in ("image", "class_name", "rad_id"):
        empty = df[col] == ""
        if empty.any():
            raise ImportDataError(train_csv, int(lines[empty.to_numpy()][0]), f"empty {col!r}")
    class_id = numeric_column(df, "class_id", train_csv, integer=True).astype(int)
    pairs = df.assign(cid=class_id).groupby("class_name")["cid"].unique()
    for name, ids in pairs.items():
        if len(ids) > 1:
            rows = df.loc[(df["class_name"] == name) & (class_id != ids[0]), "line"]
            raise ImportDataError(
                train_csv,
                int(rows.iloc[0]),
                f"class {name!r} has several class_id values {sorted(ids.tolist())}",
            )
    return df, class_id


def _read_boxes(df, train_csv):
    """The rows' boxes, checked: a finding row has a whole box, a "No finding" row none, and no row
    repeats another.

    Returns:
        (np.ndarray, np.ndarray, np.ndarray): [n, 4] x_min, y_min, x_max, y_max (NaN without a box),
        whether each row has a box and whether it is a "No finding" row.
    """
    lines = df["line"].to_numpy()
    coords = np.stack(
        [numeric_column(df, c, train_csv, allow_empty=True) for c in ("x_min", "y_min", "x_max", "y_max")],
        axis=1,
    )
    has_box = np.isfinite(coords).all(axis=1)
    partial = np.isfinite(coords).any(axis=1) & ~has_box
    no_finding = (df["class_name"] == NO_FINDING).to_numpy()
    for bad, problem in (
        (partial, "a box needs all of x_min, y_min, x_max, y_max"),
        (no_finding & has_box, f"a {NO_FINDING!r} row must not have a box"),
        (~no_finding & ~has_box, "a finding row needs a box (x_min, y_min, x_max, y_max)"),
    ):
        if bad.any():
            raise ImportDataError(train_csv, int(lines[bad][0]), f"{problem} ({int(bad.sum())} such rows)")
    dup = df.duplicated(["image", "class_name", "rad_id", "x_min", "y_min", "x_max", "y_max"], keep="first")
    if dup.any():
        raise ImportDataError(
            train_csv,
            int(lines[dup.to_numpy()][0]),
            f"duplicate row (same image, class, reader and box; {int(dup.sum())} such rows)",
        )
    return coords, has_box, no_finding


def _checked_xywh(coords, has_box, width, height, lines, train_csv, clip_boxes):
    """The rows' boxes as xywh, those present checked against (or clipped to) their image's ``width``
    and ``height`` (per row; NaN: unknown). Returns (xywh, number clipped)."""
    xywh = np.concatenate([coords[:, :2], coords[:, 2:] - coords[:, :2]], axis=1)
    box_rows = np.flatnonzero(has_box)
    checked, clipped = check_boxes_xywh(
        xywh[box_rows], width[box_rows], height[box_rows], lines[box_rows], train_csv, clip=clip_boxes
    )
    xywh[box_rows] = checked
    return xywh, clipped


def _finding_classes(df, class_id, no_finding, train_csv):
    """The finding classes in ``class_id`` order and {class: (file, line of its first row)}."""
    findings = df.loc[~no_finding].assign(cid=class_id[~no_finding])
    first = findings.groupby("class_name")[["cid", "line"]].first()
    classes = sorted(first.index, key=lambda c: int(first.at[c, "cid"]))
    return classes, {c: (str(train_csv), int(first.at[c, "line"])) for c in classes}


def _image_boxes(rows, xywh, names, readers, cat_id, fusion, iou_thr, min_readers):
    """The boxes of one image's finding ``rows``: every reader's (``fusion="none"``) or the readers' boxes
    fused, less those fused from fewer than ``min_readers`` readers.

    Returns:
        (list, int): (xywh box, category id, extra annotation fields) per box, and how many fused boxes
        were dropped.
    """
    if fusion == "none":
        return [(xywh[r], cat_id[names[r]], {"rad_id": str(readers[r])}) for r in rows], 0
    labels = np.array([cat_id[n] for n in names[rows]])
    found, dropped = [], 0
    for box, c, n in _fuse_xywh(xywh[rows], labels, readers[rows], iou_thr):
        if n < min_readers:
            dropped += 1
            continue
        found.append((box, int(c), {"num_readers": int(n)}))
    return found, dropped


def _fuse_xywh(xywh, labels, readers, iou_thr):
    """:func:`_fuse` of xywh boxes: (xywh box, label, num_readers) per fused box."""
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    fused, fused_labels, num = _fuse(xyxy, labels, readers, iou_thr)
    return [
        (np.array([b[0], b[1], b[2] - b[0], b[3] - b[1]]), c, n) for b, c, n in zip(fused, fused_labels, num)
    ]
