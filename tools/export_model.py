#!/usr/bin/env python
"""Export a trained OXnet detector (ONNX, torch.export or TorchScript) with its preprocessing.

    python tools/export_model.py --weights output/demo/model/model_final.pth --format onnx \\
        --out output/demo/export_onnx [--config-file CFG] [--opset 18] [--check-image X.png ...] \\
        [KEY VALUE ...]

Formats (:mod:`oxnet.deploy.export`): ``onnx`` (``model.onnx``, written by PyTorch's torch.export-based
ONNX exporter, for ONNX Runtime), ``pt2`` (``model.pt2``, a ``torch.export`` ExportedProgram, for
Python with PyTorch) and ``torchscript`` (``model.ts``, deprecated by PyTorch, kept for C++ programs
that load models with libtorch). The model's config is the ``config.yaml`` beside the weights unless
``--config-file`` names one. The output folder gets the model file, ``model.json`` (input size,
pixel mean/std, class names and ids, thresholds, anchors, config SHA-1), ``config.yaml`` and the
source folder's ``thresholds.json`` if it has one. ``python -m oxnet.deploy.runtime OUT --input ...``
runs it, as does ``oxnet.deploy.runtime.load_model(OUT)`` from Python.

The exported graph is checked against the eager network on random inputs; with ``--check-image``
the full pipeline (boxes, scores, image-level scores) is compared with the eager detectron2
predictor on those images, and the export fails if they differ (boxes by more than 1e-3 px, scores
by more than 1e-4).
"""

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import oxnet  # noqa: E402,F401  (compatibility shims before detectron2)
from oxnet.deploy.export import FORMATS, MIN_OPSET  # noqa: E402


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", metavar="FILE", required=True, help="the trained model (.pth)")
    p.add_argument(
        "--config-file", metavar="FILE", help="the model's config (default: config.yaml beside the weights)"
    )
    p.add_argument(
        "--format",
        choices=list(FORMATS),
        required=True,
        help="onnx (ONNX Runtime), pt2 (torch.export, Python) or torchscript (C++ with libtorch)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    p.add_argument(
        "--check-image",
        nargs="*",
        default=[],
        metavar="IMAGE",
        help="images on which the exported model must give the eager model's results",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    from detectron2.utils.logger import setup_logger

    from oxnet.deploy.export import copy_thresholds, export_model, match_results
    from oxnet.deploy.runtime import load_model
    from oxnet.engine.model_files import WeightsMismatchError, load_model_config

    setup_logger(name="oxnet")
    try:
        cfg = load_model_config(args.weights, args.config_file, args.opts)
        info = export_model(cfg, args.out, args.format, opset=args.opset)
    except (FileNotFoundError, ValueError) as e:
        kind = "weights" if isinstance(e, WeightsMismatchError) else "input"
        sys.exit(f"error ({kind}): {e}")
    copy_thresholds(os.path.dirname(os.path.abspath(args.weights)), args.out)
    model_file = os.path.join(args.out, FORMATS[args.format])
    print(
        f"{args.format} model: {model_file}"
        f" ({len(info['class_names'])} classes, input {info['input_size']} px, "
        f"image-level scores: {'yes' if info['has_global_head'] else 'no'})"
    )
    if args.check_image:
        from oxnet.data.io import read_raw
        from oxnet.deploy.runtime import DeployedModel, _EagerRunner, model_info_from_config

        eager_info = model_info_from_config(cfg)
        eager = DeployedModel(
            os.path.dirname(os.path.abspath(args.weights)),
            eager_info,
            "eager",
            _EagerRunner(cfg.MODEL.WEIGHTS, eager_info, cfg=cfg),
        )
        exported = load_model(args.out, args.format)
        bad = 0
        for path in args.check_image:
            image = read_raw(path)
            problems = match_results(eager.predict(image), exported.predict(image))
            if problems:
                bad += 1
                print(f"{path}: " + "; ".join(problems))
        if bad:
            sys.exit(
                f"error: the exported model differs from the eager model on {bad} of "
                f"{len(args.check_image)} images"
            )
        print(f"same results as the eager model on {len(args.check_image)} image(s)")
    return info


if __name__ == "__main__":
    main()
