#!/usr/bin/env python
"""Any COCO detection JSON (e.g. TBX11K) to OXnet-COCO with one supervision level.

    python datasets/prepare_coco.py --json annotations.json --images images/ --supervision full \
        --class-map datasets/class_maps/tbx11k.yaml --out tbx.json
"""

import oxnet  # noqa: F401
from oxnet.data.importers.cli import finish, importer_parser, run
from oxnet.data.importers.coco import load_coco


def main(argv=None):
    p = importer_parser(__doc__)
    p.add_argument("--json", required=True, help="COCO detection JSON[.gz]")
    p.add_argument(
        "--supervision",
        choices=("full", "weak", "unlabeled"),
        default="full",
        help="full: keep boxes; weak: image labels from the boxes; unlabeled: no labels",
    )
    args = p.parse_args(argv)
    coco, report = load_coco(
        args.json, args.images, args.allow_missing_images, args.supervision, args.clip_boxes
    )
    return finish(args, coco, report)


if __name__ == "__main__":
    run(main)
