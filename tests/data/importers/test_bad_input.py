"""Bad input: a clear ImportDataError naming the file, the row and the problem; nothing dropped silently."""

import json
import pathlib

import numpy as np
import pytest

from oxnet.data.importers import (
    ImportDataError,
    apply_class_map,
    load_chestx_det,
    load_class_map,
    load_coco,
    load_labels_csv,
    load_nih,
    load_rsna,
    load_vindr,
)

DATASETS = pathlib.Path(__file__).resolve().parents[3] / "datasets"

DE_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
)
DE_ROWS = [
    "a.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143\n",
    "b.png,No Finding,0,2,58,M,AP,2500,2048,0.143,0.143\n",
    "c.png,Effusion|Mass,0,2,58,M,AP,2500,2048,0.143,0.143\n",
]
BB_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,\r\n"
BB_ROWS = ["a.png,Cardiomegaly,300.5,400.25,450,380\r\n", "c.png,Infiltrate,10,20,30,40\r\n"]


def _write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding)
    return path


def _nih(tmp_path, de_rows=DE_ROWS, bb_rows=BB_ROWS, de_header=DE_HEADER, **kw):
    de = _write(tmp_path / "Data_Entry.csv", de_header + "".join(de_rows))
    bb = _write(tmp_path / "BBox_List.csv", BB_HEADER + "".join(bb_rows))
    return load_nih(de, bb, allow_missing_images=True, **kw), de, bb


def _raises(match_file, row, problem):
    return pytest.raises(ImportDataError, match=rf"{match_file}, row {row}: .*{problem}")


def test_valid_synthetic_nih(tmp_path):
    (coco, report), _, _ = _nih(tmp_path)
    assert [img["supervision"] for img in coco["images"]] == ["full", "weak", "full"]
    assert report["box_rows_renamed"] == 1 and len(coco["annotations"]) == 2
    assert coco["images"][1]["image_labels"] == {n: 0 for n in coco["images"][1]["image_labels"]}


def test_bom_and_split_header_parse_the_same(tmp_path):
    (plain, _), _, _ = _nih(tmp_path)
    de = _write(tmp_path / "bom.csv", DE_HEADER + "".join(DE_ROWS), encoding="utf-8-sig")
    assert de.read_bytes().startswith(b"\xef\xbb\xbf")
    coco, _ = load_nih(de, tmp_path / "BBox_List.csv", allow_missing_images=True)
    assert coco["images"] == plain["images"]


def test_odd_header_missing_column(tmp_path):
    with _raises("Data_Entry.csv", 1, "column 'patient' is missing"):
        _nih(tmp_path, de_header=DE_HEADER.replace("Patient ID", "Patient"))


@pytest.mark.parametrize(
    "row,problem",
    [
        ("d.png,Nodule,0,3,40,F,PA,2500\n", "expected 11 fields as in the header, got 8"),
        ("d.png,Nodule,0,3,40,F,PA,2500,2048,0.1,0.1,7\n", "extra values"),
        ('d.png,"Nodule,0,3,40,F,PA,2500,2048,0.1,0.1\n', "expected 11 fields|malformed CSV"),
    ],
)
def test_malformed_rows(tmp_path, row, problem):
    with _raises("Data_Entry.csv", 5, problem):
        _nih(tmp_path, de_rows=DE_ROWS + [row])


@pytest.mark.parametrize(
    "size,problem",
    [
        ("abc,2048", "must be a number, got 'abc'"),
        ("-2500,2048", "must be positive"),
        ("2500,0", "must be positive"),
    ],
)
def test_bad_sizes(tmp_path, size, problem):
    rows = DE_ROWS[:2] + [f"c.png,Effusion,0,2,58,M,AP,{size},0.143,0.143\n"]
    with _raises("Data_Entry.csv", 4, problem):
        _nih(tmp_path, de_rows=rows)


def test_duplicate_image_id(tmp_path):
    with _raises("Data_Entry.csv", 5, "duplicate image id 'b.png'"):
        _nih(tmp_path, de_rows=DE_ROWS + [DE_ROWS[1]])


def test_box_outside_image(tmp_path):
    rows = BB_ROWS + ["c.png,Mass,1000,20,100,40\r\n"]
    with _raises("BBox_List.csv", 4, r"outside the 1024x1024 image"):
        _nih(tmp_path, bb_rows=rows)
    (coco, report), _, _ = _nih(tmp_path, bb_rows=rows, clip_boxes=True)
    assert report["boxes_clipped"] == 1 and coco["annotations"][-1]["bbox"] == [1000.0, 20.0, 24.0, 40.0]


def test_box_non_numeric_and_unknown_image(tmp_path):
    with _raises("BBox_List.csv", 2, r"column 'Bbox \[x' must be a number, got 'x1'"):
        _nih(tmp_path, bb_rows=["a.png,Mass,x1,2,3,4\r\n"])
    with _raises("BBox_List.csv", 2, "image 'zzz.png' is not in"):
        _nih(tmp_path, bb_rows=["zzz.png,Mass,1,2,3,4\r\n"])


def test_unknown_class_strict(tmp_path):
    (coco, report), _, bb = _nih(tmp_path)
    class_map = load_class_map(f"{DATASETS}/class_maps/nih.yaml")
    strict = r"BBox_List.csv, row 3: 1 classes are not in the class map .*nih.yaml \(strict mode\): "
    strict += r"'Infiltration' \(1 boxes"
    with pytest.raises(ImportDataError, match=strict):
        apply_class_map(
            coco, class_map, unmapped="error", class_rows=report["class_rows"], absent_sources="ignore"
        )
    out, rules = apply_class_map(coco, class_map, unmapped="drop", absent_sources="ignore")
    dropped = {r["source"]: r["boxes"] for r in rules if r["rule"] == "drop-unmapped"}
    assert dropped == {"Infiltration": 1} and len(out["annotations"]) == 1


def test_missing_images_listed(tmp_path):
    de = _write(tmp_path / "Data_Entry.csv", DE_HEADER + "".join(DE_ROWS))
    (tmp_path / "img").mkdir()
    missing = r"Data_Entry.csv: 3 of 3 images are missing under .*a.png, b.png, c.png"
    with pytest.raises(ImportDataError, match=missing):
        load_nih(de, images=tmp_path / "img")


VINDR_HEADER = "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n"


@pytest.mark.parametrize(
    "row,problem",
    [
        ("i1,No finding,14,R1,1,2,3,4\n", "must not have a box"),
        ("i1,Nodule/Mass,8,R1,,,,\n", "needs a box"),
        ("i1,Nodule/Mass,8,R1,10,10,5,20\n", "non-positive width or height"),
        ("i1,Nodule/Mass,9,R1,10,10,50,20\n", "several class_id values"),
    ],
)
def test_vindr_bad_rows(tmp_path, row, problem):
    f = _write(tmp_path / "train.csv", VINDR_HEADER + "i0,Nodule/Mass,8,R2,1,2,30,40\n" + row)
    with pytest.raises(ImportDataError, match=rf"train.csv, row \d: .*{problem}"):
        load_vindr(f, allow_missing_images=True)


def _write_dicom(path, rows=64, cols=48, truncate=None):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.random.default_rng(0).integers(0, 4096, (rows, cols), dtype=np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - truncate])


def test_rsna_dicom_sizes_and_truncated_dicom(tmp_path):
    images = tmp_path / "dcm"
    images.mkdir()
    _write_dicom(images / "p1.dcm")
    _write_dicom(images / "p2.dcm")
    f = _write(tmp_path / "labels.csv", "patientId,x,y,width,height,Target\np1,,,,,0\np2,4,5,20,30,1\n")
    coco, _ = load_rsna(f, images=images)
    assert [(i["width"], i["height"]) for i in coco["images"]] == [(48, 64), (48, 64)]
    _write_dicom(images / "p2.dcm", truncate=1000)
    with pytest.raises(ImportDataError, match=r"p2.dcm: .*truncated"):
        load_rsna(f, images=images)


@pytest.mark.parametrize(
    "rows,line,problem",
    [
        ("p1,,,,,0\np1,1,2,3,4,1\n", 3, "both Target 0 and Target 1"),
        ("p1,,,,,0\np1,,,,,0\n", 3, "duplicate row"),
        ("p1,,,,,2\n", 2, "must be 0 or 1"),
        ("p1,1000,2,100,4,1\n", 2, "outside the 1024x1024 image"),
    ],
)
def test_rsna_bad_rows(tmp_path, rows, line, problem):
    f = _write(tmp_path / "labels.csv", "patientId,x,y,width,height,Target\n" + rows)
    with _raises("labels.csv", line, problem):
        load_rsna(f, allow_missing_images=True)


def test_chestx_det_bad_entries(tmp_path):
    f = tmp_path / "train.json"
    f.write_text(
        json.dumps(
            [
                {"file_name": "a.png", "syms": ["Mass"], "boxes": [[1, 2, 30, 40]]},
                {"file_name": "a.png", "syms": [], "boxes": []},
            ]
        )
    )
    with pytest.raises(ImportDataError, match=r"train.json, entry 2: duplicate image 'a.png'"):
        load_chestx_det(f, allow_missing_images=True)
    f.write_text(json.dumps([{"file_name": "a.png", "syms": ["Mass"], "boxes": [[1, 2, 3000, 40]]}]))
    with pytest.raises(ImportDataError, match=r"train.json, entry 1: .*outside"):
        load_chestx_det(f, allow_missing_images=True)
    f.write_text('[{"file_name": "a.png", "syms": [], "boxes": []}')
    with pytest.raises(ImportDataError, match=r"train.json, row 1: invalid JSON"):
        load_chestx_det(f, allow_missing_images=True)


def test_coco_bad_entries(tmp_path):
    base = {
        "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 80}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10]}],
        "categories": [{"id": 1, "name": "TB"}],
    }
    f = tmp_path / "c.json"
    for change, problem in [
        (
            lambda d: d["images"].append(dict(d["images"][0], file_name="b.png")),
            r"images\[1\]: duplicate image id 1",
        ),
        (lambda d: d["images"][0].update(width=-5), r"images\[0\]: image size must be positive"),
        (
            lambda d: d["annotations"][0].update(bbox=[95, 2, 10, 10]),
            r"annotations\[0\]: .*outside the 100x80",
        ),
        (lambda d: d["annotations"][0].update(category_id=7), r"annotations\[0\]: 'category_id' 7"),
    ]:
        d = json.loads(json.dumps(base))
        change(d)
        f.write_text(json.dumps(d))
        with pytest.raises(ImportDataError, match=rf"c.json, {problem}"):
            load_coco(f, allow_missing_images=True)
    f.write_text(json.dumps(base))
    weak, report = load_coco(f, allow_missing_images=True, supervision="weak")
    assert weak["images"][0]["image_labels"] == {"TB": 1}
    assert not weak["annotations"] and report["boxes_removed"] == 1


def test_labels_csv_values(tmp_path):
    header = "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Cardiomegaly,Pneumonia\n"
    f = _write(
        tmp_path / "train.csv",
        header
        + "train/patient00001/study1/view1_frontal.jpg,F,68,Frontal,AP,1.0,,\n"
        + "train/patient00002/study1/view1_frontal.jpg,M,50,Frontal,PA,,1.0,-1.0\n"
        + "train/patient00002/study1/view2_lateral.jpg,M,50,Lateral,,,0.0,\n",
    )
    coco, report = load_labels_csv(f, allow_missing_images=True, frontal_only=True)
    assert [img["image_labels"] for img in coco["images"]] == [
        {"Cardiomegaly": 0, "Pneumonia": 0},
        {"Cardiomegaly": 1, "Pneumonia": -1},
    ]
    assert [img["patient_id"] for img in coco["images"]] == ["patient00001", "patient00002"]
    assert report["dropped_not_frontal"] == 1
    _write(f, header + "train/patient00001/study1/view1_frontal.jpg,F,68,Frontal,AP,,2,\n")
    with _raises("train.csv", 2, "column 'Cardiomegaly' must be 1, 0, -1 or blank, got '2'"):
        load_labels_csv(f, allow_missing_images=True)


def test_script_reports_error_and_exit_status(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("prepare_rsna_script", DATASETS / "prepare_rsna.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from oxnet.data.importers.cli import run

    f = _write(tmp_path / "labels.csv", "patientId,x,y,width,height,Target\np1,1,2,x,4,1\n")
    with pytest.raises(SystemExit) as exit_info:
        run(script.main, ["--csv", str(f), "--allow-missing-images", "--out", str(tmp_path / "out.json")])
    assert exit_info.value.code == 2
    assert "labels.csv, row 2: column 'width' must be a number, got 'x'" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()
