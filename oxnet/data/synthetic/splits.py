"""Synthetic datasets on disk: the images of a split (PNG or DICOM) and its OXnet-COCO dict."""

import os

import numpy as np

from oxnet.config import PAPER_CLASSES
from oxnet.utils.workers import worker_map

from .generator import SyntheticCXR

__all__ = ["generate_split", "synthetic_categories"]


def synthetic_categories():
    """OXnet-COCO categories: ids 1..9 in :data:`PAPER_CLASSES` order."""
    return [
        {"id": i + 1, "name": c, "supercategory": "thoracic disease"} for i, c in enumerate(PAPER_CLASSES)
    ]


def _image_path(out_dir, split_name, index, dicom):
    rel = f"{split_name}/syn_{index:06d}.{'dcm' if dicom else 'png'}"
    return rel, os.path.join(out_dir, "images", rel)


def _make_one(args):
    gen_args, out_dir, split_name, index, dicom = args
    from oxnet.data.io import write_dx_dicom, write_png

    gen = SyntheticCXR(*gen_args)
    rel, path = _image_path(out_dir, split_name, index, dicom)
    if os.path.exists(path):
        return index, rel, gen.annotate(index)
    img, boxes = gen.render(index)
    if dicom:
        stored = np.rint(img * 4095).astype(np.uint16)
        write_dx_dicom(path, stored, bits_stored=12, patient_id=f"SYN{index:06d}")
    else:
        write_png(path, np.rint(img * 255).astype(np.uint8))
    return index, rel, boxes


def _check_params(folder, params):
    """Refuse to resume into a folder whose images were drawn with other parameters."""
    import json

    from oxnet.utils.atomic import atomic_write_json

    stamp = os.path.join(folder, "synthetic_params.json")
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as f:
            old = json.load(f)
        if old != params:
            raise ValueError(
                f"{folder} holds synthetic images drawn with {old}, not {params}; "
                f"use another output folder or delete it"
            )
    else:
        atomic_write_json(stamp, params)


def generate_split(
    out_dir,
    split_name,
    n_full,
    n_weak=0,
    n_unlabeled=0,
    size=512,
    seed=0,
    dicom=False,
    start_index=0,
    workers=1,
    progress=True,
):
    """Write the images of one split under ``out_dir/images/<split_name>/`` and return its OXnet-COCO dict.

    Images ``start_index .. start_index + n_full + n_weak + n_unlabeled - 1`` are fully labeled (boxes),
    then weakly labeled (``image_labels`` for all nine classes), then unlabeled. ``file_name`` is relative
    to ``out_dir/images``; image ids are ``index + 1``, so splits with disjoint index ranges never share an
    image. Images already on disk are not rendered again (their boxes are recomputed cheaply).
    """
    from tqdm import tqdm

    n = n_full + n_weak + n_unlabeled
    _check_params(os.path.join(out_dir, "images", split_name), {"size": size, "seed": seed})
    jobs = [((size, seed), out_dir, split_name, start_index + i, dicom) for i in range(n)]
    pool_size = workers if workers > 1 else 0  # one worker: render inline
    with worker_map(_make_one, jobs, pool_size, chunksize=4, start_method="spawn") as results:
        results = list(tqdm(results, total=n, disable=not progress, desc=f"synthetic {split_name}"))
    images, annotations = [], []
    for index, rel, boxes in sorted(results):
        k = index - start_index
        supervision = "full" if k < n_full else "weak" if k < n_full + n_weak else "unlabeled"
        images.append(_image_entry(index, rel, size, supervision, boxes))
        if supervision == "full":
            annotations += _box_annotations(index + 1, boxes, first_id=len(annotations) + 1)
    return {
        "info": {
            "description": f"OXnet synthetic chest X-rays, split {split_name}",
            "version": "1",
            "size": size,
            "seed": seed,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": synthetic_categories(),
    }


def _image_entry(index, rel, size, supervision, boxes):
    """The OXnet-COCO image of synthetic image ``index``; a weak one lists its classes as image labels."""
    image = {
        "id": index + 1,
        "file_name": rel,
        "height": size,
        "width": size,
        "supervision": supervision,
        "patient_id": f"SYN{index:06d}",
        "view": "PA",
        "source": "synthetic",
    }
    if supervision == "weak":
        present = {name for name, _ in boxes}
        image["image_labels"] = {c: int(c in present) for c in PAPER_CLASSES}
    return image


def _box_annotations(image_id, boxes, first_id):
    """OXnet-COCO annotations of an image's (class name, [x, y, w, h]) boxes, numbered from ``first_id``."""
    cat_id = {c: i + 1 for i, c in enumerate(PAPER_CLASSES)}
    return [
        {
            "id": first_id + j,
            "image_id": image_id,
            "category_id": cat_id[name],
            "bbox": [x, y, w, h],
            "area": w * h,
            "iscrowd": 0,
        }
        for j, (name, (x, y, w, h)) in enumerate(boxes)
    ]
