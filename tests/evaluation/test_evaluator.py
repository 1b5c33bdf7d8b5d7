"""OXnetEvaluator as detectron2 runs it: process/evaluate, percent results, reports, subsets."""

import json
import math
import uuid

import numpy as np
import pytest
import torch
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.structures import Boxes, Instances

import oxnet  # noqa: F401  (before detectron2)
from oxnet.data import register_omni_coco
from oxnet.evaluation import OXnetEvaluator, evaluate_detections
from oxnet.evaluation.synthetic import synthetic_coco


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    root = tmp_path_factory.mktemp("d2eval")
    gt, preds = synthetic_coco(
        num_images=16,
        num_classes=3,
        gt_per_image=2,
        dets_per_image=6,
        image_size=(256, 256),
        missing_classes=(3,),
        seed=5,
    )
    for img in gt["images"]:
        img["supervision"] = "full"
    # Category ids that are not 0..N-1, to exercise the contiguous-id mapping.
    for c in gt["categories"]:
        c["id"] += 10
    for a in gt["annotations"] + preds:
        a["category_id"] += 10
    path = root / "gt.json"
    path.write_text(json.dumps(gt))
    name = f"oxnet_eval_test_{uuid.uuid4().hex[:8]}"
    register_omni_coco(name, str(path), str(root), check_files=False)
    return name, gt, preds, root


def _outputs(gt, preds, image_ids):
    """Model outputs (instances in original pixels, contiguous classes, global scores) for ``image_ids``."""
    cat_to_contiguous = {c["id"]: k for k, c in enumerate(sorted(gt["categories"], key=lambda c: c["id"]))}
    inputs, outputs = [], []
    for iid in image_ids:
        mine = [p for p in preds if p["image_id"] == iid]
        inst = Instances((256, 256))
        boxes = np.array([p["bbox"] for p in mine], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        inst.pred_boxes = Boxes(torch.from_numpy(boxes))
        inst.scores = torch.tensor([p["score"] for p in mine], dtype=torch.float32)
        inst.pred_classes = torch.tensor(
            [cat_to_contiguous[p["category_id"]] for p in mine], dtype=torch.int64
        )
        inputs.append({"image_id": iid, "height": 256, "width": 256, "file_name": f"/nonexistent/{iid}.png"})
        outputs.append({"instances": inst, "global_scores": torch.tensor([0.1 * (iid % 7), 0.5, 0.2])})
    return inputs, outputs


def test_evaluator_matches_standalone_metrics(registered, tmp_path):
    name, gt, preds, _ = registered
    ev = OXnetEvaluator(name, output_dir=str(tmp_path), distributed=False)
    ids = [img["id"] for img in gt["images"]]
    for batch in (ids[:7], ids[7:]):
        ev.process(*_outputs(gt, preds, batch))
    res = ev.evaluate()
    print_csv_format(res)  # the format detectron2 prints and logs
    as_float32 = [dict(p, bbox=[float(np.float32(v)) for v in p["bbox"]]) for p in preds]
    ref = evaluate_detections(gt, as_float32).metrics
    assert set(res) == {"bbox", "froc", "auroc", "normals"}  # the test set has box-free (normal) images
    for s, fp in ref["normals"]["fp_per_normal_image_at_sensitivity"].items():
        assert (
            math.isnan(res["normals"][f"fp@{s}"])
            if fp is None
            else res["normals"][f"fp@{s}"] == pytest.approx(fp)
        )
    for key in ("mAP", "AP40", "AP75", "APs", "APm", "APl"):
        assert res["bbox"][key] == pytest.approx(100 * ref[key], abs=1e-4)
    assert math.isnan(res["bbox"]["AP-class 3"])  # no ground truth
    assert res["froc"]["mean"] == pytest.approx(100 * ref["froc"]["mean"], abs=1e-4)
    assert res["auroc"]["local"] == pytest.approx(100 * ref["auroc"]["local"], abs=1e-4)
    assert not math.isnan(res["auroc"]["global"])  # global head scores were used
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["mAP"] == pytest.approx(res["bbox"]["mAP"] / 100)
    assert (tmp_path / "report.html").is_file() and (tmp_path / "froc_curves.png").stat().st_size > 0
    ev.reset()
    assert ev.evaluate() == {}


def test_evaluator_restricts_ground_truth_to_processed_images(registered):
    name, gt, preds, _ = registered
    ev = OXnetEvaluator(name, distributed=False)
    ids = [img["id"] for img in gt["images"]][:5]
    ev.process(*_outputs(gt, preds, ids))
    res = ev.evaluate()
    sub = dict(
        gt,
        images=[i for i in gt["images"] if i["id"] in ids],
        annotations=[a for a in gt["annotations"] if a["image_id"] in ids],
    )
    ref = evaluate_detections(
        sub, [dict(p, bbox=[float(np.float32(v)) for v in p["bbox"]]) for p in preds if p["image_id"] in ids]
    ).metrics
    assert ev.result.metrics["settings"]["num_images"] == 5
    assert res["bbox"]["AP40"] == pytest.approx(100 * ref["AP40"], abs=1e-4)


def test_inference_on_dataset(registered):
    name, gt, preds, _ = registered

    class Replay(torch.nn.Module):
        def forward(self, batched_inputs):
            return _outputs(gt, preds, [b["image_id"] for b in batched_inputs])[1]

    loader = [[{"image_id": img["id"], "height": 256, "width": 256}] for img in gt["images"]]
    res = inference_on_dataset(Replay(), loader, OXnetEvaluator(name, distributed=False))
    assert 0 < res["bbox"]["mAP"] <= 100
