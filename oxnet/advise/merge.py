"""Fold reviewed images back into their pool: the training set of the next round.

    python -m oxnet.advise.merge POOL_JSON ANNOTATIONS_JSON --out NEXT_JSON

``ANNOTATIONS_JSON`` is what the annotation view saves (``python -m oxnet.serve --annotate POOL_JSON``):
fully supervised entries of pool images with their boxes. The output is the pool with each of those
images replaced by its saved entry (supervision "full", its boxes, image labels from them) and every
other image and box as it was; annotation ids are renumbered. An image of the annotations file that the
pool does not have, or a category the pool does not know, is an error naming it.
"""

import argparse
import logging
import sys

__all__ = ["merge_annotations"]


def merge_annotations(pool, saved, pool_file="<pool>", saved_file="<annotations>"):
    """The pool (an OXnet-COCO dict) with the images of ``saved`` replaced by their saved entries and
    boxes; returns ``(merged dict, number of images replaced)``."""
    ids = {img["id"] for img in pool["images"]}
    cats = {c["id"]: c["name"] for c in pool["categories"]}
    for c in saved.get("categories", []):
        if cats.get(c["id"]) != c["name"]:
            raise ValueError(
                f"{saved_file}: category id={c['id']} ({c['name']!r}) is not the pool's "
                f"({cats.get(c['id'])!r} in {pool_file})"
            )
    replaced = {}
    for img in saved["images"]:
        if img["id"] not in ids:
            raise ValueError(
                f"{saved_file}: image id={img['id']} ({img.get('file_name')}) is not in {pool_file}"
            )
        replaced[img["id"]] = img
    images = [replaced.get(img["id"], img) for img in pool["images"]]
    annotations = [dict(a) for a in pool["annotations"] if a["image_id"] not in replaced]
    annotations += [dict(a) for a in saved.get("annotations", []) if a["image_id"] in replaced]
    for i, a in enumerate(annotations, start=1):
        a["id"] = i
    return dict(pool, images=images, annotations=annotations), len(replaced)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m oxnet.advise.merge",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pool")
    parser.add_argument("annotations")
    parser.add_argument("--out", required=True, help="the merged OXnet-COCO file")
    args = parser.parse_args(argv)
    from oxnet.data.format import OmniFormatError, read_omni_coco, write_omni_coco

    log = logging.getLogger("oxnet.advise")
    logging.basicConfig(format="%(message)s")
    try:
        merged, n = merge_annotations(
            read_omni_coco(args.pool), read_omni_coco(args.annotations), args.pool, args.annotations
        )
        write_omni_coco(args.out, merged)
    except (OmniFormatError, FileNotFoundError, ValueError) as e:
        log.error(str(e))
        return 2
    boxed = sum(img.get("supervision", "full") == "full" for img in merged["images"])
    print(
        f"written {args.out}: {n} reviewed images folded in; {boxed} of {len(merged['images'])} images boxed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
