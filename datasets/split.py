#!/usr/bin/env python
"""Split an OXnet-COCO file into train/val/test by patient (seeded, stratified by class).

python datasets/split.py --json nih.json --out-dir splits/ --fractions 0.7 0.1 0.2 --seed 0
# writes splits/nih_train.json, splits/nih_val.json, splits/nih_test.json
"""

import argparse
import json
import os

import oxnet  # noqa: F401
from oxnet.data.format import read_omni_coco, write_omni_coco
from oxnet.data.importers.cli import run
from oxnet.data.split import split_by_patient


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True, help="input OXnet-COCO JSON")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--fractions", type=float, nargs="+", default=[0.7, 0.1, 0.2])
    p.add_argument("--names", nargs="+", default=["train", "val", "test"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--image-as-patient",
        action="store_true",
        help="an image without patient_id is its own patient (default: an error)",
    )
    args = p.parse_args(argv)
    coco = read_omni_coco(args.json)
    splits, report = split_by_patient(
        coco, args.fractions, args.names, args.seed, args.image_as_patient, args.json
    )
    stem = os.path.splitext(os.path.basename(args.json))[0]
    for name, part in splits.items():
        out = os.path.join(args.out_dir, f"{stem}_{name}.json")
        write_omni_coco(out, part)
        report[name]["file"] = out
    print(json.dumps(report, indent=1))
    return splits, report


if __name__ == "__main__":
    run(main)
