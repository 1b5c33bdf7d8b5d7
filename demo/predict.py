#!/usr/bin/env python
"""Predict thoracic disease boxes (and image-level probabilities) on new chest X-rays.

    python demo/predict.py --weights output/demo/model/model_final.pth --input xrays/ extra.dcm \\
        --output predictions/ [--overlays] [--display-thresh 0.3] [KEY VALUE ...]

The model's config is the ``config.yaml`` that training wrote beside its weights (``--config-file``
names another); weights that do not fit the model it builds are an error. Inputs: PNG, JPEG or DICOM
files, or folders searched recursively (.png .jpg .jpeg .dcm .dicom and files with the DICOM magic).
Outputs in ``--output``:

- ``predictions.json``: COCO results, one entry per box: ``file_name``, ``image_id`` (position of the
  image in the run), ``category_id`` (the training set's category id), ``category_name``, ``bbox``
  [x, y, w, h] in the original image's pixels, ``score``. Every box the model returns is kept (its
  test threshold ``MODEL.RETINANET.SCORE_THRESH_TEST``, 0.05, as in evaluation), so the file can be
  scored with ``python -m oxnet.evaluate --gt GT.json --pred predictions.json``, which matches images
  by file name;
- ``image_scores.json`` (models with a global head): per image, ``global_scores`` {class: probability}
  (``python -m oxnet.evaluate --image-scores`` reads it);
- ``overlays/<image_id>_<name>.png`` with ``--overlays``: boxes scoring ``--display-thresh`` or more;
- ``skipped.txt`` with ``--skip-unreadable``: the files that could not be read. Without that flag an
  unreadable file stops the run with the list of all unreadable files.
"""

import argparse
import logging
import os
import sys

import oxnet  # noqa: F401  # isort: skip  (first: compatibility shims and quiet import-time warnings)
from detectron2.utils.logger import setup_logger

from oxnet.config import resolve_device
from oxnet.engine.model_files import WeightsMismatchError, load_model_config, split_weights
from oxnet.engine.predictor import (
    OXnetPredictor,
    UnreadableImagesError,
    find_images,
    predict_files,
    write_predictions,
)


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", metavar="FILE", help="the trained model (.pth); or MODEL.WEIGHTS FILE")
    p.add_argument(
        "--config-file", metavar="FILE", help="the model's config (default: config.yaml beside the weights)"
    )
    p.add_argument("--input", nargs="+", required=True, help="image files and/or folders")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument(
        "--score-thresh",
        type=float,
        default=None,
        help="lowest box score written to predictions.json (default: the model's test "
        "threshold MODEL.RETINANET.SCORE_THRESH_TEST, as in evaluation; a higher one "
        "lowers the mAP that predictions.json scores)",
    )
    p.add_argument("--overlays", action="store_true", help="write overlay PNGs to OUTPUT/overlays")
    p.add_argument(
        "--display-thresh",
        type=float,
        default=0.3,
        help="lowest box score drawn on overlays (default 0.3); predictions.json keeps all",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="predict the readable images and list the others in OUTPUT/skipped.txt",
    )
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides: MODEL.WEIGHTS path.pth KEY VALUE ..."
    )
    return p


def setup_cfg(args):
    weights, opts = split_weights(args.opts)
    cfg = load_model_config(args.weights or weights, args.config_file, opts)
    if args.score_thresh is not None:
        cfg.MODEL.RETINANET.SCORE_THRESH_TEST = args.score_thresh
    if resolve_device(cfg):
        logging.getLogger("oxnet").info("no CUDA device: running on the CPU")
    cfg.freeze()
    return cfg


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="oxnet")
    try:
        cfg = setup_cfg(args)
        paths = find_images(args.input, exclude=args.output)
        predictor = OXnetPredictor(cfg)
    except (FileNotFoundError, ValueError) as e:  # WeightsMismatchError is a ValueError
        kind = "weights" if isinstance(e, WeightsMismatchError) else "input"
        sys.exit(f"error ({kind}): {e}")
    if not cfg.OXNET.CATEGORY_IDS:
        logging.getLogger("oxnet").warning(
            "the model's config has no OXNET.CATEGORY_IDS (trained before they were recorded): "
            "category_id is the class index + 1; python -m oxnet.evaluate matches classes by category_name"
        )
    overlay_dir = os.path.join(args.output, "overlays") if args.overlays else None
    try:
        results, skipped = predict_files(
            predictor,
            paths,
            args.batch_size,
            args.skip_unreadable,
            overlay_dir,
            progress=not args.no_progress,
            display_threshold=args.display_thresh,
        )
    except UnreadableImagesError as e:
        sys.exit(f"error: {e}")
    written = write_predictions(args.output, results, skipped, predictor.class_names, predictor.category_ids)
    print(
        f"{written['images']} images, {written['detections']} boxes with score >= "
        f"{cfg.MODEL.RETINANET.SCORE_THRESH_TEST:g}: {written['predictions']}"
    )
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
