"""Contact sheets: a grid of chest X-rays with their boxes drawn by detectron2's Visualizer."""
import json
import os

import cv2
import numpy as np

__all__ = ["class_colors", "draw_boxes", "tile_grid", "contact_sheet"]


def class_colors(num_classes):
    """One fixed RGB colour (floats in [0, 1]) per contiguous class index."""
    from detectron2.utils.colormap import colormap

    palette = colormap(rgb=True, maximum=1)
    palette = [c for c in palette if c.max() - c.min() > 0.3]  # grey boxes vanish on a radiograph
    return [tuple(palette[i % len(palette)]) for i in range(num_classes)]


def draw_boxes(image, boxes_xyxy, class_ids, thing_classes, size=None, caption=None):
    """Draw labelled boxes on a grey or RGB uint8 image with detectron2's Visualizer.

    Args:
        image: HxW or HxWx3 uint8 (RGB).
        boxes_xyxy: Nx4 boxes in the image's pixels; class_ids: N contiguous class indices.
        size: output width in pixels (the drawing is scaled); default: the image width.
        caption: optional text written at the top of the tile.
    Returns:
        RGB uint8 array.
    """
    from detectron2.utils.visualizer import Visualizer

    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    scale = 1.0 if size is None else size / image.shape[1]
    vis = Visualizer(image, metadata=None, scale=scale)
    colors = class_colors(len(thing_classes))
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if len(boxes):
        vis.overlay_instances(boxes=boxes, labels=[thing_classes[c] for c in class_ids],
                              assigned_colors=[colors[c] for c in class_ids], alpha=0.5)
    if caption:
        vis.draw_text(caption, (image.shape[1] / 2, 2), font_size=max(vis._default_font_size, 8),
                      color="w", horizontal_alignment="center")
    out = vis.get_output().get_image()
    if size is not None and out.shape[1] != size:
        out = cv2.resize(out, (size, round(out.shape[0] * size / out.shape[1])), interpolation=cv2.INTER_AREA)
    return out


def tile_grid(tiles, cols):
    """Arrange equally sized RGB tiles in a grid with ``cols`` columns (missing cells are black)."""
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + cols - 1) // cols
    sheet = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * h:r * h + t.shape[0], c * w:c * w + t.shape[1]] = t[:h, :w]
    return sheet


def _fit(image, tile):
    """Letterbox an RGB image into a black ``tile`` x ``tile`` square."""
    h, w = image.shape[:2]
    s = min(tile / h, tile / w)
    if s != 1:
        image = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    out = np.zeros((tile, tile, 3), np.uint8)
    out[:image.shape[0], :image.shape[1]] = image
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
            yield (os.path.join(image_root or "", im["file_name"]), boxes, ids,
                   _caption(im.get("supervision"), im.get("image_labels"), lambda k: k))
    else:  # detectron2 dataset dicts
        from detectron2.structures import BoxMode

        for d in data:
            anns = d.get("annotations", [])
            boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]
            ids = [a["category_id"] for a in anns]
            path = d["file_name"] if image_root is None else os.path.join(image_root, d["file_name"])
            yield path, boxes, ids, _caption(d.get("supervision"), d.get("image_labels"),
                                             lambda k: thing_classes[int(k)])


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
