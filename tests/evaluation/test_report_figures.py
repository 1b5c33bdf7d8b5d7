"""Pictures a radiologist can read: overlays, attention maps, contact-sheet labels, report links."""

import html.parser
import json

import cv2
import matplotlib.colors as mplc
import numpy as np
import pytest
import torch

from oxnet.evaluation import evaluate_detections
from oxnet.evaluation.attention import attention_figure, write_attention_report
from oxnet.evaluation.report import (
    OVERLAY_DRAW_ORDER,
    OVERLAY_STYLES,
    TABLE1_HEADER,
    draw_overlays,
    link_attention_figures,
    overlay_legend,
    overlay_tile,
    write_report,
)

RGB = {k: np.array(mplc.to_rgb(st["color"])) * 255 for k, st in OVERLAY_STYLES.items()}


def _near(img, colour, tol=90):
    return np.abs(img.astype(int) - colour).sum(-1) < tol


def _disjoint(rects):
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            if min(a[2], b[2]) - max(a[0], b[0]) > 0.5 and min(a[3], b[3]) - max(a[1], b[1]) > 0.5:
                return False
    return True


def _inside(rect, bounds, tol=0.5):
    return (
        rect[0] >= bounds[0] - tol
        and rect[1] >= bounds[1] - tol
        and rect[2] <= bounds[2] + tol
        and rect[3] <= bounds[3] + tol
    )


def _one_image(tmp_path, anns, dets, size=200):
    gt = {
        "images": [{"id": 7, "height": size, "width": size, "file_name": "case_007.png"}],
        "categories": [{"id": 1, "name": "nodule"}, {"id": 2, "name": "mass"}],
        "annotations": [
            {"id": j + 1, "image_id": 7, "category_id": c, "bbox": b, "area": b[2] * b[3]}
            for j, (b, c) in enumerate(anns)
        ],
    }
    cv2.imwrite(str(tmp_path / "case_007.png"), np.full((size, size), 128, np.uint8))
    preds = [{"image_id": 7, "category_id": c, "bbox": b, "score": s} for b, c, s in dets]
    return gt, preds


def test_ground_truth_is_drawn_over_a_coincident_true_positive(tmp_path):
    """Dashed ground truth drawn last: on the shared edge its dashes show, and the true positive shows in
    the gaps. Drawn first, the solid true positive would cover the middle of the edge entirely."""
    assert OVERLAY_DRAW_ORDER[-1] == "gt"
    gt, preds = _one_image(tmp_path, [([60, 80, 80, 80], 1)], [([60, 80, 80, 80], 1, 0.9)])
    result = evaluate_detections(gt, preds)
    assert result.hit.tolist() == [True]
    reader = lambda p: cv2.imread(p)[:, :, ::-1].copy()  # noqa: E731
    path = tmp_path / "ov.png"
    assert draw_overlays(result, str(path), {7: str(tmp_path / "case_007.png")}, tile=200, read_fn=reader)
    img = cv2.imread(str(path))[:, :, ::-1]
    top = int(np.argmax(np.abs(img[:, 10].astype(int) - 128).sum(-1) < 10))
    edge = img[top + 74 : top + 87, 70:130]  # rows around the shared top edge (y = 80), away from the corners
    yellow_rows = _near(edge, RGB["gt"]).sum(1)
    centre = int(np.argmax(yellow_rows))
    assert yellow_rows[centre] > 0.35 * edge.shape[1]  # the dashes
    assert _near(edge[centre], RGB["tp"]).sum() > 0.1 * edge.shape[1]  # the true positive in the gaps


def test_overlay_tile_labels_every_box_inside_the_tile(tmp_path):
    """Kind, class and score on each box; file name and id in the caption; labels inside the tile and not
    overlapping, also for boxes at the top border and crowded boxes."""
    img = np.full((300, 240, 3), 110, np.uint8)
    gt_boxes = [(np.array([0.0, 0.0, 60.0, 40.0]), "nodule"), (np.array([100.0, 100.0, 50.0, 50.0]), "mass")]
    dets = [
        (np.array([2.0, 1.0, 60.0, 40.0]), "nodule", 0.91, True),
        (np.array([5.0, 3.0, 50.0, 30.0]), "nodule", 0.52, False),
        (np.array([180.0, 0.0, 60.0, 30.0]), "mass", 0.44, False),
        (np.array([102.0, 98.0, 50.0, 52.0]), "mass", 0.73, True),
    ]
    out, labels = overlay_tile(img, gt_boxes, dets, "studies/case_007.png  (id 7)", tile=240)
    assert out.shape[1] == 240 and out.shape[0] > 240
    texts = [t for _, t, _ in labels]
    assert texts[0] == "studies/case_007.png  (id 7)"
    assert {
        "GT nodule",
        "GT mass",
        "TP nodule 0.91",
        "FP nodule 0.52",
        "FP mass 0.44",
        "TP mass 0.73",
    } == set(texts[1:])
    band = out.shape[0] - 240
    rects = [r for _, _, r in labels]
    assert _inside(rects[0], (0, 0, 240, band))
    assert all(_inside(r, (0, band, 240, out.shape[0])) for r in rects[1:])
    assert _disjoint(rects)


def test_overlay_caption_is_shortened_to_fit(tmp_path):
    img = np.full((100, 100, 3), 110, np.uint8)
    long_name = "/very/long/folder/name/that/goes/on/and/on/study_0001_frontal.png  (id 1)"
    _, labels = overlay_tile(img, [], [], long_name, tile=160)
    kind, text, rect = labels[0]
    assert kind == "caption" and text.startswith("…") and text.endswith("frontal.png  (id 1)")
    assert rect[2] <= 160


def test_legend_has_an_entry_per_style_and_the_styles_differ_in_greyscale():
    legend = overlay_legend(900, 0.3, 0.4, 10)
    for kind in ("gt", "tp", "fp"):
        assert _near(legend, RGB[kind], tol=60).sum() > 20, kind
    # Apart without colour: each kind has its own line pattern, ground truth the widest line.
    patterns = {str(st["linestyle"]) for st in OVERLAY_STYLES.values()}
    assert len(patterns) == 3
    assert OVERLAY_STYLES["gt"]["linewidth"] > max(OVERLAY_STYLES[k]["linewidth"] for k in ("tp", "fp"))
    assert len({st["tag"] for st in OVERLAY_STYLES.values()}) == 3


def test_overlays_png_ends_with_the_legend(tmp_path):
    gt, preds = _one_image(
        tmp_path, [([20, 20, 60, 60], 1)], [([22, 22, 60, 60], 1, 0.9), ([120, 120, 50, 50], 2, 0.8)]
    )
    result = evaluate_detections(gt, preds)
    path = tmp_path / "ov.png"
    reader = lambda p: cv2.imread(p)[:, :, ::-1].copy()  # noqa: E731
    draw_overlays(result, str(path), {7: str(tmp_path / "case_007.png")}, tile=200, read_fn=reader)
    img = cv2.imread(str(path))[:, :, ::-1]
    top = int(np.argmax(np.abs(img[:, 10].astype(int) - 128).sum(-1) < 10))
    strip = img[top + 200 :]  # below the tile
    assert strip.shape[0] > 40 and (strip.reshape(-1, 3).std(0) > 5).all()
    for kind in ("gt", "tp", "fp"):
        assert _near(strip, RGB[kind], tol=60).any(), kind


def _maps():
    """Two classes; class 0's CAM is negative everywhere, class 1's mostly positive."""
    yy, xx = np.mgrid[0:8, 0:8].astype(np.float32)
    cam = np.stack([-2 + xx / 7, -0.5 + 3.5 * ((xx - 5) ** 2 + (yy - 3) ** 2 < 3)])
    local = np.stack([np.full((8, 8), 1 / 64, np.float32), np.exp(-((xx - 5) ** 2 + (yy - 3) ** 2))])
    local = local / local.sum((1, 2), keepdims=True)
    return {"cam": cam, "local": local, "daa": cam * local}


def test_attention_colour_scales_are_shared_and_centred_for_signed_maps():
    from matplotlib.patches import Rectangle

    image = np.full((64, 64), 100, np.uint8)
    boxes = [((36, 16, 52, 32), 1)]
    fig, classes = attention_figure(
        image, _maps(), ["effusion", "nodule"], classes=[0, 1], gt_boxes=boxes, title="case_007.png"
    )
    try:
        assert classes == [0, 1]
        assert fig.axes[0].texts[0].get_text() == "case_007.png"  # the title
        axes = np.array(fig.axes[1:9]).reshape(2, 4)
        for col in (1, 2, 3):
            norms = {(ax.images[-1].norm.vmin, ax.images[-1].norm.vmax) for ax in axes[:, col]}
            assert len(norms) == 1  # one colour scale for the column (both classes)
            vmin, vmax = norms.pop()
            if col == 2:  # local attention: non-negative, from 0
                assert vmin == 0 and vmax == pytest.approx(float(_maps()["local"].max()))
            else:  # signed: symmetric about 0, a diverging colormap
                assert vmin == pytest.approx(-vmax) and vmax > 0
                assert axes[0, col].images[-1].cmap.name == "RdBu_r"
        assert axes[0, 1].images[-1].norm.vmax == pytest.approx(3.0)
        # The all-negative CAM of class 0 is drawn in cold colours only (no per-panel min-max).
        im = axes[0, 1].images[-1]
        rgba = im.to_rgba(im.get_array())
        assert (rgba[..., 2] > rgba[..., 0]).all()
        # A colour bar per kind of map, with the value range.
        bars = [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]
        assert len(bars) == 3
        labels = [b.get_xlabel() for b in bars]
        assert [b._colorbar.mappable.norm.vmax for b in bars] == [
            axes[0, c].images[-1].norm.vmax for c in (1, 2, 3)
        ]
        assert labels[0].endswith("values -2 to 3") and "centred at 0" in labels[0] and "from 0" in labels[1]
        # Ground truth on every panel of its class's row, above the maps.
        for ax in axes[1]:
            rects = [p for p in ax.patches if isinstance(p, Rectangle)]
            assert len(rects) == 1 and rects[0].get_zorder() > max(i.get_zorder() for i in ax.images)
        assert not any(isinstance(p, Rectangle) for ax in axes[0] for p in ax.patches)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_contact_sheet_labels_stay_inside_their_tile_and_apart():
    from oxnet.data.visualize import draw_boxes

    image = np.full((128, 128), 120, np.uint8)
    boxes = [
        [0, 0, 30, 20],
        [2, 2, 34, 22],
        [98, 0, 128, 16],
        [40, 100, 128, 128],
        [45, 40, 70, 60],
        [47, 42, 72, 62],
    ]
    names = ["pleural effusion", "pneumothorax", "aortic calcification", "cardiomegaly", "nodule", "mass"]
    out, rects = draw_boxes(
        image, boxes, list(range(6)), names, size=96, caption="weak: nodule, mass", return_label_boxes=True
    )
    assert out.shape[:2] == (96, 96)
    assert len(rects) == 7
    assert all(_inside(r, (0, 0, 96, 96)) for r in rects), rects
    assert _disjoint(rects), rects


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def _images(path):
    p = _Images()
    p.feed(path.read_text(encoding="utf-8"))
    return p.images


def _in_memory(tmp_path):
    gt, preds = _one_image(
        tmp_path,
        [([20, 20, 60, 60], 1), ([100, 30, 40, 40], 2)],
        [([22, 22, 60, 60], 1, 0.9), ([120, 120, 50, 50], 2, 0.8)],
    )
    gt["images"].append({"id": 8, "height": 200, "width": 200, "file_name": "case_008.png"})
    gt["images"].append(
        {
            "id": 9,
            "height": 200,
            "width": 200,
            "file_name": "case_009.png",
            "supervision": "weak",
            "image_labels": {"mass": 1},
        }
    )
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    return gt, preds


def test_report_names_the_files_and_counts_the_images(tmp_path):
    gt, preds = _in_memory(tmp_path)
    result = evaluate_detections(gt, preds)  # in memory, as the evaluator does
    assert result.metrics["settings"]["ground_truth"] == "<ground truth in memory>"
    out = tmp_path / "report"
    paths = write_report(
        result,
        str(out),
        method="OXnet",
        counts={"full": 3, "weak": 5},
        gt_file=str(tmp_path / "gt.json"),
        pred_file=str(out / "predictions.json"),
    )
    md = (out / "report.md").read_text()
    assert f"Ground truth: {tmp_path / 'gt.json'}; predictions: {out / 'predictions.json'}" in md
    assert "in memory" not in md and "in memory" not in (out / "report.html").read_text()
    settings = json.loads((out / "metrics.json").read_text())["settings"]
    assert settings["ground_truth"] == str(tmp_path / "gt.json")
    assert result.metrics["settings"]["ground_truth"] == "<ground truth in memory>"  # not changed in place
    # Table 1: training counts where known, then test images with boxes (7) and without (8); 9 is weak.
    assert TABLE1_HEADER.splitlines()[0].endswith("| # test with boxes | # test without boxes |")
    row = next(line for line in md.splitlines() if line.startswith("| OXnet |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["3", "5", "-"] and cells[-2:] == ["1", "1"]
    # The ground-truth file's folder is the image root: the overlays are drawn.
    assert "overlays" in paths and "overlays.png" in _images(out / "report.html")


def test_attention_figures_drawn_after_the_report_are_linked(tmp_path):
    gt, preds = _in_memory(tmp_path)
    out = tmp_path / "eval"
    write_report(evaluate_detections(gt, preds), str(out), gt_file=str(tmp_path / "gt.json"))
    assert not [s for s in _images(out / "report.html") if "attention" in s]

    class FakeOXNet(torch.nn.Module):
        def attention_maps(self, batched_inputs):
            return [_maps() for _ in batched_inputs]

    dicts = [
        {
            "image_id": i,
            "file_name": str(tmp_path / f"case_00{i}.png"),
            "image_labels": {1: 1},
            "annotations": [{"bbox": [20, 20, 60, 60], "bbox_mode": 1, "category_id": 1}],
        }
        for i in (7, 8)
    ]
    cv2.imwrite(str(tmp_path / "case_008.png"), np.full((200, 200), 90, np.uint8))
    mapper = lambda d: dict(d, image=torch.zeros(3, 64, 64))  # noqa: E731
    written = write_attention_report(
        FakeOXNet(), dicts, mapper, str(out / "attention"), n_images=2, class_names=["effusion", "nodule"]
    )
    assert len(written) == 2
    expected = ["attention/attention_7.png", "attention/attention_8.png"]
    srcs = _images(out / "report.html")
    assert [s for s in srcs if "attention" in s] == expected
    assert all((out / s).is_file() for s in srcs)
    md = (out / "report.md").read_text()
    assert "(image 8)](attention/attention_8.png)" in md
    # Linking again (or after more figures) keeps one section.
    assert link_attention_figures(str(out)) == 2
    assert [s for s in _images(out / "report.html") if "attention" in s] == expected
    assert md.count("attention_7.png") == (out / "report.md").read_text().count("attention_7.png") == 1
    # A report written later finds the figures itself.
    write_report(evaluate_detections(gt, preds), str(out), gt_file=str(tmp_path / "gt.json"))
    assert [s for s in _images(out / "report.html") if "attention" in s] == expected
