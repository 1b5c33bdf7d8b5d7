"""The detector learns: on 8 synthetic chest X-rays it reaches a high AP within a bounded number of
CPU steps (training and evaluating on the same images)."""

import json
import os

import cv2
import pytest
from detectron2.data import DatasetCatalog

from oxnet.data import register_omni_coco
from oxnet.data.format import write_omni_coco
from oxnet.data.synthetic import SyntheticCXR
from oxnet.engine import OXnetTrainer
from oxnet.testing import read_json, tiny_cfg

CLASSES = ("cardiomegaly", "mass", "pleural effusion", "pneumothorax")
SIZE = 160


def _write(tmp_path):
    gen = SyntheticCXR(size=SIZE, seed=3)
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    images, annotations = [], []
    for i in range(8):
        image, boxes = gen.sample(i, findings=[CLASSES[i % 4], CLASSES[(i + 1) % 4]])
        cv2.imwrite(str(img_dir / f"{i}.png"), image)
        images.append(
            {"id": i + 1, "file_name": f"{i}.png", "height": SIZE, "width": SIZE, "supervision": "full"}
        )
        for name, box in boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": CLASSES.index(name) + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    json_file = str(tmp_path / "overfit.json")
    write_omni_coco(
        json_file,
        {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)],
        },
    )
    return json_file, str(img_dir)


def test_detector_overfits_eight_synthetic_images(tmp_path):
    json_file, image_root = _write(tmp_path)
    name = "overfit_synthetic"
    if name not in DatasetCatalog.list():
        register_omni_coco(name, json_file, image_root)
    cfg = tiny_cfg("daa_gpa", num_classes=len(CLASSES), size=SIZE)
    cfg.DATASETS.TRAIN = cfg.DATASETS.TEST = (name,)
    cfg.OXNET.BATCH.FULL = 4
    cfg.OXNET.AUG.HFLIP_PROB = 0.0
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.BASE_LR = 1e-3
    cfg.SOLVER.MAX_ITER = 200
    cfg.SOLVER.STEPS = (160,)
    cfg.SOLVER.WARMUP_ITERS = 20
    cfg.SOLVER.CHECKPOINT_PERIOD = 10**6
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    trainer = OXnetTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    results = OXnetTrainer.test(cfg, trainer.model)
    ap40 = results["bbox"]["AP40"]
    assert ap40 > 60.0, results["bbox"]
    # The evaluation's metrics.json goes under inference/<dataset>; OUTPUT_DIR's stays the training log.
    saved = read_json(os.path.join(cfg.OUTPUT_DIR, "inference", name, "metrics.json"))
    assert saved["AP40"] == pytest.approx(ap40 / 100)
    with open(os.path.join(cfg.OUTPUT_DIR, "metrics.json")) as f:
        log = [json.loads(line) for line in f]
    losses = [r for r in log if "total_loss" in r]
    assert losses and losses[-1]["iteration"] >= cfg.SOLVER.MAX_ITER - 20
