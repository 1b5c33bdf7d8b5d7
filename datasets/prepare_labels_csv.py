#!/usr/bin/env python
"""CheXpert / MIMIC-CXR style label tables (1 / 0 / -1 / blank) to weakly labeled OXnet-COCO.

    python datasets/prepare_labels_csv.py --csv CheXpert-v1.0/train.csv --images . --frontal-only \
        --class-map datasets/class_maps/chexpert.yaml --out chexpert.json
"""

import oxnet  # noqa: F401
from oxnet.data.importers.cli import finish, importer_parser, run
from oxnet.data.importers.labels_csv import load_labels_csv


def main(argv=None):
    p = importer_parser(__doc__)
    p.add_argument("--csv", required=True, help="label table .csv[.gz], one row per image")
    p.add_argument("--path-column", default="Path", help="column with the image path, relative to --images")
    p.add_argument(
        "--label-columns",
        nargs="+",
        default=None,
        help="class columns (default: the CheXpert observations present)",
    )
    p.add_argument("--patient-column", default=None, help="patient id column (default: guessed)")
    p.add_argument("--view-column", default=None, help="view column (default: AP/PA or ViewPosition)")
    p.add_argument("--frontal-only", action="store_true", help="keep rows whose Frontal/Lateral is Frontal")
    args = p.parse_args(argv)
    coco, report = load_labels_csv(
        args.csv,
        args.images,
        args.allow_missing_images,
        args.path_column,
        args.label_columns,
        args.patient_column,
        args.view_column,
        frontal_only=args.frontal_only,
    )
    return finish(args, coco, report)


if __name__ == "__main__":
    run(main)
