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
    de = read_csv_table(data_entry, DATA_ENTRY_COLUMNS, DATA_ENTRY_OPTIONAL)
    if (de["image"] == "").any():
        raise ImportDataError(
            data_entry, int(de.loc[de["image"] == "", "line"].iloc[0]), "empty 'Image Index'"
        )
    _duplicates(de, "image", data_entry)
    empty = de["findings"] == ""
    if empty.any():
        raise ImportDataError(
            data_entry,
            int(de.loc[empty, "line"].iloc[0]),
            "empty 'Finding Labels' (use 'No Finding' for a negative image)",
        )
    if (de["patient"] == "").any():
        raise ImportDataError(
            data_entry, int(de.loc[de["patient"] == "", "line"].iloc[0]), "empty 'Patient ID'"
        )
    if "width" in de and "height" in de:
        ow = numeric_column(de, "width", data_entry)
        oh = numeric_column(de, "height", data_entry)
        check_sizes(ow, oh, de["line"].to_numpy(), data_entry, "OriginalImage[Width,Height]")
    else:
        ow = oh = None
    findings = pd.Series([[x.strip() for x in v.split("|")] for v in de["findings"]], index=de.index)
    bad = pd.Series([(NO_FINDING in f and len(f) > 1) or "" in f for f in findings], index=de.index)
    if bad.any():
        row = de[bad].iloc[0]
        raise ImportDataError(
            data_entry,
            int(row["line"]),
            f"bad 'Finding Labels' {row['findings']!r} (empty item or 'No Finding' with findings)",
        )
    classes = sorted({x for f in findings for x in f} - {NO_FINDING})

    boxes_by_image = {}
    report = {
        "data_entry_rows": len(de),
        "patients": int(de["patient"].nunique()),
        "no_finding": int((de["findings"] == NO_FINDING).sum()),
    }
    class_rows = {}
    exploded = de["line"].repeat(findings.str.len()).to_numpy()
    first_line = {}
    for c, line in zip((x for f in findings for x in f), exploded):
        first_line.setdefault(c, int(line))
    for c in classes:
        class_rows[c] = (os.fspath(data_entry), first_line[c])
    if bbox_list is not None:
        bb = read_csv_table(bbox_list, BBOX_COLUMNS)
        xywh = np.stack([numeric_column(bb, k, bbox_list) for k in "xywh"], axis=1)
        unknown = ~bb["image"].isin(de["image"])
        if unknown.any():
            raise ImportDataError(
                bbox_list,
                int(bb.loc[unknown, "line"].iloc[0]),
                f"image {bb.loc[unknown, 'image'].iloc[0]!r} is not in {data_entry} "
                f"({int(unknown.sum())} such rows)",
            )
        if (bb["label"] == "").any():
            raise ImportDataError(
                bbox_list, int(bb.loc[bb["label"] == "", "line"].iloc[0]), "empty 'Finding Label'"
            )
        renamed = bb["label"].isin(list(BOX_CLASS_RENAMES))
        report["box_class_renamed"] = {k: int((bb["label"] == k).sum()) for k in BOX_CLASS_RENAMES}
        bb["label"] = bb["label"].replace(BOX_CLASS_RENAMES)
        report["boxes"] = len(bb)
        report["boxed_images"] = int(bb["image"].nunique())
        report["box_rows_renamed"] = int(renamed.sum())
        for c in sorted(set(bb["label"]) - set(classes)):
            classes.append(c)
        for c in set(bb["label"]):
            class_rows.setdefault(c, (os.fspath(bbox_list), int(bb.loc[bb["label"] == c, "line"].iloc[0])))
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
        f = findings_list[i]
        if f == [NO_FINDING]:
            labels = {c: 0 for c in classes}
        else:
            labels = {c: 0 for c in classes} if absent == "negative" else {}
            labels.update({c: 1 for c in f})
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
            for r in box_rows:
                c = box_labels[r]
                if labels.get(c) != 1:
                    label_added += 1
                    labels[c] = 1
                coco["annotations"].append(
                    {
                        "id": len(coco["annotations"]) + 1,
                        "image_id": i + 1,
                        "category_id": cat_id[c],
                        "bbox": [round(float(v), 3) for v in xywh[r]],
                        "area": round(float(xywh[r, 2] * xywh[r, 3]), 3),
                        "iscrowd": 0,
                    }
                )
        if sup != "unlabeled":
            img["image_labels"] = labels
        coco["images"].append(img)
    report["labels_set_positive_from_boxes"] = label_added
    report["images"] = len(coco["images"])
    report["full_images"] = sum(img["supervision"] == "full" for img in coco["images"])
    report["class_rows"] = class_rows
    return coco, report
