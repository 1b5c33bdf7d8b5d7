"""The omni-supervised dataset mapper: reads an image, applies augmentation and tags its supervision."""

import copy

import numpy as np
import torch
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from oxnet.methods import second_view

from .authors_augment import AUG_POLICIES, authors_view

SUPERVISION_KEY = "supervision"


class OmniDatasetMapper:
    """Map an OXnet dataset dict (see :func:`oxnet.data.register_omni_coco`) to model inputs.

    Every image is resized to ``OXNET.INPUT_SIZE`` squared ("resized to 512x512 without cropping",
    Sec. 2.4); training adds an optional scale jitter (``OXNET.AUG.SCALE_RANGE``: resized by a random
    factor of that size, then cropped or padded back to it; a box cropped away leaves that view) and
    an optional horizontal flip. In training, for methods with a mean teacher, weak and unlabeled
    images also get ``"image_weak"``, the teacher's view: same geometry as the student's ``"image"``
    (so their anchors align), without the strong view's photometric changes (brightness, contrast,
    noise, cutout). For the Pi model
    (``oxnet.config.second_view(method) == "strong"``), and with ``OXNET.SFL.TEACHER_VIEW augmented``
    (the authors' ``TransformTwice``), ``"image_weak"`` is instead a second strong view with its own
    photometric draw. ``OXNET.AUG.POLICY authors`` replaces the strong view's changes by the
    authors' (:mod:`oxnet.data.authors_augment`) and applies them to box images too.

    Output keys: ``image`` (3, S, S) float32, ``height``/``width`` (original size, for
    post-processing), ``file_name``, ``image_id``, ``supervision``, ``image_labels`` (K,) float with
    1 / 0 / -1 (positive / negative / unknown or uncertain), ``instances`` for full images, and
    ``image_weak`` as described.

    With ``OXNET.DATA.CACHE`` set (``datasets/prepare_cache.py``), images are read from that
    memory-mapped cache, already decoded and resized to S x S; boxes are mapped from the original
    pixels the cache records. Its size must equal ``OXNET.INPUT_SIZE``.

    Randomness comes from NumPy's global generator: the training loader seeds it per sample, which
    makes every batch a function of (seed, iteration) and lets a resumed run see the same data.
    """

    def __init__(self, cfg, is_train=True, image_reader=None):
        self.is_train = is_train
        self.size = cfg.OXNET.INPUT_SIZE
        self.num_classes = cfg.MODEL.RETINANET.NUM_CLASSES
        self.second_view = second_view(cfg.OXNET.METHOD) if is_train else ""
        self.teacher_view = self.second_view == "weak"
        aug = cfg.OXNET.AUG
        if aug.POLICY not in AUG_POLICIES:
            raise ValueError(f"OXNET.AUG.POLICY must be one of {AUG_POLICIES}, got {aug.POLICY!r}")
        if cfg.OXNET.SFL.TEACHER_VIEW not in ("weak", "augmented"):
            raise ValueError(
                f"OXNET.SFL.TEACHER_VIEW must be 'weak' or 'augmented', got {cfg.OXNET.SFL.TEACHER_VIEW!r}"
            )
        self.policy = aug.POLICY
        self.augmented_teacher = cfg.OXNET.SFL.TEACHER_VIEW == "augmented"
        lo, hi = (float(v) for v in aug.SCALE_RANGE)
        if not 0 < lo <= hi:
            raise ValueError(
                f"OXNET.AUG.SCALE_RANGE must be (low, high) with 0 < low <= high, got {aug.SCALE_RANGE}"
            )
        if is_train and (lo, hi) != (1.0, 1.0):
            augs = [
                T.ResizeScale(lo, hi, self.size, self.size),
                T.FixedSizeCrop((self.size, self.size), pad_value=0),
            ]
        else:
            augs = [T.Resize((self.size, self.size))]
        if is_train and aug.HFLIP_PROB > 0:
            augs.append(T.RandomFlip(prob=aug.HFLIP_PROB, horizontal=True))
        self.augmentations = T.AugmentationList(augs)
        self.brightness, self.contrast = aug.BRIGHTNESS, aug.CONTRAST
        self.noise_std, self.cutout, self.cutout_size = aug.NOISE_STD, aug.CUTOUT, aug.CUTOUT_SIZE
        if image_reader is None:
            from oxnet.data.io import read_image as image_reader
        self.read_image = image_reader
        self.cache = None
        if cfg.OXNET.DATA.CACHE:
            from oxnet.data.cache import ImageCache

            self.cache = ImageCache(cfg.OXNET.DATA.CACHE)
            if self.cache.size != self.size:
                raise ValueError(
                    f"{cfg.OXNET.DATA.CACHE}: cached images are {self.cache.size} px but "
                    f"OXNET.INPUT_SIZE is {self.size}; rebuild the cache or change the size"
                )

    def strong_view(self, image):
        """Photometric augmentation of the student's view (float32 HxWxC in, float32 out)."""
        rnd = np.random
        image = image * rnd.uniform(1 - self.brightness, 1 + self.brightness)
        mean = image.mean()
        image = (image - mean) * rnd.uniform(1 - self.contrast, 1 + self.contrast) + mean
        if self.noise_std > 0:
            image = image + rnd.normal(0.0, self.noise_std, size=image.shape[:2])[:, :, None]
        h, w = image.shape[:2]
        side = max(1, int(round(self.cutout_size * min(h, w))))
        for _ in range(self.cutout):
            y, x = rnd.randint(0, h - side + 1), rnd.randint(0, w - side + 1)
            image[y : y + side, x : x + side] = mean
        return np.clip(image, 0, 255).astype(np.float32)

    def augment(self, image):
        """The student's photometric view: :meth:`strong_view`, or the authors' with
        ``OXNET.AUG.POLICY authors``."""
        if self.policy == "authors":
            return authors_view(image, self.size)
        return self.strong_view(image)

    def _labels_tensor(self, labels):
        out = torch.full((self.num_classes,), -1.0)
        for k, v in (labels or {}).items():
            out[int(k)] = float(v)
        return out

    def __call__(self, dataset_dict):
        d = copy.deepcopy(dataset_dict)
        cached = self.cache is not None and d["file_name"] in self.cache
        if cached:
            image = self.cache.read(d["file_name"])
            h, w = self.cache.original_size(d["file_name"])
        else:
            image = self.read_image(d["file_name"])
            h, w = image.shape[:2]
        if "height" in d and (d.get("height"), d.get("width")) != (h, w):
            raise ValueError(
                f"{d['file_name']}: image is {w}x{h} but its dataset entry says "
                f"{d.get('width')}x{d.get('height')} (image id {d.get('image_id')})"
            )
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        if cached:  # boxes are in original pixels: prepend the resize the cache already applied
            transforms = T.TransformList([T.ResizeTransform(h, w, self.size, self.size)]) + transforms
        image = aug_input.image.astype(np.float32)
        level = d.get(SUPERVISION_KEY, "full")
        out = {
            "file_name": d["file_name"],
            "image_id": d.get("image_id"),
            "height": h,
            "width": w,
            SUPERVISION_KEY: level,
            "image_labels": self._labels_tensor(d.get("image_labels")),
        }
        if self.is_train and level != "full":
            student = self.augment(image.copy())
            if self.second_view:
                plain = self.second_view == "weak" and not self.augmented_teacher
                other = image if plain else self.augment(image.copy())
                out["image_weak"] = torch.as_tensor(np.ascontiguousarray(other.transpose(2, 0, 1)))
        elif self.is_train and self.policy == "authors":  # the authors augment box images too
            student = self.augment(image.copy())
        else:
            student = image
        out["image"] = torch.as_tensor(np.ascontiguousarray(student.transpose(2, 0, 1)))
        if self.is_train and level == "full":
            annos = [
                utils.transform_instance_annotations(a, transforms, image.shape[:2])
                for a in d.get("annotations", [])
                if a.get("iscrowd", 0) == 0
            ]
            # a box the scale jitter's crop left outside the image is dropped from this view
            instances = utils.annotations_to_instances(annos, image.shape[:2])
            out["instances"] = utils.filter_empty_instances(instances)
        return out
