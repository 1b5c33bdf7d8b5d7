"""RSNA Pneumonia Detection Challenge ``stage_2_train_labels.csv``: one row per box.

Columns: patientId, x, y, width, height, Target. ``Target`` 1 rows carry a "Lung Opacity" box (xywh in
DICOM pixels); a patient with a single ``Target`` 0 row and no box is a negative. One DICOM per patient
(``<patientId>.dcm``); the challenge's DICOMs are all 1024x1024 (they are NIH ChestX-ray14 images), the
size recorded when images are missing.
"""

import numpy as np

from .common import (
    DICOM_EXTENSIONS,
    IMAGE_EXTENSIONS,
    ImportDataError,
    check_boxes_xywh,
    new_coco,
    numeric_column,
    read_csv_table,
    resolve_images,
)

__all__ = ["load_rsna", "RSNA_CLASS", "RSNA_SIZE"]

RSNA_CLASS = "Lung Opacity"
RSNA_SIZE = 1024
COLUMNS = {
    "patient": ["patientId"],
    "x": ["x"],
    "y": ["y"],
    "w": ["width"],
    "h": ["height"],
    "target": ["Target"],
}


def load_rsna(labels_csv, images=None, allow_missing_images=False, clip_boxes=False):
    """Import RSNA pneumonia labels into an OXnet-COCO dict (class "Lung Opacity", all images "full").

    Returns:
        (dict, dict): the OXnet-COCO dict and a report of counts.
    """
    df = read_csv_table(labels_csv, COLUMNS)
    if not len(df):
        raise ImportDataError(labels_csv, None, "the file has a header but no rows")
    lines = df["line"].to_numpy()
    empty = (df["patient"] == "").to_numpy()
    if empty.any():
        raise ImportDataError(labels_csv, int(lines[empty][0]), "empty 'patientId'")
    target = numeric_column(df, "target", labels_csv, integer=True)
    bad = (target != 0) & (target != 1)
    if bad.any():
        raise ImportDataError(
            labels_csv, int(lines[bad][0]), f"'Target' must be 0 or 1, got {target[bad][0]:g}"
        )
    xywh = np.stack([numeric_column(df, k, labels_csv, allow_empty=True) for k in "xywh"], axis=1)
    has_box = np.isfinite(xywh).all(axis=1)
    for bad, problem in (
        (np.isfinite(xywh).any(axis=1) & ~has_box, "a box needs all of x, y, width, height"),
        ((target == 1) & ~has_box, "a Target 1 row needs a box"),
        ((target == 0) & has_box, "a Target 0 row must not have a box"),
    ):
        if bad.any():
            raise ImportDataError(labels_csv, int(lines[bad][0]), f"{problem} ({int(bad.sum())} such rows)")
    per_patient = df.assign(t=target).groupby("patient")["t"]
    mixed = per_patient.nunique() > 1
    if mixed.any():
        p = mixed[mixed].index[0]
        raise ImportDataError(
            labels_csv,
            int(df.loc[df["patient"] == p, "line"].iloc[-1]),
            f"patient {p!r} has both Target 0 and Target 1 rows",
        )
    dup = df.duplicated(["patient", "x", "y", "w", "h"], keep="first").to_numpy()
    if dup.any():
        raise ImportDataError(
            labels_csv,
            int(lines[dup][0]),
            f"duplicate row for patient {df['patient'].iloc[np.flatnonzero(dup)[0]]!r} "
            f"({int(dup.sum())} duplicate rows)",
        )

    patients = list(dict.fromkeys(df["patient"]))
    row_of = {p: i for i, p in enumerate(patients)}
    img_idx = df["patient"].map(row_of).to_numpy()
    paths, sizes, n_missing = resolve_images(
        patients, images, allow_missing_images, labels_csv, DICOM_EXTENSIONS + IMAGE_EXTENSIONS
    )
    width = np.array([s[0] if s else RSNA_SIZE for s in sizes], dtype=np.float64)
    height = np.array([s[1] if s else RSNA_SIZE for s in sizes], dtype=np.float64)
    rows = np.flatnonzero(has_box)
    boxes, clipped = check_boxes_xywh(
        xywh[rows], width[img_idx[rows]], height[img_idx[rows]], lines[rows], labels_csv, clip=clip_boxes
    )

    coco = new_coco("rsna", "RSNA Pneumonia Detection Challenge (Shih et al., Radiology AI 2019)")
    coco["categories"] = [{"id": 1, "name": RSNA_CLASS}]
    for i, p in enumerate(patients):
        coco["images"].append(
            {
                "id": i + 1,
                "file_name": paths[i] or f"{p}.dcm",
                "width": int(width[i]),
                "height": int(height[i]),
                "supervision": "full",
                "patient_id": p,
                "source": "rsna",
            }
        )
    for r, b in zip(rows, boxes):
        coco["annotations"].append(
            {
                "id": len(coco["annotations"]) + 1,
                "image_id": int(img_idx[r]) + 1,
                "category_id": 1,
                "bbox": [float(v) for v in b],
                "area": float(b[2] * b[3]),
                "iscrowd": 0,
            }
        )
    report = {
        "rows": len(df),
        "patients": len(patients),
        "boxes": len(rows),
        "positive_patients": int(len(set(df["patient"].to_numpy()[rows]))),
        "missing_images": n_missing,
        "boxes_clipped": clipped,
        "class_rows": {RSNA_CLASS: (str(labels_csv), int(lines[rows][0]))} if len(rows) else {},
    }
    return coco, report
