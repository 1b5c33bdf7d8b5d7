"""Benchmark: the whole OXnet metric set against faster-coco-eval's and pycocotools' COCO AP alone.

A paper-sized synthetic test set (13,180 images, 9 classes, about 20k ground-truth boxes and 280k
detections) is written to JSON; each contender starts from the two files:

* pycocotools: COCO + loadRes + COCOeval (iouThrs 0.40:0.75) evaluate/accumulate/summarize (AP only);
* faster-coco-eval: the same with COCOeval_faster (AP only);
* oxnet: ``evaluate_detections`` (AP per class and averaged, FROC, AUROC; no report files).

faster-coco-eval and oxnet run ``--repeats`` times, interleaved. Ratios to faster-coco-eval's AP are
given for CPU time (``time.process_time``, all threads of the process; steadier on a machine shared with
other jobs) and wall time, fastest run of each. The CPU time of the stages of oxnet's evaluation is
printed as well.

    python benchmarks/evaluate.py [--repeats 3] [--pycocotools-repeats 1] [--json out.json]
"""

import argparse
import contextlib
import gc
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

import oxnet  # noqa: F401
from oxnet.evaluation import PAPER_IOU_THRESHOLDS, evaluate_detections
from oxnet.evaluation.synthetic import synthetic_coco


def _silent(*args, **kwargs):
    pass


def run_pycocotools(gt_file, pred_file):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt_file)
        ev = COCOeval(coco_gt, coco_gt.loadRes(pred_file), "bbox")
        ev.params.iouThrs = np.asarray(PAPER_IOU_THRESHOLDS)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0]


def run_faster_coco_eval(gt_file, pred_file):
    from faster_coco_eval import COCO, COCOeval_faster

    coco_gt = COCO(gt_file, print_function=_silent)
    ev = COCOeval_faster(coco_gt, coco_gt.loadRes(pred_file), "bbox", print_function=_silent)
    ev.params.iouThrs = np.asarray(PAPER_IOU_THRESHOLDS)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats[0]


def run_oxnet(gt_file, pred_file):
    return evaluate_detections(gt_file, pred_file).metrics["mAP"]


def breakdown(gt_file, pred_file):
    """CPU seconds of the stages of ``evaluate_detections``: reading, COCO AP, FROC + AUROC."""
    from oxnet.evaluation import image_auroc, load_ground_truth, load_predictions, match_detections
    from oxnet.evaluation.auroc import top_local_scores
    from oxnet.evaluation.coco_ap import coco_average_precision
    from oxnet.evaluation.froc import froc_curve, sensitivity_at

    gc.collect()
    t0 = time.process_time()
    gt = load_ground_truth(gt_file)
    preds = load_predictions(pred_file, gt)
    t1 = time.process_time()
    coco_average_precision(gt, preds)
    t2 = time.process_time()
    hit, ev = match_detections(gt, preds)
    fpi, sens, _ = froc_curve(preds.scores[ev], hit[ev], len(gt.ann_ids), int(gt.box_eval.sum()))
    sensitivity_at(fpi, sens)
    for k in range(gt.num_classes):
        m = ev & (preds.cls == k)
        froc_curve(preds.scores[m], hit[m], int((gt.ann_class == k).sum()), int(gt.box_eval.sum()))
    image_auroc(top_local_scores(preds, len(gt.images), gt.num_classes), gt.labels)
    t3 = time.process_time()
    return {"read + check inputs": t1 - t0, "COCO AP (faster-coco-eval)": t2 - t1, "FROC + AUROC": t3 - t2}


def _timed(fn, *args):
    """(CPU seconds, wall seconds, return value) of ``fn(*args)``, after a full garbage collection."""
    gc.collect()
    c, w = time.process_time(), time.perf_counter()
    value = fn(*args)
    return time.process_time() - c, time.perf_counter() - w, value


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pycocotools-repeats", type=int, default=1)
    p.add_argument("--images", type=int, default=13180)
    p.add_argument("--json", help="write the timings here")
    args = p.parse_args(argv)

    gt, preds = synthetic_coco(
        num_images=args.images, num_classes=9, gt_per_image=1.5, dets_per_image=280000 / 13180, seed=0
    )
    print(
        f"synthetic test set: {len(gt['images'])} images, {len(gt['categories'])} classes, "
        f"{len(gt['annotations'])} boxes, {len(preds)} detections",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        gt_file, pred_file = os.path.join(tmp, "gt.json"), os.path.join(tmp, "pred.json")
        with open(gt_file, "w") as f:
            json.dump(gt, f)
        with open(pred_file, "w") as f:
            json.dump(preds, f)
        del gt, preds
        names = ("pycocotools AP", "faster-coco-eval AP", "oxnet full metric set")
        times, walls, maps = {k: [] for k in names}, {k: [] for k in names}, {}
        runs = [
            ("faster-coco-eval AP", run_faster_coco_eval),
            ("oxnet full metric set", run_oxnet),
        ] * args.repeats
        runs += [("pycocotools AP", run_pycocotools)] * args.pycocotools_repeats
        for name, fn in runs:
            cpu, wall, maps[name] = _timed(fn, gt_file, pred_file)
            times[name].append(cpu)
            walls[name].append(wall)
            print(f"  {name}: {cpu:.2f} s CPU, {wall:.2f} s wall", flush=True)
        stages = [breakdown(gt_file, pred_file) for _ in range(args.repeats)]
        stages = {k: min(x[k] for x in stages) for k in stages[0]}

    agree = max(abs(maps[k] - maps["pycocotools AP"]) for k in maps) if "pycocotools AP" in maps else None
    best = {k: min(v) for k, v in times.items() if v}
    med = {k: statistics.median(v) for k, v in times.items() if v}
    fce = best["faster-coco-eval AP"]
    print()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"Python {sys.version.split()[0]}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    fce_wall = min(walls["faster-coco-eval AP"])
    print(
        "| contender | CPU s, fastest | CPU s, median | wall s, fastest | CPU / faster-coco-eval AP "
        "| wall / faster-coco-eval AP |"
    )
    print("|---|---|---|---|---|---|")
    for k in times:
        if times[k]:
            print(
                f"| {k} | {best[k]:.2f} | {med[k]:.2f} | {min(walls[k]):.2f} | {best[k] / fce:.2f}x "
                f"| {min(walls[k]) / fce_wall:.2f}x |"
            )
    print(
        "oxnet stages (CPU s, fastest of the repeats): "
        + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
        + f"; FROC + AUROC / COCO AP = {stages['FROC + AUROC'] / stages['COCO AP (faster-coco-eval)']:.2f}"
    )
    if agree is not None:
        print(f"mAP agreement with pycocotools: max |difference| = {agree:.2e}")
    ratio = best["oxnet full metric set"] / fce
    wall_ratio = min(walls["oxnet full metric set"]) / fce_wall
    print(
        f"target: full metric set <= 1.2x faster-coco-eval AP alone: {ratio:.2f}x CPU, "
        f"{wall_ratio:.2f}x wall ({'met' if max(ratio, wall_ratio) <= 1.2 else 'NOT met'})"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "cpu_times": times,
                    "wall_times": walls,
                    "fastest": best,
                    "median": med,
                    "ratio_cpu": ratio,
                    "ratio_wall": wall_ratio,
                    "map_agreement": agree,
                    "oxnet_stages": stages,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
