"""benchmarks/compare_rows.py: per-seed differences and mean learning curves from a results.json."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _module():
    spec = importlib.util.spec_from_file_location(
        "compare_rows", os.path.join(ROOT, "benchmarks", "compare_rows.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(method, seed, m, curve=None):
    rec = {
        "table": "table1",
        "method": method,
        "seed": seed,
        "warm": 250,
        "iters": 250,
        "metrics": {"mAP": m},
        "normals": {"fp_per_normal_image_at_sensitivity": {"0.7": 2.0 + seed}},
    }
    if curve:
        rec["curve"] = curve
    return rec


def test_per_seed_differences_are_taken_to_the_same_seed():
    results = {
        "a": _run("retinanet", 0, 10.0),
        "b": _run("retinanet", 1, 12.0),
        "c": _run("daa", 0, 11.0),
        "d": _run("daa", 1, 11.5),
    }
    text = _module().compare(results, warm=250)
    daa = next(line for line in text.splitlines() if line.startswith("| daa"))
    assert "+1.0, -0.5" in daa and "11.2 ± 0.4" in daa and "2.50 ± 0.71" in daa


def test_curves_average_each_point_over_the_seeds_that_reached_it():
    c0 = {"50": {"mAP": 4.0, "fp_per_normal@70": 3.0}, "100": {"mAP": 6.0, "image_auroc_box": 55.0}}
    c1 = {"50": {"mAP": 2.0, "fp_per_normal@70": 5.0}}
    results = {"a": _run("oxnet", 0, 6.0, c0), "b": _run("oxnet", 1, 2.0, c1), "c": _run("retinanet", 0, 1.0)}
    text = _module().curves(results, warm=250)
    assert "| row | 50 | 100 |" in text
    lines = [line for line in text.splitlines() if line.startswith("| oxnet")]
    assert lines[0] == "| oxnet | 3.0 | 6.0 |"  # mAP: (4 + 2) / 2 at 50, seed 0 alone at 100
    assert lines[1] == "| oxnet | 4.00 | n/a |"  # false alarms per normal image
    assert lines[2] == "| oxnet | n/a | 55.0 |"  # image AUROC from the box score
    assert all(line.endswith("| n/a | n/a |") for line in text.splitlines() if line.startswith("| retinanet"))
    assert text.count("by iteration:") == 4
    assert _module().curves({"a": _run("oxnet", 0, 1.0)}, warm=250).startswith("no learning curve")


def _init(seed, m):
    return {
        "table": "init",
        "method": "retinanet",
        "seed": seed,
        "iters": 250,
        "metrics": {"mAP": m},
    }  # as recorded


def test_against_pairs_rows_by_seed_and_checks_the_warm_starts():
    base = {
        "i0": _init(0, 9.0),
        "i1": _init(1, 8.0),
        "a": _run("daa", 0, 10.0),
        "b": _run("daa", 1, 12.0),
        "c": _run("oxnet", 0, 5.0),
    }
    variant = {
        "i0": _init(0, 9.0),
        "i1": _init(1, 8.0),
        "a": _run("daa", 1, 11.0),
        "b": _run("daa", 0, 10.5),
        "c": _run("sfl", 0, 7.0),
    }
    mod = _module()
    text = mod.against(variant, base, warm=250)
    assert text.splitlines()[0] == "Warm starts: identical (mAP 9.0000, 8.0000)"
    daa = next(line for line in text.splitlines() if line.startswith("| daa"))
    assert "| +0.5, -1.0 |" in daa  # seed 0: 10.5 - 10.0, seed 1: 11.0 - 12.0 (not in dict order)
    assert not any(line.startswith(("| sfl", "| oxnet")) for line in text.splitlines())  # only rows in both
    variant["i1"] = _init(1, 8.5)
    assert "differ (seed 1: 8.5000 against 8.0000)" in mod.against(variant, base, warm=250)


def test_paired_interval_is_students_t_over_seeds_and_reads_the_sign():
    mod = _module()
    mean, low, high = mod.paired_interval([1.0, 2.0, 3.0])
    # mean 2, sample sd 1, t(0.975, 2) = 4.302653: 2 +- 4.302653 / sqrt(3)
    assert mean == 2.0 and abs(low - (2.0 - 2.484138)) < 1e-5 and abs(high - (2.0 + 2.484138)) < 1e-5
    assert mod.verdict((mean, low, high)) == "not resolved"
    assert mod.verdict(mod.paired_interval([1.0, 1.2, 0.9, 1.1, 1.0])) == "better"
    assert mod.verdict(mod.paired_interval([-1.0, -1.2, -0.9])) == "worse"
    assert mod.paired_interval([1.0, None]) is None and mod.verdict(None) == "n/a"
    results = {}
    for s, (base, d) in enumerate([(10, 1.0), (12, 1.2), (11, 0.9)]):
        results[f"retinanet{s}"] = _run("retinanet", s, base)
        results[f"daa{s}"] = _run("daa", s, base + d)
    daa = next(line for line in mod.compare(results, warm=250).splitlines() if line.startswith("| daa"))
    assert "+1.03 [+0.65, +1.41] better" in daa


def test_bootstrap_column_recomputes_the_runs_from_their_predictions(tmp_path):
    """--bootstrap: the paired mAP difference over seeds x test images, from each run's predictions.json
    (found by its fingerprint) and OUT/data/test.json; its centre is the mean paired difference."""
    import json

    import pytest

    from oxnet.evaluation import evaluate_detections
    from oxnet.evaluation.synthetic import synthetic_coco

    gt, _ = synthetic_coco(num_images=30, num_classes=2, gt_per_image=2, dets_per_image=6, seed=0)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test.json").write_text(json.dumps(gt))
    results, maps = {}, {}
    for method, offset in (("retinanet", 0), ("daa", 10)):
        for seed in range(3):
            preds = synthetic_coco(
                num_images=30, num_classes=2, gt_per_image=2, dets_per_image=6, seed=offset + seed
            )[1]
            folder = (
                tmp_path / "runs" / "table1" / f"{method}_f4_w8_u0" / f"seed{seed}_iters250_fp{method}{seed}"
            )
            (folder / "inference").mkdir(parents=True)
            (folder / "inference" / "predictions.json").write_text(json.dumps(preds))
            maps[method, seed] = 100 * evaluate_detections(gt, preds).metrics["mAP"]
            rec = _run(method, seed, maps[method, seed])
            rec.update(full=4, weak=8, unlabeled=0, config=f"fp{method}{seed}")
            results[f"{method}{seed}"] = rec
    text = _module().compare(results, warm=250, bootstrap=100, out_dir=str(tmp_path))
    daa = next(line for line in text.splitlines() if line.startswith("| daa")).split(" | ")
    want = sum(maps["daa", s] - maps["retinanet", s] for s in range(3)) / 3
    assert daa[4].startswith(f"{want:+.2f} [") and daa[5].startswith(f"{want:+.2f} [")
    results["daa0"]["metrics"]["mAP"] += 1.0  # a record that is not these predictions' run
    with pytest.raises(ValueError, match="records"):
        _module().compare(results, warm=250, bootstrap=10, out_dir=str(tmp_path))


def test_merged_rows_of_another_folder_are_renamed_and_paired_by_seed():
    here = {"a": _run("retinanet", 0, 10.0), "b": _run("retinanet", 1, 12.0)}
    there = {"c": _run("oxnet_authors", 0, 9.0), "d": _run("oxnet_authors", 1, 14.0), "e": {"table": "init"}}
    merged = _module().merge_results(here, there, "_gn", "/elsewhere")
    assert len(merged) == 4 and merged["c_gn"]["_out_dir"] == "/elsewhere"
    row = next(
        line
        for line in _module().compare(merged, warm=250).splitlines()
        if line.startswith("| oxnet_authors_gn")
    )
    assert "-1.0, +2.0" in row
