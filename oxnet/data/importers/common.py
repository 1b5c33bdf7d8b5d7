"""Shared helpers of the importers: strict CSV/JSON reading, numeric and box checks, image lookup, output.

Every problem in the input raises :class:`ImportDataError`, whose message names the file, the row (the
1-based line number in the file, the header being line 1) and the problem. Nothing is dropped silently:
whatever an importer leaves out on purpose is counted in its report.
"""

import csv
import gzip
import io
import json
import os
import re

import numpy as np
import pandas as pd

from oxnet.data.format import write_omni_coco

__all__ = [
    "ImportDataError",
    "open_text",
    "read_json",
    "read_csv_table",
    "numeric_column",
    "check_sizes",
    "check_boxes_xywh",
    "find_images",
    "read_image_size",
    "resolve_images",
    "resolve_paths",
    "new_coco",
    "box_annotation",
    "write_output",
    "IMAGE_EXTENSIONS",
    "DICOM_EXTENSIONS",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_EXTENSIONS = (".dcm", ".dicom", ".dic")
#: How far (pixels) a box may leave its image before it is an error (same as the format's tolerance).
BOX_TOLERANCE = 1.0
_SHOWN = 5


class ImportDataError(ValueError):
    """Bad importer input; the message names the file, the row and the problem.

    ``row`` is an int (a CSV line: 1-based, the header is line 1), a string naming the place in other
    formats (e.g. ``"entry 3"`` of a JSON list) or ``None`` for problems of the whole file.
    """

    def __init__(self, file, row, problem):
        self.file, self.row, self.problem = os.fspath(file), row, problem
        if row is None:
            where = self.file
        else:
            where = f"{self.file}, {row}" if isinstance(row, str) else f"{self.file}, row {row}"
        super().__init__(f"{where}: {problem}")


def _row(value):
    """A row for :class:`ImportDataError`: a line number (int) or a place name (str)."""
    return value if isinstance(value, str) else int(value)


def _shown(items, n=_SHOWN):
    items = list(items)
    text = ", ".join(str(x) for x in items[:n])
    return text + (f" (and {len(items) - n} more)" if len(items) > n else "")


def open_text(path):
    """Open a text file for reading, transparently gunzipping ``*.gz``; a UTF-8 BOM is removed."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file {path} does not exist")
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def read_json(path):
    """Parse a JSON or JSON.gz file; bad JSON raises :class:`ImportDataError` with the line number."""
    with open_text(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ImportDataError(path, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})") from None
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise ImportDataError(path, None, f"cannot read the file: {e}") from None
        except RecursionError:
            raise ImportDataError(path, None, "invalid JSON: nested too deeply") from None


def _norm(name):
    """Normalize a header name for matching: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def read_csv_table(path, columns, optional=()):
    """Read a CSV (plain or .gz) strictly; return a DataFrame of strings with a ``line`` column.

    Header cells are matched after normalization (case, spaces and punctuation ignored), so split
    headers such as NIH's ``OriginalImage[Width,Height]`` (two cells ``OriginalImage[Width`` and
    ``Height]``) are named by ``columns``. Empty trailing header cells (BBox_List's ``,,,``) are
    ignored. A row must have as many fields as the header; extra trailing fields are accepted only when
    empty. Blank lines are skipped.

    Args:
        columns (dict): ``{canonical name: [accepted header names]}`` that must be present.
        optional (dict or tuple): the same for columns that may be absent.

    Returns:
        pandas.DataFrame: canonical columns (str, empty string for an empty field) plus ``line`` (int);
        ``df.attrs["header"]`` maps canonical names to the file's header cells (for messages).
    """
    path = os.fspath(path)
    with open_text(path) as f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportDataError(path, 1, "the file is empty (no header)") from None
        except (csv.Error, OSError, EOFError, UnicodeDecodeError) as e:
            raise ImportDataError(path, 1, f"unreadable header: {e}") from None
        header = [h.strip() for h in header]
        while header and header[-1] == "":
            header.pop()
        n = len(header)
        rows, lines = [], []
        try:
            for row in reader:
                if not row or (len(row) == 1 and row[0].strip() == ""):
                    continue
                if len(row) != n:
                    if len(row) < n:
                        raise ImportDataError(
                            path, reader.line_num, f"expected {n} fields as in the header, got {len(row)}"
                        )
                    if any(v.strip() for v in row[n:]):
                        raise ImportDataError(
                            path,
                            reader.line_num,
                            f"expected {n} fields as in the header, got {len(row)} (extra values {row[n:]})",
                        )
                    row = row[:n]
                if any("\x00" in v for v in row):
                    raise ImportDataError(path, reader.line_num, "NUL character in a field (binary data?)")
                rows.append(row)
                lines.append(reader.line_num)
        except csv.Error as e:
            raise ImportDataError(path, reader.line_num, f"malformed CSV: {e}") from None
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise ImportDataError(path, reader.line_num + 1, f"cannot read the file: {e}") from None

    normalized = [_norm(h) for h in header]
    optional = dict(optional) if isinstance(optional, dict) else {k: [k] for k in optional}
    picked = {}
    for required, spec in ((True, columns), (False, optional)):
        for canonical, accepted in spec.items():
            hits = [i for i, h in enumerate(normalized) if h in {_norm(a) for a in accepted}]
            if not hits:
                if required:
                    raise ImportDataError(
                        path,
                        1,
                        f"column {canonical!r} is missing (accepted names: {accepted}; header: {header})",
                    )
                continue
            if len(hits) > 1:
                raise ImportDataError(
                    path, 1, f"column {canonical!r} appears {len(hits)} times in the header"
                )
            picked[canonical] = hits[0]
    array = np.array(rows, dtype=object).reshape(len(rows), n)
    df = pd.DataFrame({c: pd.Series(array[:, i], dtype=object).str.strip() for c, i in picked.items()})
    df["line"] = np.asarray(lines, dtype=np.int64)
    df.attrs["header"] = {c: header[i] for c, i in picked.items()}
    return df


def numeric_column(df, column, path, allow_empty=False, integer=False):
    """Convert a string column to float (NaN for empty when ``allow_empty``); reject anything else."""
    values = pd.to_numeric(df[column].mask(df[column] == ""), errors="coerce")
    empty = df[column] == ""
    bad = values.isna() & ~empty
    bad |= ~np.isfinite(values.fillna(0.0))
    if not allow_empty:
        bad |= empty
    if integer:
        bad |= values.notna() & (values != np.round(values))
    if bad.any():
        rows = df.loc[bad, "line"].tolist()
        kind = "an integer" if integer else "a number"
        name = df.attrs.get("header", {}).get(column, column)
        raise ImportDataError(
            path,
            rows[0],
            f"column {name!r} must be {kind}, got {df.loc[bad, column].iloc[0]!r} "
            f"({len(rows)} bad rows: {_shown(rows)})",
        )
    return values.to_numpy(dtype=np.float64)


def check_sizes(width, height, lines, path, what="image size"):
    """Reject non-positive widths/heights (vectorized); ``lines`` gives the row of each entry."""
    width, height = np.asarray(width, float), np.asarray(height, float)
    bad = ~(width > 0) | ~(height > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ImportDataError(
            path,
            _row(lines[i]),
            f"{what} must be positive, got {width[i]:g}x{height[i]:g} ({int(bad.sum())} bad rows: "
            f"{_shown(np.asarray(lines)[bad].tolist())})",
        )


def check_boxes_xywh(boxes, width, height, lines, path, clip=False):
    """Check boxes ``[n, 4]`` (xywh) against their images' sizes (NaN size = unknown, not checked).

    Width and height must be positive. A box leaving the image by more than :data:`BOX_TOLERANCE`
    pixels is an error; with ``clip=True`` it is clipped instead (and counted). Boxes within the
    tolerance are clipped silently to the image (sub-pixel rounding of the source).

    Returns:
        (np.ndarray, int): the (possibly clipped) boxes and how many were clipped beyond the tolerance.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    lines = np.asarray(lines)
    w, h = boxes[:, 2], boxes[:, 3]
    bad = ~(w > 0) | ~(h > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ImportDataError(
            path,
            _row(lines[i]),
            f"box {boxes[i].round(2).tolist()} (x, y, w, h) has non-positive width or height "
            f"({int(bad.sum())} such rows: {_shown(lines[bad].tolist())})",
        )
    W = np.broadcast_to(np.asarray(width, np.float64), len(boxes))
    H = np.broadcast_to(np.asarray(height, np.float64), len(boxes))
    known = np.isfinite(W) & np.isfinite(H)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 0] + w, boxes[:, 1] + h
    t = BOX_TOLERANCE
    with np.errstate(invalid="ignore"):
        outside = known & ((x1 < -t) | (y1 < -t) | (x2 > W + t) | (y2 > H + t))
    if outside.any() and not clip:
        i = int(np.flatnonzero(outside)[0])
        raise ImportDataError(
            path,
            _row(lines[i]),
            f"box {boxes[i].round(2).tolist()} (x, y, w, h) lies outside the {W[i]:g}x{H[i]:g} image "
            f"({int(outside.sum())} such rows: {_shown(lines[outside].tolist())}; --clip-boxes clips them)",
        )
    if known.any():
        kx1 = np.clip(x1, 0, np.where(known, W, np.inf))
        ky1 = np.clip(y1, 0, np.where(known, H, np.inf))
        kx2 = np.minimum(x2, np.where(known, W, np.inf))
        ky2 = np.minimum(y2, np.where(known, H, np.inf))
        empty = known & ((kx2 <= kx1) | (ky2 <= ky1))
        if empty.any():
            i = int(np.flatnonzero(empty)[0])
            raise ImportDataError(
                path, _row(lines[i]), f"box {boxes[i].round(2).tolist()} has no area inside the image"
            )
        boxes = np.stack([kx1, ky1, kx2 - kx1, ky2 - ky1], axis=1)
    return boxes, int(outside.sum())


def find_images(root, extensions):
    """Index the image files under ``root`` (recursively) by stem and by name: ``{key: relative path}``."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root} does not exist")
    index = {}
    extensions = tuple(e.lower() for e in extensions)
    for folder, _, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        for f in files:
            stem, ext = os.path.splitext(f)
            if ext.lower() in extensions:
                path = f if rel == "." else os.path.join(rel, f)
                index.setdefault(f, path)
                index.setdefault(stem, path)
    return index


def _dicom_size(path):
    """(width, height) of a DICOM; a file without (or with truncated uncompressed) pixel data is an error."""
    import pydicom

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds or "Rows" not in ds or "Columns" not in ds:
        raise ValueError("no pixel data (or no Rows/Columns): truncated or not an image")
    if not ds.file_meta.TransferSyntaxUID.is_compressed:
        expected = (
            int(ds.Rows)
            * int(ds.Columns)
            * int(ds.get("SamplesPerPixel", 1))
            * int(ds.get("NumberOfFrames", 1) or 1)
            * int(ds.BitsAllocated)
            + 7
        ) // 8
        if len(ds.PixelData) < expected:
            raise ValueError(
                f"pixel data has {len(ds.PixelData)} bytes, {expected} expected: the file is truncated"
            )
    return int(ds.Columns), int(ds.Rows)


def read_image_size(path):
    """(width, height) of an image file: PNG/JPEG from the header (PIL), DICOM via pydicom (the length of
    uncompressed pixel data is checked)."""
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in DICOM_EXTENSIONS:
            return _dicom_size(path)
        from PIL import Image

        with Image.open(path) as im:
            return im.size
    except Exception as e:  # any decoder failure is reported with the file
        raise ImportDataError(path, None, f"cannot read the image header: {type(e).__name__}: {e}") from None


def resolve_images(keys, images_dir, allow_missing, source_file, extensions, read_sizes=True):
    """Find the image file of each key (a file name or an id) under ``images_dir``.

    Returns:
        (list, list, int): relative path or ``None`` per key, ``(width, height)`` or ``None`` per key
        (read from the headers of found files when ``read_sizes``) and the number of missing files.

    Raises:
        ImportDataError: when images are missing and ``allow_missing`` is false (count and first names).
    """
    keys = list(keys)
    if images_dir is None:
        if not allow_missing:
            raise ImportDataError(
                source_file,
                None,
                "no --images folder given; pass --allow-missing-images to record the "
                "entries without image files",
            )
        return [None] * len(keys), [None] * len(keys), len(keys)
    index = find_images(images_dir, extensions)
    paths = [index.get(k, index.get(os.path.basename(k))) for k in keys]
    missing = [k for k, p in zip(keys, paths) if p is None]
    if missing and not allow_missing:
        raise ImportDataError(
            source_file,
            None,
            f"{len(missing)} of {len(keys)} images are missing under {images_dir}: {_shown(missing)} "
            "(--allow-missing-images records them without files)",
        )
    sizes = [None] * len(keys)
    if read_sizes:
        from tqdm import tqdm

        found = [i for i, p in enumerate(paths) if p is not None]
        for i in tqdm(found, desc="reading image headers", unit="img", disable=len(found) < 1000):
            sizes[i] = read_image_size(os.path.join(images_dir, paths[i]))
    return paths, sizes, len(missing)


def resolve_paths(paths, images_dir, allow_missing, source_file, read_sizes=True):
    """Like :func:`resolve_images` for paths relative to ``images_dir`` (no search by name).

    Returns:
        (list, int): ``(width, height)`` or ``None`` per path, and the number of missing files.
    """
    paths = list(paths)
    if images_dir is None:
        if not allow_missing:
            raise ImportDataError(
                source_file,
                None,
                "no --images folder given; pass --allow-missing-images to record the "
                "entries without image files",
            )
        return [None] * len(paths), len(paths)
    found = [os.path.isfile(os.path.join(images_dir, p)) for p in paths]
    missing = [p for p, ok in zip(paths, found) if not ok]
    if missing and not allow_missing:
        raise ImportDataError(
            source_file,
            None,
            f"{len(missing)} of {len(paths)} images are missing under {images_dir}: {_shown(missing)} "
            "(--allow-missing-images records them without files)",
        )
    sizes = [None] * len(paths)
    if read_sizes:
        from tqdm import tqdm

        for i in tqdm(
            [i for i, ok in enumerate(found) if ok],
            desc="reading image headers",
            unit="img",
            disable=len(paths) - len(missing) < 1000,
        ):
            sizes[i] = read_image_size(os.path.join(images_dir, paths[i]))
    return sizes, len(missing)


def new_coco(source, description):
    """An empty OXnet-COCO dict."""
    return {
        "info": {"description": description, "source": source},
        "images": [],
        "annotations": [],
        "categories": [],
    }


def box_annotation(aid, image_id, category_id, xywh, digits=None, iscrowd=0, **extra):
    """An OXnet-COCO annotation of box ``xywh``; its coordinates and area are rounded to ``digits``
    decimals unless ``digits`` is None. ``extra`` fields (e.g. ``rad_id``) come last."""
    area = float(xywh[2] * xywh[3])
    return {
        "id": aid,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [float(v) if digits is None else round(float(v), digits) for v in xywh],
        "area": area if digits is None else round(area, digits),
        "iscrowd": iscrowd,
        **extra,
    }


def write_output(path, coco, image_root=None):
    """Validate and write an importer's output atomically.

    Images whose size is unknown (files missing, size not in the source) keep ``width``/``height``
    ``None``: such a file lists the annotations but cannot be trained on until the images are present
    and the importer is run again with ``--images``.
    """
    from oxnet.data.format import validate_omni_coco

    unknown = sum(1 for img in coco["images"] if img.get("width") is None or img.get("height") is None)
    if unknown:
        validate_omni_coco(coco, path, image_root, check_files=False, allow_unknown_sizes=True)
        write_omni_coco(path, coco, validate=False)
    else:
        write_omni_coco(path, coco, validate=True)
    return unknown
