"""Reports: metrics.json, report.md, report.html and non-empty PNG figures; the standalone command."""

import html.parser
import json
import os

import cv2
import numpy as np
import pytest

from oxnet.evaluate import main
from oxnet.evaluation import evaluate_detections
from oxnet.evaluation.report import draw_overlays, write_report
from oxnet.evaluation.synthetic import synthetic_coco
from oxnet.testing import read_text


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    gt, preds = synthetic_coco(
        num_images=12,
        num_classes=3,
        gt_per_image=2,
        dets_per_image=8,
        image_size=(240, 320),
        missing_classes=(2,),
        seed=3,
    )
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for img in gt["images"]:
        cv2.imwrite(str(root / "images" / img["file_name"]), rng.integers(0, 256, (240, 320), dtype=np.uint8))
    (root / "gt.json").write_text(json.dumps(gt))
    (root / "pred.json").write_text(json.dumps(preds))
    return root


def _png(path):
    assert os.path.getsize(path) > 0, path
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 50 and img.shape[1] > 50, path
    assert img.std() > 1, f"{path} is blank"
    return img


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tables = [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self.tables += tag == "table"


def test_cli_writes_metrics_and_report(dataset, capsys):
    rep = dataset / "report"
    rc = main(
        [
            "--gt",
            str(dataset / "gt.json"),
            "--pred",
            str(dataset / "pred.json"),
            "--out",
            str(rep),
            "--image-root",
            str(dataset / "images"),
            "--method",
            "RetinaNet",
        ]
    )
    assert rc == 0
    m = json.loads((rep / "metrics.json").read_text())
    for key in ("mAP", "AP40", "AP75", "APs", "APm", "APl"):
        assert 0 <= m[key] <= 1
    assert set(m) >= {"per_class", "froc", "settings"} and m["settings"]["iou_thresholds"][0] == 0.4
    assert m["per_class"]["class 2"]["mAP"] is None
    printed = capsys.readouterr().out
    assert f"{100 * m['mAP']:.1f}" in printed and "n/a" in printed
    # The scored predictions, re-scored, give the same metrics.
    rescored = main(
        [
            "--gt",
            str(dataset / "gt.json"),
            "--pred",
            str(rep / "predictions.json"),
            "--out",
            str(dataset / "again"),
            "--metrics-only",
        ]
    )
    assert rescored == 0
    again = json.loads((dataset / "again" / "metrics.json").read_text())
    assert again["mAP"] == m["mAP"] and again["froc"] == m["froc"]

    for name in ("pr_curves.png", "froc_curves.png", "overlays.png"):
        _png(rep / name)
    md = (rep / "report.md").read_text()
    assert "| Method | # full | # weak | # unlabeled | mAP | AP40 | AP75 | APS | APM | APL |" in md
    assert f"| RetinaNet | - | - | - | {100 * m['mAP']:.1f} | {100 * m['AP40']:.1f} |" in md
    assert "| class 2 | 0 | n/a |" in md
    parser = _Links()
    parser.feed((rep / "report.html").read_text())
    assert parser.tables == 3
    assert sorted(parser.images) == ["froc_curves.png", "overlays.png", "pr_curves.png"]
    assert all((rep / src).is_file() for src in parser.images)


def test_cli_verify_with_pycocotools(dataset, capsys, monkeypatch):
    args = ["--gt", str(dataset / "gt.json"), "--pred", str(dataset / "pred.json"), "--verify"]
    assert main(args) == 0
    assert "pycocotools check: every AP number agrees" in capsys.readouterr().out
    # A wrong number is caught.
    import oxnet.evaluation.coco_ap as coco_ap

    real = coco_ap.coco_average_precision

    def off_by_a_bit(*a, **k):
        out = real(*a, **k)
        if "pycocotools" in a or k.get("backend") == "pycocotools":
            out["per_class"][0]["APl"] += 1e-6
        return out

    monkeypatch.setattr(coco_ap, "coco_average_precision", off_by_a_bit)
    assert main(args) == 3
    assert "class 1 APl" in capsys.readouterr().err


def test_cli_reports_bad_input(dataset, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 99999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]))
    assert main(["--gt", str(dataset / "gt.json"), "--pred", str(bad)]) == 2
    assert "image id 99999" in capsys.readouterr().err


def test_overlay_colours(dataset, tmp_path):
    """Ground truth yellow (dashed), true positives bluish green, false positives vermillion (dotted): the
    paper's Fig. 3 in Okabe-Ito colours."""
    gt = {
        "images": [{"id": 1, "height": 200, "width": 200, "file_name": "a.png"}],
        "categories": [{"id": 1, "name": "nodule"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 20, 60, 60], "area": 3600}],
    }
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [22, 22, 60, 60], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [120, 120, 50, 50], "score": 0.8},
    ]
    cv2.imwrite(str(tmp_path / "a.png"), np.full((200, 200), 128, np.uint8))
    result = evaluate_detections(gt, dets)
    path = tmp_path / "ov.png"
    reader = lambda p: cv2.imread(p)[:, :, ::-1].copy()  # noqa: E731
    assert draw_overlays(result, str(path), {1: str(tmp_path / "a.png")}, tile=200, read_fn=reader) == 1
    img = _png(path)[:, :, ::-1].astype(int)  # RGB
    top = int(np.argmax(np.abs(img[:, 195] - 128).sum(-1) < 10))  # first row of the (grey) image
    assert 10 < top < 50  # below the caption band

    def has(colour, rows, cols):
        r = img[top + rows[0] : top + rows[1], cols[0] : cols[1]]
        return (np.abs(r - np.array(colour)).sum(-1) < 90).any()

    yellow, green, vermillion = (240, 228, 66), (0, 158, 115), (213, 94, 0)
    assert has(yellow, (17, 23), (30, 70))  # top edge of the ground truth
    assert has(green, (79, 85), (30, 70))  # bottom edge of the true positive
    assert has(vermillion, (117, 123), (130, 160))  # top edge of the false positive
    assert not has(vermillion, (15, 90), (15, 90))


def test_report_without_images_says_so(dataset, tmp_path):
    result = evaluate_detections(str(dataset / "gt.json"), str(dataset / "pred.json"))
    out = tmp_path / "r"
    out.mkdir()
    (out / "attention_7.png").write_bytes(cv2.imencode(".png", np.full((8, 8), 200, np.uint8))[1].tobytes())
    paths = write_report(result, str(out), image_root=str(tmp_path / "nowhere"))
    assert "overlays" not in paths
    md = read_text(paths["md"])
    assert "overlays not drawn" in md
    assert "(image 7)](attention_7.png)" in md  # attention figures in the folder are shown
