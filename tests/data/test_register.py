import json
import uuid

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image

from oxnet.data import OmniFormatError, register_omni_coco

COCO = {
    "images": [
        {"id": 5, "file_name": "x.png", "width": 16, "height": 12, "supervision": "full"},
        {
            "id": 6,
            "file_name": "y.png",
            "width": 16,
            "height": 12,
            "supervision": "weak",
            "image_labels": {"cardiomegaly": -1},
        },
    ],
    "annotations": [{"id": 1, "image_id": 5, "category_id": 2, "bbox": [2, 3, 4, 5]}],
    "categories": [{"id": 2, "name": "nodule"}, {"id": 1, "name": "cardiomegaly"}],
}


@pytest.fixture
def dataset(tmp_path):
    for img in COCO["images"]:
        Image.fromarray(np.full((12, 16), 128, np.uint8)).save(tmp_path / img["file_name"])
    json_file = tmp_path / "set.json"
    json_file.write_text(json.dumps(COCO))
    name = f"oxnet_test_{uuid.uuid4().hex[:8]}"
    yield name, json_file, tmp_path
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_register_and_load(dataset):
    name, json_file, root = dataset
    register_omni_coco(name, json_file, root)
    meta = MetadataCatalog.get(name)
    assert meta.thing_classes == ["cardiomegaly", "nodule"]
    assert meta.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1}
    assert meta.json_file == str(json_file) and meta.image_root == str(root)
    assert meta.evaluator_type == "oxnet"

    dicts = DatasetCatalog.get(name)
    assert [d["image_id"] for d in dicts] == [5, 6]
    assert dicts[0]["file_name"] == str(root / "x.png")
    assert dicts[0]["annotations"] == [
        {"bbox": [2.0, 3.0, 4.0, 5.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1, "iscrowd": 0}
    ]
    assert dicts[0]["image_labels"] == {0: 0, 1: 1}
    assert dicts[1]["image_labels"] == {0: -1} and dicts[1]["supervision"] == "weak"


def test_loading_is_lazy_and_validates(dataset):
    name, json_file, root = dataset
    (root / "y.png").unlink()
    register_omni_coco(name, json_file, root)  # files are checked only when the dicts are loaded
    with pytest.raises(OmniFormatError, match="1 of 2 image files are missing.*'y.png'"):
        DatasetCatalog.get(name)


def test_reregistration(dataset, tmp_path_factory):
    name, json_file, root = dataset
    register_omni_coco(name, json_file, root)
    register_omni_coco(name, str(json_file), str(root))  # same files: no-op
    other = tmp_path_factory.mktemp("other")
    with pytest.raises(ValueError, match=f"{name}.*already registered"):
        register_omni_coco(name, json_file, other)


def test_bad_categories_fail_at_registration(dataset):
    name, json_file, root = dataset
    coco = dict(COCO, categories=COCO["categories"] + [{"id": 1, "name": "mass"}])
    json_file.write_text(json.dumps(coco))
    with pytest.raises(OmniFormatError, match="set.json: category id=1: duplicate category id"):
        register_omni_coco(name, json_file, root)
    assert name not in DatasetCatalog.list()
