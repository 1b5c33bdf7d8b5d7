"""Real images: the NIH sample and TBX11K-TB500 import through the CLI, register and load in detectron2."""

import json
import pathlib

import pytest

from oxnet.data import register_omni_coco

DATASETS = pathlib.Path(__file__).resolve().parents[3] / "datasets"


def _run(script, argv):
    import importlib.util

    spec = importlib.util.spec_from_file_location(script, f"{DATASETS}/{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def nih_sample(shared_data, tmp_path_factory):
    d = shared_data / "nih-cxr14-sample"
    out = tmp_path_factory.mktemp("nih") / "nih_sample.json"
    _run(
        "prepare_nih",
        [
            "--data-entry",
            d / "Data_Entry_2017_v2020.csv",
            "--bbox",
            d / "BBox_List_2017.csv",
            "--images",
            d / "images",
            "--class-map",
            DATASETS / "class_maps" / "nih.yaml",
            "--out",
            out,
        ],
    )
    return out, d / "images"


def test_nih_sample_registers(nih_sample):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    json_file, images = nih_sample
    register_omni_coco("test_importers_nih_sample", json_file, images)
    dicts = DatasetCatalog.get("test_importers_nih_sample")
    meta = MetadataCatalog.get("test_importers_nih_sample")
    assert len(dicts) == 50
    full = [d for d in dicts if d["supervision"] == "full"]
    assert len(full) == 12 and sum(len(d["annotations"]) for d in full) == 12
    assert all(d["supervision"] == "weak" and d["image_labels"] for d in dicts if d not in full)
    assert all((d["height"], d["width"]) == (1024, 1024) for d in dicts)
    assert meta.thing_classes[:9] == [
        "aortic calcification",
        "cardiomegaly",
        "fracture",
        "mass",
        "nodule",
        "pleural effusion",
        "pneumonia",
        "pneumothorax",
        "tuberculosis",
    ]
    effusion = meta.thing_classes.index("pleural effusion")
    coco = json.loads(json_file.read_text())
    n_effusion = sum(img["image_labels"].get("pleural effusion") == 1 for img in coco["images"])
    assert n_effusion > 0 and sum(d["image_labels"].get(effusion) == 1 for d in dicts) == n_effusion


@pytest.mark.parametrize("supervision", ["full", "weak"])
def test_tbx500_registers(shared_data, tmp_path, supervision):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    d = shared_data / "tbx11k-tb500"
    out = tmp_path / f"tbx_{supervision}.json"
    _run(
        "prepare_coco",
        [
            "--json",
            d / "annotations.json",
            "--images",
            d / "images",
            "--supervision",
            supervision,
            "--drop-unmapped",
            "--out",
            out,
            "--class-map",
            DATASETS / "class_maps" / "tbx11k.yaml",
            "--allow-absent-classes",
        ],
    )  # the sample lacks TBX11K's PulmonaryTuberculosis
    name = f"test_importers_tbx500_{supervision}"
    register_omni_coco(name, out, d / "images")
    dicts = DatasetCatalog.get(name)
    tb = MetadataCatalog.get(name).thing_classes.index("tuberculosis")
    assert len(dicts) == 500
    # 499 of the 500 images carry boxes: tb1199.png has none in annotations.json
    assert sum(d["image_labels"][tb] == 1 for d in dicts) == 499
    assert all(d["image_labels"][tb] in (0, 1) for d in dicts)
    boxes = sum(len(d["annotations"]) for d in dicts)
    assert boxes == (769 if supervision == "full" else 0)
    if supervision == "full":
        assert {a["category_id"] for d in dicts for a in d["annotations"]} == {tb}
