"""Summary statistics of an OXnet-COCO file.

Usage::

    python -m oxnet.data.stats FILE [--json] [--image-root DIR]

The file is validated first (image files are checked only when ``--image-root`` is given). Images of
unknown size (``width``/``height`` null, as importers write them with ``--allow-missing-images``) are
counted and reported as such: such a file is for counting, not for training.
"""

import argparse
import json
import sys
from collections import Counter, defaultdict

from .format import (
    SUPERVISION_LEVELS,
    OmniFormatError,
    image_labels_from_boxes,
    read_omni_coco,
    validate_omni_coco,
)

__all__ = ["compute_stats", "format_stats", "main"]


def compute_stats(coco):
    """Count images, boxes, patients, supervision levels and per-category labels of a valid OXnet-COCO dict.

    Image labels are counted as the loader sees them: full images are completed from their boxes
    (see :func:`oxnet.data.format.image_labels_from_boxes`).

    Returns:
        dict: ``images``, ``boxes``, ``patients`` (distinct ``patient_id``), ``images_without_patient_id``,
        ``images_with_unknown_size`` (``width`` or ``height`` null), ``supervision``
        ({level: {"images", "boxes"}}) and ``categories`` ({name: {"boxes",
        "images_with_boxes", "positive", "negative", "uncertain"}}, in category-id order).
    """
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    names = [c["name"] for c in cats]
    index = {c["id"]: i for i, c in enumerate(cats)}
    name_index = {n: i for i, n in enumerate(names)}

    box_classes = defaultdict(list)
    for ann in coco["annotations"]:
        box_classes[ann["image_id"]].append(index[ann["category_id"]])

    per_level = {level: {"images": 0, "boxes": 0} for level in SUPERVISION_LEVELS}
    boxes, images_with_boxes = Counter(), Counter()
    label_counts = [Counter() for _ in names]
    patients, no_patient, unknown_size = set(), 0, 0
    for img in coco["images"]:
        if img.get("width") is None or img.get("height") is None:
            unknown_size += 1
        classes = box_classes.get(img["id"], [])
        level = per_level[img["supervision"]]
        level["images"] += 1
        level["boxes"] += len(classes)
        boxes.update(classes)
        images_with_boxes.update(set(classes))
        labels = {name_index[k]: v for k, v in img.get("image_labels", {}).items()}
        if img["supervision"] == "full":
            labels = image_labels_from_boxes(classes, len(names), labels)
        for c, v in labels.items():
            label_counts[c][v] += 1
        if img.get("patient_id") is None:
            no_patient += 1
        else:
            patients.add(img["patient_id"])

    return {
        "images": len(coco["images"]),
        "boxes": len(coco["annotations"]),
        "patients": len(patients),
        "images_without_patient_id": no_patient,
        "images_with_unknown_size": unknown_size,
        "supervision": per_level,
        "categories": {
            name: {
                "boxes": boxes[i],
                "images_with_boxes": images_with_boxes[i],
                "positive": label_counts[i][1],
                "negative": label_counts[i][0],
                "uncertain": label_counts[i][-1],
            }
            for i, name in enumerate(names)
        },
    }


def format_stats(stats):
    """Render :func:`compute_stats` output as a plain-text table."""
    lines = [
        f"images: {stats['images']}   boxes: {stats['boxes']}   patients: {stats['patients']}"
        f" (images without patient_id: {stats['images_without_patient_id']})",
    ]
    unknown = stats.get("images_with_unknown_size", 0)
    if unknown:
        lines.append(
            f"images of unknown size: {unknown} (their files were missing at import; rerun the "
            "importer with --images to train on them)"
        )
    lines += [
        "",
        f"{'supervision':<12}{'images':>10}{'boxes':>10}",
    ]
    for level, row in stats["supervision"].items():
        lines.append(f"{level:<12}{row['images']:>10}{row['boxes']:>10}")
    width = max([8] + [len(n) for n in stats["categories"]]) + 2
    cols = ("boxes", "images_with_boxes", "positive", "negative", "uncertain")
    lines += ["", f"{'category':<{width}}" + "".join(f"{c:>{len(c) + 2}}" for c in cols)]
    for name, row in stats["categories"].items():
        lines.append(f"{name:<{width}}" + "".join(f"{row[c]:>{len(c) + 2}}" for c in cols))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m oxnet.data.stats", description=__doc__.split("\n")[0])
    parser.add_argument("file", help="OXnet-COCO JSON file")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--image-root", help="folder of the images; when given, missing files are errors")
    args = parser.parse_args(argv)
    try:
        coco = read_omni_coco(args.file)
        validate_omni_coco(
            coco,
            args.file,
            args.image_root,
            check_files=args.image_root is not None,
            allow_unknown_sizes=True,
        )
    except (OmniFormatError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stats = compute_stats(coco)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
