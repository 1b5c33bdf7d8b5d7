"""Command-line plumbing shared by ``datasets/prepare_<source>.py``."""

import argparse
import json
import os
import sys
from collections import Counter

from oxnet.data.format import OmniFormatError
from oxnet.utils.atomic import atomic_write_json

from .class_map import apply_class_map, format_class_report, load_class_map
from .common import ImportDataError, write_output

__all__ = ["importer_parser", "finish", "run"]


def importer_parser(description):
    """An argparse parser with the options every importer has."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", required=True, help="output OXnet-COCO JSON")
    p.add_argument("--images", default=None, help="image folder (file names are relative to it)")
    p.add_argument(
        "--allow-missing-images",
        action="store_true",
        help="record entries whose image file is absent without opening it "
        "(default: fail, listing the count and the first missing files)",
    )
    p.add_argument(
        "--class-map",
        default=None,
        help="YAML class map (see datasets/class_maps/) renaming, merging or dropping classes",
    )
    p.add_argument(
        "--allow-absent-classes",
        action="store_true",
        help="accept class-map entries naming classes this input does not have (a class map "
        "shared between datasets, or a small sample in which some classes do not "
        "occur); default: such an entry (e.g. a typo) is an error listing the unknown "
        "names and the classes the input has",
    )
    unmapped = p.add_mutually_exclusive_group()
    unmapped.add_argument(
        "--strict", action="store_true", help="a class the class map does not name is an error"
    )
    unmapped.add_argument(
        "--drop-unmapped",
        action="store_true",
        help="drop classes the class map does not name (their boxes and labels are counted)",
    )
    p.add_argument(
        "--clip-boxes", action="store_true", help="clip boxes leaving the image instead of failing"
    )
    p.add_argument("--report", default=None, help="also write the counts as JSON here")
    return p


def finish(args, coco, report):
    """Apply the class map, validate, write ``args.out`` and print the counts."""
    class_rows = report.pop("class_rows", {})
    unmapped = "error" if args.strict else "drop" if args.drop_unmapped else "keep"
    class_map = load_class_map(args.class_map) if args.class_map else None
    if args.strict and class_map is None:
        raise ImportDataError(args.out, None, "--strict needs --class-map")
    coco, class_report = apply_class_map(
        coco,
        class_map,
        unmapped=unmapped,
        class_rows=class_rows,
        absent_sources="ignore" if args.allow_absent_classes else "error",
    )
    unknown_sizes = write_output(args.out, coco)
    sup = Counter(img["supervision"] for img in coco["images"])
    report.update(
        output=os.path.abspath(args.out),
        output_images=len(coco["images"]),
        output_boxes=len(coco["annotations"]),
        output_supervision=dict(sup),
        output_classes=[c["name"] for c in coco["categories"]],
        images_with_unknown_size=unknown_sizes,
        class_rules=class_report,
    )
    print(format_class_report(class_report))
    print(json.dumps({k: v for k, v in report.items() if k != "class_rules"}, indent=1))
    if unknown_sizes:
        print(
            f"note: {unknown_sizes} images have no known size (files missing); rerun with --images "
            "to train on them",
            file=sys.stderr,
        )
    if args.report:
        atomic_write_json(args.report, report, indent=1)
    return coco, report


def run(main, argv=None):
    """Run ``main(argv)``; input errors print one clear line and exit with status 2."""
    from oxnet.data.io import ImageReadError

    try:
        main(argv)
    except (ImportDataError, OmniFormatError, ImageReadError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
