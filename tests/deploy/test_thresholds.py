"""Per-class operating thresholds at a target lesion sensitivity (python -m oxnet.deploy.thresholds)."""

import json
import os

import pytest

from oxnet.deploy.runtime import load_model
from oxnet.deploy.thresholds import choose_thresholds, main, to_predictions
from oxnet.evaluation.inputs import load_ground_truth
from oxnet.testing import tiny_model_folder


def _gt():
    """Four full images (the last one normal): class a has 4 lesions, b 2, c none."""
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in (1, 2, 3, 4)]
    boxes = [
        (1, "a", [10, 10, 20, 20]),
        (1, "a", [60, 60, 20, 20]),
        (2, "a", [10, 10, 20, 20]),
        (3, "a", [50, 10, 20, 20]),
        (2, "b", [50, 50, 30, 30]),
        (3, "b", [10, 60, 30, 30]),
    ]
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}]
    anns = [
        {"id": j + 1, "image_id": i, "category_id": {"a": 1, "b": 2}[c], "bbox": b, "area": b[2] * b[3]}
        for j, (i, c, b) in enumerate(boxes)
    ]
    return load_ground_truth({"images": images, "annotations": anns, "categories": cats})


def _results():
    """Detections by image index: a's lesions are hit at 0.9, 0.8, 0.6 and 0.3; a duplicate of the 0.9
    hit (0.85) and a box on the normal image (0.95) are false positives; b is hit once (0.7) and
    missed once (0.9, elsewhere)."""

    def det(c, box, score):
        return {"category_name": c, "category_id": 0, "bbox": box, "score": score}

    return {
        0: {
            "detections": [
                det("a", [11, 11, 20, 20], 0.9),
                det("a", [12, 10, 20, 20], 0.85),
                det("a", [60, 61, 20, 20], 0.3),
            ]
        },
        1: {
            "detections": [
                det("a", [10, 12, 20, 20], 0.8),
                det("b", [52, 50, 30, 30], 0.7),
                det("unknown", [0, 0, 5, 5], 0.99),
            ]
        },
        2: {"detections": [det("a", [50, 11, 20, 20], 0.6), det("b", [60, 0, 30, 30], 0.9)]},
        3: {"detections": [det("a", [40, 40, 20, 20], 0.95)]},
    }


def test_the_highest_threshold_reaching_the_sensitivity_with_froc_matching():
    gt = _gt()
    preds = to_predictions(gt, _results())
    assert len(preds) == 8  # the class the ground truth lacks is left out

    thresholds, details = choose_thresholds(gt, preds, ["a", "b", "c", "d"], 0.75, min_lesions=1)
    assert thresholds["a"] == 0.6  # 3 of a's 4 lesions; b's 2 lesions are never both hit
    # b, c and d get the pooled threshold: 5 hits of all 6 lesions are needed, the fifth scores 0.3
    assert thresholds == {"a": 0.6, "b": 0.3, "c": 0.3, "d": 0.3}
    assert [details[c]["source"] for c in "abcd"] == ["class", "pooled", "pooled", "pooled"]
    assert details["a"]["hits"] == 3 and details["a"]["sensitivity"] == 0.75
    assert details["a"]["fp_per_image"] == pytest.approx(2 / 4)  # the duplicate and the normal image's box
    assert "hit 1 of 2 lesions" in details["b"]["reason"]
    assert "no lesion" in details["c"]["reason"] and "not among" in details["d"]["reason"]

    thresholds, _ = choose_thresholds(gt, preds, ["a", "b", "c"], 0.5, min_lesions=1)
    # not 0.85: the duplicate of a hit lesion is no hit; c: 3 of all 6 lesions are hit from 0.7 on
    assert thresholds == {"a": 0.8, "b": 0.7, "c": 0.7}
    thresholds, _ = choose_thresholds(gt, preds, ["a"], 1.0, min_lesions=1)
    assert thresholds == {"a": 0.3}
    # a class with fewer lesions than min_lesions takes the pooled threshold even when its own exists
    thresholds, details = choose_thresholds(gt, preds, ["a", "b"], 0.5, min_lesions=3)
    assert thresholds == {"a": 0.8, "b": 0.7} and "2 lesions (fewer than 3)" in details["b"]["reason"]
    assert details["b"]["source"] == "pooled"
    # nothing reaches the sensitivity, pooled either: the stated default, never "all kept"
    thresholds, details = choose_thresholds(gt, preds, ["b"], 1.0, min_lesions=1)
    assert thresholds == {"b": 0.5} and details["b"]["source"] == "default"
    with pytest.raises(ValueError, match="sensitivity"):
        choose_thresholds(gt, preds, ["a"], 0.0)


def test_the_command_writes_thresholds_the_runtime_and_service_read(tmp_path, capsys):
    model_dir = tiny_model_folder(str(tmp_path), score_shift=3.0)
    val, images = str(tmp_path / "data" / "toy.json"), str(tmp_path / "data" / "images")
    assert main(["--model", model_dir, "--val", val, "--images", images, "--sensitivity", "0.5"]) == 0
    out = capsys.readouterr().out
    with open(os.path.join(model_dir, "thresholds.json")) as f:
        thresholds = json.load(f)
    with open(os.path.join(model_dir, "thresholds_info.json")) as f:
        info = json.load(f)
    assert set(thresholds) == {"class0", "class1", "class2"}, out  # every class has an operating point
    assert set(info["classes"]) == {"class0", "class1", "class2"} and info["images"] == 4
    for name, d in info["classes"].items():
        assert d["threshold"] == thresholds[name] and f"{name}: threshold" in out
        if d["source"] == "class":
            assert d["hits"] / d["lesions"] >= 0.5
        else:
            assert d["reason"] in out
    assert load_model(model_dir).thresholds == thresholds
    assert sorted(os.listdir(model_dir)) == [
        "config.yaml",
        "model_final.pth",
        "thresholds.json",
        "thresholds_info.json",
    ]  # no temporary file left

    os.remove(os.path.join(images, "toy_0001.png"))
    assert main(["--model", model_dir, "--val", val, "--images", images]) == 2
    assert "toy_0001.png" in capsys.readouterr().err
    assert load_model(model_dir).thresholds == thresholds  # a failed run leaves the file as it was
