"""Attention figures (the paper's Fig. 2 and 4): global CAM X, local attention R, DAA map X * R (Eq. 3).

Each kind of map has one colour scale for the whole figure, shown by a colour bar with the maps' value
range: a signed map (the CAM's logits, the DAA map) uses a diverging colormap centred at 0, so a
negative map never looks "hot"; a non-negative map (the local attention) a sequential one from 0.
Ground-truth boxes are drawn on every panel.
"""

import copy
import os

import numpy as np

from oxnet.utils.atomic import atomic_open

from .report import OVERLAY_STYLES

__all__ = ["attention_figure", "draw_attention_maps", "map_scales", "write_attention_report"]

_MAP_TITLES = (
    ("cam", "Global CAM X\n(class logit)"),
    ("local", "Local attention R\n(weights, sum 1)"),
    ("daa", "DAA map X·R\n(Eq. 3, sums to the logit)"),
)
_SIGNED_CMAP, _SEQUENTIAL_CMAP = "RdBu_r", "viridis"
# ground truth as in the evaluation overlays (their Okabe & Ito yellow, dashed), thinner on the small panels
_GT_STYLE = {
    "edgecolor": OVERLAY_STYLES["gt"]["color"],
    "linestyle": OVERLAY_STYLES["gt"]["linestyle"],
    "linewidth": 1.6,
}


def map_scales(arrays, classes):
    """One colour scale per kind of map over the drawn classes.

    Returns:
        dict key -> {"cmap", "vmin", "vmax", "lo", "hi", "signed"}: ``lo``/``hi`` the values' range,
        ``vmin``/``vmax`` the colour limits (symmetric about 0 for a map with negative values).
    """
    scales = {}
    for key, _ in _MAP_TITLES:
        vals = np.asarray(arrays[key])[list(classes)]
        finite = vals[np.isfinite(vals)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        signed = lo < 0
        if signed:
            a = max(abs(lo), abs(hi)) or 1.0
            vmin, vmax, cmap = -a, a, _SIGNED_CMAP
        else:
            vmin, vmax, cmap = 0.0, (hi if hi > 0 else 1.0), _SEQUENTIAL_CMAP
        scales[key] = {"cmap": cmap, "vmin": vmin, "vmax": vmax, "lo": lo, "hi": hi, "signed": signed}
    return scales


def attention_figure(image, maps, class_names, classes=None, max_classes=3, gt_boxes=(), title=None):
    """The attention figure as a matplotlib ``Figure`` (see :func:`draw_attention_maps`)."""
    import cv2
    from matplotlib.patches import Rectangle

    from .report import _pyplot

    missing = [k for k, _ in _MAP_TITLES if k not in maps]
    if missing:
        raise KeyError(f"attention maps lack {missing}; expected keys cam, local, daa")
    arrays = {k: np.asarray(maps[k], dtype=np.float32) for k, _ in _MAP_TITLES}
    n = arrays["cam"].shape[0]
    if any(a.ndim != 3 or a.shape[0] != n for a in arrays.values()) or len(class_names) != n:
        raise ValueError(
            f"maps must be [N, h, w] with N = {len(class_names)} classes; got "
            f"{ {k: a.shape for k, a in arrays.items()} }"
        )
    if classes is None:
        peak = arrays["daa"].reshape(n, -1).max(1)
        classes = np.argsort(-peak, kind="stable")[:max_classes].tolist()
    classes = [int(k) for k in classes]
    image = np.asarray(image)
    grey = {"cmap": "gray"}
    if image.dtype == np.uint8:
        grey.update(vmin=0, vmax=255)  # as stored, not stretched
    if image.ndim == 3:
        image = image.mean(axis=2)
    h, w = image.shape[:2]
    scales = map_scales(arrays, classes)

    plt = _pyplot()
    rows = len(classes)
    fig = plt.figure(figsize=(13, 3.3 * rows + 1.8), layout="constrained")
    # A first row for the title (constrained layout's suptitle can overlap two-line axes titles) and a
    # last, thin row for the colour bars, which keeps every panel the same size.
    grid = fig.add_gridspec(rows + 2, 4, height_ratios=[0.08] + [1] * rows + [0.07])
    head = fig.add_subplot(grid[0, :])
    head.axis("off")
    head.text(0.5, 0.5, title or "", transform=head.transAxes, ha="center", va="center", fontsize=14)
    axes = np.array([[fig.add_subplot(grid[r + 1, c]) for c in range(4)] for r in range(rows)])
    images = {}
    for row, k in enumerate(classes):
        boxes = [b for b, c in gt_boxes if int(c) == k]
        ax = axes[row, 0]
        ax.imshow(image, **grey)
        ax.set_ylabel(class_names[k], fontsize=13, fontweight="bold")
        ax.set_title("image" if row == 0 else "", fontsize=12)
        ax.text(
            0.02,
            0.98,
            f"{len(boxes)} ground-truth box{'es' if len(boxes) != 1 else ''}",
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=10,
            color="white",
            bbox={"facecolor": "black", "alpha": 0.6, "pad": 2, "edgecolor": "none"},
        )
        for col, (key, col_title) in enumerate(_MAP_TITLES, start=1):
            sc = scales[key]
            m = cv2.resize(arrays[key][k], (w, h), interpolation=cv2.INTER_LINEAR)
            ax = axes[row, col]
            ax.imshow(image, **grey)
            # Opacity grows with the value's distance from the scale's neutral point (0), so the
            # radiograph stays visible where the map says nothing.
            strength = np.clip(np.abs(m) / max(abs(sc["vmin"]), abs(sc["vmax"])), 0, 1)
            images[row, key] = ax.imshow(
                m, cmap=sc["cmap"], vmin=sc["vmin"], vmax=sc["vmax"], alpha=0.85 * strength**0.75
            )
            if row == 0:
                ax.set_title(col_title, fontsize=12)
            ax.text(
                0.98,
                0.02,
                f"{float(arrays[key][k].min()):.3g} … {float(arrays[key][k].max()):.3g}",
                transform=ax.transAxes,
                va="bottom",
                ha="right",
                fontsize=9,
                color="white",
                bbox={"facecolor": "black", "alpha": 0.6, "pad": 2, "edgecolor": "none"},
            )
        for ax in axes[row]:
            for x0, y0, x1, y1 in boxes:
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, zorder=5, **_GT_STYLE))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
    for col, (key, col_title) in enumerate(_MAP_TITLES, start=1):
        sc = scales[key]
        cb = fig.colorbar(images[0, key], cax=fig.add_subplot(grid[rows + 1, col]), orientation="horizontal")
        cb.solids.set_alpha(1)
        kind = "signed, centred at 0" if sc["signed"] else "from 0"
        cb.set_label(
            f"{col_title.splitlines()[0]} ({kind})\nvalues {sc['lo']:.3g} to {sc['hi']:.3g}", fontsize=10
        )
        cb.ax.tick_params(labelsize=9)
    note = fig.add_subplot(grid[rows + 1, 0])
    note.axis("off")
    note.text(
        0,
        0.5,
        "dashed yellow: ground-truth boxes\nof the row's class; opacity grows\nwith |value|",
        transform=note.transAxes,
        va="center",
        ha="left",
        fontsize=10,
    )
    return fig, classes


def draw_attention_maps(
    image, maps, class_names, out_png, classes=None, max_classes=3, gt_boxes=(), title=None
):
    """Draw, for a few classes, the image and its three maps overlaid, one colour scale per kind of map.

    Args:
        image: uint8 HxWx3 (RGB) or HxW.
        maps: dict "cam", "local", "daa" -> float arrays [N, h, w] on any grid (resized to the image).
        class_names: N names.
        classes: class indices to show; default: the ``max_classes`` classes with the highest DAA peak.
        gt_boxes: [((x0, y0, x1, y1), class index)] in the image's pixels, drawn on the class's row.
        title: the figure's title (e.g. the image's file name).

    Returns:
        the class indices drawn.
    """
    fig, classes = attention_figure(image, maps, class_names, classes, max_classes, gt_boxes, title)
    with atomic_open(out_png, "wb") as f:
        fig.savefig(f, format="png", dpi=72)
    from .report import _pyplot

    _pyplot().close(fig)
    return classes


def _gt_boxes(d):
    from detectron2.structures import BoxMode

    return [
        (
            BoxMode.convert(list(a["bbox"]), a.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYXY_ABS),
            a["category_id"],
        )
        for a in d.get("annotations", [])
    ]


def write_attention_report(model, dataset_dicts, mapper, out_dir, n_images=4, class_names=None):
    """Attention figures for the first ``n_images`` dataset dicts of an OXnet model with the DAA head.

    Shows the classes the image is positive for (``image_labels`` == 1), else the highest DAA peaks,
    with the image's ground-truth boxes. When ``out_dir`` or its parent folder holds an evaluation
    ``report.html``, the report is updated to show the figures (see
    :func:`oxnet.evaluation.report.link_attention_figures`).

    Args:
        model: OXNet model offering ``attention_maps(batched_inputs)``.
        mapper: the test-time dataset mapper (dataset dict -> model input).

    Returns:
        list of written PNG paths (``attention_<image_id>.png`` in ``out_dir``).
    """
    import torch

    import oxnet  # noqa: F401  (before detectron2)
    from oxnet.data.io import read_image

    from .report import link_attention_figures

    os.makedirs(out_dir, exist_ok=True)
    was_training = model.training
    model.eval()
    paths = []
    try:
        with torch.no_grad():
            for d in list(dataset_dicts)[:n_images]:
                maps = model.attention_maps([mapper(copy.deepcopy(d))])[0]
                n = np.asarray(maps["cam"]).shape[0]
                names = list(class_names) if class_names is not None else [str(k) for k in range(n)]
                positives = [k for k, v in sorted((d.get("image_labels") or {}).items()) if v == 1]
                boxes = _gt_boxes(d)
                shown = positives or sorted({c for _, c in boxes})
                path = os.path.join(out_dir, f"attention_{d['image_id']}.png")
                title = f"{os.path.basename(str(d['file_name']))} (image id {d['image_id']})"
                draw_attention_maps(
                    read_image(d["file_name"]),
                    maps,
                    names,
                    path,
                    classes=shown[:3] or None,
                    gt_boxes=boxes,
                    title=title,
                )
                paths.append(path)
    finally:
        model.train(was_training)
    for folder in (out_dir, os.path.dirname(os.path.abspath(out_dir))):
        if os.path.exists(os.path.join(folder, "report.html")):
            link_attention_figures(folder)
            break
    return paths
