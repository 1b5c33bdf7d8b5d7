import copy
import json
import math

import numpy as np
import pytest
from detectron2.structures import BoxMode
from PIL import Image

from oxnet.data.format import (
    OmniFormatError,
    image_labels_from_boxes,
    load_omni_coco,
    read_omni_coco,
    validate_omni_coco,
    write_omni_coco,
)

FILE = "sets/train.json"


def make_coco():
    """Three images: full with two boxes, weak with labels, unlabeled."""
    return {
        "images": [
            {
                "id": 1,
                "file_name": "a.png",
                "width": 40,
                "height": 30,
                "supervision": "full",
                "image_labels": {"nodule": -1},
                "patient_id": "p1",
            },
            {
                "id": 2,
                "file_name": "sub/b.png",
                "width": 40,
                "height": 30,
                "supervision": "weak",
                "image_labels": {"mass": 1, "nodule": -1, "fracture": 0},
            },
            {"id": 3, "file_name": "c.png", "width": 40, "height": 30, "supervision": "unlabeled"},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 8]},
            {"id": 11, "image_id": 1, "category_id": 7, "bbox": [20, 10, 19.5, 20.5]},
        ],
        # ids deliberately not in name order: thing_classes follow category id
        "categories": [{"id": 7, "name": "mass"}, {"id": 3, "name": "nodule"}, {"id": 9, "name": "fracture"}],
    }


def write_images(root, coco):
    for img in coco["images"]:
        path = root / img["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((img["height"], img["width"]), np.uint8)).save(path)


def assert_error(coco, *substrings, **kwargs):
    with pytest.raises(OmniFormatError) as info:
        validate_omni_coco(coco, FILE, **kwargs)
    message = str(info.value)
    for s in (FILE,) + substrings:
        assert s in message, f"{s!r} not in {message!r}"
    return message


def test_valid_file_passes():
    validate_omni_coco(make_coco(), FILE, image_root=None)


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_top_level_keys(key):
    coco = make_coco()
    del coco[key]
    assert_error(coco, f"'{key}'", "missing")
    coco[key] = {}
    assert_error(coco, f"'{key}'", "must be a list")


def test_duplicate_ids_and_names():
    coco = make_coco()
    coco["images"].append(dict(coco["images"][2]))
    assert_error(coco, "image id=3", "duplicate image id")

    coco = make_coco()
    coco["annotations"][1]["id"] = 10
    assert_error(coco, "annotation id=10", "duplicate annotation id")

    coco = make_coco()
    coco["categories"].append({"id": 3, "name": "other"})
    assert_error(coco, "category id=3", "duplicate category id")

    coco = make_coco()
    coco["categories"].append({"id": 4, "name": "mass"})
    assert_error(coco, "category id=4", "duplicate category name 'mass'")


def test_missing_id():
    coco = make_coco()
    del coco["annotations"][1]["id"]
    assert_error(coco, "annotations[1]", "'id'", "missing")


@pytest.mark.parametrize("value, problem", [(None, "missing"), ("partial", "unknown value 'partial'")])
def test_supervision_value(value, problem):
    coco = make_coco()
    if value is None:
        del coco["images"][1]["supervision"]
    else:
        coco["images"][1]["supervision"] = value
    assert_error(coco, "image id=2", "'supervision'", problem, "full, weak, unlabeled")


@pytest.mark.parametrize("level", ["weak", "unlabeled"])
def test_boxes_only_on_full_images(level):
    coco = make_coco()
    coco["images"][0]["supervision"] = level
    coco["images"][0].pop("image_labels")
    assert_error(coco, "annotation id=10", "image id=1", f"'{level}'", "only 'full' images may have boxes")


def test_unknown_image_and_category():
    coco = make_coco()
    coco["annotations"][0]["image_id"] = 99
    assert_error(coco, "annotation id=10", "image id=99", "'image_id'", "unknown image")

    coco = make_coco()
    coco["annotations"][1]["category_id"] = 5
    assert_error(coco, "annotation id=11", "'category_id'", "5", "not a known category")


@pytest.mark.parametrize(
    "bbox, problem",
    [
        ([1, 2, 3], "4 finite numbers"),
        ([1, 2, "3", 4], "4 finite numbers"),
        ([1, 2, math.nan, 4], "4 finite numbers"),
        ([1, 2, 0, 4], "non-positive width or height"),
        ([1, 2, 5, -1], "non-positive width or height"),
        ([-1.5, 2, 5, 5], "outside the 40x30 image"),
        ([30, 2, 11.5, 5], "outside the 40x30 image"),
        ([1, 20, 5, 11.5], "outside the 40x30 image"),
    ],
)
def test_bad_bbox(bbox, problem):
    coco = make_coco()
    coco["annotations"][1]["bbox"] = bbox
    assert_error(coco, "annotation id=11", "'bbox'", problem)


def test_bbox_within_one_pixel_is_accepted():
    coco = make_coco()
    coco["annotations"][1]["bbox"] = [-1, -0.5, 41, 31]
    validate_omni_coco(coco, FILE, image_root=None)


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("width", None, "missing"),
        ("height", 0, "positive number"),
        ("width", -5, "positive number"),
    ],
)
def test_image_size(key, value, problem):
    coco = make_coco()
    if value is None:
        del coco["images"][2][key]
    else:
        coco["images"][2][key] = value
    assert_error(coco, "image id=3", f"'{key}'", problem)


@pytest.mark.parametrize(
    "labels, problem",
    [
        (["mass"], "must be an object"),
        ({"tumour": 1}, "unknown category 'tumour'"),
        ({"mass": 2}, "value 2 for 'mass'"),
        ({"mass": True}, "value True for 'mass'"),
        ({"mass": "1"}, "value '1' for 'mass'"),
    ],
)
def test_bad_image_labels(labels, problem):
    coco = make_coco()
    coco["images"][1]["image_labels"] = labels
    assert_error(coco, "image id=2", "'image_labels'", problem)


def test_unlabeled_image_cannot_carry_labels():
    coco = make_coco()
    coco["images"][2]["image_labels"] = {"mass": 0}
    assert_error(coco, "image id=3", "'image_labels'", "unlabeled")


def test_box_contradicting_image_label():
    coco = make_coco()
    coco["images"][0]["image_labels"] = {"mass": 0}
    assert_error(coco, "image id=1", "'image_labels'", "'mass' box")


def test_missing_files_are_all_counted(tmp_path):
    coco = make_coco()
    for i in range(4, 12):
        coco["images"].append(dict(coco["images"][2], id=i, file_name=f"m{i}.png"))
    write_images(tmp_path, {"images": coco["images"][:2]})
    message = assert_error(
        coco,
        "9 of 11 image files are missing",
        "'c.png'",
        "'m4.png'",
        "(and 4 more)",
        image_root=str(tmp_path),
    )
    assert "'m8.png'" not in message and "'a.png'" not in message
    validate_omni_coco(coco, FILE, image_root=str(tmp_path), check_files=False)


def test_read_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(OmniFormatError, match="bad.json: invalid JSON"):
        read_omni_coco(bad)
    with pytest.raises(FileNotFoundError, match="absent.json"):
        read_omni_coco(tmp_path / "absent.json")


def test_image_labels_from_boxes():
    assert image_labels_from_boxes([2, 2], 4, {0: -1, 3: 1}) == {0: -1, 1: 0, 2: 1, 3: 1}
    assert image_labels_from_boxes([], 2) == {0: 0, 1: 0}


def test_load_dataset_dicts(tmp_path):
    coco = make_coco()
    write_images(tmp_path / "img", coco)
    write_omni_coco(tmp_path / "train.json", coco, image_root=tmp_path / "img")
    dicts, meta = load_omni_coco(str(tmp_path / "train.json"), str(tmp_path / "img"))

    assert meta["thing_classes"] == ["nodule", "mass", "fracture"]
    assert meta["thing_dataset_id_to_contiguous_id"] == {3: 0, 7: 1, 9: 2}
    full, weak, unlabeled = dicts
    assert full["file_name"] == str(tmp_path / "img" / "a.png")
    assert (full["height"], full["width"], full["image_id"], full["supervision"]) == (30, 40, 1, "full")
    assert full["patient_id"] == "p1"
    assert [a["category_id"] for a in full["annotations"]] == [1, 1]
    assert full["annotations"][1]["bbox"] == [20.0, 10.0, 19.5, 20.5]
    assert all(a["bbox_mode"] == BoxMode.XYWH_ABS for a in full["annotations"])
    # full image: mass has boxes -> 1, fracture has none -> 0, nodule keeps the file's -1
    assert full["image_labels"] == {0: -1, 1: 1, 2: 0}
    # weak image: labels kept as given, uncertain stays -1, nothing completed
    assert weak["image_labels"] == {1: 1, 0: -1, 2: 0} and weak["annotations"] == []
    assert weak["file_name"] == str(tmp_path / "img" / "sub" / "b.png")
    assert unlabeled["image_labels"] == {} and unlabeled["supervision"] == "unlabeled"


def test_full_image_without_boxes_is_negative(tmp_path):
    coco = make_coco()
    coco["annotations"] = []
    coco["images"][0]["image_labels"] = {}
    write_omni_coco(tmp_path / "x.json", coco)
    dicts, _ = load_omni_coco(tmp_path / "x.json", tmp_path, check_files=False)
    assert dicts[0]["image_labels"] == {0: 0, 1: 0, 2: 0}


def test_write_validates_and_keeps_old_file(tmp_path):
    path = tmp_path / "out.json"
    coco = make_coco()
    write_omni_coco(path, coco)
    assert json.loads(path.read_text()) == coco
    broken = copy.deepcopy(coco)
    broken["images"][0]["supervision"] = "strong"
    with pytest.raises(OmniFormatError, match="out.json.*image id=1"):
        write_omni_coco(path, broken)
    assert json.loads(path.read_text()) == coco
    with pytest.raises(OmniFormatError, match="3 of 3 image files are missing"):
        write_omni_coco(path, coco, image_root=tmp_path)


def test_real_tbx11k_subset(shared_data, tmp_path):
    """The TBX11K sample's COCO file, marked fully supervised, validates and loads against its images."""
    folder = shared_data / "tbx11k-tb500"
    coco = json.loads((folder / "annotations.json").read_text())
    for img in coco["images"]:
        img["supervision"] = "full"
    write_omni_coco(tmp_path / "tbx.json", coco, image_root=folder / "images")
    dicts, meta = load_omni_coco(tmp_path / "tbx.json", folder / "images")
    assert len(dicts) == len(coco["images"])
    assert sum(len(d["annotations"]) for d in dicts) == len(coco["annotations"])
    # full images: positive image labels exactly where there are boxes
    with_boxes = {a["image_id"] for a in coco["annotations"]}
    assert {d["image_id"] for d in dicts if 1 in d["image_labels"].values()} == with_boxes
    assert meta["thing_classes"] == [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]


def test_unknown_size_is_an_error_unless_allowed():
    coco = make_coco()
    coco["images"][0].update(width=None, height=None)
    assert_error(coco, "image id=1: field 'width' is null", "--allow-missing-images", "--images")
    validate_omni_coco(coco, FILE, allow_unknown_sizes=True)
    # everything else is still checked, boxes included (but not against the unknown size)
    coco["annotations"][0]["bbox"] = [1, 2, -10, 8]
    assert_error(
        coco, "annotation id=10 (image id=1): field 'bbox'", "non-positive", allow_unknown_sizes=True
    )
    coco = make_coco()
    coco["images"][0].update(width=None, height=None)
    coco["images"][0]["image_labels"] = {"nodule": 2}
    assert_error(coco, "image id=1: field 'image_labels' has value 2", allow_unknown_sizes=True)
    coco = make_coco()
    coco["images"][1].update(width=None, height=None)
    del coco["images"][1]["height"]
    assert_error(coco, "image id=2: field 'height' is missing", allow_unknown_sizes=True)
