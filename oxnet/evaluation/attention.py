"""Attention figures (the paper's Fig. 2 and 4): global CAM X, local attention R, DAA map X * R (Eq. 3)."""
import copy
import os

import numpy as np

from oxnet.utils.atomic import atomic_open

__all__ = ["draw_attention_maps", "write_attention_report"]

_MAP_TITLES = (("cam", "global CAM X"), ("local", "local attention R"), ("daa", "DAA map X·R (Eq. 3)"))


def draw_attention_maps(image, maps, class_names, out_png, classes=None, max_classes=3):
    """Draw, for a few classes, the image and its three maps overlaid (jet, min-max scaled per map).

    Args:
        image: uint8 HxWx3 (RGB) or HxW.
        maps: dict "cam", "local", "daa" -> float arrays [N, h, w] on any grid (resized to the image).
        class_names: N names.
        classes: class indices to show; default: the ``max_classes`` classes with the highest DAA peak.

    Returns:
        the class indices drawn.
    """
    import cv2

    from .report import _pyplot

    missing = [k for k, _ in _MAP_TITLES if k not in maps]
    if missing:
        raise KeyError(f"attention maps lack {missing}; expected keys cam, local, daa")
    arrays = {k: np.asarray(maps[k], dtype=np.float32) for k, _ in _MAP_TITLES}
    n = arrays["cam"].shape[0]
    if any(a.ndim != 3 or a.shape[0] != n for a in arrays.values()) or len(class_names) != n:
        raise ValueError(f"maps must be [N, h, w] with N = {len(class_names)} classes; got "
                         f"{ {k: a.shape for k, a in arrays.items()} }")
    if classes is None:
        peak = arrays["daa"].reshape(n, -1).max(1)
        classes = np.argsort(-peak, kind="stable")[:max_classes].tolist()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    h, w = image.shape[:2]

    plt = _pyplot()
    fig, axes = plt.subplots(len(classes), 4, figsize=(12, 3.2 * len(classes)), squeeze=False)
    for row, k in enumerate(classes):
        axes[row, 0].imshow(image)
        axes[row, 0].set_title(class_names[k], fontsize=9)
        for col, (key, title) in enumerate(_MAP_TITLES, start=1):
            m = cv2.resize(arrays[key][k], (w, h), interpolation=cv2.INTER_LINEAR)
            lo, hi = float(m.min()), float(m.max())
            m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
            axes[row, col].imshow(image)
            axes[row, col].imshow(m, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            axes[row, col].set_title(f"{title} (max {hi:.3g})", fontsize=9)
        for ax in axes[row]:
            ax.axis("off")
    fig.tight_layout()
    with atomic_open(out_png, "wb") as f:
        fig.savefig(f, format="png", dpi=80)
    plt.close(fig)
    return list(classes)


def write_attention_report(model, dataset_dicts, mapper, out_dir, n_images=4, class_names=None):
    """Attention figures for the first ``n_images`` dataset dicts of an OXnet model with the DAA head.

    Shows the classes the image is positive for (``image_labels`` == 1), else the highest DAA peaks.

    Args:
        model: OXNet model offering ``attention_maps(batched_inputs)``.
        mapper: the test-time dataset mapper (dataset dict -> model input).

    Returns:
        list of written PNG paths (``attention_<image_id>.png`` in ``out_dir``).
    """
    import torch

    from oxnet.data.io import read_image

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
                path = os.path.join(out_dir, f"attention_{d['image_id']}.png")
                draw_attention_maps(read_image(d["file_name"]), maps, names, path,
                                    classes=positives[:3] or None)
                paths.append(path)
    finally:
        model.train(was_training)
    return paths
