#!/usr/bin/env python
"""NIH ChestX-ray14 label files to OXnet-COCO.

    python datasets/prepare_nih.py --data-entry Data_Entry_2017_v2020.csv --bbox BBox_List_2017.csv \
        --images images/ --class-map datasets/class_maps/nih.yaml --out nih.json
"""

import oxnet  # noqa: F401
from oxnet.data.importers.cli import finish, importer_parser, run
from oxnet.data.importers.nih import load_nih


def main(argv=None):
    p = importer_parser(__doc__)
    p.add_argument("--data-entry", required=True, help="Data_Entry_2017*.csv[.gz] (image labels)")
    p.add_argument("--bbox", default=None, help="BBox_List_2017.csv[.gz] (boxes; their images become 'full')")
    p.add_argument(
        "--absent",
        choices=("negative", "unknown"),
        default="negative",
        help="label of a class an image's 'Finding Labels' do not list",
    )
    p.add_argument(
        "--unboxed",
        choices=("weak", "unlabeled"),
        default="weak",
        help="supervision of the images without boxes",
    )
    args = p.parse_args(argv)
    coco, report = load_nih(
        args.data_entry,
        args.bbox,
        args.images,
        args.allow_missing_images,
        args.absent,
        args.unboxed,
        args.clip_boxes,
    )
    return finish(args, coco, report)


if __name__ == "__main__":
    run(main)
