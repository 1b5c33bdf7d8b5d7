"""The authors' training augmentation (``OXNET.AUG.POLICY authors``).

LLYXC/OXnet ``retinanet/dataloader.py`` (``Augmenter``, l.413-450, with ``RANDOM_COLOR_POLICY_OPS``
and ``utils/augmentations.py``): with probability 0.9, one of nine colour operations at a fixed level,
then a black cutout square; applied to every training image (box images too), and independently to
each of a weak image's two views. On grey chest X-rays:

=============  =====  ==========================================================
operation      level  what it does here
=============  =====  ==========================================================
Identity       10     nothing
AutoContrast   10     ``ImageOps.autocontrast``
Equalize       10     ``ImageOps.equalize``
Solarize       5      invert pixels >= 128 (``256 - int(5 * 256 / 10)``)
Color          10     ``ImageEnhance.Color`` x1.9: nothing on a grey image
Contrast       10     ``ImageEnhance.Contrast`` x1.9 (``10 * 1.8 / 10 + 0.1``)
Brightness     10     ``ImageEnhance.Brightness`` x1.9
Sharpness      10     ``ImageEnhance.Sharpness`` x1.9
Posterize      3      keep 3 bits (``4 - int(3 * 4 / 10)``)
=============  =====  ==========================================================

Cutout: a level drawn from 1..49 gives a side of ``2 * level`` (2-98) px, centred on a random pixel,
clipped to the image, set to black. Where we differ: the authors cut the image before resizing it to
512 px, so their squares shrink with the original's size; ours are drawn on the network's input and
scaled by ``INPUT_SIZE / 512``. Random draws come from NumPy's global generator (the training loader
seeds it per sample).
"""

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

__all__ = ["AUG_POLICIES", "AUTHORS_AUG_PROB", "COLOR_OPS", "authors_view", "color_op", "cutout_box"]

AUG_POLICIES = ("oxnet", "authors")
AUTHORS_AUG_PROB = 0.9
ENHANCE = 10 * 1.8 / 10 + 0.1  # _enhancer_impl at level 10

COLOR_OPS = {
    "Identity": lambda im: im,
    "AutoContrast": ImageOps.autocontrast,
    "Equalize": ImageOps.equalize,
    "Solarize": lambda im: ImageOps.solarize(im, 256 - int(5 * 256 / 10)),
    "Color": lambda im: ImageEnhance.Color(im).enhance(ENHANCE),
    "Contrast": lambda im: ImageEnhance.Contrast(im).enhance(ENHANCE),
    "Brightness": lambda im: ImageEnhance.Brightness(im).enhance(ENHANCE),
    "Sharpness": lambda im: ImageEnhance.Sharpness(im).enhance(ENHANCE),
    "Posterize": lambda im: ImageOps.posterize(im, 4 - int(3 * 4 / 10)),
}


def color_op(name, grey):
    """Apply the colour operation ``name`` to a (H, W) uint8 image; returns uint8."""
    return np.asarray(COLOR_OPS[name](Image.fromarray(grey, mode="L")), dtype=np.uint8)


def cutout_box(height, width, side, rng=np.random):
    """The authors' ``create_cutout_mask`` as their ``_cutout_pil_impl`` uses it: (y0, x0, y1, x1) of a
    ``side`` square centred on a random pixel and clipped to the image. Their first draw ("height")
    picks the columns, because PIL's pixel access is ``[x, y]``."""
    first, second = rng.randint(0, height), rng.randint(0, width)
    half = side // 2
    x0, x1 = max(0, first - half), min(height, first + half)
    y0, y1 = max(0, second - half), min(width, second + half)
    return y0, x0, y1, x1


def authors_view(image, input_size, rng=np.random):
    """One draw of the authors' augmentation of a float32 (H, W, C) grey image in 0..255 (channels
    equal); returns float32 (H, W, C)."""
    if rng.rand() >= AUTHORS_AUG_PROB:
        return image
    name = list(COLOR_OPS)[rng.choice(range(len(COLOR_OPS)), 1)[0]]
    grey = color_op(name, np.clip(np.rint(image[:, :, 0]), 0, 255).astype(np.uint8))
    side = 2 * rng.randint(1, 50)
    side = max(1, int(round(side * input_size / 512)))
    y0, x0, y1, x1 = cutout_box(*grey.shape, side, rng)
    out = grey.astype(np.float32)
    out[y0:y1, x0:x1] = 0.0
    return np.repeat(out[:, :, None], image.shape[2], axis=2)
