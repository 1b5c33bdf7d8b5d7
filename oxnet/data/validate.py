"""Check an OXnet-COCO file and, with ``--decode``, every image it lists, before training.

Usage::

    python -m oxnet.data.validate FILE.json [--images ROOT] [--decode] [--workers N] [--no-progress]
                                  [--report OUT.json]

The format is checked first (:func:`oxnet.data.format.validate_omni_coco`, image files must exist under
``ROOT``, by default the JSON's folder). ``--decode`` then reads every image as training does
(:func:`oxnet.data.io.read_raw`) and checks its size against the JSON's ``width``/``height``, with a
progress bar; the report counts the images and lists each failing file with its error. ``--report``
writes it as JSON (atomically). Exit status: 0 when everything passed, 1 when some image failed to
decode, 2 when the file itself is invalid.
"""

import argparse
import os
import sys

from oxnet.utils.atomic import atomic_write_json
from oxnet.utils.workers import worker_map

from .format import OmniFormatError, read_omni_coco, validate_omni_coco
from .io import ImageReadError, read_raw

__all__ = ["check_image", "decode_all", "main"]


def check_image(args):
    """Decode one image; return ``None`` or its error. ``args``: (path, expected width, expected height)."""
    path, width, height = args
    try:
        img = read_raw(path)
    except ImageReadError as e:
        return str(e)
    except Exception as e:  # an unexpected decoder failure is reported, not raised, like the others
        return f"cannot read image {path}: {type(e).__name__}: {e}"
    h, w = img.shape
    if width is not None and height is not None and (w, h) != (width, height):
        return f"image {path} is {w}x{h} but the JSON says {width:g}x{height:g}"
    return None


def decode_all(coco, image_root, workers=0, progress=True):
    """Decode every image of a valid OXnet-COCO dict; return a list of ``{file_name, image_id, error}``."""
    from tqdm import tqdm

    tasks = [
        (os.path.join(image_root, img["file_name"]), img.get("width"), img.get("height"))
        for img in coco["images"]
    ]
    with worker_map(check_image, tasks, workers, chunksize=8) as results:
        errors = list(
            tqdm(results, total=len(tasks), desc="decoding images", unit="img", disable=not progress)
        )
    return [
        {"file_name": img["file_name"], "image_id": img["id"], "error": error}
        for img, error in zip(coco["images"], errors)
        if error is not None
    ]


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m oxnet.data.validate",
        description="Check an OXnet-COCO file and (--decode) decode every image.",
    )
    p.add_argument("json_file", help="OXnet-COCO JSON")
    p.add_argument(
        "--images", default=None, help="folder the file names are relative to (default: the JSON's folder)"
    )
    p.add_argument("--decode", action="store_true", help="decode every image and check its size")
    p.add_argument("--workers", type=int, default=0, help="decoding processes (0: this process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--report", default=None, help="write the report as JSON here")
    args = p.parse_args(argv)

    root = args.images if args.images is not None else os.path.dirname(os.path.abspath(args.json_file))
    report = {"json_file": os.path.abspath(args.json_file), "image_root": os.path.abspath(root)}
    try:
        coco = read_omni_coco(args.json_file)
        validate_omni_coco(coco, args.json_file, root)
    except (OmniFormatError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        if args.report:
            atomic_write_json(args.report, dict(report, format_error=str(e)), indent=1)
        return 2
    n = len(coco["images"])
    report.update(images=n, annotations=len(coco["annotations"]), format="ok", decode=args.decode)
    print(
        f"{args.json_file}: format OK ({n} images, {len(coco['annotations'])} boxes; every image file exists)"
    )
    if args.decode:
        failures = decode_all(coco, root, workers=args.workers, progress=not args.no_progress)
        report.update(decoded=n - len(failures), failed=len(failures), failures=failures)
        if failures:
            print(f"{len(failures)} of {n} images failed to decode:")
            for f in failures:
                print(f"  {f['file_name']} (image id {f['image_id']}): {f['error']}")
        else:
            print(f"all {n} images decode")
    if args.report:
        atomic_write_json(args.report, report, indent=1)
    return 1 if report.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
