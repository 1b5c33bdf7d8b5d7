"""Evaluation reports: metrics.json, report.md, report.html, precision-recall and FROC curves, overlays.

Overlays follow the paper's Fig. 3 (ground truth, true positives, false positives; a detection is a true
positive when it is a FROC hit, i.e. IoU >= ``froc_iou`` with a box of its class) in a colour-blind-safe
palette with distinct line styles (:data:`OVERLAY_STYLES`) and a legend. Attention figures found in the
report's folder or its ``attention/`` subfolder are shown too (:func:`link_attention_figures`).
"""

import html
import logging
import os
import re

import numpy as np

from oxnet.utils.atomic import atomic_open, atomic_write_json

from .metrics import AP_KEYS, per_class_rows, percent_text

__all__ = [
    "write_report",
    "plot_pr_curves",
    "plot_froc_curves",
    "draw_overlays",
    "table1_row",
    "box_image_counts",
    "link_attention_figures",
    "OVERLAY_STYLES",
]

logger = logging.getLogger(__name__)

TABLE1_HEADER = (
    "| Method | # full | # weak | # unlabeled | mAP | AP40 | AP75 | APS | APM | APL "
    "| # test with boxes | # test without boxes |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _save_figure(fig, path):
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_pr_curves(result, path):
    """Precision-recall curves per class at the first IoU threshold (0.4 for the paper's setting)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    iou = result.metrics["settings"]["iou_thresholds"][0]
    for name, prec in zip(result.gt.class_names, result.pr_precision):
        if np.isfinite(prec).any():
            ap = result.metrics["per_class"][name]["AP40"] if abs(iou - 0.4) < 1e-9 else None
            label = name if ap is None else f"{name} (AP {100 * ap:.1f})"
            ax.plot(result.pr_recall, prec, label=label)
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"Precision-recall, IoU {iou:.2f} (COCO 101-point interpolation)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    _save_figure(fig, path)
    plt.close(fig)


def plot_froc_curves(result, path):
    """FROC curves: all lesions pooled (thick) and per class, on a log FP/image axis."""
    plt = _pyplot()
    fps = result.metrics["froc"]["fps_per_image"]
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, (fpi, sens) in result.froc_points.items():
        keep = fpi <= 2 * max(fps)
        pooled = name == "all lesions"
        ax.step(
            np.maximum(fpi[keep], min(fps) / 2),
            sens[keep],
            where="post",
            label=name,
            lw=2.5 if pooled else 1,
            color="k" if pooled else None,
        )
    pooled = result.metrics["froc"]["sensitivity"]
    if pooled is not None:
        ax.plot(fps, pooled, "ko")
    ax.set_xscale("log", base=2)
    ax.set(
        xlabel="false positives per image",
        ylabel="sensitivity",
        ylim=(0, 1.02),
        xlim=(min(fps) / 2, 2 * max(fps)),
        title=f"FROC, hit at IoU >= {result.metrics['settings']['froc_iou']:g}",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    _save_figure(fig, path)
    plt.close(fig)


# Okabe & Ito's colour-blind-safe palette. The three kinds also differ in dash pattern and line width,
# and every label starts with GT / TP / FP, so they stay apart in greyscale. Ground truth is drawn last,
# dashed: a true positive on the same place shows through its gaps and does not hide it.
OVERLAY_STYLES = {
    "fp": {
        "tag": "FP",
        "name": "false positive",
        "color": "#D55E00",
        "linestyle": (0, (1, 1.2)),
        "linewidth": 2.0,
    },  # vermillion, dotted
    "tp": {
        "tag": "TP",
        "name": "true positive",
        "color": "#009E73",
        "linestyle": "-",
        "linewidth": 2.0,
    },  # bluish green, solid
    "gt": {
        "tag": "GT",
        "name": "ground truth",
        "color": "#F0E442",
        "linestyle": (0, (3, 2)),
        "linewidth": 2.6,
    },  # yellow, dashed, on top
}
OVERLAY_DRAW_ORDER = ("fp", "tp", "gt")


def _default_reader():
    from oxnet.data.io import read_image  # written by the data package; imported only when drawing

    return read_image


def _fit_text(ax, text, size, width):
    """``text`` shortened from the left with an ellipsis until it fits ``width`` pixels."""
    from oxnet.data.visualize import _text_extent

    if _text_extent(ax, text, size)[0] <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # the fewest characters to cut
        mid = (lo + hi) // 2
        if _text_extent(ax, "…" + text[mid + 1 :], size)[0] <= width:
            hi = mid
        else:
            lo = mid + 1
    return "…" + text[lo + 1 :]


def overlay_tile(img, gt_boxes, dets, caption, tile=400, font_size=None):
    """One overlay tile: the image letterboxed below a caption band, with labelled boxes.

    Args:
        img: uint8 HxWx3 RGB.
        gt_boxes: [(xywh box, class name)] in the image's pixels.
        dets: [(xywh box, class name, score, is_true_positive)].
        caption: the image's name for the band at the top.

    Returns:
        (RGB uint8 array of (band + tile) x tile, labels): labels is a list of (kind, text, rectangle
        x0, y0, x1, y1 in the tile's pixels), kind "caption", "gt", "tp" or "fp", in drawing order.
    """
    import cv2
    from detectron2.utils.visualizer import Visualizer
    from matplotlib.patches import Rectangle

    import oxnet  # noqa: F401  (before detectron2)
    from oxnet.data.visualize import _legible, draw_labels

    h, w = img.shape[:2]
    s = tile / max(h, w)
    iw, ih = max(int(round(w * s)), 1), max(int(round(h * s)), 1)
    img = cv2.resize(img, (iw, ih), interpolation=cv2.INTER_AREA)
    font = font_size or max(tile / 34, 8)
    band = int(round(font * 100 / 72 * 1.7))
    canvas = np.zeros((band + tile, tile, 3), np.uint8)
    ox, oy = (tile - iw) // 2, band + (tile - ih) // 2
    canvas[oy : oy + ih, ox : ox + iw] = img
    vis = Visualizer(canvas, metadata=None)
    ax = vis.output.ax

    def xyxy(b):
        return (b[0] * s + ox, b[1] * s + oy, (b[0] + b[2]) * s + ox, (b[1] + b[3]) * s + oy)

    # (kind, box, label text, score); ground truth sorts after every detection
    items = [("tp" if tp else "fp", xyxy(b), f"{name} {score:.2f}", score) for b, name, score, tp in dets]
    items += [("gt", xyxy(b), name, np.inf) for b, name in gt_boxes]
    for kind in OVERLAY_DRAW_ORDER:  # ground truth last, on top; higher scores above lower ones
        st = OVERLAY_STYLES[kind]
        for _, (x0, y0, x1, y1), _, _ in sorted((it for it in items if it[0] == kind), key=lambda it: it[3]):
            ax.add_patch(
                Rectangle(
                    (x0, y0),
                    x1 - x0,
                    y1 - y0,
                    fill=False,
                    edgecolor=st["color"],
                    linestyle=st["linestyle"],
                    linewidth=st["linewidth"],
                    zorder=5,
                )
            )
    cap = _fit_text(ax, caption, font, tile - 8)
    cap_rect = draw_labels(
        vis, [(2, 0, tile, 0)], [cap], ["w"], font_size=font, bounds=(0, 0, tile, band), gap=0
    )
    # Labels: ground truth first, then detections by score (the most important get the best places).
    order = sorted(items, key=lambda it: -it[3])
    texts = [f"{OVERLAY_STYLES[it[0]]['tag']} {it[2]}" for it in order]
    rects = draw_labels(
        vis,
        [it[1] for it in order],
        texts,
        [_legible(OVERLAY_STYLES[it[0]]["color"]) for it in order],
        font_size=font * 0.95,
        bounds=(0, band, tile, band + tile),
    )
    out = vis.get_output().get_image()[: band + tile, :tile]
    labels = [("caption", cap, cap_rect[0])] + [(it[0], t, r) for it, t, r in zip(order, texts, rects)]
    return out, labels


def overlay_legend(width, score_threshold, froc_iou, max_dets, font_size=11):
    """The overlays' legend strip: one entry per box style, and what the labels say.

    Returns:
        RGB uint8 array, ``width`` pixels wide, or wider when the legend needs it (entries side by side
        when they fit, else one per line).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=st["color"], linestyle=st["linestyle"], linewidth=st["linewidth"])
        for st in (OVERLAY_STYLES[k] for k in ("gt", "tp", "fp"))
    ]
    labels = [
        "GT  ground truth (dashed, drawn on top)",
        f"TP  true positive (IoU ≥ {froc_iou:g} with a box of its class)",
        "FP  false positive (dotted)",
    ]
    footer = (
        f"labels: kind, class and score; detections with score ≥ {score_threshold:g}, at most "
        f"{max_dets} per image"
    )
    line = font_size * 100 / 72 * 1.45
    for ncol in (3, 1):
        rows = 3 // ncol
        height = int(round(line * (rows + 1) + font_size))
        fig = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor="#1e1e1e")
        canvas = FigureCanvasAgg(fig)
        leg = fig.legend(
            handles,
            labels,
            loc="upper center",
            ncol=ncol,
            frameon=False,
            labelcolor="white",
            fontsize=font_size,
            handlelength=4,
            bbox_to_anchor=(0.5, 1.0),
        )
        foot = fig.text(
            0.5, 0.06, footer, color="#dddddd", ha="center", va="bottom", fontsize=font_size * 0.9
        )
        canvas.draw()
        needed = max(leg.get_window_extent().width, foot.get_window_extent().width) + 10
        if needed <= width:
            break
    if needed > width:
        fig.set_size_inches(np.ceil(needed) / 100, height / 100)
        canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def draw_overlays(
    result,
    path,
    image_paths,
    n_images=8,
    score_threshold=0.3,
    tile=400,
    read_fn=None,
    max_dets_per_image=10,
    cols=4,
):
    """Grid of images with ground truth, true positives and false positives, and a legend.

    Styles: :data:`OVERLAY_STYLES` (Okabe-Ito colours, distinct line styles; ground truth dashed and
    drawn on top). Every box is labelled with GT / TP / FP, its class and (detections) its score; each
    tile names its image file and id. Detections below ``score_threshold`` are not drawn, and at most
    ``max_dets_per_image`` per image (the highest scores). Images with boxes come first, in
    ground-truth order; a detection is a true positive when it is a FROC hit.

    Args:
        image_paths: dict image id -> file path.
        read_fn: image reader returning uint8 HxWx3 RGB (default ``oxnet.data.io.read_image``).

    Returns:
        the number of images drawn (0: nothing written).
    """
    import cv2

    read_fn = read_fn or _default_reader()
    gt, preds = result.gt, result.preds
    with_boxes = np.zeros(len(gt.images), bool)
    with_boxes[gt.ann_image] = True
    candidates = [
        i
        for i in np.r_[np.flatnonzero(with_boxes), np.flatnonzero(~with_boxes & gt.box_eval)]
        if gt.image_ids[i].item() in image_paths
    ][:n_images]
    names = gt.class_names
    tiles = []
    for i in candidates:
        iid = gt.image_ids[i].item()
        img = read_fn(image_paths[iid])
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        sel = gt.ann_image == i
        gt_boxes = [(b, names[c]) for b, c in zip(gt.ann_boxes[sel], gt.ann_class[sel])]
        m = np.flatnonzero((preds.image == i) & result.evaluated & (preds.scores >= score_threshold))
        m = m[np.argsort(-preds.scores[m], kind="stable")][:max_dets_per_image]
        dets = [(preds.boxes[j], names[preds.cls[j]], float(preds.scores[j]), bool(result.hit[j])) for j in m]
        fn = gt.images[i].get("file_name") or os.path.basename(str(image_paths[iid]))
        tiles.append(overlay_tile(img, gt_boxes, dets, f"{fn}  (id {iid})", tile=tile)[0])
    if not tiles:
        return 0
    cols = min(cols, len(tiles))
    rows = -(-len(tiles) // cols)
    tiles += [np.zeros_like(tiles[0])] * (rows * cols - len(tiles))
    grid = np.concatenate([np.concatenate(tiles[r * cols : (r + 1) * cols], axis=1) for r in range(rows)])
    legend = overlay_legend(
        grid.shape[1],
        score_threshold,
        result.metrics["settings"]["froc_iou"],
        max_dets_per_image,
        font_size=max(tile / 34, 8),
    )
    w = max(grid.shape[1], legend.shape[1])
    pad = lambda a: np.pad(a, ((0, 0), (0, w - a.shape[1]), (0, 0)))  # noqa: E731
    grid = np.concatenate([pad(grid), pad(legend)], axis=0)
    ok, buf = cv2.imencode(".png", grid[:, :, ::-1])
    if not ok:
        raise RuntimeError(f"could not encode the overlay grid for {path}")
    with atomic_open(path, "wb") as f:
        f.write(buf.tobytes())
    return len(candidates)


def box_image_counts(gt):
    """(with boxes, without boxes): the box-annotated ("full") test images with / without a box."""
    with_boxes = np.zeros(len(gt.images), bool)
    with_boxes[gt.ann_image] = True
    return int((with_boxes & gt.box_eval).sum()), int((~with_boxes & gt.box_eval).sum())


def table1_row(metrics, method="OXnet", counts=None, test_counts=None):
    """A row of the paper's Table 1: method, training images per supervision level ("-": unknown), AP
    metrics in percent, and the test images with and without boxes (``test_counts``, see
    :func:`box_image_counts`)."""
    counts = counts or {}
    cells = [method] + [str(counts.get(k, "-")) for k in ("full", "weak", "unlabeled")]
    cells += [percent_text(metrics[k]) for k in AP_KEYS]
    cells += [str(c) for c in test_counts] if test_counts is not None else ["-", "-"]
    return "| " + " | ".join(cells) + " |"


PER_CLASS_HEADER = [
    "class",
    "# GT boxes",
    "mAP",
    "AP40",
    "AP75",
    "APS",
    "APM",
    "APL",
    "FROC mean",
    "AUROC global",
    "AUROC top local",
]


def _froc_rows(metrics):
    froc = metrics["froc"]
    na = [None] * len(froc["fps_per_image"])
    rows = [
        ["all lesions (pooled)"]
        + [percent_text(v) for v in (froc["sensitivity"] or na)]
        + [percent_text(froc["mean"])],
        ["mean over classes"]
        + [percent_text(v) for v in (froc["class_mean"]["sensitivity"] or na)]
        + [percent_text(froc["class_mean"]["mean"])],
    ]
    for name, r in metrics["per_class"].items():
        rows.append([name] + [percent_text(v) for v in (r["froc"] or na)] + [percent_text(r["froc_mean"])])
    return ["FROC", *[f"{f:g} FP/img" for f in froc["fps_per_image"]], "mean"], rows


def _bootstrap_rows(metrics):
    b = metrics.get("bootstrap")
    if not b:
        return None, None
    header = ["metric", "estimate", f"{100 * b['level']:.0f}% interval"]
    iv = lambda x: "n/a" if x is None else f"{100 * x[0]:.1f} – {100 * x[1]:.1f}"  # noqa: E731
    label = {"mAP": "mAP", "AP40": "AP40", "AP75": "AP75", "froc_mean": "FROC mean (all lesions)"}
    rows = [[label[k], percent_text(b["point"][k]), iv(b[k])] for k in label]
    rows += [
        [f"mAP {name}", percent_text(metrics["per_class"][name]["mAP"]), iv(v)]
        for name, v in b["per_class_mAP"].items()
    ]
    return header, rows


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _html_table(header, rows):
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


ATTENTION_BEGIN, ATTENTION_END = "<!-- attention figures -->", "<!-- /attention figures -->"


def _attention_figures(out_dir):
    """(title, path relative to ``out_dir``) of the ``attention_<image id>.png`` files in ``out_dir`` and in
    its ``attention/`` subfolder (where the demo and ``write_attention_report`` callers put them)."""
    found = {}
    for sub in ("", "attention"):
        folder = os.path.join(out_dir, sub)
        if not os.path.isdir(folder):
            continue
        for fn in os.listdir(folder):
            m = re.fullmatch(r"attention_(.+)\.png", fn)
            if m and m.group(1) not in found:
                found[m.group(1)] = f"{sub}/{fn}" if sub else fn

    def key(image_id):
        return (0, int(image_id), "") if image_id.isdigit() else (1, 0, image_id)

    return [
        (f"Attention maps: global CAM, local attention, DAA (image {i})", found[i])
        for i in sorted(found, key=key)
    ]


def _figures_md(figures):
    return "".join(f"## {title}\n\n![{title}]({fn})\n\n" for title, fn in figures)


def _figures_html(figures):
    return "".join(
        f'<h2>{html.escape(title)}</h2><a href="{html.escape(fn)}"><img src="{html.escape(fn)}" '
        f'alt="{html.escape(title)}"></a>\n'
        for title, fn in figures
    )


def _attention_section(out_dir, markdown):
    figures = _attention_figures(out_dir)
    body = _figures_md(figures) if markdown else _figures_html(figures)
    return f"{ATTENTION_BEGIN}\n{body}{ATTENTION_END}"


def link_attention_figures(out_dir):
    """Show the attention figures now in ``out_dir`` (or ``out_dir/attention``) in its report.html and
    report.md, replacing the section a previous call or :func:`write_report` wrote. Figures drawn
    after the report (as the demo does) are thus linked from it.

    Returns:
        the number of attention figures linked.
    """
    for name, markdown in (("report.html", False), ("report.md", True)):
        path = os.path.join(out_dir, name)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        section = _attention_section(out_dir, markdown)
        pattern = re.compile(re.escape(ATTENTION_BEGIN) + ".*?" + re.escape(ATTENTION_END), re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _, section=section: section, text, count=1)
        elif not markdown and "</body>" in text:
            text = text.replace("</body>", section + "\n</body>", 1)
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return len(_attention_figures(out_dir))


def write_report(
    result,
    out_dir,
    method="OXnet",
    counts=None,
    image_paths=None,
    image_root=None,
    n_overlays=8,
    score_threshold=0.3,
    read_fn=None,
    extra_images=(),
    gt_file=None,
    pred_file=None,
):
    """Write metrics.json, report.md, report.html and the PNG figures into ``out_dir``.

    Args:
        result: an :class:`EvaluationResult`.
        counts: training images per supervision level {"full", "weak", "unlabeled"} for the Table 1 row
            ("-" where unknown); the row also counts the test images with and without boxes.
        image_paths: dict image id -> file for the overlays; otherwise ground-truth ``file_name`` joined to
            ``image_root`` (default: the ground-truth file's folder).
        extra_images: (title, png file name in out_dir) pairs shown at the end; ``attention_*.png`` files
            in ``out_dir`` or ``out_dir/attention`` (see :func:`write_attention_report`) are shown as well.
        gt_file, pred_file: the ground-truth and prediction files the evaluated data came from, named in
            the provenance line and in metrics.json's settings when the result was computed from data in
            memory (e.g. by :class:`OXnetEvaluator`); ``gt_file``'s folder is then also the default image
            root.

    Returns:
        dict name -> written path.
    """
    os.makedirs(out_dir, exist_ok=True)
    m = _with_sources(result.metrics, gt_file, pred_file)
    s = m["settings"]
    paths = {"metrics": os.path.join(out_dir, "metrics.json")}
    atomic_write_json(paths["metrics"], m, indent=2)
    paths["pr_curves"] = os.path.join(out_dir, "pr_curves.png")
    plot_pr_curves(result, paths["pr_curves"])
    paths["froc"] = os.path.join(out_dir, "froc_curves.png")
    plot_froc_curves(result, paths["froc"])

    notes = list(m["warnings"])
    image_paths = _existing_image_paths(result.gt, image_paths, image_root, s["ground_truth"])
    overlays, overlay_note = _report_overlays(
        result, out_dir, image_paths, n_overlays, score_threshold, read_fn
    )
    if overlays:
        paths["overlays"] = overlays
    if overlay_note:
        logger.warning(overlay_note)
        notes.append(overlay_note)

    with_boxes, without_boxes = box_image_counts(result.gt)
    settings_lines = _settings_lines(s, with_boxes, without_boxes)
    figures = _report_figures(out_dir, "overlays" in paths, extra_images)

    t1 = table1_row(m, method, counts, (with_boxes, without_boxes))
    paths["md"] = os.path.join(out_dir, "report.md")
    with atomic_open(paths["md"], "w", encoding="utf-8") as f:
        f.write(_markdown_report(method, m, t1, settings_lines, notes, figures, out_dir))
    paths["html"] = os.path.join(out_dir, "report.html")
    with atomic_open(paths["html"], "w", encoding="utf-8") as f:
        f.write(_html_report(method, m, t1, settings_lines, notes, figures, out_dir))
    return paths


def _with_sources(m, gt_file, pred_file):
    """The metrics with ``gt_file``/``pred_file`` (when given) as the settings' ground truth and
    predictions; a copy when they change, ``m`` itself otherwise."""
    s = m["settings"]
    sources = {
        "ground_truth": os.fspath(gt_file) if gt_file else s["ground_truth"],
        "predictions": os.fspath(pred_file) if pred_file else s["predictions"],
    }
    if any(sources[k] != s[k] for k in sources):
        m = dict(m, settings=dict(s, **sources))
    return m


def _existing_image_paths(gt, image_paths, image_root, gt_source):
    """The image files of the overlays that exist: ``image_paths`` (image id -> file), or by default the
    ground truth's ``file_name`` joined to ``image_root`` (default: the folder of ``gt_source``, the
    ground-truth file, when it exists)."""
    if image_paths is None:
        root = image_root or (
            os.path.dirname(os.path.abspath(gt_source)) if os.path.exists(gt_source) else None
        )
        image_paths = {}
        if root is not None:
            for img in gt.images:
                fn = img.get("file_name")
                if fn:
                    image_paths[img["id"]] = fn if os.path.isabs(fn) else os.path.join(root, fn)
    return {k: v for k, v in image_paths.items() if os.path.exists(v)}


def _report_overlays(result, out_dir, image_paths, n_overlays, score_threshold, read_fn):
    """Draw ``out_dir/overlays.png`` when overlays are wanted and images were found.

    Returns:
        (str or None, str or None): the overlays' path (None: not drawn) and a note saying why they
        were not drawn (None: drawn, drew nothing, or not wanted).
    """
    if n_overlays and image_paths:
        try:
            path = os.path.join(out_dir, "overlays.png")
            if draw_overlays(result, path, image_paths, n_overlays, score_threshold, read_fn=read_fn):
                return path, None
        except ImportError as e:
            return None, f"overlays not drawn: {e}"
    elif n_overlays:
        return None, "overlays not drawn: no image file of the ground truth was found (give the image root)"
    return None, None


def _report_figures(out_dir, overlays, extra_images):
    """(title, file name) of the figures the report shows before its attention section: the curves,
    the overlays when drawn and the ``extra_images`` that are not attention figures."""
    figures = [("Precision-recall curves", "pr_curves.png"), ("FROC curves", "froc_curves.png")]
    if overlays:
        figures.append(
            (
                "Detections: ground truth (yellow, dashed), true positives (green), false positives "
                "(vermillion, dotted)",
                "overlays.png",
            )
        )
    attention = {fn for _, fn in _attention_figures(out_dir)}  # shown in their own section
    return figures + [(title, fn) for title, fn in extra_images if fn not in attention]


def _settings_lines(s, with_boxes, without_boxes):
    """The report's "Settings" items: what was evaluated and how (``s``: the metrics' settings)."""
    return [
        f"IoU thresholds: {', '.join(f'{t:.2f}' for t in s['iou_thresholds'])}; max detections per image "
        f"and class: {s['max_dets']}",
        f"Areas: small < 32², medium 32²–96², large > 96² ({s['area_space']})",
        f"Class averages: {s['class_average']}",
        f"FROC: hit = {s['froc_hit']}; {s['froc_pooling']}; {s['froc_operating_point']}",
        f"Images: {s['num_images']} ({s['num_images_box_eval']} with box annotation: {with_boxes} with "
        f"boxes, {without_boxes} without); ground-truth boxes: {s['num_gt_boxes']}; predictions: "
        f"{s['num_predictions']} ({s['num_predictions_evaluated']} evaluated)",
        f"Ground truth: {s['ground_truth']}; predictions: {s['predictions']}",
    ]


def _markdown_report(method, m, t1, settings_lines, notes, figures, out_dir):
    """report.md: the Table 1 row ``t1``, the metric tables, settings, warnings and figures."""
    fh, fr = _froc_rows(m)
    md = [
        f"# Evaluation report: {method}",
        "",
        "## Table 1 row (percent)",
        "",
        TABLE1_HEADER,
        t1,
        "",
        "## Per class (percent; n/a: no ground truth)",
        "",
        _md_table(PER_CLASS_HEADER, per_class_rows(m)),
        "",
        "## FROC sensitivity (percent)",
        "",
        _md_table(fh, fr),
        "",
    ]
    bh, br = _bootstrap_rows(m)
    if bh:
        md += [
            f"## Bootstrap intervals over images (percent; {m['bootstrap']['n']} replicates)",
            "",
            _md_table(bh, br),
            "",
        ]
    md += ["## Settings", ""] + [f"- {x}" for x in settings_lines]
    if notes:
        md += ["", "## Warnings", ""] + [f"- {x}" for x in notes]
    # The attention figures (the paper's Fig. 2 and 4) sit between markers: link_attention_figures
    # refreshes them when they are drawn after the report.
    md += ["", _figures_md(figures) + _attention_section(out_dir, markdown=True)]
    return "\n".join(md) + "\n"


def _html_report(method, m, t1, settings_lines, notes, figures, out_dir):
    """report.html: the same content as :func:`_markdown_report`, as a standalone page."""
    fh, fr = _froc_rows(m)
    t1_header = [h.strip() for h in TABLE1_HEADER.splitlines()[0].strip("|").split("|")]
    t1_row = [c.strip() for c in t1.strip("|").split("|")]
    body = [
        f"<h1>Evaluation report: {html.escape(method)}</h1>",
        "<h2>Table 1 row (percent)</h2>",
        _html_table(t1_header, [t1_row]),
        "<h2>Per class (percent; n/a: no ground truth)</h2>",
        _html_table(PER_CLASS_HEADER, per_class_rows(m)),
        "<h2>FROC sensitivity (percent)</h2>",
        _html_table(fh, fr),
    ]
    bh, br = _bootstrap_rows(m)
    if bh:
        body += [
            f"<h2>Bootstrap intervals over images (percent; {m['bootstrap']['n']} replicates)</h2>",
            _html_table(bh, br),
        ]
    body += [
        "<h2>Settings</h2><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in settings_lines) + "</ul>"
    ]
    if notes:
        body.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in notes) + "</ul>")
    body += [_figures_html(figures) + _attention_section(out_dir, markdown=False)]
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
        "img{max-width:100%}"
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(method)} evaluation</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
