"""Contact sheets: a grid of chest X-rays with their boxes drawn by detectron2's Visualizer.

Box labels are laid out so that they stay inside the tile and do not overlap one another
(:func:`layout_labels`, :func:`draw_labels`); the evaluation overlays use the same helpers.
"""

import json
import os

import cv2
import numpy as np

__all__ = ["class_colors", "draw_boxes", "draw_labels", "layout_labels", "tile_grid", "contact_sheet"]


def class_colors(num_classes):
    """One fixed RGB colour (floats in [0, 1]) per contiguous class index: the project's one palette
    (:mod:`oxnet.utils.palette`), shared with the review page and the overlays."""
    from oxnet.utils.palette import class_rgb

    return class_rgb(num_classes)


def _overlap(a, b):
    """Area shared by two (x0, y0, x1, y1) rectangles."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def layout_labels(boxes_xyxy, sizes, bounds, reserved=(), gap=1.0):
    """Place one label rectangle next to each box, inside ``bounds``, without overlaps where there is room.

    Each label goes to the first free place among: above the box's top-left corner, below its
    bottom-left corner, the same at the right edge, then inside the box's corners; failing those, the
    free place of a grid over ``bounds`` nearest to the box. Places are clamped into ``bounds``, so a
    box at the image border gets its label inside the image. When no free place exists, the preferred
    place overlapping least is taken.

    Args:
        boxes_xyxy: N boxes (x0, y0, x1, y1).
        sizes: N label sizes (width, height), in the same units.
        bounds: (x0, y0, x1, y1) the labels must stay in.
        reserved: rectangles labels must avoid (e.g. a caption).
        gap: distance kept between a label outside its box and the box's edge (the line's width).

    Returns:
        N rectangles (x0, y0, x1, y1).
    """
    bx0, by0, bx1, by1 = (float(v) for v in bounds)
    placed = [tuple(map(float, r)) for r in reserved]
    out = []
    for box, (w, h) in zip(boxes_xyxy, sizes):
        x0, y0, x1, y1 = (float(v) for v in box)
        w, h = float(w), float(h)

        def clamp(x, y, w=w, h=h):
            x = min(max(x, bx0), max(bx1 - w, bx0))
            y = min(max(y, by0), max(by1 - h, by0))
            return (x, y, x + w, y + h)

        preferred = [
            clamp(x, y)
            for x, y in (
                (x0, y0 - h - gap),
                (x0, y1 + gap),
                (x1 - w, y0 - h - gap),
                (x1 - w, y1 + gap),
                (x0 + gap, y0 + gap),
                (x0 + gap, y1 - h - gap),
                (x1 - w - gap, y0 + gap),
                (x1 - w - gap, y1 - h - gap),
            )
        ]
        rect = next((r for r in preferred if not any(_overlap(r, p) > 0 for p in placed)), None)
        if rect is None:
            xs = np.arange(bx0, max(bx1 - w, bx0) + 1e-9, max(w / 4, 1.0))
            ys = np.arange(by0, max(by1 - h, by0) + 1e-9, max(h / 2, 1.0))
            grid = [clamp(x, y) for y in ys for x in xs]
            grid.sort(key=lambda r: (r[0] - x0) ** 2 + (r[1] - (y0 - h)) ** 2)
            rect = next((r for r in grid if not any(_overlap(r, p) > 0 for p in placed)), None)
        if rect is None:
            rect = min(preferred, key=lambda r: sum(_overlap(r, p) for p in placed))
        placed.append(rect)
        out.append(rect)
    return out


_LABEL_PAD_PT = 1.5  # padding of a label's dark background, in points


def _text_extent(ax, text, size_pt):
    """Width and height (data units of ``ax``) of ``text`` drawn at ``size_pt`` with its padding."""
    renderer = ax.figure.canvas.get_renderer()
    t = ax.text(0, 0, text, size=size_pt, family="sans-serif")
    ext = t.get_window_extent(renderer=renderer)
    t.remove()
    pad = 2 * _LABEL_PAD_PT * ax.figure.dpi / 72
    (ax0, ay0), (ax1, ay1) = ax.transData.inverted().transform([[0, 0], [ext.width + pad, ext.height + pad]])
    return abs(ax1 - ax0), abs(ay1 - ay0)


def draw_labels(
    vis, boxes_xyxy, texts, colors, font_size=None, bounds=None, reserved=(), gap=None, min_font_size=5
):
    """Write ``texts[i]`` on a dark background next to box ``i`` of a detectron2 ``Visualizer``.

    Labels are laid out by :func:`layout_labels` inside ``bounds`` (default: the whole image). A font
    too large for the longest label to fit the width of ``bounds``, or for all labels to find places
    apart, is reduced (down to ``min_font_size``, in points).

    Args:
        vis: a ``detectron2.utils.visualizer.Visualizer``; coordinates are its image's pixels.
        colors: per label, the text colour (matplotlib colour).
        font_size: in the Visualizer's units (default: its default font size).

    Returns:
        the drawn labels' rectangles (x0, y0, x1, y1) in image pixels, measured on the drawn artists.
    """
    out = vis.output
    ax = out.ax
    if bounds is None:
        bounds = (0, 0, out.width, out.height)
    if not len(texts):
        return []
    size = (font_size or vis._default_font_size) * out.scale
    sizes = [_text_extent(ax, t, size) for t in texts]
    widest = max(w for w, _ in sizes)
    room = bounds[2] - bounds[0]
    if widest > room and size > min_font_size:
        size = max(size * room / widest * 0.98, min_font_size)
        sizes = [_text_extent(ax, t, size) for t in texts]
    if gap is None:
        gap = max(out.height / 200, 1.0)
    while True:  # a smaller font while crowded labels cannot all be placed apart
        rects = layout_labels(boxes_xyxy, sizes, bounds, reserved=reserved, gap=gap)
        others = list(reserved)
        crowded = False
        for r in rects:
            crowded |= any(_overlap(r, o) > 0 for o in others)
            others.append(r)
        if not crowded or size <= min_font_size:
            break
        size = max(size * 0.85, min_font_size)
        sizes = [_text_extent(ax, t, size) for t in texts]
    pad = _LABEL_PAD_PT * ax.figure.dpi / 72 / out.scale
    artists = []
    for text, color, r in zip(texts, colors, rects):
        artists.append(
            ax.text(
                r[0] + pad,
                r[1] + pad,
                text,
                size=size,
                family="sans-serif",
                color=color,
                va="top",
                ha="left",
                zorder=10,
                bbox={"facecolor": "black", "alpha": 0.75, "pad": _LABEL_PAD_PT, "edgecolor": "none"},
            )
        )
    out.fig.canvas.draw()
    inv = ax.transData.inverted()
    drawn = []
    for a in artists:
        e = a.get_bbox_patch().get_window_extent()
        (xa, ya), (xb, yb) = inv.transform([[e.x0, e.y0], [e.x1, e.y1]])
        drawn.append((min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)))
    return drawn


def _wrap(ax, text, size_pt, width):
    """``text`` with line breaks after commas or spaces so that each line fits ``width`` (data units)."""
    if _text_extent(ax, text, size_pt)[0] <= width:
        return text
    words = text.replace(" ", " \0").split("\0")
    lines = [""]
    for w in words:
        if lines[-1] and _text_extent(ax, (lines[-1] + w).rstrip(), size_pt)[0] > width:
            lines.append("")
        lines[-1] += w
    return "\n".join(line.rstrip() for line in lines)


def _legible(color):
    """A colour brightened for text on a dark background (as detectron2's ``Visualizer.draw_text``)."""
    import matplotlib.colors as mplc

    c = np.maximum(np.asarray(mplc.to_rgb(color)), 0.2)
    c[np.argmax(c)] = max(0.8, c.max())
    return tuple(c)


def draw_boxes(
    image, boxes_xyxy, class_ids, thing_classes, size=None, caption=None, return_label_boxes=False
):
    """Draw labelled boxes on a grey or RGB uint8 image with detectron2's Visualizer.

    Class labels stay inside the image and do not overlap each other or the caption.

    Args:
        image: HxW or HxWx3 uint8 (RGB).
        boxes_xyxy: Nx4 boxes in the image's pixels; class_ids: N contiguous class indices.
        size: output width in pixels (the drawing is scaled); default: the image width.
        caption: optional text written at the top of the tile.
        return_label_boxes: also return the rectangles (x0, y0, x1, y1, output pixels) of the drawn
            caption and labels.
    Returns:
        RGB uint8 array (and the label rectangles).
    """
    from detectron2.utils.visualizer import Visualizer

    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    scale = 1.0 if size is None else size / image.shape[1]
    vis = Visualizer(image, metadata=None, scale=scale)
    font = max(vis._default_font_size, 8 / scale)
    colors = class_colors(len(thing_classes))
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    class_ids = [int(c) for c in class_ids]
    for b, c in zip(boxes, class_ids):
        vis.draw_box(tuple(b), alpha=0.8, edge_color=colors[c])
    reserved = []
    if caption:
        caption = _wrap(vis.output.ax, caption, font * scale, image.shape[1])
        reserved = draw_labels(vis, [(0, 0, image.shape[1], 0)], [caption], ["w"], font_size=font, gap=0)
        # centre the caption: move the drawn text (its rectangle is kept for the layout)
        t = vis.output.ax.texts[-1]
        x0, _, x1, _ = reserved[0]
        dx = (image.shape[1] - (x1 - x0)) / 2 - x0
        t.set_x(t.get_position()[0] + dx)
        reserved = [(x0 + dx, reserved[0][1], x1 + dx, reserved[0][3])]
    labels = draw_labels(
        vis,
        boxes,
        [thing_classes[c] for c in class_ids],
        [_legible(colors[c]) for c in class_ids],
        font_size=font,
        reserved=reserved,
    )
    out = vis.get_output().get_image()
    s = 1.0
    if size is not None and out.shape[1] != size:
        s = size / out.shape[1]
        out = cv2.resize(out, (size, round(out.shape[0] * s)), interpolation=cv2.INTER_AREA)
    if return_label_boxes:
        k = scale * s
        return out, [tuple(v * k for v in r) for r in reserved + labels]
    return out


def tile_grid(tiles, cols):
    """Arrange equally sized RGB tiles in a grid with ``cols`` columns (missing cells are black)."""
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + cols - 1) // cols
    sheet = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * h : r * h + t.shape[0], c * w : c * w + t.shape[1]] = t[:h, :w]
    return sheet


def _fit(image, tile):
    """Letterbox an RGB image into a black ``tile`` x ``tile`` square."""
    h, w = image.shape[:2]
    s = min(tile / h, tile / w)
    if s != 1:
        image = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    out = np.zeros((tile, tile, 3), np.uint8)
    out[: image.shape[0], : image.shape[1]] = image
    return out


def _records(data, image_root, thing_classes):
    """(file path, boxes xyxy, class indices, caption) from an OXnet-COCO dict/path or dataset dicts."""
    if isinstance(data, (str, os.PathLike)):
        with open(data, encoding="utf-8") as f:
            data = json.load(f)
    if isinstance(data, dict):  # OXnet-COCO
        names = {c["id"]: c["name"] for c in data["categories"]}
        by_image = {}
        for a in data.get("annotations", []):
            by_image.setdefault(a["image_id"], []).append(a)
        for im in data["images"]:
            anns = by_image.get(im["id"], [])
            boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
            ids = [thing_classes.index(names[a["category_id"]]) for a in anns]
            yield (
                os.path.join(image_root or "", im["file_name"]),
                boxes,
                ids,
                _caption(im.get("supervision"), im.get("image_labels"), lambda k: k),
            )
    else:  # detectron2 dataset dicts
        from detectron2.structures import BoxMode

        for d in data:
            anns = d.get("annotations", [])
            boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]
            ids = [a["category_id"] for a in anns]
            path = d["file_name"] if image_root is None else os.path.join(image_root, d["file_name"])
            yield (
                path,
                boxes,
                ids,
                _caption(d.get("supervision"), d.get("image_labels"), lambda k: thing_classes[int(k)]),
            )


def _caption(supervision, image_labels, name_of):
    if supervision is None:
        return None
    if supervision == "weak" and image_labels:
        positives = [name_of(k) for k, v in image_labels.items() if v == 1]
        return "weak: " + (", ".join(positives) if positives else "no finding")
    return supervision


def contact_sheet(data, image_root, thing_classes, out_png, max_images=16, tile=256, cols=4):
    """Write a grid of up to ``max_images`` images with their boxes (and weak labels as captions).

    Args:
        data: an OXnet-COCO dict, the path of its JSON, or a list of detectron2 dataset dicts.
        image_root: folder that COCO ``file_name`` entries are relative to (None for absolute paths).
        thing_classes: class names in contiguous-id order.
    Returns:
        the path written.
    """
    from oxnet.data.io import read_image, write_png

    tiles = []
    for path, boxes, ids, caption in _records(data, image_root, thing_classes):
        if len(tiles) >= max_images:
            break
        image = read_image(path)
        tiles.append(draw_boxes(image, boxes, ids, thing_classes, size=tile, caption=caption))
    if not tiles:
        raise ValueError(f"contact_sheet: no images to draw for {out_png}")
    sheet = tile_grid([_fit(t, tile) for t in tiles], min(cols, len(tiles)))
    write_png(out_png, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return out_png
