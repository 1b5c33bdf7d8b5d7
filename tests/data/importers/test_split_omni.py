"""Patient splits and omni-supervised settings on the complete NIH label file."""

import pathlib
from collections import Counter

import pytest

from oxnet.data.importers import ImportDataError, apply_class_map, load_class_map
from oxnet.data.omni import TABLE2_SETTINGS, make_omni, table2_settings
from oxnet.data.split import image_classes, split_by_patient

DATASETS = pathlib.Path(__file__).resolve().parents[3] / "datasets"


@pytest.fixture(scope="module")
def nih(nih_public):
    class_map = load_class_map(DATASETS / "class_maps" / "nih.yaml")
    coco, _ = apply_class_map(nih_public[0], class_map, unmapped="drop")
    return coco


@pytest.fixture(scope="module")
def splits(nih):
    return split_by_patient(nih, (0.7, 0.1, 0.2), seed=0)


def test_split_by_patient(nih, splits):
    parts, report = splits
    ids = [{img["id"] for img in p["images"]} for p in parts.values()]
    assert sum(map(len, ids)) == len(nih["images"])
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    patients = [{img["patient_id"] for img in p["images"]} for p in parts.values()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    for name, frac in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        assert abs(report[name]["images"] / len(nih["images"]) - frac) < 0.01
    # stratified: each class's positives split close to the fractions (boxes are rarer: looser bound)
    total = Counter(c for cs in image_classes(nih).values() for c in cs)
    for c, n in total.items():
        share = report["val"]["positive_images"][c] / n
        assert abs(share - 0.1) < 0.02, (c, share)
    boxes = [len(p["annotations"]) for p in parts.values()]
    assert sum(boxes) == len(nih["annotations"]) and abs(boxes[0] / sum(boxes) - 0.7) < 0.05


def test_split_is_seeded(nih, splits):
    again, _ = split_by_patient(nih, (0.7, 0.1, 0.2), seed=0)
    other, _ = split_by_patient(nih, (0.7, 0.1, 0.2), seed=1)
    ids = lambda p: [img["id"] for img in p["test"]["images"]]  # noqa: E731
    assert ids(again) == ids(splits[0]) and ids(other) != ids(splits[0])


def test_split_needs_patient_ids(nih):
    images = [{k: v for k, v in img.items() if k != "patient_id"} for img in nih["images"][:10]]
    coco = dict(nih, images=images, annotations=[])
    with pytest.raises(ImportDataError, match="no 'patient_id'"):
        split_by_patient(coco)
    parts, _ = split_by_patient(coco, image_as_patient=True)
    assert sum(len(p["images"]) for p in parts.values()) == 10


@pytest.fixture(scope="module")
def full_set(nih):
    boxed = {a["image_id"] for a in nih["annotations"]}
    return dict(nih, images=[img for img in nih["images"] if img["id"] in boxed])


def test_make_omni_counts_and_labels(full_set):
    n = len(full_set["images"])
    omni, report = make_omni(full_set, full=0.2, weak=0.5, unlabeled=None, seed=3)
    sup = Counter(img["supervision"] for img in omni["images"])
    nf, nw = round(0.2 * n), round(0.5 * n)
    assert sup == {"full": nf, "weak": nw, "unlabeled": n - nf - nw}
    names = {c["id"]: c["name"] for c in full_set["categories"]}
    boxes_of = {}
    for a in full_set["annotations"]:
        boxes_of.setdefault(a["image_id"], set()).add(names[a["category_id"]])
    full_ids = {img["id"] for img in omni["images"] if img["supervision"] == "full"}
    assert {a["image_id"] for a in omni["annotations"]} <= full_ids
    moved = report["boxes_kept"] + report["boxes_to_labels"] + report["boxes_removed"]
    assert moved == len(full_set["annotations"]) and report["boxes_kept"] == len(omni["annotations"])
    for img in omni["images"]:
        if img["supervision"] == "weak":
            assert {c for c, v in img["image_labels"].items() if v == 1} == boxes_of[img["id"]]
            assert set(img["image_labels"]) == set(names.values())
        if img["supervision"] == "unlabeled":
            assert "image_labels" not in img


def test_make_omni_rejects_partial_input(nih):
    with pytest.raises(ImportDataError, match="needs a fully labeled set"):
        make_omni(nih, full=10, weak=None, unlabeled=0)


def test_table2_in_one_call(full_set, tmp_path):
    import importlib.util

    from oxnet.data.format import write_omni_coco

    src = tmp_path / "train.json"
    write_omni_coco(src, full_set)
    spec = importlib.util.spec_from_file_location("make_omni_script", f"{DATASETS}/make_omni.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    reports = script.main(["--json", str(src), "--out-dir", str(tmp_path / "omni"), "--table2"])
    assert len(reports) == len(TABLE2_SETTINGS) == 9
    n = len(full_set["images"])
    assert table2_settings(13963) == list(TABLE2_SETTINGS)
    for r, (f, w, u) in zip(reports, table2_settings(n)):
        assert (r["full"], r["weak"], r["unlabeled"]) == (f, w, u) and (tmp_path / "omni").is_dir()
    # nested full parts: the 682-like set is inside the 2725-like set
    import json

    def full_ids(r):
        return {i["id"] for i in json.load(open(r["file"]))["images"] if i["supervision"] == "full"}

    assert full_ids(reports[0]) < full_ids(reports[2])


def test_split_script(nih, tmp_path):
    import importlib.util
    import json

    from oxnet.data.format import write_omni_coco

    keep = {img["id"] for img in nih["images"][:3000]}
    small = dict(
        nih, images=nih["images"][:3000], annotations=[a for a in nih["annotations"] if a["image_id"] in keep]
    )
    write_omni_coco(tmp_path / "nih.json", small)
    spec = importlib.util.spec_from_file_location("split_script", f"{DATASETS}/split.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(
        [
            "--json",
            str(tmp_path / "nih.json"),
            "--out-dir",
            str(tmp_path / "s"),
            "--fractions",
            "0.8",
            "0.2",
            "--names",
            "train",
            "test",
            "--seed",
            "5",
        ]
    )
    parts = [json.loads((tmp_path / "s" / f"nih_{n}.json").read_text()) for n in ("train", "test")]
    assert sum(len(p["images"]) for p in parts) == 3000
    assert not {i["patient_id"] for i in parts[0]["images"]} & {i["patient_id"] for i in parts[1]["images"]}
