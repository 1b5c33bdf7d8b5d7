"""Does a model predict the same in bfloat16 as in float32? Boxes, scores and test mAP of both.

    OMP_NUM_THREADS=2 python benchmarks/precision_agreement.py --weights output/demo/model/model_final.pth \\
        --gt output/demo/data/test.json --images output/demo/data/images [--precision bfloat16]

Runs the trained model (its ``config.yaml``) through :class:`oxnet.engine.predictor.OXnetPredictor` on
every test image, once with ``OXNET.AMP.INFERENCE float32`` and once with ``--precision``, and
reports: for the float32 detections scoring at least 0.05 and at least 0.3, the share that the other
precision reproduces (same class, IoU >= 0.9, matched greedily by score), the largest score and box
coordinate differences of the matched pairs, the spread of the image-level scores' differences, the
test mAP (IoU .40:.75) of each, and the seconds per image of each (CPU seconds of this process).
"""

import argparse
import datetime
import json
import os
import platform
import time

import numpy as np

import oxnet  # noqa: F401  # isort: skip  (first: compatibility shims and quiet import-time warnings)
import torch

from oxnet.engine.predictor import OXnetPredictor, to_records
from oxnet.evaluation import evaluate_detections


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--gt", required=True, help="OXnet-COCO test file")
    p.add_argument("--images", required=True, help="its image folder")
    p.add_argument("--precision", default="bfloat16", choices=("bfloat16", "float16"))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def _iou(a, b):
    """IoU of xywh box a against xywh boxes b (N, 4)."""
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2 = np.minimum(a[0] + a[2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[1] + a[3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / (a[2] * a[3] + b[:, 2] * b[:, 3] - inter)


def predict(predictor, images, batch):
    records, scores, cpu = [], {}, 0.0
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        inputs = [predictor.prepare(path) for _, path in chunk]
        t = time.process_time()
        outputs = predictor.run(inputs)
        cpu += time.process_time() - t
        for (image_id, path), out in zip(chunk, outputs):
            records += to_records(out, os.path.basename(path), image_id, predictor.class_names)
            if "global_scores" in out:
                scores[image_id] = out["global_scores"].numpy()
    return records, scores, cpu / len(images)


def agreement(ref, other, min_score):
    """Share of ``ref``'s detections (score >= min_score) matched in ``other`` (same image and class,
    IoU >= 0.9), and the largest score / coordinate differences of the matches."""
    by_key = {}
    for r in other:
        by_key.setdefault((r["image_id"], r["category_id"]), []).append(r)
    used, matched, total, dscore, dbox = set(), 0, 0, 0.0, 0.0
    for r in sorted(ref, key=lambda r: -r["score"]):
        if r["score"] < min_score:
            continue
        total += 1
        cands = [c for c in by_key.get((r["image_id"], r["category_id"]), []) if id(c) not in used]
        if not cands:
            continue
        ious = _iou(np.array(r["bbox"]), np.array([c["bbox"] for c in cands]))
        k = int(np.argmax(ious))
        if ious[k] >= 0.9:
            used.add(id(cands[k]))
            matched += 1
            dscore = max(dscore, abs(r["score"] - cands[k]["score"]))
            dbox = max(dbox, float(np.abs(np.array(r["bbox"]) - np.array(cands[k]["bbox"])).max()))
    return {"detections": total, "matched": matched, "max_score_diff": dscore, "max_box_diff_px": dbox}


def _spread(diffs):
    """Median, 95th percentile and largest of the absolute differences of the image-level scores."""
    if not diffs:
        return None
    d = np.concatenate(diffs)
    return {"median": float(np.median(d)), "p95": float(np.percentile(d, 95)), "max": float(d.max())}


def main(argv=None):
    args = parse_args(argv)
    with open(args.gt, encoding="utf-8") as f:
        gt = json.load(f)
    images = [(im["id"], os.path.join(args.images, im["file_name"])) for im in gt["images"]]
    results = {}
    for precision in ("float32", args.precision):
        predictor = OXnetPredictor.from_weights(args.weights, opts=["OXNET.AMP.INFERENCE", precision])
        records, scores, cpu = predict(predictor, images, args.batch)
        metrics = evaluate_detections(args.gt, records).metrics
        results[precision] = {
            "records": records,
            "scores": scores,
            "cpu_s_per_image": cpu,
            "metrics": metrics,
        }
    ref, low = results["float32"], results[args.precision]
    out = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}",
        "weights": args.weights,
        "images": len(images),
        "precision": args.precision,
        "agreement": {f">={t}": agreement(ref["records"], low["records"], t) for t in (0.05, 0.3)},
        "image_score_diff": _spread(
            [np.abs(ref["scores"][k] - low["scores"][k]) for k in ref["scores"]],
        ),
        "mAP": {p: results[p]["metrics"]["mAP"] for p in results},
        "cpu_s_per_image": {p: results[p]["cpu_s_per_image"] for p in results},
    }
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
