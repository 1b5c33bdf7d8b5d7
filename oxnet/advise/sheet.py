"""A contact sheet of the advised images: rank, score and reason over each, the model's top boxes."""

import numpy as np

__all__ = ["advice_sheet"]


def advice_sheet(entries, paths, signals, out_png, max_images=16, tile=320, cols=4, boxes_per_image=3):
    """Write the first ``max_images`` advised ``entries`` (the advice file's ``images``, read from
    ``paths``) as a grid; each tile shows the student's ``boxes_per_image`` best boxes in the class
    palette and "#rank score: reason" at the top. Returns ``out_png``."""
    import cv2

    from oxnet.data.io import read_image, write_png
    from oxnet.data.visualize import _fit, draw_boxes, tile_grid

    index = {img_id: i for i, img_id in enumerate(signals.image_ids)}
    tiles = []
    for entry, path in list(zip(entries, paths))[:max_images]:
        det = signals.detections[index[entry["image_id"]]]
        order = np.argsort(-det["scores"], kind="stable")[:boxes_per_image]
        score = "n/a" if entry["score"] is None else f"{entry['score']:.2f}"
        caption = f"#{entry['rank']} {entry['file_name']} ({score}): {entry['reason']}"
        tiles.append(
            draw_boxes(
                read_image(path),
                det["boxes"][order],
                det["classes"][order],
                signals.class_names,
                tile,
                caption,
            )
        )
    if not tiles:
        raise ValueError(f"no advised images to draw in {out_png}")
    sheet = tile_grid([_fit(t, tile) for t in tiles], min(cols, len(tiles)))
    write_png(out_png, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return out_png
