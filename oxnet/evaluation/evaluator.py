"""detectron2 ``DatasetEvaluator`` computing the OXnet metric set (COCO AP at IoU 0.40:0.75, FROC, AUROC)."""

import itertools
import json
import logging
import os
from collections import OrderedDict

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

import oxnet  # noqa: F401  (before detectron2)

from .coco_ap import PAPER_IOU_THRESHOLDS
from .froc import FROC_FPS
from .metrics import AP_KEYS, evaluate_detections, format_table
from .records import detection_records, image_score_record

__all__ = ["OXnetEvaluator"]

logger = logging.getLogger(__name__)


class OXnetEvaluator(DatasetEvaluator):
    """Evaluate detections (and image-level ``global_scores``) on a dataset with an OXnet-COCO/COCO json.

    The ground truth is ``MetadataCatalog.get(dataset_name).json_file`` restricted, like detectron2's
    COCOEvaluator, to the images that were processed. Box coordinates are the model outputs in
    original image pixels, so COCO's area ranges refer to the image file's pixel space.
    """

    def __init__(
        self,
        dataset_name,
        output_dir=None,
        iou_thresholds=PAPER_IOU_THRESHOLDS,
        froc_iou=0.4,
        froc_fps=FROC_FPS,
        max_dets=100,
        write_report=True,
        method="OXnet",
        training_counts=None,
        n_overlays=8,
        distributed=True,
        json_file=None,
        bootstrap=0,
    ):
        """
        Args:
            output_dir: folder of metrics.json and the report (nothing is written when None).
            training_counts: {"full", "weak", "unlabeled"} training image counts for the Table 1 row.
            json_file: ground truth to use instead of the dataset's ``json_file`` metadata.
            bootstrap: bootstrap replicates over images for 95% intervals (0: none).
        """
        self._dataset_name = dataset_name
        meta = MetadataCatalog.get(dataset_name)
        self._json_file = json_file or meta.get("json_file", None)
        if self._json_file is None:
            raise ValueError(
                f"dataset {dataset_name!r} has no json_file metadata; register it with "
                "oxnet.data.register_omni_coco or pass json_file"
            )
        id_map = meta.get("thing_dataset_id_to_contiguous_id", None)
        if id_map and meta.get("thing_classes", None):
            contiguous_to_id = {v: k for k, v in id_map.items()}
            self._category_ids = [contiguous_to_id[k] for k in range(len(contiguous_to_id))]
            self._class_names = list(meta.thing_classes)
        else:  # categories in id order, as register_omni_coco numbers them
            with open(self._json_file, encoding="utf-8") as f:
                cats = sorted(json.load(f)["categories"], key=lambda c: c["id"])
            self._category_ids = [c["id"] for c in cats]
            self._class_names = [str(c.get("name", c["id"])) for c in cats]
        self._output_dir = output_dir
        self._settings = dict(
            iou_thresholds=iou_thresholds,
            froc_iou=froc_iou,
            froc_fps=froc_fps,
            max_dets=max_dets,
            bootstrap=bootstrap,
        )
        self._write_report = write_report
        self._method = method
        self._training_counts = training_counts
        self._n_overlays = n_overlays
        self._distributed = distributed
        self._gt_cache = None
        self.result = None
        self.reset()

    def reset(self):
        self._predictions = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            rec = {"image_id": inp["image_id"], "file_name": inp.get("file_name"), "detections": []}
            if "instances" in out:
                inst = out["instances"].to("cpu")
                rec["detections"] = detection_records(
                    inst, inp["image_id"], inp.get("file_name"), self._class_names, self._category_ids
                )
            if "global_scores" in out:
                rec["global_scores"] = image_score_record(
                    out["global_scores"].float(), inp["image_id"], inp.get("file_name"), self._class_names
                )
            self._predictions.append(rec)

    def _ground_truth(self, image_ids):
        if self._gt_cache is None:
            with open(self._json_file, encoding="utf-8") as f:
                self._gt_cache = json.load(f)
        gt = self._gt_cache
        known = {img["id"] for img in gt["images"]}
        unknown = [i for i in image_ids if i not in known]
        if unknown:
            raise ValueError(
                f"{self._json_file}: evaluated image id {unknown[0]!r} is not in the ground "
                f"truth ({len(unknown)} such image(s))"
            )
        keep = set(image_ids)
        return dict(
            gt,
            images=[img for img in gt["images"] if img["id"] in keep],
            annotations=[a for a in gt.get("annotations", []) if a["image_id"] in keep],
        )

    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        else:
            predictions = self._predictions
        if not predictions:
            logger.warning(f"[OXnetEvaluator] {self._dataset_name}: no image was processed")
            return {}
        gt = self._ground_truth([p["image_id"] for p in predictions])
        records = [d for p in predictions for d in p["detections"]]
        scores = [p["global_scores"] for p in predictions if "global_scores" in p]
        # In process, images and classes are known by id: match by id alone.
        dets = [{k: d[k] for k in ("image_id", "category_id", "bbox", "score")} for d in records]
        image_scores = {s["image_id"]: s["global_scores"] for s in scores} if scores else None
        result = evaluate_detections(
            gt, dets, image_scores=image_scores, require_match=False, **self._settings
        )
        self.result = result
        logger.info(
            f"Evaluation results for {self._dataset_name} (percent):\n" + format_table(result.metrics)
        )
        if self._output_dir:
            from oxnet.utils.atomic import atomic_write_json

            os.makedirs(self._output_dir, exist_ok=True)
            atomic_write_json(os.path.join(self._output_dir, "predictions.json"), records)
            if scores:
                atomic_write_json(os.path.join(self._output_dir, "image_scores.json"), scores, indent=1)
        if self._output_dir and self._write_report:
            from .report import write_report

            paths = {p["image_id"]: p["file_name"] for p in predictions if p.get("file_name")}
            write_report(
                result,
                self._output_dir,
                method=self._method,
                counts=self._training_counts,
                image_paths=paths,
                n_overlays=self._n_overlays,
                gt_file=self._json_file,
                pred_file=os.path.join(self._output_dir, "predictions.json"),
            )
        elif self._output_dir:
            from oxnet.utils.atomic import atomic_write_json

            atomic_write_json(os.path.join(self._output_dir, "metrics.json"), result.metrics, indent=2)
        return to_detectron2_results(result.metrics)


def _pct(v):
    return float("nan") if v is None else 100.0 * v


def to_detectron2_results(metrics):
    """{"bbox": {...}, "froc": {...}, "auroc": {...}} in percent (NaN: n/a), as detectron2 prints and logs;
    with normal images in the test set also {"normals": {"fp@0.7": ...}}: false alarms per normal image
    at each lesion sensitivity (:mod:`oxnet.evaluation.normals`)."""
    bbox = OrderedDict((k, _pct(metrics[k])) for k in AP_KEYS)
    for name, row in metrics["per_class"].items():
        bbox[f"AP-{name}"] = _pct(row["mAP"])
    froc = OrderedDict(
        [("mean", _pct(metrics["froc"]["mean"])), ("class_mean", _pct(metrics["froc"]["class_mean"]["mean"]))]
    )
    sens = metrics["froc"]["sensitivity"] or [None] * len(metrics["froc"]["fps_per_image"])
    for f, s in zip(metrics["froc"]["fps_per_image"], sens):
        froc[f"sens@{f:g}"] = _pct(s)
    auroc = OrderedDict(
        [("global", _pct(metrics["auroc"]["global"])), ("local", _pct(metrics["auroc"]["local"]))]
    )
    for name, row in metrics["per_class"].items():
        auroc[f"global-{name}"] = _pct(row["auroc_global"])
        auroc[f"local-{name}"] = _pct(row["auroc_local"])
    out = OrderedDict(bbox=bbox, froc=froc, auroc=auroc)
    normals = metrics.get("normals")
    if normals and normals["n_normal_images"]:  # false alarms per normal image (not percent)
        out["normals"] = OrderedDict(
            (f"fp@{s}", float("nan") if v is None else float(v))
            for s, v in normals["fp_per_normal_image_at_sensitivity"].items()
        )
    return out
