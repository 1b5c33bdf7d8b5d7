"""Benchmark data of kind "omni": box images plus a real weak label table, with normal test images and an
image-level test set. Toy data here; the real ``tbx-omni`` preset in test_tbx_omni.py."""

import csv
import json
import os

import pytest

from oxnet.bench import PRESETS, load_spec, table1_rows
from oxnet.bench.__main__ import main
from oxnet.bench.data import prepare_data
from oxnet.methods import method_names
from oxnet.testing import read_json, read_text, write_toy_dataset

N_WEAK = 20  # rows of the toy label table: even rows normal, odd rows positive for class0, row 19 blank
SITES = ["A"] * 12 + ["B"] * 8


def _toy_omni_spec(tmp_path, **weak_extra):
    write_toy_dataset(
        str(tmp_path / "boxes"), n_full=16, n_weak=0, n_unlabeled=0, size=64, num_classes=2, seed=0
    )
    write_toy_dataset(
        str(tmp_path / "weak"), n_full=N_WEAK, n_weak=0, n_unlabeled=0, size=64, num_classes=2, seed=1
    )
    with open(tmp_path / "weak" / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "c0", "c1", "site"])
        for i in range(N_WEAK):
            labels = ("", "") if i == 19 else ("0", "0") if i % 2 == 0 else ("1", "0")
            w.writerow([f"toy_{i:04d}.png", *labels, SITES[i]])
    weak = dict(
        {
            "csv": "weak/labels.csv",
            "images": "weak/images",
            "label_columns": {"c0": "class0", "c1": "class1"},
            "test_normal": 4,
            "test_positive": 2,
            "stratify": "site",
        },
        **weak_extra,
    )
    spec = {
        "data": {
            "kind": "omni",
            "boxes": {"json": "boxes/toy.json", "images": "boxes/images", "n_train": 12, "n_test": 4},
            "weak": [weak],
        },
        "iters": 2,
        "seeds": 1,
        "opts": PRESETS["toy"]["opts"],
    }
    path = tmp_path / "omni.json"
    path.write_text(json.dumps(spec))
    return str(path)


def _read(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return json.load(f)


def test_omni_data_holds_out_stratified_normals_and_positives_and_never_trains_on_them(tmp_path):
    spec = load_spec(_toy_omni_spec(tmp_path))
    data = prepare_data(spec, str(tmp_path / "out"))
    folder = data.folder
    names = ("train_pool.json", "weak_pool.json", "test.json", "test_image.json")
    pool, weak, test, image_test = (_read(folder, n) for n in names)
    report = _read(folder, "spec.json")["report"]
    table = report["weak_tables"][0]
    # 10 normal rows (6 at site A, 4 at B), 9 positive (6 A, 3 B), 1 without labels
    assert (table["normal"], table["positive"], table["rows"]) == (10, 9, 20)
    # 4 normals: A 2.4 -> 2, B 1.6 -> 2 (largest remainder); 2 positives: A 1.33 -> 1, B 0.67 -> 1
    assert table["test_by_site"] == {"A": [2, 1], "B": [2, 1]}
    assert (data.n_extra, data.n_extra_normal) == (14, 6) and len(weak["images"]) == 14
    assert all(img["supervision"] == "weak" for img in weak["images"])
    assert sum(not img["image_labels"] for img in weak["images"]) == 1  # the blank row stays, no labels
    # test.json: the box test split plus the 4 normals, fully labeled without boxes
    box_test = [img for img in test["images"] if img["file_name"].startswith("boxes/")]
    normals = [img for img in test["images"] if img["file_name"].startswith("weak/")]
    assert len(box_test) + len(pool["images"]) == 16 and len(normals) == 4
    assert all(img["supervision"] == "full" and "image_labels" not in img for img in normals)
    assert (data.n_test, data.n_test_normal, data.n_test_lesion) == (len(box_test) + 4, 4, len(box_test))
    # test_image.json: those 4 normals and 2 positives as weak images with their labels
    assert data.n_image_test == 6 and data.n_image_test_positive == 2
    assert {img["file_name"] for img in normals} < {img["file_name"] for img in image_test["images"]}
    assert sorted(img["image_labels"]["class0"] for img in image_test["images"]) == [0, 0, 0, 0, 1, 1]
    # classes renamed from the table's columns; no test image anywhere in training; ids unique per file set
    assert [c["name"] for c in weak["categories"]] == ["class0", "class1"]
    train_files = {img["file_name"] for img in pool["images"] + weak["images"]}
    test_files = {img["file_name"] for img in test["images"] + image_test["images"]}
    assert not train_files & test_files and len(train_files) == len(pool["images"]) + 14
    ids = [img["id"] for img in pool["images"] + weak["images"] + test["images"]]
    assert len(ids) == len(set(ids))
    assert all(os.path.isfile(os.path.join(data.image_root, f)) for f in train_files | test_files)
    # a second preparation reuses the data
    assert prepare_data(spec, str(tmp_path / "out")).n_extra == 14


def test_real_weak_images_are_weak_for_label_users_unlabeled_for_semi_supervised_rows_and_unused_by_retinanet(
    tmp_path,
):
    spec = load_spec(_toy_omni_spec(tmp_path))
    data = prepare_data(spec, str(tmp_path / "out"))
    methods = ["retinanet", "mean_teacher", "oxnet"]
    methods += ["retinanet_neg"] if "retinanet_neg" in method_names() else []
    rows = {r.method: r for r in table1_rows(spec, data.n_train, methods, n_extra=data.n_extra)}
    rest = data.n_train - rows["oxnet"].full + data.n_extra
    assert (rows["retinanet"].weak, rows["retinanet"].unlabeled) == (0, 0)
    assert (rows["mean_teacher"].weak, rows["mean_teacher"].unlabeled) == (0, rest)
    assert (rows["oxnet"].weak, rows["oxnet"].unlabeled) == (rest, 0)
    if "retinanet_neg" in rows:  # weak negatives without a global head use the weak images
        assert (rows["retinanet_neg"].weak, rows["retinanet_neg"].unlabeled) == (rest, 0)
    real = {img["file_name"]: img for img in data.weak_images}
    for row in rows.values():
        data.mix(row.full, row.weak, row.unlabeled)
        mix = _read(data.folder, f"train_f{row.full}_w{row.weak}_u{row.unlabeled}.json")["images"]
        extra = [img for img in mix if img["file_name"] in real]
        levels = [img["supervision"] for img in mix]
        assert (levels.count("full"), levels.count("weak"), levels.count("unlabeled")) == (
            row.full,
            row.weak,
            row.unlabeled,
        )
        if row.weak:  # every real weak image, with its real labels
            assert len(extra) == data.n_extra
            assert all(img["image_labels"] == real[img["file_name"]]["image_labels"] for img in extra)
        elif row.unlabeled:
            assert len(extra) == data.n_extra and all(img["supervision"] == "unlabeled" for img in extra)
            assert not any("image_labels" in img for img in extra)
        else:
            assert extra == []


def test_omni_table_runs_end_to_end_with_false_alarms_and_image_auroc(tmp_path):
    spec_path = _toy_omni_spec(tmp_path)
    out = str(tmp_path / "bench")
    assert (
        main(
            [
                "table1",
                "--data",
                spec_path,
                "--out",
                out,
                "--rows",
                "retinanet,oxnet",
                "--iters",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    results = read_json(os.path.join(out, "results.json"))
    assert len(results) == 2
    for key, r in results.items():
        assert set(r["metrics"]) == {"mAP", "AP40", "AP75", "APs", "APm", "APl"}
        assert r["normals"]["n_normal_images"] == 4 and r["normals"]["n_lesion_images"] >= 1
        assert set(r["normals"]["fp_per_normal_image_at_sensitivity"]) == {"0.5", "0.7", "0.8"}
        assert r["image_auroc"]["images"] == 6
        assert r["image_auroc"]["labels"]["class0"] == {"positive": 2, "negative": 4}
        assert (r["image_auroc"]["global"] is None) == key.startswith("table1/retinanet_")
    text = read_text(os.path.join(out, "table1.md"))
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    assert header.endswith("| FP/normal @70% | image AUROC (box) | image AUROC (global) |")
    assert "4 normal (fully labeled, no box)" in text and "image-level test set: 6 images, 2 positive" in text
    assert "+ 14 weakly labeled ones from label tables (6 normal)" in text
    oxnet_row = next(line for line in text.splitlines() if line.startswith("| OXnet"))
    assert "pending" not in oxnet_row and oxnet_row.count("|") == header.count("|")


def test_omni_learning_curve_follows_map_false_alarms_and_both_image_aurocs(tmp_path):
    spec_path = _toy_omni_spec(tmp_path)
    out = str(tmp_path / "bench")
    assert (
        main(
            [
                "table1",
                "--data",
                spec_path,
                "--out",
                out,
                "--rows",
                "oxnet",
                "--iters",
                "2",
                "--eval-period",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    (r,) = read_json(os.path.join(out, "results.json")).values()
    assert sorted(r["curve"]) == ["1", "2"]
    last = r["curve"]["2"]  # the evaluation at the end of training is the one results.json keeps
    assert last["mAP"] == pytest.approx(r["metrics"]["mAP"], abs=1e-3)
    assert last["image_auroc_box"] == pytest.approx(r["image_auroc"]["box"], abs=1e-3)
    assert last["image_auroc_global"] == pytest.approx(r["image_auroc"]["global"], abs=1e-3)
    fp = r["normals"]["fp_per_normal_image_at_sensitivity"]["0.7"]
    if fp is None:  # the sensitivity is not reached: nothing to log at that point
        assert "fp_per_normal@70" not in last
    else:
        assert last["fp_per_normal@70"] == pytest.approx(fp, abs=1e-3)


def test_extra_rows_are_selectable_and_listed(tmp_path, monkeypatch):
    from oxnet.bench import runner

    assert all(
        m in method_names() and os.path.exists(os.path.join(runner.CONFIG_DIR, f"{m}.yaml"))
        for m in ("retinanet_neg", "sfl_plus", "oxnet_plus")
    )
    trained = []

    def fake_training(cfg, test_name, keep_weights=False, image_test_name=None):
        trained.append((cfg.OXNET.METHOD, image_test_name is not None))
        return {k: 1.0 for k in runner.METRIC_KEYS}

    monkeypatch.setattr(runner, "train_and_evaluate", fake_training)
    out = str(tmp_path / "bench")
    assert (
        main(
            [
                "table1",
                "--data",
                "toy",
                "--out",
                out,
                "--rows",
                "retinanet_neg",
                "--iters",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert trained == [("retinanet_neg", False)]
    text = read_text(os.path.join(out, "table1.md"))
    assert "| RetinaNet + weak negatives | 3 | 9 | 0 | 1.0 |" in text
    assert "| OXnet (SFL+DAA+GPA) |" not in text  # a --rows subset: a table of that row only


def test_omni_spec_errors_name_the_problem(tmp_path):
    path = tmp_path / "bad.json"
    for data, match in [
        ({"kind": "omni", "weak": []}, "needs 'boxes'"),
        ({"kind": "omni", "boxes": {"json": "a", "images": "b", "n_train": 1, "n_test": 1}}, "needs 'weak'"),
        (
            {
                "kind": "omni",
                "boxes": {"json": "a", "images": "b", "n_train": 1, "n_test": 1},
                "weak": [{"csv": "c", "images": "d", "test_normals": 3}],
            },
            "unknown keys",
        ),
        (
            {
                "kind": "omni",
                "boxes": {"json": "a", "images": "b", "n_train": 1, "n_test": 1},
                "weak": [],
                "merge_classes": "x",
                "class_map": {"a": "b"},
            },
            "not both",
        ),
    ]:
        path.write_text(json.dumps({"data": data}))
        with pytest.raises(ValueError, match=match):
            load_spec(str(path))
    path.write_text(json.dumps({"data": {"kind": "toy"}, "table1": {"rows": ["oxnet", "nope"]}}))
    with pytest.raises(ValueError, match="nope"):
        load_spec(str(path))
    # more held-out images than the table has
    spec = load_spec(_toy_omni_spec(tmp_path, test_positive=10))
    with pytest.raises(ValueError, match="10 test images asked for but only 9"):
        prepare_data(spec, str(tmp_path / "out"))
