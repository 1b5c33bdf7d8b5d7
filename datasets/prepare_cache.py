#!/usr/bin/env python
"""Decode every image of an OXnet-COCO file once into a memory-mapped SxS uint8 cache (resumable).

    python datasets/prepare_cache.py --json nih.json --images images/ --out cache/nih_512 \
        --size 512 --workers 8
    # writes cache/nih_512.npy, cache/nih_512.index.json, cache/nih_512.done.npy; rerun to resume
"""

import argparse

import oxnet  # noqa: F401
from oxnet.data.cache import build_cache
from oxnet.data.importers.cli import run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True, help="OXnet-COCO JSON")
    p.add_argument("--images", default=None, help="image folder (default: the JSON's folder)")
    p.add_argument("--out", required=True, help="cache path without suffix")
    p.add_argument("--size", type=int, default=512, help="side of the stored images (the paper: 512)")
    p.add_argument("--workers", type=int, default=0, help="decoding processes (0: this process)")
    args = p.parse_args(argv)
    cache = build_cache(args.json, args.out, args.size, args.workers, args.images)
    print(f"{len(cache)} images of {args.size}x{args.size} in {cache.npy}")
    return cache


if __name__ == "__main__":
    run(main)
