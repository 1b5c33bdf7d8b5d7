"""Train/val/test splits by patient (no patient in two splits), seeded and stratified by class.

Stratification is iterative (Sechidis et al., ECML 2011) over patients instead of images: patients are
visited rarest class first (seeded random order among equals); each goes to the split that most lacks
that class relative to its fraction (ties: the split with the most room for images, then at random).
Patients without any positive class fill the splits towards their image fractions.
"""

import numpy as np

from .importers.common import ImportDataError

__all__ = ["split_by_patient", "image_classes"]


def image_classes(coco):
    """``{image id: set of category names}`` positive in an image (a box or an image label of 1)."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    out = {img["id"]: {k for k, v in img.get("image_labels", {}).items() if v == 1} for img in coco["images"]}
    for a in coco["annotations"]:
        out[a["image_id"]].add(names[a["category_id"]])
    return out


def _subset(coco, image_ids):
    keep = set(image_ids)
    return dict(
        coco,
        images=[img for img in coco["images"] if img["id"] in keep],
        annotations=[a for a in coco["annotations"] if a["image_id"] in keep],
    )


def split_by_patient(
    coco,
    fractions=(0.7, 0.1, 0.2),
    names=("train", "val", "test"),
    seed=0,
    image_as_patient=False,
    json_file="<dataset>",
):
    """Split an OXnet-COCO dict by patient.

    Args:
        fractions (sequence[float]): image fraction of each split (normalized to sum 1).
        names (sequence[str]): split names.
        seed (int): random seed of the patient order among equals.
        image_as_patient (bool): an image without ``patient_id`` is its own patient (default: an error).

    Returns:
        (dict, dict): ``{split name: OXnet-COCO dict}`` and a report (images, patients and per-class
        positive images of each split).
    """
    if len(fractions) != len(names):
        raise ValueError(f"{len(fractions)} fractions for {len(names)} split names")
    frac = np.asarray(fractions, np.float64)
    if (frac < 0).any() or frac.sum() <= 0:
        raise ValueError(f"fractions must be non-negative with a positive sum, got {fractions}")
    frac = frac / frac.sum()

    patients = {}
    for img in coco["images"]:
        pid = img.get("patient_id")
        if pid is None or pid == "":
            if not image_as_patient:
                raise ImportDataError(
                    json_file,
                    f"image id={img['id']}",
                    "no 'patient_id' (pass --image-as-patient to treat each such image as a patient)",
                )
            pid = ("image", img["id"])
        patients.setdefault(pid, []).append(img["id"])
    classes = [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
    col = {c: i for i, c in enumerate(classes)}
    per_image = image_classes(coco)
    keys = list(patients)
    counts = np.zeros((len(keys), len(classes)), np.int64)
    sizes = np.array([len(patients[k]) for k in keys], np.int64)
    for p, k in enumerate(keys):
        for iid in patients[k]:
            for c in per_image[iid]:
                counts[p, col[c]] += 1

    rng = np.random.default_rng(seed)
    totals = counts.sum(0)
    present = counts > 0
    rarest = np.where(present, totals[None, :], np.iinfo(np.int64).max).min(1)
    rarest_class = np.where(present, totals[None, :], np.iinfo(np.int64).max).argmin(1)
    order = np.lexsort((rng.random(len(keys)), rarest))

    want_images = frac * sizes.sum()
    want_class = frac[:, None] * totals[None, :]
    got_images = np.zeros(len(names))
    got_class = np.zeros((len(names), len(classes)))
    assign = np.empty(len(keys), np.int64)
    for p in order:
        room = want_images - got_images
        if present[p].any():
            c = rarest_class[p]
            need = (want_class[:, c] - got_class[:, c]) / max(totals[c], 1)
            score = np.stack([need, room / max(sizes.sum(), 1), rng.random(len(names))])
        else:
            score = np.stack([room, rng.random(len(names))])
        score[:, frac == 0] = -np.inf
        s = np.lexsort(score[::-1])[-1]
        assign[p] = s
        got_images[s] += sizes[p]
        got_class[s] += counts[p]

    splits, report = {}, {"classes": classes}
    for s, name in enumerate(names):
        ids = [iid for p in np.flatnonzero(assign == s) for iid in patients[keys[p]]]
        splits[name] = _subset(coco, ids)
        report[name] = {
            "images": len(ids),
            "patients": int((assign == s).sum()),
            "positive_images": dict(zip(classes, got_class[s].astype(int).tolist())),
        }
    return splits, report
