import json
import os

import cv2
import numpy as np
import pytest

from oxnet.config import PAPER_CLASSES
from oxnet.data.format import write_omni_coco
from oxnet.data.io import read_image, scale_to_uint8
from oxnet.data.synthetic import SyntheticCXR, generate_split


@pytest.fixture(scope="module")
def gen():
    return SyntheticCXR(size=512, seed=0)


def test_deterministic_per_seed_and_index(gen):
    a, boxes_a = gen.sample(3)
    b, boxes_b = SyntheticCXR(size=512, seed=0).sample(3)
    assert a.dtype == np.uint8 and a.shape == (512, 512)
    assert np.array_equal(a, b) and boxes_a == boxes_b
    c, _ = SyntheticCXR(size=512, seed=1).sample(3)
    d, _ = gen.sample(4)
    assert np.abs(a.astype(int) - c).mean() > 1
    assert np.abs(a.astype(int) - d).mean() > 1


def test_annotate_matches_render(gen):
    for i in range(6):
        assert gen.annotate(i) == gen.sample(i)[1]


def test_boxes_inside_image_and_classes_known():
    gen = SyntheticCXR(size=320, seed=5)
    seen, normal = set(), 0
    for i in range(60):
        boxes = gen.annotate(i)
        normal += not boxes
        for name, (x, y, w, h) in boxes:
            seen.add(name)
            assert name in PAPER_CLASSES
            assert w >= 2 and h >= 2
            assert x >= 0 and y >= 0 and x + w <= 320 and y + h <= 320
    assert seen == set(PAPER_CLASSES)
    assert 0 < normal < 60


@pytest.mark.parametrize("size", [512, 256])
@pytest.mark.parametrize("name", PAPER_CLASSES)
def test_finding_drawn_inside_tight_box(name, size):
    """Rendering the same patient with and without the finding: the change lies inside the boxes and
    each box is not much larger than the change it covers."""
    gen = SyntheticCXR(size=size, seed=0)
    for index in (0, 1):
        with_f, boxes = gen.render(index, findings=[name])
        without, none = gen.render(index, findings=[])
        assert none == [] and boxes and all(n == name for n, _ in boxes)
        diff = np.abs(with_f.astype(np.float64) - without)
        inside = np.zeros(diff.shape, bool)
        for _, (x, y, w, h) in boxes:
            inside[int(y) : int(y + h), int(x) : int(x + w)] = True
        assert diff[inside].sum() >= 0.9 * diff.sum()
        assert diff.max() > 0.08  # visible: at least ~20 grey levels at the lesion's peak
        for _, (x, y, w, h) in boxes:
            sub = diff[int(y) : int(y + h), int(x) : int(x + w)] > 0.1 * diff.max()
            rows, cols = np.flatnonzero(sub.any(1)), np.flatnonzero(sub.any(0))
            extent = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
            assert w * h <= 1.5 * extent + 4


def test_class_appearance_and_size(gen):
    """Class-specific geometry: nodules are small, masses large, cardiomegaly spans the heart, the
    aortic knob calcification lies on the image's right (patient's left) of the midline."""
    for index in range(3):
        (_, (x, y, w, h)), *_ = gen.annotate(index, ["nodule"])
        assert 6 <= max(w, h) <= 34
        ((_, (x, y, w, h)),) = gen.annotate(index, ["mass"])
        assert max(w, h) >= 40
        ((_, (x, y, w, h)),) = gen.annotate(index, ["cardiomegaly"])
        assert w >= 0.3 * 512
        ((_, (x, y, w, h)),) = gen.annotate(index, ["aortic calcification"])
        assert x > 256 and y + h < 256


def test_findings_override_and_unknown_class(gen):
    assert [n for n, _ in gen.annotate(2, ["mass", "nodule"]) if n == "mass"]
    with pytest.raises(ValueError, match="unknown classes"):
        gen.sample(0, findings=["pneumonitis"])
    with pytest.raises(ValueError):
        SyntheticCXR(size=16)


@pytest.mark.parametrize("dicom", [False, True])
def test_generate_split_reads_back(tmp_path, dicom):
    coco = generate_split(
        str(tmp_path),
        "train",
        n_full=3,
        n_weak=3,
        n_unlabeled=2,
        size=128,
        seed=2,
        dicom=dicom,
        start_index=10,
        progress=False,
    )
    write_omni_coco(tmp_path / "train.json", coco)
    with open(tmp_path / "train.json") as f:
        back = json.load(f)
    assert back == coco
    assert [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])] == list(PAPER_CLASSES)
    assert [c["id"] for c in coco["categories"]] == list(range(1, 10))
    sup = [im["supervision"] for im in coco["images"]]
    assert sup == ["full"] * 3 + ["weak"] * 3 + ["unlabeled"] * 2
    assert [im["id"] for im in coco["images"]] == list(range(11, 19))
    full_ids = {im["id"] for im in coco["images"] if im["supervision"] == "full"}
    assert {a["image_id"] for a in coco["annotations"]} <= full_ids
    gen = SyntheticCXR(size=128, seed=2)
    for im in coco["images"]:
        boxes = gen.annotate(im["id"] - 1)
        if im["supervision"] == "weak":
            assert im["image_labels"] == {c: int(c in {n for n, _ in boxes}) for c in PAPER_CLASSES}
        else:
            assert "image_labels" not in im
        if im["supervision"] == "full":
            got = [a["bbox"] for a in coco["annotations"] if a["image_id"] == im["id"]]
            assert got == [b for _, b in boxes]
        path = tmp_path / "images" / im["file_name"]
        assert path.suffix == (".dcm" if dicom else ".png")
        img = read_image(path)
        assert img.shape == (128, 128, 3)
        expected = scale_to_uint8(gen.render(im["id"] - 1)[0])  # min-max scaled like read_image
        assert np.abs(img[:, :, 0].astype(int) - expected).max() <= 2
    ids = [a["id"] for a in coco["annotations"]]
    assert len(set(ids)) == len(ids)


def test_generate_split_resumes_and_refuses_other_params(tmp_path):
    first = generate_split(str(tmp_path), "val", n_full=3, size=96, seed=0, progress=False)
    path = tmp_path / "images" / first["images"][0]["file_name"]
    stamp = os.stat(path).st_mtime_ns
    again = generate_split(str(tmp_path), "val", n_full=3, size=96, seed=0, progress=False)
    assert again == first and os.stat(path).st_mtime_ns == stamp
    with pytest.raises(ValueError, match="drawn with"):
        generate_split(str(tmp_path), "val", n_full=3, size=96, seed=1, progress=False)


def test_contact_sheet_draws_boxes_of_coco_and_dataset_dicts(tmp_path):
    from detectron2.structures import BoxMode

    from oxnet.data.synthetic import contact_sheet

    coco = generate_split(
        str(tmp_path), "s", n_full=4, n_weak=1, n_unlabeled=1, size=128, seed=0, start_index=2, progress=False
    )
    out = contact_sheet(
        coco,
        str(tmp_path / "images"),
        PAPER_CLASSES,
        str(tmp_path / "sheet.png"),
        max_images=6,
        tile=96,
        cols=3,
    )
    sheet = cv2.imread(out)
    assert sheet.shape == (2 * 96, 3 * 96, 3)
    colour = sheet.astype(int).max(axis=2) - sheet.astype(int).min(axis=2) > 60
    tiles = [colour[r * 96 : (r + 1) * 96, c * 96 : (c + 1) * 96] for r in range(2) for c in range(3)]
    has_boxes = [any(a["image_id"] == im["id"] for a in coco["annotations"]) for im in coco["images"]]
    assert any(has_boxes)
    for tile, boxed in zip(tiles, has_boxes):
        assert tile.any() == boxed

    ids = {c["id"]: i for i, c in enumerate(coco["categories"])}
    dicts = [
        {
            "file_name": str(tmp_path / "images" / im["file_name"]),
            "supervision": im["supervision"],
            "image_labels": {PAPER_CLASSES.index(k): v for k, v in im.get("image_labels", {}).items()},
            "annotations": [
                {"bbox": a["bbox"], "bbox_mode": BoxMode.XYWH_ABS, "category_id": ids[a["category_id"]]}
                for a in coco["annotations"]
                if a["image_id"] == im["id"]
            ],
        }
        for im in coco["images"]
    ]
    out2 = contact_sheet(
        dicts, None, PAPER_CLASSES, str(tmp_path / "sheet2.png"), max_images=6, tile=96, cols=3
    )
    assert np.array_equal(cv2.imread(out2), sheet)


def test_prepare_synthetic_writes_disjoint_splits(tmp_path, capsys):
    import importlib.util
    import pathlib

    script = pathlib.Path(__file__).resolve().parents[2] / "datasets" / "prepare_synthetic.py"
    spec = importlib.util.spec_from_file_location("prepare_synthetic", script)
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    prepare.main(
        [
            "--out",
            str(tmp_path),
            "--n-full",
            "2",
            "--n-weak",
            "2",
            "--n-unlabeled",
            "1",
            "--n-val",
            "2",
            "--n-test",
            "3",
            "--size",
            "96",
        ]
    )
    assert str(tmp_path / "train.json") in capsys.readouterr().out
    splits = {}
    for name in ("train", "val", "test"):
        with open(tmp_path / f"{name}.json") as f:
            splits[name] = json.load(f)
    assert [len(splits[s]["images"]) for s in ("train", "val", "test")] == [5, 2, 3]
    assert {im["supervision"] for s in ("val", "test") for im in splits[s]["images"]} == {"full"}
    ids = [im["id"] for s in splits.values() for im in s["images"]]
    names = [im["file_name"] for s in splits.values() for im in s["images"]]
    assert len(set(ids)) == len(ids) == 10 and len(set(names)) == 10
    assert all((tmp_path / "images" / n).is_file() for n in names)
