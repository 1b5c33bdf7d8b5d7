"""The real omni-supervised preset ``tbx-omni`` (../shared/data; skipped when it is absent)."""

import collections
import csv
import json
import os

import pytest

from oxnet.bench import load_spec
from oxnet.bench.__main__ import main
from oxnet.bench.data import prepare_data
from oxnet.testing import read_text


@pytest.fixture(scope="module")
def omni_out(shared_data, tmp_path_factory):
    spec = load_spec("tbx-omni")  # the preset reads ../shared/data next to the repository
    for path in (spec["data"]["boxes"]["json"], spec["data"]["weak"][0]["csv"]):
        if not os.path.exists(path):
            pytest.skip(f"{path}, which the tbx-omni preset reads, is absent")
    out = str(tmp_path_factory.mktemp("tbx_omni"))
    return out, prepare_data(spec, out), spec


def _read(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return json.load(f)


def test_tbx_omni_has_the_documented_counts_and_keeps_test_images_out_of_training(omni_out, tmp_path):
    _, data, spec = omni_out
    with open(spec["data"]["weak"][0]["csv"], newline="") as f:
        table = list(csv.DictReader(f))
    by_label = collections.Counter(r["tuberculosis"] for r in table)
    assert (by_label["0"], by_label["1"]) == (151, 137)
    names = ("train_pool.json", "weak_pool.json", "test.json", "test_image.json")
    pool, weak, test, image_test = (_read(data.folder, n) for n in names)
    # one class, TBX11K's category-agnostic protocol
    for coco in (pool, weak, test, image_test):
        assert coco["categories"] == [{"id": 1, "name": "tuberculosis"}]
    # training: tbx500's 352 boxed images + 208 weak X-rays (151 - 50 = 101 normal, 137 - 30 = 107 TB)
    assert data.n_train == len(pool["images"]) == 352
    assert all(img["supervision"] == "full" for img in pool["images"])
    labels = collections.Counter(img["image_labels"]["tuberculosis"] for img in weak["images"])
    assert (data.n_extra, data.n_extra_normal, labels[0], labels[1]) == (208, 101, 101, 107)
    # test.json: tbx500's 148 test images (147 with boxes; tb1199 has none and is uncertain, not normal)
    # plus the 50 held-out normals as fully labeled images without boxes
    tbx = [img for img in test["images"] if img["file_name"].startswith("tbx11k-tb500/")]
    normals = [img for img in test["images"] if img["file_name"].startswith("tb-extra-weak/")]
    assert (len(tbx), len(normals), data.n_test) == (148, 50, 198)
    assert (data.n_test_lesion, data.n_test_normal) == (147, 50)
    assert [img["file_name"] for img in tbx if img.get("image_labels")] == ["tbx11k-tb500/images/tb1199.png"]
    assert all(img["supervision"] == "full" and "image_labels" not in img for img in normals)
    # the same TBX test images as the tbx500 preset
    tbx500 = prepare_data(load_spec("tbx500"), str(tmp_path / "tbx500"))
    assert sorted(os.path.basename(i["file_name"]) for i in tbx) == sorted(
        i["file_name"] for i in _read(tbx500.folder, "test.json")["images"]
    )
    # image-level test set: the 50 normals and 30 TB X-rays, weak images with their labels
    image_labels = collections.Counter(img["image_labels"]["tuberculosis"] for img in image_test["images"])
    assert (data.n_image_test, data.n_image_test_positive) == (80, 30)
    assert (image_labels[0], image_labels[1]) == (50, 30)
    assert all(img["supervision"] == "weak" for img in image_test["images"])
    assert {i["file_name"] for i in normals} == {
        i["file_name"] for i in image_test["images"] if i["image_labels"]["tuberculosis"] == 0
    }
    # held out stratified by hospital (largest remainder of 50 / 151 normals and 30 / 137 TB per source)
    report = _read(data.folder, "spec.json")["report"]["weak_tables"][0]
    assert report["test_by_source"] == {
        "DA/DB (Chauhan et al. 2014)": [18, 7],
        "Montgomery (Jaeger et al. 2014)": [7, 3],
        "Shenzhen (Jaeger et al. 2014)": [25, 20],
    }
    # no test image (either test set) is a training image; every image is where its file_name says
    train_files = {i["file_name"] for i in pool["images"] + weak["images"]}
    test_files = {i["file_name"] for i in test["images"] + image_test["images"]}
    assert len(train_files) == 352 + 208 and len(test_files) == 148 + 80 and not train_files & test_files
    assert len(train_files | test_files) == 500 + 288
    assert all(os.path.isfile(os.path.join(data.image_root, f)) for f in train_files | test_files)


def test_tbx_omni_table1_runs_end_to_end(omni_out):
    from oxnet.bench import runner
    from oxnet.methods import method_names

    missing = [
        m
        for m in ("retinanet_neg", "sfl_plus", "oxnet_plus")
        if m not in method_names() or not os.path.exists(os.path.join(runner.CONFIG_DIR, f"{m}.yaml"))
    ]
    assert not missing, f"the tbx-omni table lists {missing}, whose method or config is missing"
    out, _, _ = omni_out
    assert (
        main(
            [
                "table1",
                "--data",
                "tbx-omni",
                "--out",
                out,
                "--iters",
                "2",
                "--seeds",
                "1",
                "--rows",
                "retinanet,oxnet",
                "--no-progress",
                "OXNET.INPUT_SIZE",
                "64",
                "MODEL.RETINANET.NUM_CONVS",
                "1",
                "DATALOADER.NUM_WORKERS",
                "0",
            ]
        )
        == 0
    )
    results = _read(out, "results.json")
    assert sorted(results) == [
        "table1/oxnet_f88_w472_u0/seed0/iters2",
        "table1/retinanet_f88_w0_u0/seed0/iters2",
    ]
    for r in results.values():
        assert (r["normals"]["n_normal_images"], r["normals"]["n_lesion_images"]) == (50, 147)
        assert r["image_auroc"]["images"] == 80
        assert r["image_auroc"]["labels"] == {"tuberculosis": {"positive": 30, "negative": 50}}
    text = read_text(os.path.join(out, "table1.md"))
    assert "| FP/normal @70% | image AUROC (box) | image AUROC (global) |" in text
    assert "test: 198 images, 147 with lesions, 50 normal" in text
    assert "| RetinaNet |" in text and "| Mean Teacher |" not in text  # a --rows subset
    assert (
        main(
            [
                "table1",
                "--data",
                "tbx-omni",
                "--out",
                out,
                "--iters",
                "2",
                "--seeds",
                "1",
                "--report-only",
                "--no-progress",
            ]
        )
        == 0
    )  # every row, those not run as pending
    text = read_text(os.path.join(out, "table1.md"))
    assert "| RetinaNet + weak negatives | 88 | 472 | 0 | pending |" in text
    assert "| Mean Teacher | 88 | 0 | 472 | pending |" in text
