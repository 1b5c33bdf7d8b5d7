"""Evaluate any detector's COCO results against COCO / OXnet-COCO ground truth.

    python -m oxnet.evaluate --gt GT.json --pred PRED.json [--image-scores SCORES.json] --out DIR
    python -m oxnet.evaluate --gt GT.json --pred PREDICT_OUTPUT_DIR --out DIR   # demo/predict.py's folder

Prints a table in percent (one decimal). ``--out DIR`` writes metrics.json (fractions in [0, 1] with
the settings used), report.md, report.html, the figures and predictions.json (the scored detections
with the ground truth's image and category ids). Images are matched by ``file_name`` when the
predictions have one (``demo/predict.py`` writes the path it read), classes by ``category_name``.
Predictions none of which can be scored (another image set, another class numbering) are an error.
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
    p = argparse.ArgumentParser(
        prog="python -m oxnet.evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--gt", required=True, help="COCO or OXnet-COCO ground-truth JSON")
    p.add_argument(
        "--pred",
        required=True,
        help="COCO results JSON [{image_id or file_name, category_id or category_name, bbox, "
        "score}], or a demo/predict.py output folder (its predictions.json and "
        "image_scores.json)",
    )
    p.add_argument(
        "--out",
        "--out-dir",
        "--report-dir",
        dest="out",
        metavar="DIR",
        help="output folder: metrics.json, report.md, report.html, figures, predictions.json",
    )
    p.add_argument(
        "--metrics-only",
        action="store_true",
        help="write metrics.json and predictions.json into --out, no report",
    )
    p.add_argument(
        "--image-scores",
        help="image-level scores for the global AUROC: image_scores.json as "
        "demo/predict.py writes it, or {image_id: [K scores] or "
        "{class name: score}}",
    )
    p.add_argument(
        "--image-root",
        help="folder of the ground-truth file_name entries (overlays); "
        "default: the ground-truth file's folder",
    )
    p.add_argument(
        "--bbox-format",
        choices=("xywh", "xyxy"),
        default="xywh",
        help="box format of the predictions (COCO results are xywh)",
    )
    p.add_argument(
        "--iou-thresholds",
        type=_floats,
        default=list(PAPER_IOU_THRESHOLDS),
        help="comma-separated IoU thresholds averaged by mAP",
    )
    p.add_argument("--max-dets", type=int, default=100, help="detections per image and class")
    p.add_argument("--froc-iou", type=float, default=0.4, help="IoU of a FROC hit")
    p.add_argument("--froc-fps", type=_floats, default=list(FROC_FPS), help="FP/image operating points")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        help="bootstrap replicates over images for 95%% intervals (0: none)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument(
        "--verify",
        action="store_true",
        help="recompute every AP number with pycocotools (slow) and fail on a difference > 1e-9",
    )
    p.add_argument("--method", default="detector", help="method name in the report's Table 1 row")
    p.add_argument("--overlays", type=int, default=8, help="images in the overlay grid (0: none)")
    p.add_argument("--score-threshold", type=float, default=0.3, help="lowest score drawn on overlays")
    return p


def _inputs(args):
    """(predictions file, image scores file or None) from ``--pred`` / ``--image-scores``."""
    pred, scores = args.pred, args.image_scores
    if os.path.isdir(pred):
        folder = pred
        pred = os.path.join(folder, "predictions.json")
        if not os.path.exists(pred):
            raise EvaluationInputError(f"--pred {folder} is a folder without predictions.json")
        if scores is None and os.path.exists(os.path.join(folder, "image_scores.json")):
            scores = os.path.join(folder, "image_scores.json")
    return pred, scores


def _check_out(out):
    if out is None:
        return
    if os.path.exists(out) and not os.path.isdir(out):
        raise EvaluationInputError(
            f"--out {out} is a file; --out names the output folder (metrics.json, "
            "report, figures and predictions.json are written into it)"
        )
    if out.lower().endswith(".json"):
        raise EvaluationInputError(
            f"--out {out} looks like a JSON file; --out names the output folder "
            f"(e.g. --out {os.path.splitext(out)[0]}: metrics.json is written "
            "into it)"
        )


def scored_predictions(result):
    """The detections as scored: COCO results with the ground truth's image and category ids and
    names (``file_name`` as in the ground truth)."""
    gt, preds = result.gt, result.preds
    out = []
    for i, k, box, s in zip(
        preds.image.tolist(), preds.cls.tolist(), preds.boxes.tolist(), preds.scores.tolist()
    ):
        img = gt.images[i]
        out.append(
            {
                "image_id": img["id"],
                "file_name": img.get("file_name"),
                "category_id": int(gt.cat_ids[k]),
                "category_name": gt.class_names[k],
                "bbox": box,
                "score": s,
            }
        )
    return out


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        _check_out(args.out)
        pred, scores = _inputs(args)
        result = evaluate_detections(
            args.gt,
            pred,
            image_scores=scores,
            iou_thresholds=args.iou_thresholds,
            max_dets=args.max_dets,
            froc_iou=args.froc_iou,
            froc_fps=args.froc_fps,
            bbox_format=args.bbox_format,
            bootstrap=args.bootstrap,
            seed=args.seed,
        )
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
        os.makedirs(args.out, exist_ok=True)
        atomic_write_json(os.path.join(args.out, "predictions.json"), scored_predictions(result))
        if args.metrics_only:
            atomic_write_json(os.path.join(args.out, "metrics.json"), result.metrics, indent=2)
            print(f"metrics: {os.path.abspath(os.path.join(args.out, 'metrics.json'))}")
        else:
            from oxnet.evaluation.report import write_report

            paths = write_report(
                result,
                args.out,
                method=args.method,
                image_root=args.image_root,
                n_overlays=args.overlays,
                score_threshold=args.score_threshold,
            )
            print(f"report: {os.path.abspath(paths['html'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
