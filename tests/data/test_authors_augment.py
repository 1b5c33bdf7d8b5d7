"""``OXNET.AUG.POLICY authors`` and ``OXNET.SFL.TEACHER_VIEW augmented`` against a transcription of the
authors' ``Augmenter`` (LLYXC/OXnet ``retinanet/dataloader.py`` l.413-450, ``RANDOM_COLOR_POLICY_OPS``,
``utils/augmentations.py``), run on RGBA images as theirs is."""

import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from oxnet.data.authors_augment import COLOR_OPS, authors_view, color_op
from oxnet.data.mapper import OmniDatasetMapper
from oxnet.testing import tiny_cfg

OPS = [("Identity", 10), ("AutoContrast", 10), ("Equalize", 10), ("Solarize", 5), ("Color", 10),
       ("Contrast", 10), ("Brightness", 10), ("Sharpness", 10), ("Posterize", 3)]  # fmt: skip


def _their_op(name, level, im):
    enhance = float(level) * 1.8 / 10 + 0.1
    ops = {
        "Identity": lambda: im,
        "AutoContrast": lambda: ImageOps.autocontrast(im.convert("RGB")).convert("RGBA"),
        "Equalize": lambda: ImageOps.equalize(im.convert("RGB")).convert("RGBA"),
        "Solarize": lambda: ImageOps.solarize(im.convert("RGB"), 256 - int(level * 256 / 10)).convert("RGBA"),
        "Color": lambda: ImageEnhance.Color(im).enhance(enhance),
        "Contrast": lambda: ImageEnhance.Contrast(im).enhance(enhance),
        "Brightness": lambda: ImageEnhance.Brightness(im).enhance(enhance),
        "Sharpness": lambda: ImageEnhance.Sharpness(im).enhance(enhance),
        "Posterize": lambda: ImageOps.posterize(im.convert("RGB"), 4 - int(level * 4 / 10)).convert("RGBA"),
    }
    return ops[name]()


def _pil_wrap(img01):
    return Image.fromarray(np.uint8(img01 * 255.0)).convert("RGBA")


def _pil_unwrap(pil):
    s = pil.size
    arr = np.array(pil.getdata()).reshape((s[0], s[1], 4)) / 255.0
    i1, i2 = np.where(arr[:, :, 3] == 0)
    arr = arr[:, :, :3]
    arr[i1, i2] = [0, 0, 0]
    return arr


def _their_augmenter(img01):
    """Augmenter.__call__ with aug_prob 0.9: np.random draws in their order."""
    if np.random.rand() < 0.9:
        name, probability, level = [(n, 1, lv) for n, lv in OPS][np.random.choice(range(len(OPS)), 1)[0]]
        pil = _pil_wrap(img01)
        if random.random() < probability:
            pil = _their_op(name, level, pil)
        size = int(np.random.randint(1, 50) * 20 / 10)  # Cutout's int_parameter(level, 20)
        h, w = img01.shape[:2]
        height_loc, width_loc = np.random.randint(low=0, high=h), np.random.randint(low=0, high=w)
        upper = (max(0, height_loc - size // 2), max(0, width_loc - size // 2))
        lower = (min(h, height_loc + size // 2), min(w, width_loc + size // 2))
        pixels = pil.load()
        for i in range(upper[0], lower[0]):
            for j in range(upper[1], lower[1]):
                pixels[i, j] = (127, 127, 127, 0)
        return _pil_unwrap(pil)
    return img01


def _image(seed=0, size=96):
    g = np.random.RandomState(seed)
    grey = g.randint(40, 220, size=(size, size)).astype(np.float64)
    grey[size // 3 : size // 2, :] *= 0.5  # some structure for the enhancers
    return np.repeat((np.floor(grey) / 255.0)[:, :, None], 3, axis=2)


@pytest.mark.parametrize("name,level", OPS)
def test_each_colour_operation_equals_theirs_on_rgba(name, level):
    img01 = _image()
    theirs = _pil_unwrap(_their_op(name, level, _pil_wrap(img01)))[:, :, 0] * 255.0
    ours = color_op(name, np.uint8(img01[:, :, 0] * 255.0))
    assert np.abs(ours.astype(np.float64) - theirs).max() < 1e-6
    assert list(COLOR_OPS) == [n for n, _ in OPS]


def test_whole_augmenter_equals_theirs_draw_for_draw():
    """Twenty seeds: the 10 % without augmentation, every operation and the cutout's place and size
    (sides of 2-98 px at the authors' 512 px input)."""
    img01 = _image(1)
    seen = set()
    for seed in range(20):
        np.random.seed(seed)
        random.seed(seed)
        theirs = _their_augmenter(img01.copy())[:, :, 0] * 255.0
        np.random.seed(seed)
        ours = authors_view(np.uint8(img01 * 255.0).astype(np.float32), input_size=512)
        assert np.abs(ours[:, :, 0] - theirs).max() < 1e-4, seed
        assert (ours[:, :, 0] == ours[:, :, 2]).all()
        seen.add(bool((ours[:, :, 0] == 0).any()))
    assert seen == {True, False}


def test_the_mapper_augments_box_images_and_gives_the_teacher_its_own_view():
    def mapped(policy, teacher_view, level, seed):
        cfg = tiny_cfg("oxnet")
        cfg.OXNET.AUG.POLICY, cfg.OXNET.SFL.TEACHER_VIEW = policy, teacher_view
        image = np.repeat(_image(2, 64)[:, :, :1] * 255.0, 3, axis=2).astype(np.uint8)
        mapper = OmniDatasetMapper(cfg, is_train=True, image_reader=lambda _: image)
        d = {"file_name": "x.png", "image_id": 1, "height": 64, "width": 64, "supervision": level}
        if level == "full":
            d["annotations"] = [{"bbox": [10, 10, 20, 20], "bbox_mode": 0, "category_id": 0}]
        np.random.seed(seed)
        return mapper(d), torch.as_tensor(image.transpose(2, 0, 1)).float()

    changed = 0
    for seed in range(5):
        out, plain = mapped("authors", "augmented", "full", seed)
        changed += not torch.equal(out["image"], plain)
        out, plain = mapped("oxnet", "weak", "full", seed)
        assert torch.equal(out["image"], plain)  # our default leaves box images as they are
    assert changed >= 3
    weak, plain = mapped("authors", "augmented", "weak", 0)
    assert not torch.equal(weak["image_weak"], plain) and not torch.equal(weak["image_weak"], weak["image"])
    weak, plain = mapped("authors", "weak", "weak", 0)
    assert torch.equal(weak["image_weak"], plain)
