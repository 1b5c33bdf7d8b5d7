"""OXnet evaluation: COCO AP at IoU 0.40:0.75 per class, FROC, image-level AUROC, reports.

``OXnetEvaluator`` (a detectron2 ``DatasetEvaluator``) is imported on first use, so the standalone
metrics do not import detectron2.
"""

from .auroc import auroc, image_auroc
from .coco_ap import AREA_RANGES, PAPER_IOU_THRESHOLDS, coco_average_precision
from .froc import FROC_FPS, froc_curve, match_detections, sensitivity_at
from .inputs import EvaluationInputError, load_ground_truth, load_image_scores, load_predictions
from .metrics import EvaluationResult, evaluate_detections, format_table

__all__ = [
    "AREA_RANGES",
    "FROC_FPS",
    "PAPER_IOU_THRESHOLDS",
    "EvaluationInputError",
    "EvaluationResult",
    "OXnetEvaluator",
    "auroc",
    "coco_average_precision",
    "draw_attention_maps",
    "evaluate_detections",
    "format_table",
    "froc_curve",
    "image_auroc",
    "load_ground_truth",
    "load_image_scores",
    "load_predictions",
    "match_detections",
    "sensitivity_at",
    "write_attention_report",
    "write_report",
]

_LAZY = {
    "OXnetEvaluator": ".evaluator",
    "write_report": ".report",
    "draw_attention_maps": ".attention",
    "write_attention_report": ".attention",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
