"""Omni-supervised training sets from a fully labeled one (the settings of the paper's Table 2).

From a seeded random permutation of the images, the first ``full`` keep their boxes, the next ``weak``
become weakly labeled (image labels derived from the boxes: a class with a box is 1, every other class
0, an existing uncertain label kept) and the next ``unlabeled`` lose all labels. One permutation per
seed: the full part of a smaller setting is contained in that of a larger one.
"""

import numpy as np

from .importers.common import ImportDataError

__all__ = ["make_omni", "TABLE2_SETTINGS", "TABLE2_TRAIN_IMAGES", "as_weak", "box_classes", "table2_settings"]

#: (fully labeled, weakly labeled, unlabeled) image counts of Table 2, out of 13,963 training images.
TABLE2_SETTINGS = (
    (682, 0, 0),
    (1372, 0, 0),
    (2725, 0, 0),
    (682, 13281, 0),
    (1372, 12591, 0),
    (2725, 11238, 0),
    (2725, 8505, 2733),
    (2725, 2733, 8505),
    (2725, 0, 11238),
)
TABLE2_TRAIN_IMAGES = 13963


def table2_settings(num_images):
    """Table 2's settings scaled to a training set of ``num_images`` images (counts, largest remainder)."""
    out = []
    for setting in TABLE2_SETTINGS:
        exact = np.array(setting, np.float64) * num_images / TABLE2_TRAIN_IMAGES
        counts = np.floor(exact).astype(int)
        used = int(round(sum(setting) * num_images / TABLE2_TRAIN_IMAGES))
        for i in np.argsort(-(exact - counts))[: max(used - counts.sum(), 0)]:
            counts[i] += 1
        out.append(tuple(int(c) for c in counts))
    return out


def _count(value, n, what):
    """An image count from a count (int) or a fraction (float in [0, 1])."""
    if value is None:
        return None
    if isinstance(value, float):
        if 0.0 <= value <= 1.0:
            return int(round(value * n))
        if not value.is_integer():
            raise ValueError(f"{what} must be a count or a fraction in [0, 1], got {value}")
    value = int(value)
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return value


def box_classes(coco):
    """{image id: the class names of its boxes} of an OXnet-COCO dict."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    out = {}
    for a in coco["annotations"]:
        out.setdefault(a["image_id"], set()).add(names[a["category_id"]])
    return out


def as_weak(img, class_names, classes_with_boxes):
    """A fully labeled image dict as a weakly labeled one: 1 for each class in ``classes_with_boxes``,
    0 for the other ``class_names``, its uncertain (-1) labels kept."""
    labels = {c: 0 for c in class_names}
    labels.update({k: v for k, v in img.get("image_labels", {}).items() if v == -1})
    labels.update({c: 1 for c in classes_with_boxes})
    return dict(img, supervision="weak", image_labels=labels)


def make_omni(coco, full, weak=None, unlabeled=0, seed=0, json_file="<dataset>"):
    """Split a fully labeled OXnet-COCO dict into full / weak / unlabeled parts.

    Args:
        full, weak, unlabeled (int, float or None): image counts, or fractions when a float <= 1.
            ``weak=None`` takes every image left after ``full`` and ``unlabeled``; ``unlabeled=None``
            every image left after ``full`` and ``weak``. Images beyond the three parts are left out
            (counted in the report as ``unused``).
        seed (int): seed of the permutation.

    Returns:
        (dict, dict): the new OXnet-COCO dict and a report of counts.
    """
    images = coco["images"]
    n = len(images)
    not_full = [img for img in images if img.get("supervision") != "full"]
    if not_full:
        raise ImportDataError(
            json_file,
            f"image id={not_full[0]['id']}",
            f"make_omni needs a fully labeled set; {len(not_full)} images are not 'full'",
        )
    if weak is None and unlabeled is None:
        raise ValueError("give weak or unlabeled (the other takes the rest)")
    nf = _count(full, n, "full")
    nu = _count(unlabeled, n, "unlabeled")
    nw = _count(weak, n, "weak")
    if nw is None:
        nw = n - nf - nu
    if nu is None:
        nu = n - nf - nw
    if min(nf, nw, nu) < 0 or nf + nw + nu > n:
        raise ValueError(f"full={nf}, weak={nw}, unlabeled={nu} do not fit in {n} images")

    perm = np.random.default_rng(seed).permutation(n)
    part = np.full(n, "", dtype=object)
    part[perm[:nf]] = "full"
    part[perm[nf : nf + nw]] = "weak"
    part[perm[nf + nw : nf + nw + nu]] = "unlabeled"

    names = [c["name"] for c in coco["categories"]]
    classes_of = box_classes(coco)
    kind = {img["id"]: part[i] for i, img in enumerate(images)}
    out_images = []
    for i, img in enumerate(images):
        if not part[i]:
            continue
        if part[i] == "weak":
            new = as_weak(img, names, classes_of.get(img["id"], ()))
        else:
            new = dict(img, supervision=part[i])
        if part[i] == "unlabeled":
            new.pop("image_labels", None)
        out_images.append(new)
    annotations = [a for a in coco["annotations"] if kind[a["image_id"]] == "full"]
    ann_kinds = [kind[a["image_id"]] for a in coco["annotations"]]
    report = {
        "images": n,
        "full": nf,
        "weak": nw,
        "unlabeled": nu,
        "unused": n - nf - nw - nu,
        "boxes_kept": len(annotations),
        "boxes_to_labels": ann_kinds.count("weak"),
        "boxes_removed": ann_kinds.count("unlabeled") + ann_kinds.count(""),
        "seed": seed,
    }
    return dict(coco, images=out_images, annotations=annotations), report
