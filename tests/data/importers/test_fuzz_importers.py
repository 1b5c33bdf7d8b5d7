"""Fuzzed importers: random mutations of valid NIH, VinDr, RSNA, ChestX-Det, label-table and COCO inputs
either import into a valid OXnet-COCO dict or raise ImportDataError naming the input file; never a bare
KeyError/TypeError/..., a hang or a huge allocation. ``make fuzz`` runs many more examples.
"""

import csv
import io
import json
import warnings

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from oxnet.data.format import validate_omni_coco
from oxnet.data.importers import (
    ImportDataError,
    load_chestx_det,
    load_coco,
    load_labels_csv,
    load_nih,
    load_rsna,
    load_vindr,
)
from oxnet.utils.fuzzing import byte_mutations, csv_mutations, fuzz_settings, guarded, json_mutations

NIH_ENTRY = [
    [
        "Image Index",
        "Finding Labels",
        "Follow-up #",
        "Patient ID",
        "Patient Age",
        "Patient Gender",
        "View Position",
        "OriginalImage[Width",
        "Height]",
        "OriginalImagePixelSpacing[x",
        "y]",
        "",
    ],
    ["00000001_000.png", "Cardiomegaly", "0", "1", "58", "M", "PA", "2682", "2749", "0.143", "0.143", ""],
    [
        "00000001_001.png",
        "Cardiomegaly|Emphysema",
        "1",
        "1",
        "58",
        "M",
        "PA",
        "2894",
        "2729",
        "0.143",
        "0.143",
        "",
    ],
    ["00000002_000.png", "No Finding", "0", "2", "81", "M", "AP", "2500", "2048", "0.171", "0.171", ""],
    [
        "00000003_000.png",
        "Infiltration|Nodule",
        "0",
        "3",
        "74",
        "F",
        "PA",
        "2048",
        "2500",
        "0.168",
        "0.168",
        "",
    ],
]
NIH_BBOX = [
    ["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]", "", "", ""],
    ["00000001_000.png", "Cardiomegaly", "225.08", "547.02", "86.75", "79.18", "", "", ""],
    ["00000003_000.png", "Infiltrate", "100", "100", "200.5", "150", "", "", ""],
    ["00000003_000.png", "Nodule", "600", "300", "30", "30", "", "", ""],
]
VINDR = [
    ["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"],
    ["img1", "Aortic enlargement", "0", "R9", "691", "1375", "1653", "1831"],
    ["img1", "Aortic enlargement", "0", "R8", "700", "1380", "1650", "1820"],
    ["img1", "Cardiomegaly", "3", "R10", "400", "900", "1800", "1600"],
    ["img2", "No finding", "14", "R1", "", "", "", ""],
    ["img2", "No finding", "14", "R2", "", "", "", ""],
    ["img3", "Nodule/Mass", "8", "R2", "10", "20", "50", "70"],
]
RSNA = [
    ["patientId", "x", "y", "width", "height", "Target"],
    ["p1", "", "", "", "", "0"],
    ["p2", "264", "152", "213", "379", "1"],
    ["p2", "562", "152", "256", "453", "1"],
    ["p3", "", "", "", "", "0"],
]
LABELS = [
    [
        "Path",
        "Sex",
        "Age",
        "Frontal/Lateral",
        "AP/PA",
        "No Finding",
        "Cardiomegaly",
        "Edema",
        "Pleural Effusion",
    ],
    [
        "CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg",
        "Female",
        "68",
        "Frontal",
        "AP",
        "1.0",
        "",
        "",
        "0.0",
    ],
    [
        "CheXpert-v1.0/train/patient00002/study2/view1_frontal.jpg",
        "Female",
        "87",
        "Frontal",
        "AP",
        "",
        "-1.0",
        "1.0",
        "",
    ],
    [
        "CheXpert-v1.0/train/patient00002/study2/view2_lateral.jpg",
        "Female",
        "87",
        "Lateral",
        "",
        "",
        "1",
        "",
        "-1",
    ],
]
CHESTX_DET = [
    {
        "file_name": "36204.png",
        "syms": ["Effusion", "Nodule"],
        "boxes": [[100, 120, 300, 400], [500, 500, 540, 530]],
    },
    {"file_name": "36205.png", "syms": [], "boxes": []},
    {"file_name": "36206.png", "syms": ["Effusion"], "boxes": [[10.5, 20, 200, 220.25]]},
]
COCO = {
    "info": {"description": "toy"},
    "images": [
        {"id": 10, "file_name": "a.png", "width": 512, "height": 512, "patient_id": "p1"},
        {"id": 11, "file_name": "b.png", "width": 400, "height": 300},
        {"id": 12, "file_name": "c.png", "width": 512, "height": 512},
    ],
    "annotations": [
        {"id": 1, "image_id": 10, "category_id": 1, "bbox": [10, 10, 100, 50], "area": 5000, "iscrowd": 0},
        {"id": 2, "image_id": 11, "category_id": 2, "bbox": [0, 0, 400, 300], "iscrowd": 0},
    ],
    "categories": [
        {"id": 1, "name": "ActiveTuberculosis"},
        {"id": 2, "name": "ObsoletePulmonaryTuberculosis"},
    ],
}


def csv_bytes(rows):
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def csv_inputs(rows):
    """A mutated CSV: cell/row mutations, byte mutations, or both."""
    by_rows = csv_mutations(rows).map(csv_bytes)
    return st.one_of(by_rows, byte_mutations(csv_bytes(rows)), by_rows.flatmap(byte_mutations))


def json_inputs(tree):
    by_tree = json_mutations(tree).map(lambda t: json.dumps(t).encode())
    return st.one_of(by_tree, byte_mutations(json.dumps(tree, indent=1).encode()))


def check_import(load, inputs, out):
    """The property: the importer gives a valid OXnet-COCO dict or an ImportDataError naming an input."""
    with guarded(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            coco, report = load()
        except ImportDataError as e:
            assert e.file in [str(p) for p in inputs] and e.file in str(e), f"error names no input: {e}"
            return None
    validate_omni_coco(coco, out, check_files=False, allow_unknown_sizes=True)
    assert isinstance(report, dict)
    return coco


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_importers")


def test_the_seed_inputs_import(work):
    """Every seed imports (so the fuzzed inputs start from valid ones)."""
    (work / "e.csv").write_bytes(csv_bytes(NIH_ENTRY))
    (work / "b.csv").write_bytes(csv_bytes(NIH_BBOX))
    coco = check_import(lambda: load_nih(work / "e.csv", work / "b.csv", allow_missing_images=True), [], "o")
    assert len(coco["images"]) == 4 and len(coco["annotations"]) == 3
    seeds = [(VINDR, load_vindr, 3, 3), (RSNA, load_rsna, 3, 2), (LABELS, load_labels_csv, 3, 0)]
    for rows, load, n_images, n_boxes in seeds:
        (work / "s.csv").write_bytes(csv_bytes(rows))
        coco = check_import(lambda load=load: load(work / "s.csv", allow_missing_images=True), [], "o")
        assert (len(coco["images"]), len(coco["annotations"])) == (n_images, n_boxes), load.__name__
    (work / "s.json").write_text(json.dumps(CHESTX_DET))
    coco = check_import(lambda: load_chestx_det(work / "s.json", allow_missing_images=True), [], "o")
    assert (len(coco["images"]), len(coco["annotations"])) == (3, 3)
    (work / "s.json").write_text(json.dumps(COCO))
    for sup in ("full", "weak"):
        coco = check_import(
            lambda sup=sup: load_coco(work / "s.json", allow_missing_images=True, supervision=sup), [], "o"
        )
        assert len(coco["images"]) == 3 and len(coco["annotations"]) == (2 if sup == "full" else 0)


@fuzz_settings(100)
@given(which=st.sampled_from(["entry", "bbox"]), data=st.data())
def test_fuzzed_nih(which, data, work):
    entry, bbox = work / "nih_entry.csv", work / "nih_bbox.csv"
    entry.write_bytes(data.draw(csv_inputs(NIH_ENTRY)) if which == "entry" else csv_bytes(NIH_ENTRY))
    bbox.write_bytes(data.draw(csv_inputs(NIH_BBOX)) if which == "bbox" else csv_bytes(NIH_BBOX))
    check_import(lambda: load_nih(entry, bbox, allow_missing_images=True), [entry, bbox], work / "out.json")


@fuzz_settings(80)
@given(data=csv_inputs(VINDR))
@example(data=csv_bytes(VINDR[:1] + [["img9", "Nodule/Mass", "8", "R2", "-50", "-60", "-10", "-20"]]))
@example(data=csv_bytes(VINDR[:1]))  # a header without rows
@example(
    data=csv_bytes(
        VINDR[:2]
        + [
            ["img1", "\x00rtic", "0", "R8", "1", "1", "9", "9"],
            ["img1", "\x00ortic", "0", "R7", "1", "1", "9", "9"],
        ]
    )
)  # NULs
def test_fuzzed_vindr(data, work):
    path = work / "vindr.csv"
    path.write_bytes(data)
    check_import(lambda: load_vindr(path, allow_missing_images=True), [path], work / "out.json")


@fuzz_settings(80)
@given(data=csv_inputs(RSNA))
@example(data=csv_bytes(RSNA[:1]))  # a header without rows
def test_fuzzed_rsna(data, work):
    path = work / "rsna.csv"
    path.write_bytes(data)
    check_import(lambda: load_rsna(path, allow_missing_images=True), [path], work / "out.json")


@fuzz_settings(100)
@given(data=csv_inputs(LABELS))
@example(data=b"\xff\xfePath,Cardiomegaly\n")  # not UTF-8
@example(data=b'Path,Cardiomegaly\n"a.jpg,1\n')  # unclosed quote
def test_fuzzed_labels_csv(data, work):
    path = work / "labels.csv"
    path.write_bytes(data)
    check_import(lambda: load_labels_csv(path, allow_missing_images=True), [path], work / "out.json")


@fuzz_settings(100)
@given(data=json_inputs(CHESTX_DET))
def test_fuzzed_chestx_det(data, work):
    path = work / "chestx_det.json"
    path.write_bytes(data)
    check_import(lambda: load_chestx_det(path, allow_missing_images=True), [path], work / "out.json")


@fuzz_settings(120)
@given(data=json_inputs(COCO), supervision=st.sampled_from(["full", "weak", "unlabeled"]))
@example(
    data=json.dumps({**COCO, "annotations": [dict(COCO["annotations"][0], image_id=[10])]}).encode(),
    supervision="full",
)
@example(
    data=json.dumps({**COCO, "annotations": [dict(COCO["annotations"][0], iscrowd="x")]}).encode(),
    supervision="full",
)
@example(
    data=json.dumps({**COCO, "images": [dict(COCO["images"][0], image_labels={"x": 5})]}).encode(),
    supervision="full",
)
def test_fuzzed_coco(data, supervision, work):
    path = work / "coco.json"
    path.write_bytes(data)
    check_import(
        lambda: load_coco(path, allow_missing_images=True, supervision=supervision), [path], work / "out.json"
    )
