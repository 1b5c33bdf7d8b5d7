"""Evaluate any detector's COCO results against COCO / OXnet-COCO ground truth.

    python -m oxnet.evaluate --gt GT.json --pred PRED.json [--out metrics.json] [--out-dir DIR]

Prints a table in percent (one decimal); ``--out`` writes the metrics as fractions in [0, 1] with the
settings used; ``--out-dir`` writes metrics.json, report.md, report.html and the figures.
"""
import argparse
import logging
import os
import sys

from oxnet.evaluation.coco_ap import PAPER_IOU_THRESHOLDS
from oxnet.evaluation.froc import FROC_FPS
from oxnet.evaluation.inputs import EvaluationInputError
from oxnet.evaluation.metrics import evaluate_detections, format_table
from oxnet.utils.atomic import atomic_write_json


def _floats(text):
    return [float(x) for x in text.split(",") if x.strip()]


def build_parser():
    p = argparse.ArgumentParser(prog="python -m oxnet.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--gt", required=True, help="COCO or OXnet-COCO ground-truth JSON")
    p.add_argument("--pred", required=True, help="COCO results JSON: [{image_id, category_id, bbox, score}]")
    p.add_argument("--out", help="write the metrics JSON here")
    p.add_argument("--out-dir", "--report-dir", dest="report_dir",
                   help="write metrics.json, report.md, report.html and figures here")
    p.add_argument("--image-scores", help="JSON {image_id: [K scores] or {class name: score}} from an "
                                          "image-level head, for the global AUROC")
    p.add_argument("--image-root", help="folder of the ground-truth file_name entries (overlays); "
                                        "default: the ground-truth file's folder")
    p.add_argument("--bbox-format", choices=("xywh", "xyxy"), default="xywh",
                   help="box format of the predictions (COCO results are xywh)")
    p.add_argument("--iou-thresholds", type=_floats, default=list(PAPER_IOU_THRESHOLDS),
                   help="comma-separated IoU thresholds averaged by mAP")
    p.add_argument("--max-dets", type=int, default=100, help="detections per image and class")
    p.add_argument("--froc-iou", type=float, default=0.4, help="IoU of a FROC hit")
    p.add_argument("--froc-fps", type=_floats, default=list(FROC_FPS), help="FP/image operating points")
    p.add_argument("--bootstrap", type=int, default=0, help="bootstrap replicates over images for 95%% "
                                                             "intervals (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--verify", action="store_true",
                   help="recompute every AP number with pycocotools (slow) and fail on a difference > 1e-9")
    p.add_argument("--method", default="detector", help="method name in the report's Table 1 row")
    p.add_argument("--overlays", type=int, default=8, help="images in the overlay grid (0: none)")
    p.add_argument("--score-threshold", type=float, default=0.3, help="lowest score drawn on overlays")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        result = evaluate_detections(args.gt, args.pred, image_scores=args.image_scores,
                                     iou_thresholds=args.iou_thresholds, max_dets=args.max_dets,
                                     froc_iou=args.froc_iou, froc_fps=args.froc_fps,
                                     bbox_format=args.bbox_format, bootstrap=args.bootstrap, seed=args.seed)
    except EvaluationInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(result.metrics))
    if args.verify:
        from oxnet.evaluation.coco_ap import verify_with_pycocotools

        worst, bad = verify_with_pycocotools(result)
        result.metrics["settings"]["pycocotools_max_abs_difference"] = worst
        if bad:
            print("error: pycocotools disagrees:\n  " + "\n  ".join(bad), file=sys.stderr)
            return 3
        print(f"pycocotools check: every AP number agrees (max |difference| {worst:.1e})")
    if args.out:
        atomic_write_json(args.out, result.metrics, indent=2)
    if args.report_dir:
        from oxnet.evaluation.report import write_report

        paths = write_report(result, args.report_dir, method=args.method, image_root=args.image_root,
                             n_overlays=args.overlays, score_threshold=args.score_threshold)
        print(f"report: {os.path.abspath(paths['html'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
