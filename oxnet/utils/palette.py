"""One colour per class, the same everywhere: evaluation overlays, contact sheets, the predictor's
Visualizer output, the review page (through ``/v1/model``).

The first 16 are colour-blind-safe: Okabe & Ito's seven colours (black left out: it vanishes on a
radiograph), then Paul Tol's "muted" scheme. Beyond 16 classes, further colours are spread by the
golden angle around the hue circle at fixed saturation and value: distinct, but not checked for
colour blindness.
"""

import colorsys

__all__ = ["CLASS_PALETTE", "class_palette", "class_rgb"]

CLASS_PALETTE = (
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#009E73",  # bluish green
    "#F0E442",  # yellow
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#CC6677",  # rose
    "#DDCC77",  # sand
    "#117733",  # green
    "#88CCEE",  # cyan
    "#882255",  # wine
    "#44AA99",  # teal
    "#999933",  # olive
    "#AA4499",  # purple
    "#332288",  # indigo
)


def class_palette(num_classes):
    """``num_classes`` distinct colours as ``#RRGGBB``, the same for the same class index everywhere."""
    out = list(CLASS_PALETTE[:num_classes])
    for i in range(len(out), num_classes):
        hue = (0.11 + 0.381966 * (i - len(CLASS_PALETTE))) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.9)
        out.append(f"#{round(r * 255):02X}{round(g * 255):02X}{round(b * 255):02X}")
    return out


def class_rgb(num_classes):
    """:func:`class_palette` as RGB tuples of floats in [0, 1] (matplotlib, detectron2's Visualizer)."""
    return [tuple(int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)) for c in class_palette(num_classes)]
