#!/usr/bin/env python
"""VinDr-CXR train.csv to OXnet-COCO, the readers' boxes fused per class (weighted boxes fusion).

    python datasets/prepare_vindr.py --csv train.csv --images train/ \
        --class-map datasets/class_maps/vindr.yaml --out vindr.json
    # every reader's box, with its rad_id:  --fusion none
"""

import oxnet  # noqa: F401
from oxnet.data.importers.cli import finish, importer_parser, run
from oxnet.data.importers.vindr import load_vindr


def main(argv=None):
    p = importer_parser(__doc__)
    p.add_argument("--csv", required=True, help="train.csv[.gz]")
    p.add_argument(
        "--fusion",
        choices=("wbf", "none"),
        default="wbf",
        help="wbf: fuse the readers' boxes of a class; none: keep every reader's box (with rad_id)",
    )
    p.add_argument("--iou-thr", type=float, default=0.55, help="IoU above which boxes of one class are fused")
    p.add_argument(
        "--min-readers",
        type=int,
        default=1,
        help="drop fused boxes merged from fewer readers (counted in the report)",
    )
    args = p.parse_args(argv)
    coco, report = load_vindr(
        args.csv,
        args.images,
        args.allow_missing_images,
        args.fusion,
        args.iou_thr,
        args.min_readers,
        args.clip_boxes,
    )
    return finish(args, coco, report)


if __name__ == "__main__":
    run(main)
