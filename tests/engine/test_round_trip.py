"""A user's round trip: train -> predict on the test images' files -> evaluate the predictions file,
scoring exactly what the in-process evaluation scores; the run's config travels with its weights."""

import importlib.util
import json
import os

import pytest
import torch
from detectron2.data import DatasetCatalog

from oxnet.data import register_omni_coco
from oxnet.engine import OXnetTrainer
from oxnet.engine.model_files import WeightsMismatchError, load_model_config
from oxnet.engine.predictor import OXnetPredictor
from oxnet.evaluate import main as evaluate_main
from oxnet.testing import REPO_ROOT, read_json, tiny_cfg, write_toy_dataset


def _cli(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, *path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny OXnet trained 4 steps on toy data whose category ids start at 11 (not 1), evaluated
    in process on its test split."""
    root = tmp_path_factory.mktemp("round_trip")
    files = {}
    for split, (n_full, n_weak, seed) in {"train": (6, 4, 0), "test": (6, 0, 1)}.items():
        path = write_toy_dataset(
            str(root / split), n_full=n_full, n_weak=n_weak, n_unlabeled=2 * (split == "train"), seed=seed
        )
        coco = read_json(path)
        for c in coco["categories"]:
            c["id"] += 10
        for a in coco["annotations"]:
            a["category_id"] += 10
        with open(path, "w") as f:
            json.dump(coco, f)
        files[split] = path
        name = f"round_trip_{split}"
        if name not in DatasetCatalog.list():
            register_omni_coco(name, path, str(root / split / "images"))
    cfg = tiny_cfg("oxnet")
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("round_trip_train",), ("round_trip_test",)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.WARMUP_ITERS = 1e-3, 4, (), 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 10**6
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = 0.0  # an untrained model's scores are low: keep its boxes
    cfg.TEST.DETECTIONS_PER_IMAGE = 30
    cfg.OUTPUT_DIR = str(root / "model")
    torch.manual_seed(0)
    trainer = OXnetTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    eval_dir = root / "eval"
    results = OXnetTrainer.test(
        cfg, trainer.model, evaluators=[OXnetTrainer.build_evaluator(cfg, "round_trip_test", str(eval_dir))]
    )
    return {
        "root": root,
        "files": files,
        "weights": root / "model" / "model_final.pth",
        "eval_dir": eval_dir,
        "mAP": results["bbox"]["mAP"],
    }


def test_training_saves_its_config_with_classes_and_category_ids(trained):
    cfg = load_model_config(trained["weights"])
    assert tuple(cfg.OXNET.CLASS_NAMES) == ("class0", "class1", "class2")
    assert tuple(cfg.OXNET.CATEGORY_IDS) == (11, 12, 13)
    assert cfg.MODEL.RETINANET.NUM_CLASSES == 3 and cfg.OXNET.INPUT_SIZE == 64
    assert {d[0] for d in cfg.OXNET.DATASETS} == {"round_trip_train", "round_trip_test"}
    OXnetPredictor.from_weights(str(trained["weights"]))  # loads strictly: every key fits


def test_in_process_evaluation_writes_predictions_in_dataset_ids(trained):
    dets = read_json(trained["eval_dir"] / "predictions.json")
    scores = read_json(trained["eval_dir"] / "image_scores.json")
    assert dets and {d["category_id"] for d in dets} <= {11, 12, 13}
    assert {d["category_name"] for d in dets} <= {"class0", "class1", "class2"}
    assert len(scores) == 6 and all(set(s["global_scores"]) == {"class0", "class1", "class2"} for s in scores)
    out = trained["root"] / "rescored_eval"
    assert (
        evaluate_main(
            [
                "--gt",
                trained["files"]["test"],
                "--pred",
                str(trained["eval_dir"]),
                "--out",
                str(out),
                "--metrics-only",
            ]
        )
        == 0
    )
    m = read_json(out / "metrics.json")
    assert abs(100 * m["mAP"] - trained["mAP"]) < 1e-9


def test_predict_then_evaluate_gives_the_in_process_map(trained, capsys):
    assert trained["mAP"] > 0  # otherwise equality below would prove little
    pred_dir = trained["root"] / "predict"
    predict = _cli("predict_cli", ("demo", "predict.py"))
    predict.main(
        [
            "--weights",
            str(trained["weights"]),
            "--input",
            str(trained["root"] / "test" / "images"),
            "--output",
            str(pred_dir),
            "--batch-size",
            "1",
            "--no-progress",
        ]
    )
    dets = read_json(pred_dir / "predictions.json")
    assert {d["category_id"] for d in dets} <= {11, 12, 13}
    out = trained["root"] / "scored"
    assert (
        evaluate_main(
            ["--gt", trained["files"]["test"], "--pred", str(pred_dir), "--out", str(out), "--metrics-only"]
        )
        == 0
    )
    m = read_json(out / "metrics.json")
    assert abs(100 * m["mAP"] - trained["mAP"]) < 1e-9
    in_process = read_json(trained["eval_dir"] / "metrics.json")
    assert m["auroc"]["global"] is not None  # image_scores.json was found in the folder and matched
    assert m["auroc"] == in_process["auroc"] and m["froc"] == in_process["froc"]
    scored = read_json(out / "predictions.json")
    assert len(scored) == len(dets) and {d["image_id"] for d in scored} <= set(range(1, 7))


def test_weights_that_do_not_fit_the_config_are_an_error(trained, tmp_path):
    cfg = tiny_cfg("oxnet", num_classes=9)  # another class count: head shapes differ
    config_file = tmp_path / "other.yaml"
    config_file.write_text(cfg.dump())
    with pytest.raises(WeightsMismatchError, match=r"another shape: .*cls_score"):
        OXnetPredictor.from_weights(str(trained["weights"]), config_file=str(config_file))
    cfg = tiny_cfg("retinanet", num_classes=3)  # no global head: keys the model lacks
    config_file.write_text(cfg.dump())
    with pytest.raises(WeightsMismatchError, match="not in the model: global_head"):
        OXnetPredictor.from_weights(str(trained["weights"]), config_file=str(config_file))
    predict = _cli("predict_cli2", ("demo", "predict.py"))
    with pytest.raises(SystemExit, match=r"error \(weights\)"):
        predict.main(
            [
                "--config-file",
                str(config_file),
                "--input",
                str(trained["root"] / "test" / "images"),
                "--output",
                str(tmp_path / "p"),
                "MODEL.WEIGHTS",
                str(trained["weights"]),
            ]
        )
    with pytest.raises(FileNotFoundError, match="the weights .* do not exist"):
        load_model_config(tmp_path / "model_final.pth")
    (tmp_path / "model_final.pth").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no config.yaml beside the weights"):
        load_model_config(tmp_path / "model_final.pth")
    # the service and the runtime take the model's folder: a weights file or a folder without config.yaml
    from oxnet.deploy.runtime import load_model

    with pytest.raises(FileNotFoundError, match=r"is a file: give the model's folder"):
        load_model(str(trained["weights"]))
    with pytest.raises(FileNotFoundError, match="has model_final.pth but no config.yaml"):
        load_model(str(tmp_path))


def test_evaluation_output_is_a_folder(trained, tmp_path, capsys):
    args = ["--gt", trained["files"]["test"], "--pred", str(trained["eval_dir"] / "predictions.json")]
    assert evaluate_main(args + ["--out", str(tmp_path / "metrics.json")]) == 2
    assert "names the output folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert evaluate_main(args + ["--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert evaluate_main(args + ["--out", str(tmp_path / "dir")]) == 0
    assert {"metrics.json", "report.html", "report.md", "predictions.json"} <= set(
        os.listdir(tmp_path / "dir")
    )


def test_eval_only_uses_the_config_beside_the_weights(trained):
    train_net = _cli("train_net_eval_only", ("train_net.py",))
    args = train_net.parse_args(["--eval-only", "MODEL.WEIGHTS", str(trained["weights"])])
    results = train_net.main(args)
    assert abs(results["bbox"]["mAP"] - trained["mAP"]) < 1e-9
    eval_dir = trained["weights"].parent / "eval" / "inference" / "round_trip_test"
    assert (eval_dir / "predictions.json").exists() and (eval_dir / "metrics.json").exists()
    saved = load_model_config(trained["weights"])  # the model's own config.yaml is left as it was
    assert str(trained["root"] / "model") == saved.OUTPUT_DIR
