"""The files a detector's outputs are written to: COCO results (``predictions.json``) and image-level
scores (``image_scores.json``), one format for ``demo/predict.py``, ``--eval-only``, ``make demo`` and
``python -m oxnet.evaluate``.

Each detection carries the dataset's ``category_id`` and its ``category_name``, and the image's
``file_name`` beside its ``image_id``, so that results can be scored against the ground truth whatever
numbering produced them (:func:`oxnet.evaluation.inputs.load_predictions` matches by name first).
Numbers are written unrounded: re-scoring the file gives exactly the in-process metrics.
"""

import numpy as np

__all__ = ["category_ids_or_default", "detection_records", "image_score_record"]


def category_ids_or_default(category_ids, num_classes):
    """The dataset's category id of each contiguous class index; without stored ids (a model trained
    before they were recorded), COCO's usual 1-based numbering ``index + 1``."""
    ids = [int(c) for c in category_ids or ()]
    if ids and len(ids) != num_classes:
        raise ValueError(f"{len(ids)} category ids for {num_classes} classes: {ids}")
    return ids or list(range(1, num_classes + 1))


def detection_records(instances, image_id, file_name, class_names, category_ids):
    """COCO results of one image's ``Instances`` (``pred_boxes`` in original pixels, ``scores``,
    ``pred_classes``): ``image_id``, ``file_name``, ``category_id``, ``category_name``,
    ``bbox`` [x, y, width, height], ``score``."""
    boxes = instances.pred_boxes.tensor.detach().cpu().numpy().astype(np.float64)
    boxes[:, 2:] -= boxes[:, :2]
    classes = instances.pred_classes.tolist()
    scores = instances.scores.detach().cpu().numpy().astype(np.float64).tolist()
    return [
        {
            "image_id": image_id,
            "file_name": file_name,
            "category_id": int(category_ids[c]),
            "category_name": class_names[c],
            "bbox": b,
            "score": s,
        }
        for c, b, s in zip(classes, boxes.tolist(), scores)
    ]


def image_score_record(global_scores, image_id, file_name, class_names):
    """One entry of ``image_scores.json``: ``{"image_id", "file_name", "global_scores": {name: p}}``."""
    probs = np.asarray(
        global_scores.detach().cpu() if hasattr(global_scores, "detach") else global_scores, dtype=np.float64
    ).tolist()
    if len(probs) != len(class_names):
        raise ValueError(f"{len(probs)} image-level scores for {len(class_names)} classes")
    return {"image_id": image_id, "file_name": file_name, "global_scores": dict(zip(class_names, probs))}
