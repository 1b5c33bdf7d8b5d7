"""report.html in headless Chromium: every figure loads, and the page screenshot is not blank."""

import importlib.util
import json
import pathlib

import cv2
import numpy as np
import pytest

from oxnet.evaluation import evaluate_detections
from oxnet.evaluation.attention import draw_attention_maps
from oxnet.evaluation.report import link_attention_figures, write_report
from oxnet.evaluation.synthetic import synthetic_coco

REPO = pathlib.Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location(
        "screenshot_report_under_test", REPO / "tools" / "screenshot_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool():
    module = _tool()
    if module.find_chromium() is None:
        pytest.skip(
            "chromium is not installed (Debian: apt-get install -y chromium); the report screenshot "
            "test needs it"
        )
    return module


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A small report from synthetic ground truth and predictions, with an attention figure drawn later."""
    root = tmp_path_factory.mktemp("shot")
    gt, preds = synthetic_coco(
        num_images=6, num_classes=2, gt_per_image=2, dets_per_image=5, image_size=(160, 200), seed=1
    )
    (root / "images").mkdir()
    yy, xx = np.mgrid[0:160, 0:200]
    for img in gt["images"]:
        cv2.imwrite(str(root / "images" / img["file_name"]), ((xx + yy) % 200 + 30).astype(np.uint8))
    (root / "gt.json").write_text(json.dumps(gt))
    out = root / "eval"
    paths = write_report(
        evaluate_detections(gt, preds),
        str(out),
        method="OXnet",
        image_root=str(root / "images"),
        gt_file=str(root / "gt.json"),
    )
    assert "overlays" in paths
    maps = {k: np.random.default_rng(0).normal(size=(2, 8, 10)).astype(np.float32) for k in ("cam", "daa")}
    maps["local"] = np.abs(maps["cam"])
    (out / "attention").mkdir()
    draw_attention_maps(
        np.full((160, 200), 100, np.uint8),
        maps,
        ["class 1", "class 2"],
        str(out / "attention" / f"attention_{gt['images'][0]['id']}.png"),
    )
    assert link_attention_figures(str(out)) == 1
    return out


def test_every_figure_of_the_report_loads_in_chromium(tool, report, tmp_path):
    info = tool.screenshot_report(str(report / "report.html"), str(tmp_path / "report.png"), width=1000)
    srcs = [i["src"] for i in info["images"]]
    assert sorted(srcs) == sorted(
        [
            "pr_curves.png",
            "froc_curves.png",
            "overlays.png",
            next(s for s in srcs if s.startswith("attention/attention_")),
        ]
    )
    assert all(i["loaded"] and i["width"] > 100 for i in info["images"]), info["images"]
    assert info["ok"] and not info["blank"]
    shot = cv2.imread(info["screenshot"])
    assert shot.shape[1] == 1000 and shot.shape[0] == min(info["height"], 8000) > 900
    assert shot.std() > 20


def test_a_missing_figure_is_reported(tool, report, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "report.html").write_text((report / "report.html").read_text())
    for name in ("pr_curves.png", "overlays.png"):  # froc_curves.png is missing
        (broken / name).write_bytes((report / name).read_bytes())
    info = tool.check_page(str(broken / "report.html"), width=800)
    loaded = {i["src"]: i["loaded"] for i in info["images"]}
    assert loaded["pr_curves.png"] and loaded["overlays.png"]
    assert not loaded["froc_curves.png"]
    assert tool.main([str(broken / "report.html"), "--out", str(tmp_path / "c.png"), "--width", "800"]) == 1
