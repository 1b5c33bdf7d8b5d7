"""The synthetic chest X-ray generator: which findings an image has, its scene, its image and boxes.

Every image is a pure function of ``(seed, index)``: the patient comes from
``default_rng([seed, index, 0])``, each finding class from ``default_rng([seed, index, 1, class])``, the
noise from ``default_rng([seed, index, 2])`` and the list of classes present from
``default_rng([seed, index, 3])``.
"""

import numpy as np

from oxnet.config import PAPER_CLASSES

from .anatomy import Patient
from .findings import draw_finding, tight_box
from .rendering import render_scene

__all__ = ["SyntheticCXR", "CLASS_PREVALENCE", "NORMAL_FRACTION"]

#: probability of each class being present in a random image (several can co-occur)
CLASS_PREVALENCE = {
    "aortic calcification": 0.22,
    "cardiomegaly": 0.2,
    "fracture": 0.2,
    "mass": 0.15,
    "nodule": 0.22,
    "pleural effusion": 0.2,
    "pneumonia": 0.2,
    "pneumothorax": 0.15,
    "tuberculosis": 0.18,
}
#: fraction of images drawn without any finding
NORMAL_FRACTION = 0.3


class SyntheticCXR:
    """Deterministic synthetic chest X-rays with tight boxes for :data:`PAPER_CLASSES`.

    Example::

        gen = SyntheticCXR(size=512, seed=0)
        image, boxes = gen.sample(7)               # uint8 HxW, [(class name, [x, y, w, h]), ...]
        normal, _ = gen.sample(7, findings=[])     # the same patient without findings
    """

    classes = PAPER_CLASSES

    def __init__(self, size=512, seed=0):
        if size < 64:
            raise ValueError(f"SyntheticCXR: size must be >= 64, got {size}")
        self.size = int(size)
        self.seed = int(seed)

    def findings_of(self, index):
        """The classes present in image ``index`` (its random draw)."""
        rng = np.random.default_rng([self.seed, index, 3])
        if rng.random() < NORMAL_FRACTION:
            return []
        present = [c for c in self.classes if rng.random() < CLASS_PREVALENCE[c]]
        if not present:
            present = [self.classes[int(rng.integers(len(self.classes)))]]
        return present

    def _scene(self, index, findings):
        """The patient of image ``index`` and its drawn findings (all of them boxed)."""
        p = Patient(np.random.default_rng([self.seed, index, 0]), self.size)
        if findings is None:
            findings = self.findings_of(index)
        unknown = set(findings) - set(self.classes)
        if unknown:
            raise ValueError(f"SyntheticCXR: unknown classes {sorted(unknown)}; known: {self.classes}")
        drawn = []
        for c in self.classes:  # fixed order: the draw of one class never depends on another
            if c in findings:
                rng = np.random.default_rng([self.seed, index, 1, self.classes.index(c)])
                drawn.extend(draw_finding(p, c, rng))
                if c == "cardiomegaly":  # later findings see the enlarged heart (classes are in order)
                    p.ctr = drawn[-1].ctr
        for f in drawn:
            if f.box is None:
                f.box = tight_box(f)
        return p, drawn

    def annotate(self, index, findings=None):
        """The boxes of image ``index`` without rendering it: list of (class name, [x, y, w, h])."""
        _, drawn = self._scene(index, findings)
        return [(f.name, f.box) for f in drawn if f.box is not None]

    def render(self, index, findings=None):
        """Float32 HxW image in [0, 1] and the list of (class name, [x, y, w, h]) boxes."""
        p, drawn = self._scene(index, findings)
        img = render_scene(p, drawn, np.random.default_rng([self.seed, index, 2]))
        return img, [(f.name, f.box) for f in drawn if f.box is not None]

    def sample(self, index, findings=None):
        """uint8 HxW image and its list of (class name, [x, y, w, h]) boxes.

        ``findings``: None draws the image's own findings; a list of class names draws exactly those (the
        same patient and lesion geometry as in every other rendering of ``index``).
        """
        img, boxes = self.render(index, findings)
        return np.rint(img * 255).astype(np.uint8), boxes
