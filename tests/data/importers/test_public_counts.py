"""The importers on the complete public label files (no images): counts against the published figures."""

import json
import pathlib
from collections import Counter

import pytest

from oxnet.data.importers import (
    apply_class_map,
    load_chestx_det,
    load_class_map,
    load_rsna,
    load_vindr,
    write_output,
)

DATASETS = pathlib.Path(__file__).resolve().parents[3] / "datasets"

ANN = "public-annotations"


@pytest.fixture(scope="module")
def public(shared_data):
    return shared_data / ANN


@pytest.fixture(scope="module")
def nih(nih_public):
    return nih_public


@pytest.fixture(scope="module")
def vindr(public):
    return load_vindr(public / "vinbigdata-cxr" / "train.csv.gz", allow_missing_images=True, fusion="none")


def test_nih_data_entry(nih):
    coco, _ = nih
    images = coco["images"]
    assert len(images) == 112_120
    assert len({img["patient_id"] for img in images}) == 30_805
    negatives = [img for img in images if not any(v == 1 for v in img["image_labels"].values())]
    assert len(negatives) == 60_361
    assert all(
        set(img["image_labels"].values()) == {0} and len(img["image_labels"]) == 14 for img in negatives
    )
    assert Counter(img["view"] for img in images).keys() == {"PA", "AP"}


def test_nih_bbox_list(nih):
    coco, report = nih
    names = {c["id"]: c["name"] for c in coco["categories"]}
    box_classes = Counter(names[a["category_id"]] for a in coco["annotations"])
    assert len(coco["annotations"]) == 984
    assert len({a["image_id"] for a in coco["annotations"]}) == 880
    assert sum(img["supervision"] == "full" for img in coco["images"]) == 880
    assert len(box_classes) == 8
    assert "Infiltrate" not in box_classes and box_classes["Infiltration"] == report["box_rows_renamed"] > 0
    # BBox_List coordinates are in the 1024-px PNG frame, not the original size.
    assert all(x + w <= 1024 and y + h <= 1024 for x, y, w, h in (a["bbox"] for a in coco["annotations"]))


def test_nih_class_map_counts(nih):
    coco, _ = nih
    class_map = load_class_map(DATASETS / "class_maps" / "nih.yaml")
    out, rules = apply_class_map(coco, class_map, unmapped="drop")
    by_source = {r["source"]: r for r in rules}
    assert by_source["Effusion"]["target"] == "pleural effusion" and by_source["Effusion"]["rule"] == "rename"
    assert by_source["Atelectasis"]["rule"] == "drop-unmapped"
    kept = sum(r["boxes"] for r in rules if r["target"] is not None)
    assert len(out["annotations"]) == kept
    assert kept + sum(r["boxes"] for r in rules if r["target"] is None) == 984
    assert [c["name"] for c in out["categories"]][:9] == list(class_map.targets)
    positives = sum(v == 1 for img in coco["images"] for v in img["image_labels"].values())
    assert sum(r["positive_labels"] for r in rules) == positives


def test_vindr_rows_and_readers(vindr):
    coco, report = vindr
    assert report["rows"] == 67_914
    assert len(coco["images"]) == 15_000
    assert len(coco["annotations"]) == 36_096
    assert all(len(img["readers"]) == 3 for img in coco["images"])
    boxed = {a["image_id"] for a in coco["annotations"]}
    no_finding = [img for img in coco["images"] if img["readers_no_finding"] == img["readers"]]
    assert len(no_finding) == 10_606 and not boxed & {img["id"] for img in no_finding}
    assert all("rad_id" in a for a in coco["annotations"][:100])


def test_vindr_fusion(public, vindr):
    coco, report = load_vindr(public / "vinbigdata-cxr" / "train.csv.gz", allow_missing_images=True)
    assert report["boxes_before_fusion"] == 36_096
    assert 0 < len(coco["annotations"]) < 36_096
    # every fused box comes from 1..3 readers, and fusion keeps every (image, class) that had a box
    assert {a["num_readers"] for a in coco["annotations"]} <= {1, 2, 3}
    pairs = {(a["image_id"], a["category_id"]) for a in coco["annotations"]}
    assert pairs == {(a["image_id"], a["category_id"]) for a in vindr[0]["annotations"]}


def test_rsna(public, tmp_path):
    coco, _ = load_rsna(public / "rsna-pneumonia" / "stage_2_train_labels.csv.gz", allow_missing_images=True)
    assert len(coco["images"]) == 26_684
    assert len(coco["annotations"]) == 9_555
    assert len({a["image_id"] for a in coco["annotations"]}) == 6_012
    write_output(tmp_path / "rsna.json", coco)
    assert len(json.loads((tmp_path / "rsna.json").read_text())["annotations"]) == 9_555


@pytest.mark.parametrize("split,images,boxes", [("train", 3_001, 6_863), ("test", 542, 1_476)])
def test_chestx_det10(public, split, images, boxes):
    coco, _ = load_chestx_det(public / "chestx-det10" / f"{split}.json.gz", allow_missing_images=True)
    assert len(coco["images"]) == images
    assert len(coco["annotations"]) == boxes
    assert len(coco["categories"]) == 10
