#!/usr/bin/env python
"""RSNA Pneumonia Detection Challenge labels to OXnet-COCO.

    python datasets/prepare_rsna.py --csv stage_2_train_labels.csv --images stage_2_train_images/ \
        --class-map datasets/class_maps/rsna.yaml --out rsna.json
"""

import oxnet  # noqa: F401
from oxnet.data.importers.cli import finish, importer_parser, run
from oxnet.data.importers.rsna import load_rsna


def main(argv=None):
    p = importer_parser(__doc__)
    p.add_argument("--csv", required=True, help="stage_2_train_labels.csv[.gz]")
    args = p.parse_args(argv)
    coco, report = load_rsna(args.csv, args.images, args.allow_missing_images, args.clip_boxes)
    return finish(args, coco, report)


if __name__ == "__main__":
    run(main)
