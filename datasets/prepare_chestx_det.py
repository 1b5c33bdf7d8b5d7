#!/usr/bin/env python
"""ChestX-Det10 / ChestX-Det JSON to OXnet-COCO.

    python datasets/prepare_chestx_det.py --json train.json --images train_data/ \
        --class-map datasets/class_maps/chestx_det.yaml --out chestx_det_train.json
"""

import oxnet  # noqa: F401
from oxnet.data.importers.chestx_det import load_chestx_det
from oxnet.data.importers.cli import finish, importer_parser, run


def main(argv=None):
    p = importer_parser(__doc__)
    p.add_argument("--json", required=True, help="train.json / test.json[.gz]")
    args = p.parse_args(argv)
    coco, report = load_chestx_det(args.json, args.images, args.allow_missing_images, args.clip_boxes)
    return finish(args, coco, report)


if __name__ == "__main__":
    run(main)
