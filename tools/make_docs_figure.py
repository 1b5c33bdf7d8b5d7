"""Write docs/synthetic_classes.png: one synthetic chest X-ray per class with its boxes.

python tools/make_docs_figure.py [--out docs/synthetic_classes.png] [--tile 256]
"""

import argparse
import io
import os

from PIL import Image

import oxnet  # noqa: F401  (before detectron2)
from oxnet.config import PAPER_CLASSES
from oxnet.data.synthetic import SyntheticCXR
from oxnet.data.visualize import draw_boxes, tile_grid
from oxnet.utils.atomic import atomic_open


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "synthetic_classes.png")
    )
    parser.add_argument("--tile", type=int, default=256, help="tile width in pixels")
    parser.add_argument("--size", type=int, default=512, help="synthetic image size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    gen = SyntheticCXR(size=args.size, seed=args.seed)
    tiles = []
    for k, name in enumerate(PAPER_CLASSES):
        image, boxes = gen.sample(k, findings=[name])
        xyxy = [[x, y, x + w, y + h] for _, (x, y, w, h) in boxes]
        ids = [PAPER_CLASSES.index(c) for c, _ in boxes]
        tiles.append(draw_boxes(image, xyxy, ids, PAPER_CLASSES, size=args.tile))
    sheet = tile_grid(tiles, 3)
    # a 256-colour palette keeps the figure small enough to commit (noise makes true-colour PNGs large)
    buf = io.BytesIO()
    Image.fromarray(sheet).quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(
        buf, "PNG", optimize=True
    )
    with atomic_open(args.out, "wb") as f:
        f.write(buf.getvalue())
    print(f"wrote {os.path.abspath(args.out)} ({os.path.getsize(args.out) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
