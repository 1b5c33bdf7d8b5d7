"""CheXpert / MIMIC-CXR style label tables as weakly labeled data.

One row per image: a path column and one column per class with ``1`` (positive), ``0`` (negative),
``-1`` (uncertain) or blank (unknown; ``1.0``/``0.0``/``-1.0`` accepted). A ``No Finding`` column is not a
class: where it is 1, the blank classes of that row become negative (0). Any other value is an error.

MIMIC-CXR's ``mimic-cxr-2.0.0-chexpert.csv`` is per study: join it with the metadata to get one row
per image with a path column first.
"""

import re

import numpy as np
import pandas as pd

from .common import ImportDataError, new_coco, read_csv_table, resolve_paths

__all__ = ["load_labels_csv", "CHEXPERT_CLASSES"]

#: The 13 CheXpert observations besides "No Finding".
CHEXPERT_CLASSES = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
_VALUES = {"1": 1, "1.0": 1, "0": 0, "0.0": 0, "-1": -1, "-1.0": -1, "": None}
_PATIENT_IN_PATH = re.compile(r"patient(\d+)")


def load_labels_csv(
    csv_file,
    images=None,
    allow_missing_images=False,
    path_column="Path",
    label_columns=None,
    patient_column=None,
    view_column=None,
    no_finding_column="No Finding",
    frontal_only=False,
):
    """Import a label table into an OXnet-COCO dict of "weak" images.

    Args:
        path_column (str): column with the image path (relative to ``images``).
        label_columns (list[str] or None): class columns; default: the CheXpert observations present.
        patient_column (str or None): patient id column; default: ``patient_id``/``subject_id`` if present,
            else the ``patientNNNNN`` part of CheXpert paths.
        view_column (str or None): view column; default ``AP/PA`` or ``ViewPosition`` if present.
        frontal_only (bool): keep only rows whose ``Frontal/Lateral`` is ``Frontal`` (others counted).

    Returns:
        (dict, dict): the OXnet-COCO dict and a report of counts.
    """
    header = _read_header(csv_file)
    label_columns, wanted, optional = _table_columns(
        header, csv_file, path_column, label_columns, patient_column, view_column, no_finding_column
    )
    df = read_csv_table(csv_file, wanted, optional)
    lines = df["line"].to_numpy()
    _check_paths(df, lines, csv_file, path_column)
    report = {"rows": len(df), "dropped_not_frontal": 0}
    if frontal_only:
        if "frontal" not in df:
            raise ImportDataError(csv_file, 1, "--frontal-only needs a 'Frontal/Lateral' column")
        keep = (df["frontal"] == "Frontal").to_numpy()
        report["dropped_not_frontal"] = int((~keep).sum())
        df, lines = df[keep].reset_index(drop=True), lines[keep]
    values = _label_values(df, lines, label_columns, csv_file)
    nf = values.pop("No Finding", None)

    patients = _patients(df)
    sizes, n_missing = resolve_paths(df["path"].tolist(), images, allow_missing_images, csv_file)
    coco = new_coco("labels_csv", f"image labels from {csv_file}")
    coco["categories"] = [{"id": i + 1, "name": c} for i, c in enumerate(label_columns)]
    views = df["view"].tolist() if "view" in df else None
    filled = 0
    for i in range(len(df)):
        labels = {c: values[c][i] for c in label_columns if values[c][i] is not None}
        if nf is not None and nf[i] == 1:
            filled += _fill_negatives(labels, label_columns)
        w, h = sizes[i] if sizes[i] else (None, None)
        img = {
            "id": i + 1,
            "file_name": df["path"].iat[i],
            "width": w,
            "height": h,
            "supervision": "weak",
            "image_labels": labels,
            "source": "labels_csv",
        }
        if patients[i] is not None:
            img["patient_id"] = patients[i]
        if views is not None and views[i]:
            img["view"] = views[i]
        coco["images"].append(img)
    report.update(
        images=len(coco["images"]),
        missing_images=n_missing,
        negatives_from_no_finding=filled,
        labels={
            c: {str(v): sum(x == v for x in values[c] if x is not None) for v in (1, 0, -1)}
            for c in label_columns
        },
        class_rows={c: (str(csv_file), 1) for c in label_columns},
    )
    return coco, report


def _check_paths(df, lines, csv_file, path_column):
    """Every row names an image, and no image twice."""
    if (df["path"] == "").any():
        empty = (df["path"] == "").to_numpy()
        raise ImportDataError(csv_file, int(lines[empty][0]), f"empty {path_column!r}")
    dup = df["path"].duplicated().to_numpy()
    if dup.any():
        raise ImportDataError(
            csv_file, int(lines[dup][0]), f"duplicate image {df['path'].iloc[np.flatnonzero(dup)[0]]!r}"
        )


def _fill_negatives(labels, label_columns):
    """Set the classes an image's ``labels`` leave blank to 0 (its "No Finding" is 1); returns how many."""
    filled = 0
    for c in label_columns:
        if c not in labels:
            labels[c] = 0
            filled += 1
    return filled


def _read_header(csv_file):
    """The header cells of a label table (stripped, empty trailing cells removed)."""
    import csv

    from .common import open_text

    with open_text(csv_file) as f:
        try:
            header = [h.strip() for h in next(csv.reader(f, strict=True), [])]
        except (csv.Error, OSError, EOFError, UnicodeDecodeError) as e:
            raise ImportDataError(csv_file, 1, f"unreadable header: {e}") from None
    while header and header[-1] == "":
        header.pop()
    return header


def _table_columns(
    header, csv_file, path_column, label_columns, patient_column, view_column, no_finding_column
):
    """The class columns and :func:`read_csv_table`'s required and optional columns of a label table:
    the given column names, checked against ``header``, or the defaults of :func:`load_labels_csv`.

    Returns:
        (list, dict, dict): label columns, required columns, optional columns.
    """
    if path_column not in header:
        raise ImportDataError(csv_file, 1, f"path column {path_column!r} is missing (header: {header})")
    if label_columns is None:
        label_columns = [c for c in CHEXPERT_CLASSES if c in header]
        if not label_columns:
            raise ImportDataError(
                csv_file, 1, "no CheXpert observation columns; name the classes with --label-columns"
            )
    missing = [c for c in label_columns if c not in header]
    if missing:
        raise ImportDataError(csv_file, 1, f"label columns {missing} are missing (header: {header})")
    if patient_column is None:
        patient_column = next((c for c in ("patient_id", "subject_id", "Patient ID") if c in header), None)
    if view_column is None:
        view_column = next((c for c in ("AP/PA", "ViewPosition", "View Position") if c in header), None)
    wanted = {"path": [path_column], **{f"label:{c}": [c] for c in label_columns}}
    optional = {}
    if patient_column:
        wanted["patient"] = [patient_column]
    if view_column:
        optional["view"] = [view_column]
    if no_finding_column in header:
        optional["no_finding"] = [no_finding_column]
    if "Frontal/Lateral" in header:
        optional["frontal"] = ["Frontal/Lateral"]
    return label_columns, wanted, optional


def _label_values(df, lines, label_columns, csv_file):
    """{column: per-row 1, 0, -1 or None (blank)} of the class columns and, when present, of the
    "No Finding" column (under that name); any other value is an error."""
    values = {}
    for c in label_columns + (["No Finding"] if "no_finding" in df else []):
        col = df["no_finding"] if c == "No Finding" else df[f"label:{c}"]
        mapped = np.array([_VALUES.get(v, "bad") for v in col], dtype=object)
        bad = mapped == "bad"
        if bad.any():
            raise ImportDataError(
                csv_file,
                int(lines[bad][0]),
                f"column {c!r} must be 1, 0, -1 or blank, got "
                f"{col.iloc[np.flatnonzero(bad)[0]]!r} ({int(bad.sum())} bad rows)",
            )
        values[c] = mapped
    return values


def _patients(df):
    """Per row the patient id: the patient column's, else ``patientNNNNN`` from a CheXpert path, else
    None."""
    if "patient" in df:
        return df["patient"].tolist()
    found = df["path"].str.extract(_PATIENT_IN_PATH, expand=False)
    return [None if pd.isna(p) else f"patient{p}" for p in found]
