"""Write a synthetic OXnet-COCO chest X-ray dataset: images plus train/val/test JSON files.

    python datasets/prepare_synthetic.py --out datasets/synthetic [--n-full 40 --n-weak 80
        --n-unlabeled 80 --n-val 20 --n-test 40 --size 512 --seed 0 --dicom --workers 2]

Layout: OUT/images/<split>/syn_NNNNNN.png (or .dcm), OUT/train.json (full + weak + unlabeled images),
OUT/val.json and OUT/test.json (fully labeled). The three splits use disjoint image indices, so no
image appears twice. Images already on disk are kept, so an interrupted run can simply be repeated.
"""

import argparse
import os

from oxnet.data.format import write_omni_coco
from oxnet.data.synthetic import generate_split


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n-full", type=int, default=40, help="train images with boxes")
    parser.add_argument("--n-weak", type=int, default=80, help="train images with image-level labels only")
    parser.add_argument("--n-unlabeled", type=int, default=80, help="train images without labels")
    parser.add_argument("--n-val", type=int, default=20, help="validation images (with boxes)")
    parser.add_argument("--n-test", type=int, default=40, help="test images (with boxes)")
    parser.add_argument("--size", type=int, default=512, help="image width and height in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dicom",
        action="store_true",
        help="write DICOM (Digital X-Ray For Presentation, 12 bits stored in 16) instead of PNG",
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel processes")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for name in ("n_full", "n_weak", "n_unlabeled", "n_val", "n_test"):
        if getattr(args, name) < 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 0")
    splits = [
        ("train", dict(n_full=args.n_full, n_weak=args.n_weak, n_unlabeled=args.n_unlabeled)),
        ("val", dict(n_full=args.n_val)),
        ("test", dict(n_full=args.n_test)),
    ]
    start = 0
    for name, counts in splits:
        try:
            coco = generate_split(
                args.out,
                name,
                size=args.size,
                seed=args.seed,
                dicom=args.dicom,
                start_index=start,
                workers=args.workers,
                **counts,
            )
        except ValueError as e:
            raise SystemExit(f"error: {e}") from e
        start += sum(counts.values())
        path = os.path.join(args.out, f"{name}.json")
        write_omni_coco(path, coco)
        print(f"{name}: {len(coco['images'])} images, {len(coco['annotations'])} boxes -> {path}")
    print(f"images under {os.path.join(args.out, 'images')}")


if __name__ == "__main__":
    main()
