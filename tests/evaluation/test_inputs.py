"""Edge cases of the evaluation inputs: unknown ids, empty predictions, xyxy boxes, missing classes."""

import json
import logging

import numpy as np
import pytest

from oxnet.evaluation import EvaluationInputError, evaluate_detections
from oxnet.evaluation.synthetic import synthetic_coco


@pytest.fixture(scope="module")
def data():
    return synthetic_coco(
        num_images=40,
        num_classes=4,
        gt_per_image=2,
        dets_per_image=10,
        image_size=(400, 500),
        missing_classes=(3,),
        seed=11,
    )


def test_unknown_image_id_is_named(data, tmp_path):
    gt, preds = data
    bad = preds[:5] + [dict(preds[0], image_id=987654)]
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(EvaluationInputError, match=r"pred\.json.*entry 5.*image id 987654"):
        evaluate_detections(gt, str(path))


def test_unknown_category_is_named(data):
    gt, preds = data
    with pytest.raises(EvaluationInputError, match="category id 42"):
        evaluate_detections(gt, preds[:3] + [dict(preds[0], category_id=42)])


def test_malformed_entry_is_named(data):
    gt, preds = data
    entry = {k: v for k, v in preds[1].items() if k != "score"}
    with pytest.raises(EvaluationInputError, match="entry 1"):
        evaluate_detections(gt, [preds[0], entry])


def test_empty_predictions_give_zeros_with_a_warning(data, caplog, monkeypatch):
    gt, _ = data
    # detectron2's setup_logger(name="oxnet") (used by the command-line tools) stops propagation
    monkeypatch.setattr(logging.getLogger("oxnet"), "propagate", True)
    with caplog.at_level(logging.WARNING):
        m = evaluate_detections(gt, []).metrics
    assert "empty" in caplog.text and any("empty" in w for w in m["warnings"])
    for key in ("mAP", "AP40", "AP75"):
        assert m[key] == 0.0
    assert m["froc"]["sensitivity"] == [0.0] * 7
    assert m["per_class"]["class 3"]["mAP"] is None  # no ground truth: n/a, not 0


def test_images_without_predictions(data):
    gt, preds = data
    few = [p for p in preds if p["image_id"] <= 5]
    m = evaluate_detections(gt, few).metrics
    full = evaluate_detections(gt, preds).metrics
    assert 0 <= m["mAP"] < full["mAP"]


def test_class_without_ground_truth_is_excluded_from_averages(data):
    gt, preds = data
    m = evaluate_detections(gt, preds).metrics
    row = m["per_class"]["class 3"]
    assert row["num_gt"] == 0 and row["mAP"] is None and row["froc"] is None and row["auroc_local"] is None
    others = [r["mAP"] for n, r in m["per_class"].items() if n != "class 3"]
    assert m["mAP"] == pytest.approx(np.mean(others), abs=1e-12)
    # Detections of that class are still false positives in the pooled FROC.
    no_fp = evaluate_detections(gt, [p for p in preds if p["category_id"] != 3]).metrics
    assert no_fp["froc"]["sensitivity"][0] >= m["froc"]["sensitivity"][0]


def _as_xyxy(preds):
    out = []
    for p in preds:
        x, y, w, h = p["bbox"]
        out.append(dict(p, bbox=[x, y, x + w, y + h]))
    return out


def test_xyxy_boxes_with_negative_size_are_an_error(data):
    gt, preds = data
    xyxy = _as_xyxy(preds)
    # A box with a negative width (corners in the wrong order, or a botched conversion).
    xyxy[3]["bbox"] = [100.0, 100.0, -20.0, 30.0]
    with pytest.raises(EvaluationInputError, match=r"negative width or height.*entry 3.*\[x1, y1, x2, y2\]"):
        evaluate_detections(gt, xyxy)


def test_xyxy_boxes_past_the_border_are_reported(data, caplog):
    gt, preds = data
    xyxy = _as_xyxy(preds)
    with caplog.at_level(logging.WARNING):
        m = evaluate_detections(gt, xyxy).metrics
    assert any("reach past the image border" in w and "xyxy" in w for w in m["warnings"])
    # Converting with bbox_format="xyxy" gives exactly the xywh results, without the warning.
    conv = evaluate_detections(gt, xyxy, bbox_format="xyxy").metrics
    ref = evaluate_detections(gt, preds).metrics
    assert not conv["warnings"]
    for key in ("mAP", "AP40", "AP75", "APs", "APm", "APl"):
        assert conv[key] == pytest.approx(ref[key], abs=1e-9)
    assert conv["froc"]["sensitivity"] == pytest.approx(ref["froc"]["sensitivity"], abs=1e-12)


def test_bad_ground_truth_is_named(tmp_path):
    gt = {
        "images": [{"id": 1, "height": 10, "width": 10}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 7, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    with pytest.raises(EvaluationInputError, match=r"gt\.json: annotation id 7 refers to unknown image id 2"):
        evaluate_detections(str(path), [])
    gt["annotations"][0].update(image_id=1, bbox=[0, 0, -1, 1])
    with pytest.raises(EvaluationInputError, match="annotation id 7 has a non-finite or non-positive"):
        evaluate_detections(gt, [])
    with pytest.raises(EvaluationInputError, match="cannot read JSON"):
        evaluate_detections(str(tmp_path / "missing.json"), [])


# --- predictions from another numbering: matched by file name and class name, or refused -------------
def _as_predict_py_output(gt, preds):
    """What demo/predict.py writes: image_id = position in its run, category_id = contiguous index
    (the old, wrong output) here, but file_name (absolute path) and category_name beside them."""
    names = {c["id"]: c["name"] for c in gt["categories"]}
    files = {img["id"]: img["file_name"] for img in gt["images"]}
    order = {iid: pos for pos, iid in enumerate(sorted(files, reverse=True))}
    return [
        dict(
            p,
            image_id=order[p["image_id"]],
            category_id=p["category_id"] - 1,
            file_name=f"/data/run/images/{files[p['image_id']]}",
            category_name=names[p["category_id"]],
        )
        for p in preds
    ]


def test_predictions_are_matched_by_file_name_and_category_name(data, caplog, tmp_path):
    gt, preds = data
    reference = evaluate_detections(gt, preds).metrics
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(_as_predict_py_output(gt, preds)))
    m = evaluate_detections(gt, str(path)).metrics
    assert m["mAP"] == reference["mAP"] and m["per_class"] == reference["per_class"]
    assert any("matched by file_name" in w for w in m["warnings"])
    assert any("matched by category_name" in w for w in m["warnings"])


def test_file_names_match_the_longest_ground_truth_suffix():
    gt = {
        "images": [
            {"id": 10, "file_name": "a/x.png", "height": 100, "width": 100},
            {"id": 20, "file_name": "b/x.png", "height": 100, "width": 100},
        ],
        "annotations": [{"id": 1, "image_id": 20, "category_id": 1, "bbox": [10, 10, 20, 20]}],
        "categories": [{"id": 1, "name": "nodule"}],
    }
    det = {"category_name": "nodule", "bbox": [10, 10, 20, 20], "score": 0.9}
    m = evaluate_detections(gt, [dict(det, file_name="/mnt/set/b/x.png")]).metrics
    assert m["mAP"] == 1.0
    m = evaluate_detections(gt, [dict(det, file_name="/mnt/set/a/x.png")]).metrics
    assert m["mAP"] == 0.0
    with pytest.raises(EvaluationInputError, match="matches several ground-truth images"):
        evaluate_detections(gt, [dict(det, file_name="x.png")])
    with pytest.raises(EvaluationInputError, match=r"no file_name matches.*first: '/mnt/set/c/y.png'"):
        evaluate_detections(gt, [dict(det, file_name="/mnt/set/c/y.png")])
    # A folder predicted whole: files outside the ground truth are left out, counted in a warning.
    m = evaluate_detections(
        gt,
        [
            dict(det, file_name="/mnt/set/b/x.png"),
            dict(det, file_name="/mnt/set/c/y.png"),
            dict(det, file_name="/mnt/set/c/y.png"),
        ],
    )
    assert m.metrics["mAP"] == 1.0
    assert any(
        "2 prediction(s) on 1 file(s) that are not in the ground truth were left out" in w
        for w in m.metrics["warnings"]
    )


def test_unknown_category_name_lists_the_known_ones(data):
    gt, preds = data
    with pytest.raises(EvaluationInputError, match=r"entry 1 has category name 'Cardiomegally'.*'class 1'"):
        evaluate_detections(
            gt, [dict(preds[0], category_name="class 1"), dict(preds[0], category_name="Cardiomegally")]
        )


def test_zero_based_class_indices_are_refused_not_scored_zero():
    # Two classes, boxes of the second only: 0-based indices put every detection on the first.
    gt = {
        "images": [{"id": 1, "file_name": "a.png", "height": 100, "width": 100}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 10, 20, 20]}],
        "categories": [{"id": 1, "name": "effusion"}, {"id": 2, "name": "nodule"}],
    }
    preds = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]
    with pytest.raises(
        EvaluationInputError, match="none of the detections has a class with ground-truth boxes.*nodule"
    ):
        evaluate_detections(gt, preds)
    # In process (a model being trained), a detector that finds only the wrong class scores 0.
    assert evaluate_detections(gt, preds, require_match=False).metrics["mAP"] == 0.0


def test_predictions_only_on_images_without_box_ground_truth_are_refused():
    gt = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 100, "width": 100},
            {
                "id": 2,
                "file_name": "b.png",
                "height": 100,
                "width": 100,
                "supervision": "weak",
                "image_labels": {"nodule": 1},
            },
        ],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
        "categories": [{"id": 1, "name": "nodule"}],
    }
    preds = [{"image_id": 2, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]
    with pytest.raises(EvaluationInputError, match="none of the 1 detections is on an image"):
        evaluate_detections(gt, preds)


@pytest.mark.parametrize("width", [0, -512, None, float("nan")])
def test_image_without_a_positive_size_is_named(width):
    gt = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 100, "width": 100},
            {"id": 7, "file_name": "b.png", "height": 100, "width": width},
        ],
        "annotations": [],
        "categories": [{"id": 1, "name": "nodule"}],
    }
    with pytest.raises(EvaluationInputError, match=r"<ground truth in memory>: image id 7 \('b.png'\)"):
        evaluate_detections(gt, [])


def test_image_scores_as_predict_writes_them(data):
    from oxnet.evaluation import load_ground_truth, load_image_scores

    gt, _ = data
    truth = load_ground_truth(gt)
    listed = [
        {
            "image_id": 1000 + i,
            "file_name": f"/x/{img['file_name']}",
            "global_scores": {n: 0.1 * k for k, n in enumerate(truth.class_names)},
        }
        for i, img in enumerate(gt["images"][:3])
    ]
    scores = load_image_scores(listed, truth)
    assert np.allclose(scores[:3], [[0.0, 0.1, 0.2, 0.3]] * 3) and np.isnan(scores[3:]).all()
    mapping = {img["id"]: [0.5] * 4 for img in gt["images"][:2]}
    assert np.allclose(load_image_scores(mapping, truth)[:2], 0.5)
