#!/usr/bin/env python
"""Predict thoracic disease boxes (and image-level probabilities) on new chest X-rays.

    python demo/predict.py --config-file configs/oxnet_R101.yaml --input xrays/ extra.dcm \\
        --output predictions/ [--score-thresh 0.3] [--overlays] MODEL.WEIGHTS model_final.pth [KEY VALUE ...]

Inputs: PNG, JPEG or DICOM files, or folders searched recursively (.png .jpg .jpeg .dcm .dicom and
files with the DICOM magic). Outputs in ``--output``:

- ``predictions.json``: COCO-results-style list, one entry per box: ``file_name``, ``image_id``
  (position of the image in the run), ``category_id`` (contiguous class index), ``category_name``,
  ``bbox`` [x, y, w, h] in the original image's pixels, ``score``;
- ``image_scores.json`` (models with a global head): per image, ``global_scores`` {class: probability};
- ``overlays/<image_id>_<name>.png`` with ``--overlays``;
- ``skipped.txt`` with ``--skip-unreadable``: the files that could not be read. Without that flag an
  unreadable file stops the run with the list of all unreadable files.

Class names: ``OXNET.CLASS_NAMES`` (default: the paper's nine classes for a 9-class model).
"""
import argparse
import logging
import os
import sys

import oxnet  # noqa: F401  (compatibility shims before detectron2)
from detectron2.config import get_cfg
from detectron2.utils.logger import setup_logger

from oxnet.config import add_oxnet_config, resolve_device
from oxnet.engine.predictor import (OXnetPredictor, UnreadableImagesError, find_images, predict_files,
                                    write_predictions)


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config-file", required=True, metavar="FILE", help="the model's config")
    p.add_argument("--input", nargs="+", required=True, help="image files and/or folders")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--score-thresh", type=float, default=0.3, help="minimum box score (default 0.3)")
    p.add_argument("--overlays", action="store_true", help="write overlay PNGs to OUTPUT/overlays")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="predict the readable images and list the others in OUTPUT/skipped.txt")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument("opts", nargs=argparse.REMAINDER,
                   help="config overrides: MODEL.WEIGHTS path.pth KEY VALUE ...")
    return p


def setup_cfg(args):
    cfg = get_cfg()
    add_oxnet_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = args.score_thresh
    if resolve_device(cfg):
        logging.getLogger("oxnet").warning("CUDA is not available: running on the CPU")
    cfg.freeze()
    return cfg


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="oxnet")
    cfg = setup_cfg(args)
    try:
        paths = find_images(args.input, exclude=args.output)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    predictor = OXnetPredictor(cfg)
    overlay_dir = os.path.join(args.output, "overlays") if args.overlays else None
    try:
        results, skipped = predict_files(predictor, paths, args.batch_size, args.skip_unreadable, overlay_dir)
    except UnreadableImagesError as e:
        sys.exit(f"error: {e}")
    written = write_predictions(args.output, results, skipped, predictor.class_names)
    print(f"{written['images']} images, {written['detections']} boxes with score >= {args.score_thresh}: "
          f"{written['predictions']}")
    if "image_scores" in written:
        print(f"image-level probabilities: {written['image_scores']}")
    if overlay_dir:
        print(f"overlays: {overlay_dir}")
    if skipped:
        print(f"{len(skipped)} unreadable file(s) skipped, listed in {written['skipped_list']}:")
        for _, msg in skipped:
            print(f"  {msg}")
    return written


if __name__ == "__main__":
    main()
