import json
import os

import pytest
import torch

from oxnet.bench import PRESETS, TABLE1_ROWS, load_spec, run_table, runner, table1_rows, table2_rows
from oxnet.bench.__main__ import main
from oxnet.testing import read_json, read_text


def test_table1_rows_use_the_non_box_images_as_the_paper_does():
    spec = load_spec("toy")
    rows = {r.method: r for r in table1_rows(dict(spec, table1={"full": 0.25}), 100)}
    assert list(rows) == list(TABLE1_ROWS)
    assert all(r.full == 25 for r in rows.values())
    assert (rows["retinanet"].weak, rows["retinanet"].unlabeled) == (0, 0)
    for m in ("pi_model", "mean_teacher", "mmt_psm", "focalmix", "sfl"):  # rows 2-5 and SFL: 0 weak
        assert (rows[m].weak, rows[m].unlabeled) == (0, 75), m
    for m in ("pi_model_mt", "mean_teacher_mt", "mmt_psm_mt", "focalmix_mt", "daa", "daa_gpa", "oxnet"):
        assert (rows[m].weak, rows[m].unlabeled) == (75, 0), m


def test_table2_rows_scale_the_paper_settings():
    rows = table2_rows(load_spec("toy"), 13963)
    counts = [(r.full, r.weak, r.unlabeled) for r in rows]
    assert counts[:4] == [(682, 0, 0), (1372, 0, 0), (2725, 0, 0), (682, 13281, 0)]
    assert [r.method for r in rows] == ["retinanet"] * 3 + ["oxnet"] * 6


def test_every_row_has_a_config_file_with_its_method():
    for m in TABLE1_ROWS:
        with open(runner.config_file(m), encoding="utf-8") as f:
            assert f'METHOD: "{m}"' in f.read()


def test_spec_files_resolve_relative_paths_and_bad_specs_are_named(tmp_path):
    path = tmp_path / "my.json"
    path.write_text(
        json.dumps(
            {
                "data": {"kind": "coco", "json": "a/ann.json", "images": "a/img", "n_train": 10, "n_test": 5},
                "iters": 7,
            }
        )
    )
    spec = load_spec(str(path))
    assert spec["data"]["json"] == str(tmp_path / "a" / "ann.json")
    assert spec["iters"] == 7 and spec["table1"] == {"full": 0.25} and spec["name"] == "my"
    path.write_text(json.dumps({"data": {"kind": "nope"}}))
    with pytest.raises(ValueError, match="my.json.*kind"):
        load_spec(str(path))
    with pytest.raises(ValueError, match="neither a preset"):
        load_spec(str(tmp_path / "missing.json"))
    assert {"synthetic", "tbx500"} <= set(PRESETS)


def _table_rows(path):
    lines = read_text(path).splitlines()
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in lines
        if line.startswith("| ") and "Method" not in line
    ]


def test_table1_and_table2_run_end_to_end_and_resume(tmp_path, monkeypatch):
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
                "retinanet,oxnet",
                "--iters",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    rows = {r[0]: r for r in _table_rows(os.path.join(out, "table1.md"))}
    assert list(rows) == ["RetinaNet", "OXnet (SFL+DAA+GPA)"]  # a --rows subset: a table of those rows
    assert rows["RetinaNet"][1:4] == ["3", "0", "0"] and rows["OXnet (SFL+DAA+GPA)"][1:4] == ["3", "9", "0"]
    assert all(c != "pending" for name in ("RetinaNet", "OXnet (SFL+DAA+GPA)") for c in rows[name][4:])
    results = read_json(os.path.join(out, "results.json"))
    assert len(results) == 2
    threads = torch.get_num_threads()
    assert all(
        r["device"].endswith(f"cores, {threads} thread" + "s" * (threads != 1))  # the CPU here
        for r in results.values()
    )
    assert "Runs trained on: " + next(iter(results.values()))["device"] in read_text(
        os.path.join(out, "table1.md")
    )
    assert all(set(r["metrics"]) == {"mAP", "AP40", "AP75", "APs", "APm", "APl"} for r in results.values())
    assert not any(f.endswith(".pth") for _, _, files in os.walk(out) for f in files)  # weights dropped

    spec = dict(load_spec("toy"), table2={"settings": [[3, 0, 0], [3, 6, 3]], "methods": None})
    path = run_table("table2", spec, out, iters=2, progress=False)
    rows = _table_rows(path)
    assert [r[:4] for r in rows] == [["RetinaNet", "3", "0", "0"], ["OXnet (SFL+DAA+GPA)", "3", "6", "3"]]
    train = read_json(os.path.join(out, "data", "train_f3_w6_u3.json"))
    levels = sorted(i["supervision"] for i in train["images"])
    assert levels == ["full"] * 3 + ["unlabeled"] * 3 + ["weak"] * 6
    assert len(read_json(os.path.join(out, "results.json"))) == 4

    # a second call finds every run in results.json and trains nothing
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner, "train_and_evaluate", no_training)
    assert (
        main(
            [
                "table1",
                "--data",
                "toy",
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
    run_table("table2", spec, out, iters=2, progress=False)
    # --report-only rewrites a table over more seeds than were run, training nothing
    assert (
        main(
            [
                "table1",
                "--data",
                "toy",
                "--out",
                out,
                "--seeds",
                "2",
                "--iters",
                "2",
                "--report-only",
                "--no-progress",
            ]
        )
        == 0
    )
    rows = {r[0]: r for r in _table_rows(os.path.join(out, "table1.md"))}
    assert "RetinaNet (1/2 seeds)" in rows and rows["Mean Teacher"][4] == "pending"  # every row listed
    assert rows["Mean Teacher"][1:4] == ["3", "0", "9"]

    # a changed config (here the ramp-up) makes the finished run stale: it is trained again, and the
    # table shows the new result only
    trained = []

    def fake_training(cfg, test_name, keep_weights=False):
        trained.append((cfg.OXNET.METHOD, cfg.OXNET.RAMPUP.ITERS, cfg.OUTPUT_DIR))
        return {k: 42.0 for k in runner.METRIC_KEYS}

    monkeypatch.setattr(runner, "train_and_evaluate", fake_training)
    old_dirs = os.listdir(os.path.join(out, "runs", "table1", "oxnet_f3_w9_u0"))
    path = run_table(
        "table1", dict(load_spec("toy"), rampup_fraction=0.5), out, iters=2, rows=["oxnet"], progress=False
    )
    assert [t[:2] for t in trained] == [("oxnet", 1)]
    assert os.path.basename(trained[0][2]) not in old_dirs  # not resumed from the old run's checkpoints
    rows = {r[0]: r for r in _table_rows(path)}
    assert list(rows) == ["OXnet (SFL+DAA+GPA)"] and rows["OXnet (SFL+DAA+GPA)"][4] == "42.0"
    # an unknown row is refused with its name
    assert main(["table1", "--data", "toy", "--out", out, "--rows", "resnet"]) == 2


def test_warm_start_trains_one_retinanet_per_boxes_and_seed_and_every_row_starts_from_it(
    tmp_path, monkeypatch
):
    import torch

    from oxnet.engine import OXnetTrainer
    from oxnet.engine.hooks import unwrap

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
                "retinanet,oxnet",
                "--iters",
                "2",
                "--warm-start",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    results = read_json(os.path.join(out, "results.json"))
    # one warm start (both rows share the 3 box-labeled images and seed 0), then the two rows
    assert sorted(results) == [
        "init/retinanet_f3_w0_u0/seed0/iters3",
        "table1/oxnet_f3_w9_u0/seed0/iters2/warm3",
        "table1/retinanet_f3_w0_u0/seed0/iters2/warm3",
    ]
    init_dir = os.path.join(out, "runs", "init", "retinanet_f3_w0_u0")
    (run,) = os.listdir(init_dir)
    weights = os.path.join(init_dir, run, "model_final.pth")
    kept = [f for _, _, files in os.walk(out) for f in files if f.endswith(".pth")]
    assert kept == ["model_final.pth"] and os.path.exists(weights)  # only the warm start's final weights
    rows = {r[0]: r for r in _table_rows(os.path.join(out, "table1_warm3.md"))}
    assert rows["OXnet (SFL+DAA+GPA)"][4] != "pending" and "Mean Teacher" not in rows
    assert not os.path.exists(os.path.join(out, "table1.md"))

    # the row's run really starts from those weights, with its own learning rate, and the teacher too
    seen = []

    def check_start(cfg, test_name, keep_weights=False):
        assert weights == cfg.MODEL.WEIGHTS and pytest.approx(1e-4) == cfg.SOLVER.BASE_LR
        trainer = OXnetTrainer(cfg)
        trainer.resume_or_load(resume=True)
        init = torch.load(weights, map_location="cpu", weights_only=True)["model"]
        student = unwrap(trainer.model).state_dict()
        teacher = trainer.teacher_hook.teacher.state_dict()
        name = "backbone.bottom_up.stem.conv1.weight"
        assert torch.equal(student[name], init[name]) and torch.equal(teacher[name], init[name])
        seen.append(cfg.OXNET.METHOD)
        return {k: 1.0 for k in runner.METRIC_KEYS}

    monkeypatch.setattr(runner, "train_and_evaluate", check_start)
    # from scratch and warm-started results live side by side; the warm start is not retrained
    assert (
        main(
            [
                "table1",
                "--data",
                "toy",
                "--out",
                out,
                "--rows",
                "oxnet,sfl",
                "--iters",
                "2",
                "--warm-start",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    assert seen == ["sfl"]
    assert (
        main(["table1", "--data", "toy", "--out", out, "--rows", "sfl", "--iters", "2", "--warm-start", "-1"])
        == 2
    )


def test_shards_split_the_runs_without_overlap_and_keep_a_warm_start_with_its_rows(tmp_path, monkeypatch):
    trained = []

    def fake_training(cfg, test_name, keep_weights=False):
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        open(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), "w").close()
        trained.append((cfg.OXNET.METHOD, cfg.SEED, cfg.SOLVER.MAX_ITER))
        return {k: 1.0 for k in runner.METRIC_KEYS}

    monkeypatch.setattr(runner, "train_and_evaluate", fake_training)
    out = str(tmp_path / "bench")
    args = [
        "table1",
        "--data",
        "toy",
        "--out",
        out,
        "--rows",
        "retinanet,oxnet,sfl",
        "--seeds",
        "2",
        "--iters",
        "2",
        "--no-progress",
    ]
    per_shard = []
    for i in range(3):
        before = len(trained)
        assert main(args + ["--shard", f"{i}/3"]) == 0
        per_shard.append(trained[before:])
    assert sorted(t[:2] for t in trained) == sorted(
        (m, s) for m in ("retinanet", "oxnet", "sfl") for s in (0, 1)
    )  # each run once
    assert [len(p) for p in per_shard] == [2, 2, 2]
    assert len(read_json(os.path.join(out, "results.json"))) == 6  # all shards' results kept

    # with a warm start, the rows sharing one (boxes, seed) warm start stay in one shard, which
    # trains that warm start once: 2 seeds over 2 shards, each trains 1 warm start + 3 rows
    trained.clear()
    for i in range(2):
        before = len(trained)
        assert main(args + ["--warm-start", "3", "--shard", f"{i}/2"]) == 0
        shard = trained[before:]
        assert len(shard) == 4 and len({s for _, s, _ in shard}) == 1 and shard[0] == ("retinanet", i, 3)
    assert main(args + ["--shard", "2/2"]) == 2 and main(args + ["--shard", "x"]) == 2


def test_eval_period_records_a_learning_curve(tmp_path):
    out = str(tmp_path / "bench")
    spec = dict(load_spec("toy"), eval_period=1)
    run_table("table1", spec, out, iters=2, rows=["retinanet"], progress=False)
    (record,) = read_json(os.path.join(out, "results.json")).values()
    assert sorted(record["curve"]) == ["1", "2"]  # evaluated after iterations 1 and 2
    assert record["curve"]["2"]["mAP"] == pytest.approx(record["metrics"]["mAP"], abs=1e-3)


def test_command_line_overrides_and_eval_period_reach_every_run(tmp_path, monkeypatch):
    seen = []

    def fake_training(cfg, test_name, keep_weights=False):
        seen.append((cfg.MODEL.RETINANET.NUM_CONVS, cfg.TEST.EVAL_PERIOD, cfg.DATASETS.TEST))
        return {k: 1.0 for k in runner.METRIC_KEYS}

    monkeypatch.setattr(runner, "train_and_evaluate", fake_training)
    out = str(tmp_path / "bench")
    args = [
        "table1",
        "--data",
        "toy",
        "--out",
        out,
        "--rows",
        "retinanet,oxnet",
        "--iters",
        "8",
        "--no-progress",
    ]
    assert main(args + ["--eval-period", "0.25", "MODEL.RETINANET.NUM_CONVS", "3"]) == 0
    assert len(seen) == 2 and all(s[:2] == (3, 2) and len(s[2]) == 1 for s in seen)  # 8 x 0.25 = 2
    assert "Config overrides for every run: `MODEL.RETINANET.NUM_CONVS 3`." in read_text(
        os.path.join(out, "table1.md")
    )
    assert main(args + ["MODEL.RETINANET.NUM_CONVS"]) == 2  # a key without its value
    assert main(args + ["MODEL.NO_SUCH_KEY", "1"]) == 2
    assert main(args + ["--eval-period", "-1"]) == 2


def test_fingerprint_omits_options_at_their_neutral_value_and_sees_any_other():
    from oxnet.config import NEUTRAL_OPTIONS
    from oxnet.testing import tiny_cfg

    today = tiny_cfg("oxnet")
    cfg = tiny_cfg("oxnet")
    for name, neutral in NEUTRAL_OPTIONS.items():
        *parents, key = name.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        node[key] = neutral
    before = cfg.clone()  # the config as it was before the neutral options existed
    for name in NEUTRAL_OPTIONS:
        *parents, key = name.split(".")
        node = before
        for part in parents:
            node = node[part]
        del node[key]
    assert runner.config_fingerprint(cfg) == runner.config_fingerprint(before)
    cfg.OXNET.AUG.SCALE_RANGE = (0.75, 1.25)
    assert runner.config_fingerprint(cfg) != runner.config_fingerprint(before)
    # Today's defaults (the authors' BCE scale, weak negatives) train differently: not neutral.
    assert runner.config_fingerprint(today) != runner.config_fingerprint(before)


def test_every_new_option_is_neutral_or_knowingly_fingerprinted():
    """A new config option must not silently invalidate every recorded benchmark run: it is either in
    NEUTRAL_OPTIONS (left out of the fingerprint at the value that trains as before) or listed in
    fingerprinted_options.txt on purpose."""
    from detectron2.config import get_cfg

    from oxnet.config import NEUTRAL_OPTIONS, add_oxnet_config

    cfg = get_cfg()
    add_oxnet_config(cfg)

    def keys(node, prefix):
        for k, v in node.items():
            yield from keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [prefix + k]

    listed = os.path.join(os.path.dirname(__file__), "fingerprinted_options.txt")
    with open(listed, encoding="utf-8") as f:
        recorded = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    options = set(keys(cfg.OXNET, "OXNET."))
    assert set(NEUTRAL_OPTIONS) <= options, "a neutral option that no longer exists"
    new = sorted(options - set(NEUTRAL_OPTIONS) - recorded)
    assert not new, (
        f"options {new} change every benchmark fingerprint: add them to "
        f"oxnet.config.NEUTRAL_OPTIONS with the value that trains as before, or to {listed}"
    )
    assert not recorded - options, f"{sorted(recorded - options)} listed in {listed} no longer exist"


def test_precision_is_resolved_on_the_machine_before_the_fingerprint(monkeypatch):
    """A bench run's precision enters its config (SOLVER.AMP.ENABLED, OXNET.AMP.DTYPE) resolved on this
    machine: float32 and bfloat16 runs never share a fingerprint, and "auto" on a machine without native
    bfloat16 is the float32 run."""
    from detectron2.data import MetadataCatalog

    from oxnet.modeling import precision

    MetadataCatalog.get("precision_test_set").thing_classes = ["a", "b"]
    row = table1_rows(load_spec("toy"), 12)[0]

    def fingerprint(prec):
        spec = dict(load_spec("toy"), precision=prec)
        cfg = runner.build_cfg(spec, row, 0, 2, "train", "precision_test_set", "")
        return cfg.SOLVER.AMP.ENABLED, cfg.OXNET.AMP.DTYPE, runner.config_fingerprint(cfg)

    fp32, bf16 = fingerprint("float32"), fingerprint("bfloat16")
    assert fp32[:2] == (False, "bfloat16") and bf16[:2] == (True, "bfloat16") and fp32[2] != bf16[2]
    monkeypatch.setattr(precision, "bfloat16_supported", lambda device: False)
    assert fingerprint("auto") == fp32
    monkeypatch.setattr(precision, "bfloat16_supported", lambda device: True)
    assert fingerprint("auto") == bf16
    with pytest.raises(ValueError, match="float16 needs a CUDA device"):
        fingerprint("float16")


def test_the_authors_row_starts_from_the_authors_retinanet_stage_with_a_p2_anchor_level(
    tmp_path, monkeypatch
):
    """``oxnet_authors`` warm-starts from ``retinanet_authors`` (their recipe: P2-P7, BN), not from the
    rows' common RetinaNet; on a preset with five anchor sizes its P2 level gets half the P3 sizes."""
    seen = {}

    def fake_training(cfg, test_name, keep_weights=False, **kwargs):
        seen[cfg.OXNET.METHOD] = (
            [list(s) for s in cfg.MODEL.ANCHOR_GENERATOR.SIZES],
            tuple(cfg.MODEL.RETINANET.IN_FEATURES),
            cfg.MODEL.WEIGHTS,
        )
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        open(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), "wb").close()
        return {k: 1.0 for k in runner.METRIC_KEYS}

    monkeypatch.setattr(runner, "train_and_evaluate", fake_training)
    out = str(tmp_path / "bench")
    args = ["table1", "--data", "toy", "--out", out, "--iters", "2", "--warm-start", "3", "--no-progress"]
    assert main(args + ["--rows", "retinanet,oxnet_authors"]) == 0
    results = read_json(os.path.join(out, "results.json"))
    assert sorted(k for k in results if k.startswith("init/")) == [
        "init/retinanet_authors_f3_w0_u0/seed0/iters3",
        "init/retinanet_f3_w0_u0/seed0/iters3",
    ]
    sizes, levels, weights = seen["oxnet_authors"]
    assert levels == ("p2", "p3", "p4", "p5", "p6", "p7") and len(sizes) == 6
    toy_p3 = [
        list(s)
        for s in load_spec("toy")["opts"][load_spec("toy")["opts"].index("MODEL.ANCHOR_GENERATOR.SIZES") + 1]
    ][0]
    assert sizes[0] == [round(v / 2, 2) for v in toy_p3] and sizes[1] == toy_p3
    assert "retinanet_authors_f3_w0_u0" in weights
    assert len(seen["retinanet"][0]) == 5
