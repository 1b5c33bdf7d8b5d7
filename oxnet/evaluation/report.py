"""Evaluation reports: metrics.json, report.md, report.html, precision-recall and FROC curves, overlays.

Overlays follow the paper's Fig. 3 convention: ground truth red, true positives green, false positives
blue (a detection is a true positive when it is a FROC hit, i.e. IoU >= ``froc_iou`` with a box of its
class).
"""
import html
import logging
import os

import numpy as np

from oxnet.utils.atomic import atomic_open, atomic_write_json

from .metrics import AP_KEYS, percent_text, per_class_rows

__all__ = ["write_report", "plot_pr_curves", "plot_froc_curves", "draw_overlays", "table1_row"]

logger = logging.getLogger(__name__)

TABLE1_HEADER = ("| Method | # full | # weak | # unlabeled | mAP | AP40 | AP75 | APS | APM | APL |\n"
                 "|---|---|---|---|---|---|---|---|---|---|")


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
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"Precision-recall, IoU {iou:.2f} (COCO 101-point interpolation)")
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
        ax.step(np.maximum(fpi[keep], min(fps) / 2), sens[keep], where="post", label=name,
                lw=2.5 if pooled else 1, color="k" if pooled else None)
    pooled = result.metrics["froc"]["sensitivity"]
    if pooled is not None:
        ax.plot(fps, pooled, "ko")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="false positives per image", ylabel="sensitivity", ylim=(0, 1.02),
           xlim=(min(fps) / 2, 2 * max(fps)),
           title=f"FROC, hit at IoU >= {result.metrics['settings']['froc_iou']:g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    _save_figure(fig, path)
    plt.close(fig)


def _default_reader():
    from oxnet.data.io import read_image  # written by the data package; imported only when drawing

    return read_image


def draw_overlays(result, path, image_paths, n_images=8, score_threshold=0.3, tile=512, read_fn=None):
    """Grid of images with ground truth (red), true positives (green) and false positives (blue).

    Detections below ``score_threshold`` are not drawn. Images with boxes come first, in ground-truth order.

    Args:
        image_paths: dict image id -> file path.
        read_fn: image reader returning uint8 HxWx3 RGB (default ``oxnet.data.io.read_image``).

    Returns:
        the number of images drawn (0: nothing written).
    """
    import cv2

    import oxnet  # noqa: F401  (before detectron2)
    from detectron2.utils.visualizer import Visualizer

    read_fn = read_fn or _default_reader()
    gt, preds = result.gt, result.preds
    with_boxes = np.zeros(len(gt.images), bool)
    with_boxes[gt.ann_image] = True
    candidates = [i for i in np.r_[np.flatnonzero(with_boxes), np.flatnonzero(~with_boxes & gt.box_eval)]
                  if gt.image_ids[i].item() in image_paths][:n_images]
    tiles = []
    for i in candidates:
        img = read_fn(image_paths[gt.image_ids[i].item()])
        h, w = img.shape[:2]
        s = tile / max(h, w)
        img = cv2.resize(img, (max(int(round(w * s)), 1), max(int(round(h * s)), 1)),
                         interpolation=cv2.INTER_AREA)
        vis = Visualizer(img, metadata=None)
        for b in gt.ann_boxes[gt.ann_image == i]:
            vis.draw_box(tuple(np.r_[b[:2], b[:2] + b[2:]] * s), edge_color="red", alpha=0.9)
        m = (preds.image == i) & result.evaluated & (preds.scores >= score_threshold)
        for b, is_tp in zip(preds.boxes[m], result.hit[m]):
            vis.draw_box(tuple(np.r_[b[:2], b[:2] + b[2:]] * s), edge_color="lime" if is_tp else "blue",
                         alpha=0.9)
        out = vis.get_output().get_image()
        canvas = np.zeros((tile, tile, 3), np.uint8)
        canvas[:out.shape[0], :out.shape[1]] = out[:tile, :tile]
        tiles.append(canvas)
    if not tiles:
        return 0
    cols = min(4, len(tiles))
    rows = -(-len(tiles) // cols)
    tiles += [np.zeros_like(tiles[0])] * (rows * cols - len(tiles))
    grid = np.concatenate([np.concatenate(tiles[r * cols:(r + 1) * cols], axis=1) for r in range(rows)])
    ok, buf = cv2.imencode(".png", grid[:, :, ::-1])
    if not ok:
        raise RuntimeError(f"could not encode the overlay grid for {path}")
    with atomic_open(path, "wb") as f:
        f.write(buf.tobytes())
    return len(candidates)


def table1_row(metrics, method="OXnet", counts=None):
    """A row of the paper's Table 1: method, training images per supervision level, AP metrics in percent."""
    counts = counts or {}
    cells = [method] + [str(counts.get(k, "-")) for k in ("full", "weak", "unlabeled")]
    cells += [percent_text(metrics[k]) for k in AP_KEYS]
    return "| " + " | ".join(cells) + " |"


PER_CLASS_HEADER = ["class", "# GT boxes", "mAP", "AP40", "AP75", "APS", "APM", "APL", "FROC mean",
                    "AUROC global", "AUROC top local"]


def _froc_rows(metrics):
    froc = metrics["froc"]
    na = [None] * len(froc["fps_per_image"])
    rows = [["all lesions (pooled)"] + [percent_text(v) for v in (froc["sensitivity"] or na)]
            + [percent_text(froc["mean"])],
            ["mean over classes"] + [percent_text(v) for v in (froc["class_mean"]["sensitivity"] or na)]
            + [percent_text(froc["class_mean"]["mean"])]]
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
    rows += [[f"mAP {name}", percent_text(metrics["per_class"][name]["mAP"]), iv(v)]
             for name, v in b["per_class_mAP"].items()]
    return header, rows


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _html_table(header, rows):
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def write_report(result, out_dir, method="OXnet", counts=None, image_paths=None, image_root=None,
                 n_overlays=8, score_threshold=0.3, read_fn=None, extra_images=()):
    """Write metrics.json, report.md, report.html and the PNG figures into ``out_dir``.

    Args:
        result: an :class:`EvaluationResult`.
        counts: training images per supervision level {"full", "weak", "unlabeled"} for the Table 1 row.
        image_paths: dict image id -> file for the overlays; otherwise ground-truth ``file_name`` joined to
            ``image_root`` (default: the ground-truth file's folder).
        extra_images: (title, png file name in out_dir) pairs shown at the end; ``attention_*.png`` files
            already in ``out_dir`` (see :func:`write_attention_report`) are shown as well.

    Returns:
        dict name -> written path.
    """
    os.makedirs(out_dir, exist_ok=True)
    m = result.metrics
    paths = {"metrics": os.path.join(out_dir, "metrics.json")}
    atomic_write_json(paths["metrics"], m, indent=2)
    paths["pr_curves"] = os.path.join(out_dir, "pr_curves.png")
    plot_pr_curves(result, paths["pr_curves"])
    paths["froc"] = os.path.join(out_dir, "froc_curves.png")
    plot_froc_curves(result, paths["froc"])

    notes = list(m["warnings"])
    if image_paths is None:
        root = image_root or (os.path.dirname(os.path.abspath(m["settings"]["ground_truth"]))
                              if os.path.exists(m["settings"]["ground_truth"]) else None)
        image_paths = {}
        if root is not None:
            for img in result.gt.images:
                fn = img.get("file_name")
                if fn:
                    image_paths[img["id"]] = fn if os.path.isabs(fn) else os.path.join(root, fn)
    image_paths = {k: v for k, v in image_paths.items() if os.path.exists(v)}
    overlay_note = None
    if n_overlays and image_paths:
        try:
            path = os.path.join(out_dir, "overlays.png")
            if draw_overlays(result, path, image_paths, n_overlays, score_threshold, read_fn=read_fn):
                paths["overlays"] = path
        except ImportError as e:
            overlay_note = f"overlays not drawn: {e}"
    elif n_overlays:
        overlay_note = "overlays not drawn: no image file of the ground truth was found (give the image root)"
    if overlay_note:
        logger.warning(overlay_note)
        notes.append(overlay_note)

    s = m["settings"]
    settings_lines = [
        f"IoU thresholds: {', '.join(f'{t:.2f}' for t in s['iou_thresholds'])}; max detections per image "
        f"and class: {s['max_dets']}",
        f"Areas: small < 32², medium 32²–96², large > 96² ({s['area_space']})",
        f"Class averages: {s['class_average']}",
        f"FROC: hit = {s['froc_hit']}; {s['froc_pooling']}; {s['froc_operating_point']}",
        f"Images: {s['num_images']} ({s['num_images_box_eval']} with box annotation); ground-truth boxes: "
        f"{s['num_gt_boxes']}; predictions: {s['num_predictions']} "
        f"({s['num_predictions_evaluated']} evaluated)",
        f"Ground truth: {s['ground_truth']}; predictions: {s['predictions']}",
    ]
    fh, fr = _froc_rows(m)
    figures = [("Precision-recall curves", "pr_curves.png"), ("FROC curves", "froc_curves.png")]
    if "overlays" in paths:
        figures.append(("Detections (ground truth red, true positives green, false positives blue)",
                        "overlays.png"))
    figures += list(extra_images)
    # Attention figures written into the same folder by write_attention_report (the paper's Fig. 2 and 4).
    for fn in sorted(f for f in os.listdir(out_dir) if f.startswith("attention_") and f.endswith(".png")):
        if fn not in {f for _, f in figures}:
            figures.append((f"Attention maps: global CAM, local attention, DAA (image {fn[10:-4]})", fn))

    md = [f"# Evaluation report: {method}", "", "## Table 1 row (percent)", "", TABLE1_HEADER,
          table1_row(m, method, counts), "", "## Per class (percent; n/a: no ground truth)", "",
          _md_table(PER_CLASS_HEADER, per_class_rows(m)), "", "## FROC sensitivity (percent)", "",
          _md_table(fh, fr), ""]
    bh, br = _bootstrap_rows(m)
    if bh:
        md += [f"## Bootstrap intervals over images (percent; {m['bootstrap']['n']} replicates)", "",
               _md_table(bh, br), ""]
    md += ["## Settings", ""] + [f"- {x}" for x in settings_lines]
    if notes:
        md += ["", "## Warnings", ""] + [f"- {x}" for x in notes]
    md += [""] + [f"## {title}\n\n![{title}]({fn})\n" for title, fn in figures]
    paths["md"] = os.path.join(out_dir, "report.md")
    with atomic_open(paths["md"], "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")

    t1_header = [h.strip() for h in TABLE1_HEADER.splitlines()[0].strip("|").split("|")]
    t1_row = [c.strip() for c in table1_row(m, method, counts).strip("|").split("|")]
    body = [f"<h1>Evaluation report: {html.escape(method)}</h1>", "<h2>Table 1 row (percent)</h2>",
            _html_table(t1_header, [t1_row]), "<h2>Per class (percent; n/a: no ground truth)</h2>",
            _html_table(PER_CLASS_HEADER, per_class_rows(m)), "<h2>FROC sensitivity (percent)</h2>",
            _html_table(fh, fr)]
    if bh:
        body += [f"<h2>Bootstrap intervals over images (percent; {m['bootstrap']['n']} replicates)</h2>",
                 _html_table(bh, br)]
    body += ["<h2>Settings</h2><ul>"
            + "".join(f"<li>{html.escape(x)}</li>" for x in settings_lines) + "</ul>"]
    if notes:
        body.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in notes) + "</ul>")
    body += [f'<h2>{html.escape(title)}</h2><img src="{html.escape(fn)}" alt="{html.escape(title)}">'
             for title, fn in figures]
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
             "img{max-width:100%}")
    doc = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
           f"<title>{html.escape(method)} evaluation</title>"
           f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    paths["html"] = os.path.join(out_dir, "report.html")
    with atomic_open(paths["html"], "w", encoding="utf-8") as f:
        f.write(doc)
    return paths
