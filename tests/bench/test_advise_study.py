"""The simulated annotation study: the hidden-box mix, the chain of rounds, resuming, the table."""

import os

import numpy as np
import pytest

from oxnet.bench import advise_study, load_spec
from oxnet.bench.advise_study import boxes_to_reach, hidden_box_mix, run_advise_study, study_table
from oxnet.testing import read_text


def test_hidden_box_mix_keeps_the_chosen_boxes_and_labels_the_rest_from_theirs():
    pool = {
        "categories": [{"id": 1, "name": "tb"}, {"id": 2, "name": "nodule"}],
        "images": [
            {"id": 1, "file_name": "a.png", "supervision": "full"},
            {"id": 2, "file_name": "b.png", "supervision": "full", "image_labels": {"nodule": -1}},
            {"id": 3, "file_name": "c.png", "supervision": "full"},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1},
            {"id": 11, "image_id": 2, "category_id": 1},
            {"id": 12, "image_id": 2, "category_id": 1},
        ],
    }
    extra = [{"id": 9, "file_name": "w.png", "supervision": "weak", "image_labels": {"tb": 0, "nodule": 0}}]
    mix = hidden_box_mix(pool, [1], extra)
    by_id = {i["id"]: i for i in mix["images"]}
    assert by_id[1]["supervision"] == "full" and [a["id"] for a in mix["annotations"]] == [10]
    assert by_id[2] == dict(pool["images"][1], supervision="weak", image_labels={"tb": 1, "nodule": -1})
    assert by_id[3]["image_labels"] == {"tb": 0, "nodule": 0}
    assert by_id[9] == extra[0] and by_id[9] is not extra[0]
    assert pool["images"][1]["supervision"] == "full"  # the pool is not changed


def test_boxes_to_reach_interpolates_between_rounds():
    curve = [(0, 10.0), (10, 12.0), (20, 16.0)]
    assert boxes_to_reach(curve, 14.0) == pytest.approx(15.0)
    assert boxes_to_reach(curve, 12.0) == pytest.approx(10.0)
    assert boxes_to_reach(curve, 9.0) == 0.0
    assert boxes_to_reach(curve, 16.5) is None


def _fake_training(calls):
    """Instead of training: mAP = the boxed images of the run's training set, written weights."""
    from detectron2.data import DatasetCatalog

    def fake(cfg, test_name, keep_weights=False, image_test_name=None):
        calls.append(cfg.OUTPUT_DIR)
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        with open(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), "wb") as f:
            f.write(b"weights")
        boxed = sum(d.get("supervision") == "full" for d in DatasetCatalog.get(cfg.DATASETS.TRAIN[0]))
        metrics = dict.fromkeys(("AP40", "AP75", "APs", "APm", "APl"), 0.0)
        fp = {"0.5": 10.0 / boxed}
        return dict(metrics, mAP=float(boxed), normals={"fp_per_normal_image_at_sensitivity": fp})

    return fake


def test_study_chains_rounds_from_one_start_and_resumes(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(advise_study, "train_and_evaluate", _fake_training(calls))
    spec = load_spec("toy")
    out = str(tmp_path / "study")
    kwargs = dict(seeds=2, rounds=2, per_round=2, start=3, iters=2, round_iters=1, warm=1)
    path = run_advise_study(spec, out, ["random"], **kwargs)
    # per seed: the warm start, the start model and two rounds
    assert len(calls) == 2 * 4
    from oxnet.bench.runner import load_results

    results = load_results(out)
    for seed in range(2):
        start = results[f"advise/start/seed{seed}"]
        r1, r2 = (results[f"advise/random/seed{seed}/round{r}"] for r in (1, 2))
        assert len(start["boxed"]) == 3 and start["metrics"]["mAP"] == 3.0
        picked = r1["picked"] + r2["picked"]
        assert len(set(picked)) == 4 and not set(picked) & set(start["boxed"])
        assert (r1["boxed"], r2["boxed"]) == (5, 7)
        assert r2["metrics"]["mAP"] == 7.0
        assert r1["picked_from"].startswith(os.path.join("runs", "advise", f"start_seed{seed}_"))
        assert r2["picked_from"].startswith(os.path.join("runs", "advise", f"random_seed{seed}_r1_"))
    assert results["advise/start/seed0"]["boxed"] != results["advise/start/seed1"]["boxed"]
    text = read_text(path)
    assert "| random | 2 | 2 |" in text and "| 7.00 ± 0.00 |" in text
    # a second run trains nothing
    run_advise_study(spec, out, ["random"], **kwargs)
    assert len(calls) == 8
    # one more round resumes from the last one's weights
    run_advise_study(spec, out, ["random"], **dict(kwargs, rounds=3))
    assert len(calls) == 10 and load_results(out)["advise/random/seed1/round3"]["boxed"] == 9


def test_study_table_pairs_each_strategy_with_random_per_seed(tmp_path):
    def rec(m, fp, boxes):
        return {
            "metrics": {"mAP": m},
            "normals": {"fp_per_normal_image_at_sensitivity": {"0.5": fp}},
            "added_boxes": boxes,
        }

    results = {}
    rnd = {0: [10, 12], 1: [11, 12], 2: [9, 13]}
    unc = {0: [10, 14], 1: [11, 15], 2: [9, 17]}
    for s in range(3):
        results[f"advise/start/seed{s}"] = rec(rnd[s][0], 2.0, 0)
        results[f"advise/random/seed{s}/round1"] = rec(rnd[s][1], 2.0, 10)
        results[f"advise/uncertainty/seed{s}/round1"] = rec(unc[s][1], 1.0, 12)
    path = study_table(results, ["random", "uncertainty"], 3, 1, str(tmp_path))
    text = read_text(path)
    diffs = np.array([2.0, 3.0, 4.0])
    half = 4.302652729911275 * diffs.std(ddof=1) / np.sqrt(3)
    assert f"+3.00 [{3 - half:+.2f}, {3 + half:+.2f}] better" in text
    assert "| 1.00 | -1.00 [-1.00, -1.00] better |" in text  # fewer false alarms are better
    # boxes to reach random's final mAP (12, 12, 13 with 10 boxes), between the start and 12 boxes:
    # seed 0 10 -> 14: 6 boxes; seed 1 11 -> 15: 3 boxes; seed 2 9 -> 17: 6 boxes
    assert "| uncertainty | 0.60, 0.30, 0.60 | 0.50 (3/3 reach it) |" in text
    assert os.path.getsize(os.path.join(str(tmp_path), "advise.png")) > 1000
