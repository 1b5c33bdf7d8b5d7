#!/usr/bin/env python
"""Omni-supervised training sets from a fully labeled OXnet-COCO file (the paper's Table 2).

    # one setting: 20% boxes, the next 60% weak (labels from the boxes), the rest unlabeled
    python datasets/make_omni.py --json train.json --out omni.json --full 0.2 --weak 0.6
    # all nine settings of Table 2, scaled to the size of train.json, in one call
    python datasets/make_omni.py --json train.json --out-dir omni/ --table2
Counts are integers, fractions floats in [0, 1]; of --weak and --unlabeled, an omitted one takes the rest.
"""

import argparse
import json
import os

import oxnet  # noqa: F401
from oxnet.data.format import read_omni_coco, write_omni_coco
from oxnet.data.importers.cli import run
from oxnet.data.omni import make_omni, table2_settings


def _amount(text):
    return int(text) if text.isdigit() else float(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True, help="fully labeled OXnet-COCO JSON (every image 'full')")
    p.add_argument("--out", help="output JSON (one setting)")
    p.add_argument("--out-dir", help="output folder (--table2)")
    p.add_argument("--full", type=_amount, help="images keeping their boxes (count or fraction)")
    p.add_argument("--weak", type=_amount, default=None, help="images turned weak (default: the rest)")
    p.add_argument(
        "--unlabeled", type=_amount, default=None, help="images turned unlabeled (default: the rest)"
    )
    p.add_argument("--table2", action="store_true", help="write the nine settings of the paper's Table 2")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    coco = read_omni_coco(args.json)
    if args.table2:
        if not args.out_dir:
            p.error("--table2 needs --out-dir")
        stem = os.path.splitext(os.path.basename(args.json))[0]
        settings = [
            (f, w, u, os.path.join(args.out_dir, f"{stem}_full{f}_weak{w}_unlabeled{u}.json"))
            for f, w, u in table2_settings(len(coco["images"]))
        ]
    else:
        if args.out is None or args.full is None:
            p.error("give --out and --full (or --table2 --out-dir)")
        unlabeled = args.unlabeled if args.unlabeled is not None or args.weak is None else None
        if args.weak is None and args.unlabeled is None:
            unlabeled = 0
        settings = [(args.full, args.weak, unlabeled, args.out)]
    reports = []
    for full, weak, unlabeled, out in settings:
        omni, report = make_omni(coco, full, weak, unlabeled, args.seed, args.json)
        write_omni_coco(out, omni)
        reports.append(dict(report, file=out))
        print(json.dumps(reports[-1]))
    return reports


if __name__ == "__main__":
    run(main)
