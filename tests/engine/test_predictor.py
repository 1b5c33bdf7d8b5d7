import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from oxnet.config import PAPER_CLASSES, class_names
from oxnet.data.io import write_dicom, write_png
from oxnet.engine.predictor import (
    OXnetPredictor,
    UnreadableImagesError,
    find_images,
    predict_files,
    write_predictions,
)
from oxnet.testing import REPO_ROOT, read_json, tiny_cfg

SIZES = {"wide.png": (80, 96), "tall.jpg": (120, 70), "sub/chest.dcm": (64, 100)}  # (h, w)


def _weights(tmp_path, method):
    cfg = tiny_cfg(method)
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = 0.0  # a random model's scores are ~0.01: keep its boxes
    cfg.TEST.DETECTIONS_PER_IMAGE = 10  # (and few of them: drawing overlays is slow)
    torch.manual_seed(0)
    model = build_model(cfg)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save(f"model_{method}")
    cfg.MODEL.WEIGHTS = str(tmp_path / f"model_{method}.pth")
    return cfg, model


def _images(folder):
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 255, (h, w), dtype=np.uint8)
        if name.endswith(".dcm"):
            write_dicom(path, (image.astype(np.uint16) * 16))
        elif name.endswith(".jpg"):
            import cv2

            cv2.imwrite(str(path), image)
        else:
            write_png(path, image)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_find_images_recursive_with_dicom_magic_and_exclusions(tmp_path):
    folder = _images(tmp_path / "in")
    write_dicom(folder / "sub" / "no_extension", np.zeros((8, 8), np.uint8))  # found by its magic
    write_png(folder / "out" / "old_overlay.png", np.zeros((8, 8), np.uint8))  # inside --output
    found = find_images([folder, folder / "wide.png"], exclude=folder / "out")
    rel = sorted(os.path.relpath(p, folder) for p in found)
    assert rel == ["sub/chest.dcm", "sub/no_extension", "tall.jpg", "wide.png"]
    with pytest.raises(FileNotFoundError, match="missing"):
        find_images([folder / "missing"])


def test_predictions_in_original_pixels_with_global_scores(tmp_path):
    cfg, model = _weights(tmp_path, "oxnet")
    predictor = OXnetPredictor(cfg)
    # The loaded weights are the saved ones, not a fresh initialization.
    saved = model.state_dict()
    for k, v in predictor.model.state_dict().items():
        assert np.allclose(v.numpy(), saved[k].numpy()), k

    paths = find_images([_images(tmp_path / "in")])
    results, skipped = predict_files(
        predictor, paths, batch_size=2, overlay_dir=str(tmp_path / "out" / "ov"), progress=False
    )
    assert skipped == [] and [p for p, _ in results] == paths
    written = write_predictions(str(tmp_path / "out"), results, skipped, predictor.class_names)
    dets = read_json(written["predictions"])
    assert dets and written["detections"] == len(dets)
    size_of = {str(tmp_path / "in" / name): hw for name, hw in SIZES.items()}
    for d in dets:
        h, w = size_of[d["file_name"]]
        x, y, bw, bh = d["bbox"]
        assert x >= 0 and y >= 0 and bw >= 0 and bh >= 0 and x + bw <= w + 1e-3 and y + bh <= h + 1e-3, d
        assert d["category_name"] == class_names(cfg)[d["category_id"] - 1]  # no stored ids: index + 1
        assert d["image_id"] == paths.index(d["file_name"])
    # Boxes spread beyond the 64-px network input: they were mapped back to the original sizes.
    assert max(d["bbox"][0] + d["bbox"][2] for d in dets) > 64
    scores = read_json(written["image_scores"])
    assert [s["file_name"] for s in scores] == paths
    assert all(set(s["global_scores"]) == set(predictor.class_names) for s in scores)
    assert all(0 <= p <= 1 for s in scores for p in s["global_scores"].values())
    overlays = sorted(os.listdir(tmp_path / "out" / "ov"))
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    assert overlays == [f"{i:05d}_{stem}.png" for i, stem in enumerate(stems)]


def test_arrays_and_paths_give_the_same_outputs(tmp_path):
    cfg, _ = _weights(tmp_path, "oxnet")
    predictor = OXnetPredictor(cfg)
    from oxnet.data.io import read_image

    path = str(_images(tmp_path / "in") / "wide.png")
    a, b = predictor([path, read_image(path)])
    assert len(a["instances"]) == len(b["instances"]) > 0
    assert np.allclose(a["instances"].pred_boxes.tensor.numpy(), b["instances"].pred_boxes.tensor.numpy())
    assert a["instances"].image_size == (80, 96)


def test_unreadable_files_fail_or_are_skipped_and_listed(tmp_path):
    cfg, _ = _weights(tmp_path, "retinanet")
    predictor = OXnetPredictor(cfg)
    folder = _images(tmp_path / "in")
    bad = folder / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    paths = find_images([folder])
    with pytest.raises(UnreadableImagesError, match="broken.png") as info:
        predict_files(predictor, paths, batch_size=2, progress=False)
    assert [p for p, _ in info.value.errors] == [str(bad)]

    results, skipped = predict_files(predictor, paths, batch_size=2, skip_unreadable=True, progress=False)
    assert [p for p, _ in skipped] == [str(bad)] and len(results) == len(paths) - 1
    written = write_predictions(str(tmp_path / "out"), results, skipped, predictor.class_names)
    assert "image_scores" not in written  # RetinaNet has no global head
    assert not (tmp_path / "out" / "image_scores.json").exists()
    assert str(bad) in (tmp_path / "out" / "skipped.txt").read_text()


def test_class_names_from_config():
    cfg = tiny_cfg(num_classes=9)
    assert class_names(cfg) == PAPER_CLASSES
    cfg = tiny_cfg(num_classes=2)
    assert class_names(cfg) == ("class0", "class1")
    cfg.OXNET.CLASS_NAMES = ("nodule", "mass")
    assert class_names(cfg) == ("nodule", "mass")
    cfg.OXNET.CLASS_NAMES = ("nodule",)
    with pytest.raises(ValueError, match="CLASS_NAMES"):
        class_names(cfg)


def _load_cli():
    path = os.path.join(REPO_ROOT, "demo", "predict.py")
    spec = importlib.util.spec_from_file_location("predict_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_command_line(tmp_path):
    cfg, _ = _weights(tmp_path, "oxnet")
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(cfg.dump())
    folder = _images(tmp_path / "in")
    (folder / "empty.dcm").write_bytes(b"")
    out = tmp_path / "out"
    args = [
        "--config-file",
        str(config_file),
        "--input",
        str(folder),
        "--output",
        str(out),
        "--score-thresh",
        "0.0",
        "--overlays",
    ]
    with pytest.raises(SystemExit, match="empty.dcm"):  # unreadable: the run fails, naming the file
        _load_cli().main(args)
    assert not (out / "predictions.json").exists()

    cmd = [sys.executable, os.path.join(REPO_ROOT, "demo", "predict.py")] + args + ["--skip-unreadable"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "empty.dcm" in done.stdout and "empty.dcm" in (out / "skipped.txt").read_text()
    dets = read_json(out / "predictions.json")
    assert dets and {d["file_name"] for d in dets} <= {str(folder / n) for n in SIZES}
    assert len(read_json(out / "image_scores.json")) == len(SIZES)
    assert len(os.listdir(out / "overlays")) == len(SIZES)


def test_an_empty_overlay_says_so_and_names_the_highest_box():
    """overlay_caption: the threshold and the count, or that nothing passes it with the best box, then
    the image-level scores; draw_predictions writes it (and a legend) on the picture."""
    import numpy as np
    import torch
    from detectron2.structures import Boxes, Instances

    from oxnet.engine.predictor import draw_predictions, overlay_caption

    inst = Instances((64, 80))
    inst.pred_boxes = Boxes(torch.tensor([[5.0, 5, 30, 30], [40, 10, 70, 50]]))
    inst.scores = torch.tensor([0.2, 0.45])
    inst.pred_classes = torch.tensor([0, 2])
    out = {"instances": inst, "global_scores": torch.tensor([0.1, 0.7, 0.3])}
    names = ["nodule", "mass", "effusion"]
    assert overlay_caption(out, names, 0.3) == [
        "1 finding(s) with score >= 0.30",
        "image: mass 0.70, effusion 0.30, nodule 0.10",
    ]
    assert overlay_caption(out, names, 0.5)[:2] == [
        "no finding with score >= 0.50",
        "highest box: effusion 0.45",
    ]
    empty = {"instances": inst[inst.scores > 1]}
    assert overlay_caption(empty, names) == ["no finding: no box above the model's test threshold"]
    image = np.full((64, 80, 3), 60, np.uint8)
    drawn = draw_predictions(image, out, names, min_score=0.5)  # nothing passes: only the caption
    assert drawn.shape[:2] == (614, 768)  # enlarged so that the caption fits
    assert (drawn[:40] != 60).any()
