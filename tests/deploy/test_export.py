"""Exported models (ONNX Runtime, torch.export, TorchScript) give the eager detectron2 model's results,
and exporting prints no warning."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from oxnet.data.io import read_raw, write_png
from oxnet.deploy.export import export_model, match_results
from oxnet.deploy.runtime import apply_thresholds, load_model, to_records
from oxnet.engine.model_files import load_model_config
from oxnet.engine.predictor import OXnetPredictor
from oxnet.engine.predictor import to_records as predictor_records
from oxnet.testing import REPO_ROOT, tiny_cfg

METHODS = ("oxnet", "retinanet")  # with the DAA global head, and plain RetinaNet
FORMATS = ("torchscript", "onnx", "pt2")


def _eager_folder(root, method):
    """A random-init tiny model whose class scores spread over (0, 1), saved as training saves it."""
    cfg = tiny_cfg(method)
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = 0.3
    cfg.TEST.DETECTIONS_PER_IMAGE = 50
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():  # the prior-probability init gives ~0.01 everywhere: spread the scores
        torch.nn.init.normal_(model.head.cls_score.weight, std=0.05)
        torch.nn.init.constant_(model.head.cls_score.bias, -1.0)
        torch.nn.init.normal_(model.head.bbox_pred.weight, std=0.02)
    folder = root / method
    folder.mkdir()
    DetectionCheckpointer(model, save_dir=str(folder)).save("model_final")
    (folder / "config.yaml").write_text(cfg.dump())
    return folder


#: Warnings raised while the ``models`` fixture exported, as (format, category, message, file:line).
EXPORT_WARNINGS = []


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{method: (eager folder, {format: exported folder})}."""
    root = tmp_path_factory.mktemp("deploy")
    out = {}
    for method in METHODS:
        folder = _eager_folder(root, method)
        cfg = load_model_config(folder / "model_final.pth")
        out[method] = (folder, {fmt: root / f"{method}_{fmt}" for fmt in FORMATS})
        for fmt in FORMATS:
            with warnings.catch_warnings(record=True) as caught:  # the filters in force stay as they are
                export_model(cfg, str(out[method][1][fmt]), fmt)
            EXPORT_WARNINGS.extend(
                (fmt, w.category.__name__, str(w.message)[:200], f"{w.filename}:{w.lineno}") for w in caught
            )
    return out


def test_export_raises_no_warning(models):
    """Every format exports (and checks itself against the eager network) without a warning."""
    assert {fmt for m in models.values() for fmt in m[1]} == set(FORMATS)
    assert EXPORT_WARNINGS == []


def test_formats_written(models):
    """Each folder holds its own graph only, of the format torch recommends for it."""
    import onnx

    for method, (_, exported) in models.items():
        for fmt, folder in exported.items():
            files = sorted(p.name for p in folder.iterdir())
            graph = {"onnx": "model.onnx", "pt2": "model.pt2", "torchscript": "model.ts"}[fmt]
            assert files == sorted(["config.yaml", "model.json", graph]), (method, fmt)
    proto = onnx.load(str(models["oxnet"][1]["onnx"] / "model.onnx"))
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["scores", "deltas", "image_scores"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # the batch is dynamic
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18
    program = torch.export.load(str(models["oxnet"][1]["pt2"] / "model.pt2"))
    assert isinstance(program, torch.export.ExportedProgram)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A non-square 8-bit PNG and a non-square 16-bit PNG, read as the service reads them."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    wide = rng.normal(70, 10, (80, 120)).clip(0, 255).astype(np.uint8)
    wide[20:50, 30:70] = 200
    tall = (rng.normal(9000, 800, (130, 90)).clip(0, 65535)).astype(np.uint16)
    tall[60:100, 10:50] = 40000
    paths = [root / "wide.png", root / "tall16.png"]
    write_png(paths[0], wide)
    write_png(paths[1], tall)
    return paths


@pytest.mark.parametrize("method", METHODS)
def test_exported_models_match_eager(models, images, method):
    eager_folder, exported = models[method]
    eager = load_model(eager_folder)
    assert eager.backend == "eager"
    arrays = [read_raw(p) for p in images]
    assert arrays[1].max() > 255  # the 16-bit image reaches the model with its full range
    reference = eager.predict_batch(arrays)
    for ref, image in zip(reference, arrays):
        assert (ref["height"], ref["width"]) == image.shape
        assert len(ref["detections"]) >= 5  # the comparison is not between empty results
        assert (ref["image_scores"] is not None) == (method == "oxnet")
    for fmt, folder in exported.items():
        model = load_model(folder)
        assert model.backend == fmt and model.info["format"] == fmt
        assert model.info["config_sha1"] == eager.info["config_sha1"]
        assert model.info["has_global_head"] == (method == "oxnet")
        single = [model.predict(a) for a in arrays]
        batched = model.predict_batch(arrays)
        for ref, one, many in zip(reference, single, batched):
            assert match_results(ref, one) == [], fmt
            assert match_results(ref, many) == [], fmt


def test_eager_backend_is_the_predictor_on_files(models, images):
    """The runtime's eager backend and its COCO records equal OXnetPredictor on the image files."""
    folder, _ = models["oxnet"]
    predictor = OXnetPredictor.from_weights(folder / "model_final.pth")
    model = load_model(folder, "eager")
    for image_id, path in enumerate(images):
        expected = predictor_records(
            predictor([str(path)])[0], str(path), image_id, predictor.class_names, predictor.category_ids
        )
        got = to_records(model.predict(read_raw(path)), str(path), image_id)
        assert len(got) == len(expected) > 0
        for g, e in zip(got, expected):
            assert set(g) == set(e)
            assert (g["category_id"], g["category_name"], g["file_name"]) == (
                e["category_id"],
                e["category_name"],
                e["file_name"],
            )
            np.testing.assert_allclose(g["bbox"], e["bbox"], atol=1e-4)
            assert g["score"] == pytest.approx(e["score"], abs=1e-6)


def test_model_json_records_preprocessing(models):
    _, exported = models["oxnet"]
    info = json.loads((exported["onnx"] / "model.json").read_text())
    assert info["input_size"] == 64 and info["padded_size"] % 32 == 0
    assert info["pixel_mean"] == [128.0] * 3 and info["pixel_std"] == [64.0] * 3
    assert info["class_names"] == ["class0", "class1", "class2"] and info["category_ids"] == [1, 2, 3]
    assert info["opset"] >= 18 and info["graph"]["outputs"] == ["scores", "deltas", "image_scores"]
    assert (exported["onnx"] / "config.yaml").exists() and not (exported["onnx"] / "model.ts").exists()
    assert json.loads((exported["pt2"] / "model.json").read_text())["format"] == "pt2"


def test_thresholds_and_errors(models, images, tmp_path):
    _, exported = models["retinanet"]
    folder = exported["onnx"]
    (folder / "thresholds.json").write_text(json.dumps({"class1": 0.6}))
    try:
        model = load_model(folder)
        assert model.thresholds == {"class1": 0.6}
        result = model.predict(read_raw(images[0]))
        kept = apply_thresholds(result, model.thresholds)["detections"]
        assert all(d["score"] >= 0.6 for d in kept if d["category_name"] == "class1")
        dropped = [d for d in result["detections"] if d["category_name"] == "class1" and d["score"] < 0.6]
        assert len(kept) == len(result["detections"]) - len(dropped)
        (folder / "thresholds.json").write_text(json.dumps({"nodule": 0.5}))
        with pytest.raises(ValueError, match=r"thresholds\.json.*'nodule' is not a class"):
            load_model(folder)
    finally:
        (folder / "thresholds.json").unlink()
    with pytest.raises(FileNotFoundError, match="holds no model"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="no model.ts"):
        load_model(folder, "torchscript")


def _export_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("export_model", f"{REPO_ROOT}/tools/export_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_command_lines(models, images, tmp_path):
    """tools/export_model.py, run as a user runs it, checks the export on images and prints no
    warning (TorchScript: the format whose PyTorch calls are deprecated); python -m
    oxnet.deploy.runtime writes the eager model's COCO results; weights that do not fit the config
    are refused."""
    from oxnet.deploy.runtime import main as run_main

    tool = _export_tool()
    folder, _ = models["retinanet"]
    out = tmp_path / "ts"
    (folder / "thresholds.json").write_text(json.dumps({"class0": 0.5}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # Python's default filters
    try:
        proc = subprocess.run(
            [sys.executable, f"{REPO_ROOT}/tools/export_model.py",
             "--weights", str(folder / "model_final.pth"), "--format", "torchscript", "--out", str(out),
             "--check-image", *map(str, images)],
            capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=300,
        )  # fmt: skip
    finally:
        (folder / "thresholds.json").unlink()
    assert proc.returncode == 0, proc.stderr
    assert "same results as the eager model on 2 image(s)" in proc.stdout
    assert "kept for C++ (libtorch) users" in proc.stdout  # says why TorchScript, once
    assert "Warning" not in proc.stderr and "warn" not in proc.stderr.lower(), proc.stderr
    assert proc.stderr == ""
    assert load_model(out).thresholds == {"class0": 0.5}  # the operating points travel with the export
    run_main([str(out), "--input", str(images[0]), "--output", str(tmp_path / "pred")])
    got = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    expected = to_records(load_model(folder).predict(read_raw(images[0])), str(images[0]), 0)
    assert len(got) == len(expected) > 0
    assert [(g["file_name"], g["category_id"]) for g in got] == [
        (e["file_name"], e["category_id"]) for e in expected
    ]
    np.testing.assert_allclose([g["bbox"] for g in got], [e["bbox"] for e in expected], atol=1e-3)
    oxnet_weights = models["oxnet"][0] / "model_final.pth"
    with pytest.raises(SystemExit, match=r"error \(weights\).*do not fit"):
        tool.main(
            [
                "--weights",
                str(oxnet_weights),
                "--config-file",
                str(folder / "config.yaml"),
                "--format",
                "onnx",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
