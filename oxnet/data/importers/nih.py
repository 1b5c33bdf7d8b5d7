"""NIH ChestX-ray14: ``Data_Entry_2017*.csv`` (image labels) and ``BBox_List_2017.csv`` (boxes).

* Image labels are the '|'-separated ``Finding Labels``; ``No Finding`` makes the image negative for
  every class. With ``absent="negative"`` (default, the NIH convention) a class not listed is negative
  (0); with ``absent="unknown"`` it is left out of ``image_labels``.
* Boxes are xywh in the pixels of the released 1024x1024 PNGs (not of ``OriginalImage[Width,Height]``,
  which is kept as ``original_width``/``original_height``): on the complete file the largest x+w is
  1012.1 and y+h 1022.0 while originals are ~2500 px. BBox_List's ``Infiltrate`` is renamed to
  Data_Entry's ``Infiltration``.
* Images with boxes are "full" (their Data_Entry labels kept in ``image_labels``), the others "weak"
  (or "unlabeled" with ``unboxed="unlabeled"``).
"""

import os

import numpy as np
import pandas as pd

from .common import (
    IMAGE_EXTENSIONS,
    ImportDataError,
    box_annotation,
    check_boxes_xywh,
    check_sizes,
    new_coco,
    numeric_column,
    read_csv_table,
    resolve_images,
)

__all__ = ["load_nih", "NIH_PNG_SIZE", "NO_FINDING"]

#: Side of the PNGs NIH released (every image was resized to 1024x1024).
NIH_PNG_SIZE = 1024
NO_FINDING = "No Finding"
#: BBox_List names that differ from Data_Entry's.
BOX_CLASS_RENAMES = {"Infiltrate": "Infiltration"}

DATA_ENTRY_COLUMNS = {
    "image": ["Image Index"],
    "findings": ["Finding Labels"],
    "patient": ["Patient ID"],
}
DATA_ENTRY_OPTIONAL = {
    "view": ["View Position"],
    "width": ["OriginalImage[Width", "OriginalImageWidth", "OriginalImage[Width,Height]"],
    "height": ["Height]", "OriginalImageHeight"],
    "followup": ["Follow-up #"],
}
BBOX_COLUMNS = {
    "image": ["Image Index"],
    "label": ["Finding Label"],
    "x": ["Bbox [x", "x"],
    "y": ["y"],
    "w": ["w"],
    "h": ["h]", "h"],
}


def _duplicates(df, column, path):
    dup = df[column].duplicated(keep=False)
    if dup.any():
        first = df[dup].iloc[0][column]
        lines = df.loc[df[column] == first, "line"].tolist()
        raise ImportDataError(
            path,
            lines[1],
            f"duplicate image id {first!r} (rows {lines}); "
            f"{int(df[column].duplicated().sum())} duplicates in all",
        )


def load_nih(
    data_entry,
    bbox_list=None,
    images=None,
    allow_missing_images=False,
    absent="negative",
    unboxed="weak",
    clip_boxes=False,
):
    """Import NIH ChestX-ray14 label files into an OXnet-COCO dict in NIH's vocabulary.

    Args:
        data_entry (str): ``Data_Entry_2017*.csv`` (or ``.csv.gz``).
        bbox_list (str or None): ``BBox_List_2017.csv`` (or ``.csv.gz``).
        images (str or None): folder with the PNGs (searched recursively).
        allow_missing_images (bool): record images absent from ``images`` (their size is taken as
            1024x1024, the size of every released PNG).
        absent (str): "negative" or "unknown": the label of a class an image's findings do not list.
        unboxed (str): "weak" or "unlabeled": supervision of images without boxes.
        clip_boxes (bool): clip boxes leaving the image instead of failing.

    Returns:
        (dict, dict): the OXnet-COCO dict and a report of counts.
    """
    if absent not in ("negative", "unknown"):
        raise ValueError(f"absent must be 'negative' or 'unknown', got {absent!r}")
    if unboxed not in ("weak", "unlabeled"):
        raise ValueError(f"unboxed must be 'weak' or 'unlabeled', got {unboxed!r}")
    de = _read_data_entry(data_entry)
    ow, oh = _original_sizes(de, data_entry)
    findings = _parse_findings(de, data_entry)
    classes = sorted({x for f in findings for x in f} - {NO_FINDING})
    report = {
        "data_entry_rows": len(de),
        "patients": int(de["patient"].nunique()),
        "no_finding": int((de["findings"] == NO_FINDING).sum()),
    }
    class_rows = _first_rows(de, findings, classes, data_entry)

    boxes_by_image = {}
    if bbox_list is not None:
        bb, xywh, counts = _read_bbox_list(bbox_list, de, data_entry)
        report.update(counts)
        _add_box_classes(bb, bbox_list, classes, class_rows)
        boxes_by_image = {k: v for k, v in bb.assign(i=np.arange(len(bb))).groupby("image")["i"]}
    cat_id = {c: i + 1 for i, c in enumerate(classes)}

    names = de["image"].tolist()
    paths, sizes, n_missing = resolve_images(
        names, images, allow_missing_images, data_entry, IMAGE_EXTENSIONS
    )
    width = np.array([s[0] if s else NIH_PNG_SIZE for s in sizes], dtype=np.float64)
    height = np.array([s[1] if s else NIH_PNG_SIZE for s in sizes], dtype=np.float64)
    report["missing_images"] = n_missing

    coco = new_coco("nih", "NIH ChestX-ray14 (Wang et al., CVPR 2017)")
    coco["categories"] = [{"id": i, "name": c} for c, i in cat_id.items()]
    if boxes_by_image:
        row_of = {n: i for i, n in enumerate(names)}
        img_idx = np.array([row_of[n] for n in bb["image"]])
        xywh, clipped = check_boxes_xywh(
            xywh, width[img_idx], height[img_idx], bb["line"].to_numpy(), bbox_list, clip=clip_boxes
        )
        report["boxes_clipped"] = clipped
    views = de["view"].tolist() if "view" in de else None
    patients = de["patient"].tolist()
    label_added = 0
    findings_list = findings.tolist()
    box_labels = bb["label"].tolist() if boxes_by_image else []
    for i, name in enumerate(names):
        labels = _image_labels(findings_list[i], classes, absent)
        box_rows = boxes_by_image.get(name)
        sup = "full" if box_rows is not None else unboxed
        img = {
            "id": i + 1,
            "file_name": paths[i] or name,
            "width": int(width[i]),
            "height": int(height[i]),
            "supervision": sup,
            "patient_id": patients[i],
            "source": "nih",
        }
        if views is not None:
            img["view"] = views[i]
        if ow is not None:
            img["original_width"], img["original_height"] = int(ow[i]), int(oh[i])
        if box_rows is not None:
            label_added += _add_boxes(coco, i + 1, box_rows, box_labels, xywh, cat_id, labels)
        if sup != "unlabeled":
            img["image_labels"] = labels
        coco["images"].append(img)
    report["labels_set_positive_from_boxes"] = label_added
    report["images"] = len(coco["images"])
    report["full_images"] = sum(img["supervision"] == "full" for img in coco["images"])
    report["class_rows"] = class_rows
    return coco, report


def _read_data_entry(path):
    """Data_Entry as a table, checked: every row has an image id (unique), findings and a patient id."""
    de = read_csv_table(path, DATA_ENTRY_COLUMNS, DATA_ENTRY_OPTIONAL)
    if (de["image"] == "").any():
        raise ImportDataError(path, int(de.loc[de["image"] == "", "line"].iloc[0]), "empty 'Image Index'")
    _duplicates(de, "image", path)
    empty = de["findings"] == ""
    if empty.any():
        raise ImportDataError(
            path,
            int(de.loc[empty, "line"].iloc[0]),
            "empty 'Finding Labels' (use 'No Finding' for a negative image)",
        )
    if (de["patient"] == "").any():
        raise ImportDataError(path, int(de.loc[de["patient"] == "", "line"].iloc[0]), "empty 'Patient ID'")
    return de


def _original_sizes(de, path):
    """(widths, heights) of the original images when Data_Entry has them (checked positive), else
    (None, None)."""
    if "width" in de and "height" in de:
        ow = numeric_column(de, "width", path)
        oh = numeric_column(de, "height", path)
        check_sizes(ow, oh, de["line"].to_numpy(), path, "OriginalImage[Width,Height]")
        return ow, oh
    return None, None


def _parse_findings(de, path):
    """Each row's '|'-separated findings as a list (a Series); an empty item or 'No Finding' together
    with findings is an error."""
    findings = pd.Series([[x.strip() for x in v.split("|")] for v in de["findings"]], index=de.index)
    bad = pd.Series([(NO_FINDING in f and len(f) > 1) or "" in f for f in findings], index=de.index)
    if bad.any():
        row = de[bad].iloc[0]
        raise ImportDataError(
            path,
            int(row["line"]),
            f"bad 'Finding Labels' {row['findings']!r} (empty item or 'No Finding' with findings)",
        )
    return findings


def _first_rows(de, findings, classes, path):
    """{class: (Data_Entry file, line of its first row)} for the ``classes`` of ``findings``."""
    exploded = de["line"].repeat(findings.str.len()).to_numpy()
    first_line = {}
    for c, line in zip((x for f in findings for x in f), exploded):
        first_line.setdefault(c, int(line))
    return {c: (os.fspath(path), first_line[c]) for c in classes}


def _read_bbox_list(path, de, data_entry):
    """BBox_List checked against Data_Entry ``de`` (every image in it, every row with a class), with its
    classes renamed to Data_Entry's (:data:`BOX_CLASS_RENAMES`).

    Returns:
        (DataFrame, np.ndarray, dict): the table, its [n, 4] xywh boxes and the report's box counts.
    """
    bb = read_csv_table(path, BBOX_COLUMNS)
    xywh = np.stack([numeric_column(bb, k, path) for k in "xywh"], axis=1)
    unknown = ~bb["image"].isin(de["image"])
    if unknown.any():
        raise ImportDataError(
            path,
            int(bb.loc[unknown, "line"].iloc[0]),
            f"image {bb.loc[unknown, 'image'].iloc[0]!r} is not in {data_entry} "
            f"({int(unknown.sum())} such rows)",
        )
    if (bb["label"] == "").any():
        raise ImportDataError(path, int(bb.loc[bb["label"] == "", "line"].iloc[0]), "empty 'Finding Label'")
    renamed = bb["label"].isin(list(BOX_CLASS_RENAMES))
    counts = {"box_class_renamed": {k: int((bb["label"] == k).sum()) for k in BOX_CLASS_RENAMES}}
    bb["label"] = bb["label"].replace(BOX_CLASS_RENAMES)
    counts["boxes"] = len(bb)
    counts["boxed_images"] = int(bb["image"].nunique())
    counts["box_rows_renamed"] = int(renamed.sum())
    return bb, xywh, counts


def _add_box_classes(bb, path, classes, class_rows):
    """Append BBox_List's classes that Data_Entry lacks to ``classes`` (sorted) and give every box class
    without a row in ``class_rows`` its first BBox_List row."""
    for c in sorted(set(bb["label"]) - set(classes)):
        classes.append(c)
    for c in set(bb["label"]):
        class_rows.setdefault(c, (os.fspath(path), int(bb.loc[bb["label"] == c, "line"].iloc[0])))


def _add_boxes(coco, image_id, rows, box_labels, xywh, cat_id, labels):
    """Append the annotations of an image's BBox_List ``rows`` to ``coco`` and set their classes
    positive in its ``labels``; returns how many labels that changed (classes its findings omit)."""
    added = 0
    for r in rows:
        c = box_labels[r]
        if labels.get(c) != 1:
            added += 1
            labels[c] = 1
        coco["annotations"].append(
            box_annotation(len(coco["annotations"]) + 1, image_id, cat_id[c], xywh[r], digits=3)
        )
    return added


def _image_labels(findings, classes, absent):
    """An image's labels from its findings: listed classes 1; the others 0 for 'No Finding' or
    ``absent="negative"``, left out for ``absent="unknown"``."""
    if findings == [NO_FINDING]:
        return {c: 0 for c in classes}
    labels = {c: 0 for c in classes} if absent == "negative" else {}
    labels.update({c: 1 for c in findings})
    return labels
