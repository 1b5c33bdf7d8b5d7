"""Per-class operating thresholds at a target lesion sensitivity, chosen on a validation set.

    python -m oxnet.deploy.thresholds --model DIR --val VAL.json --images ROOT --sensitivity 0.8

runs the model of DIR (:func:`oxnet.deploy.runtime.load_model`) on the fully annotated images of
VAL.json (OXnet-COCO or COCO; weak and unlabeled images have no boxes to hit), matches its detections
to the lesions as the evaluation's FROC does (:func:`oxnet.evaluation.froc.match_detections`: same
class, IoU >= 0.4, greedy by score) and picks for each class the highest score threshold at which the
detections hit the target fraction of that class's lesions
(:func:`oxnet.evaluation.normals.thresholds_at_sensitivity`). It writes, atomically, into DIR:

* ``thresholds.json``: {class name: threshold} for every class, read by the runtime, the service and
  the bridge. A class with fewer than ``--min-lesions`` validation lesions, or whose sensitivity is
  never reached, gets the pooled threshold of all classes at that sensitivity (the lesions of every
  class together), and when even that is not reached ``DEFAULT_FALLBACK`` (0.5): never "all kept";
* ``thresholds_info.json``: how they were chosen (validation file, sensitivity, per class the lesions,
  hits, sensitivity reached and false positives per image at the threshold, or why there is none).
"""

import argparse
import os
import sys

import numpy as np

__all__ = ["predict_validation", "to_predictions", "choose_thresholds", "write_thresholds", "main"]


def predict_validation(model, gt, image_root, batch_size=8, progress=True):
    """Run ``model`` on the fully annotated images of ``gt``; returns {image index: result}.

    Raises:
        oxnet.data.io.ImageReadError: an image cannot be read (the message names the file).
    """
    from tqdm import tqdm

    from oxnet.data.io import read_raw

    indices = np.flatnonzero(gt.box_eval).tolist()
    out = {}
    with tqdm(total=len(indices), unit="image", desc="validation", disable=not progress) as bar:
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            images = [read_raw(os.path.join(image_root, gt.images[i]["file_name"])) for i in chunk]
            for i, result in zip(chunk, model.predict_batch(images)):
                out[i] = result
            bar.update(len(chunk))
    return out


def to_predictions(gt, results, source="<model>"):
    """:class:`oxnet.evaluation.inputs.Predictions` of ``results`` ({image index: result}); classes are
    matched to the ground truth's by name, detections of classes the ground truth lacks are left out."""
    from oxnet.evaluation.inputs import Predictions

    index = {name: k for k, name in enumerate(gt.class_names)}
    image, cls, boxes, scores = [], [], [], []
    for i, result in results.items():
        for d in result["detections"]:
            k = index.get(d["category_name"])
            if k is None:
                continue
            image.append(i)
            cls.append(k)
            boxes.append([float(v) for v in d["bbox"]])
            scores.append(float(d["score"]))
    return Predictions(
        source,
        np.asarray(image, np.int64),
        np.asarray(cls, np.int64),
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(scores, np.float64),
    )


#: The threshold of a class when neither its own lesions nor all classes' pooled reach the sensitivity.
DEFAULT_FALLBACK = 0.5


def choose_thresholds(gt, preds, class_names, sensitivity, iou=0.4, max_dets=100, min_lesions=5):
    """Per class of ``class_names``, the highest score threshold whose detections hit at least
    ``sensitivity`` of the class's lesions (FROC hit definition); for a class with fewer than
    ``min_lesions`` lesions or whose sensitivity is never reached, the pooled threshold of all classes
    (else :data:`DEFAULT_FALLBACK`).

    Returns:
        (thresholds, details): thresholds {class: float} for every class; details {class:
        {"lesions", "threshold", "source" ("class", "pooled" or "default"), "hits", "sensitivity",
        "fp_per_image", "reason"}}.
    """
    from oxnet.evaluation.froc import match_detections
    from oxnet.evaluation.normals import thresholds_at_sensitivity

    if not 0 < sensitivity <= 1:
        raise ValueError(f"the sensitivity must be in (0, 1], got {sensitivity}")
    hit, evaluated = match_detections(gt, preds, iou=iou, max_dets=max_dets)
    lesion = ~gt.ann_crowd & gt.box_eval[gt.ann_image]
    n_images = int(gt.box_eval.sum())
    index = {name: k for k, name in enumerate(gt.class_names)}
    pooled = thresholds_at_sensitivity(preds.scores[evaluated & hit], int(lesion.sum()), [sensitivity])[0]
    fallback, source = (float(pooled), "pooled") if pooled is not None else (DEFAULT_FALLBACK, "default")
    thresholds, details = {}, {}
    for name in class_names:
        k = index.get(name)
        if k is None:
            details[name] = {
                "lesions": 0,
                "threshold": None,
                "reason": "the class is not among the validation set's categories",
            }
            continue
        n_lesions = int((lesion & (gt.ann_class == k)).sum())
        mine = evaluated & (preds.cls == k)
        t = thresholds_at_sensitivity(preds.scores[mine & hit], n_lesions, [sensitivity])[0]
        entry = {"lesions": n_lesions, "threshold": t}
        if n_lesions == 0:
            entry["reason"] = "no lesion of this class in the validation set"
        elif t is None:
            reached = int((mine & hit).sum())
            entry["reason"] = (
                f"the detections hit {reached} of {n_lesions} lesions "
                f"({reached / n_lesions:.1%}) even at the model's test score threshold"
            )
        else:
            above = mine & (preds.scores >= t)
            hits = int((above & hit).sum())
            entry.update(
                hits=hits,
                sensitivity=hits / n_lesions,
                fp_per_image=float((above & ~hit).sum()) / max(n_images, 1),
            )
            thresholds[name] = float(t)
        details[name] = entry
    for name in class_names:  # too few lesions, or never reached: the fallback, never "all kept"
        entry, k = details[name], index.get(name)
        if name in thresholds and entry["lesions"] >= min_lesions:
            entry["source"] = "class"
            continue
        why = entry.get("reason") or f"{entry['lesions']} lesions (fewer than {min_lesions})"
        mine = evaluated & (preds.cls == k) if k is not None else np.zeros(len(preds.scores), bool)
        above = mine & (preds.scores >= fallback)
        hits = int((above & hit).sum())
        entry.update(
            threshold=fallback,
            source=source,
            reason=f"{why}: the {'pooled threshold of all classes' if source == 'pooled' else 'default'}",
            hits=hits,
            sensitivity=hits / entry["lesions"] if entry["lesions"] else None,
            fp_per_image=float((above & ~hit).sum()) / max(n_images, 1),
        )
        thresholds[name] = fallback
    return thresholds, details


def write_thresholds(model_dir, thresholds, info):
    """Write ``thresholds.json`` and ``thresholds_info.json`` into ``model_dir`` atomically; returns
    the path of ``thresholds.json``."""
    from oxnet.deploy.runtime import THRESHOLDS, THRESHOLDS_INFO
    from oxnet.utils.atomic import atomic_write_json

    atomic_write_json(os.path.join(model_dir, THRESHOLDS_INFO), info, indent=1)
    path = os.path.join(model_dir, THRESHOLDS)
    atomic_write_json(path, thresholds, indent=1)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m oxnet.deploy.thresholds", description=__doc__.strip().splitlines()[0]
    )
    p.add_argument(
        "--model", required=True, help="model folder (eager or exported); thresholds.json is written here"
    )
    p.add_argument("--val", required=True, help="validation set (OXnet-COCO / COCO JSON with boxes)")
    p.add_argument("--images", required=True, help="folder the validation file names are relative to")
    p.add_argument("--sensitivity", type=float, default=0.8, help="target lesion sensitivity (default 0.8)")
    p.add_argument("--iou", type=float, default=0.4, help="IoU for a hit (the FROC's, 0.4)")
    p.add_argument(
        "--min-lesions",
        type=int,
        default=5,
        help="a class with fewer validation lesions gets the pooled threshold of all classes (default 5)",
    )
    p.add_argument(
        "--backend", choices=("eager", "torchscript", "onnx", "pt2"), help="default: as load_model"
    )
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)

    from oxnet.data.io import ImageReadError
    from oxnet.deploy.runtime import load_model
    from oxnet.evaluation.inputs import EvaluationInputError, load_ground_truth

    try:
        if not 0 < args.sensitivity <= 1:
            raise ValueError(f"--sensitivity must be in (0, 1], got {args.sensitivity}")
        gt = load_ground_truth(args.val)
        if not gt.box_eval.any():
            raise ValueError(
                f"{args.val} has no fully annotated image (supervision 'full'): no lesion to hit"
            )
        model = load_model(args.model, backend=args.backend)
        results = predict_validation(model, gt, args.images, args.batch_size)
    except (ImageReadError, EvaluationInputError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    thresholds, details = choose_thresholds(
        gt,
        to_predictions(gt, results),
        model.class_names,
        args.sensitivity,
        args.iou,
        min_lesions=args.min_lesions,
    )
    info = {
        "sensitivity": args.sensitivity,
        "iou": args.iou,
        "val": os.path.abspath(args.val),
        "images": int(gt.box_eval.sum()),
        "backend": model.backend,
        "config_sha1": model.info.get("config_sha1"),
        "score_thresh": model.info.get("score_thresh"),
        "min_lesions": args.min_lesions,
        "classes": details,
    }
    path = write_thresholds(args.model, thresholds, info)
    print(f"lesion sensitivity {args.sensitivity:g} on {int(gt.box_eval.sum())} images of {args.val}:")
    for name, d in details.items():
        line = (
            f"  {name}: threshold {d['threshold']:.4f} ({d['hits']}/{d['lesions']} lesions, "
            f"{d['fp_per_image']:.2f} false positives per image)"
        )
        print(line if d["source"] == "class" else f"{line}; {d['reason']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
