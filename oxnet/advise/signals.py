"""What a trained model says about each image of a pool: the signals annotation strategies rank by.

One pass of the student (and, when the checkpoint holds one, of the mean teacher) over the pool gives,
per image: the detections and the highest box score of each class, the global head's image-level
scores (DAA's pooled ``p_c`` for DAA models, Eq. 3), the teacher's detections, and the last ResNet
stage averaged over the image (the feature space of the k-center strategy). The weak labels come
from the pool file itself.
"""

import copy
import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from oxnet.data.io import ImageReadError

__all__ = ["PoolSignals", "compute_signals", "load_teacher", "label_matrix"]

logger = logging.getLogger(__name__)


@dataclass
class PoolSignals:
    """Signals of ``n`` candidate images with ``K`` classes (``None``: not available).

    Attributes:
        image_ids, file_names: the candidates, in pool order.
        class_names: the model's classes.
        det_top: (n, K) the student's highest box score of each class (0 without a box).
        detections: per image a dict of ``boxes`` (m, 4) XYXY in image pixels, ``scores`` (m,),
            ``classes`` (m,) (the student's boxes above the model's test score threshold).
        labels: (n, K) weak labels, 1 present, 0 absent, NaN unknown; None when no candidate has one.
        global_scores: (n, K) the global head's image-level probabilities; None without a global head.
        teacher_top, teacher_detections: the mean teacher's, like ``det_top`` and ``detections``;
            None when the checkpoint holds no teacher.
        features: (n, D) the last backbone stage averaged over the image, L2-normalized.
        boxed_features: (b, D) the same for the images already boxed (k-center's first centres).
    """

    image_ids: list
    file_names: list
    class_names: list
    det_top: np.ndarray
    detections: list
    labels: np.ndarray = None
    global_scores: np.ndarray = None
    teacher_top: np.ndarray = None
    teacher_detections: list = None
    features: np.ndarray = None
    boxed_features: np.ndarray = None
    notes: dict = field(default_factory=dict)

    #: What gives each signal, for the message of a strategy that needs one that is missing.
    WHY_MISSING = {
        "labels": "weak labels (no candidate image has an image label of 0 or 1 in the pool file)",
        "teacher": "the mean teacher (the checkpoint holds no 'teacher': train a method with SFL)",
        "features": "backbone features",
        "global_scores": "a global head (the model is a plain RetinaNet)",
    }

    def __len__(self):
        return len(self.image_ids)


def label_matrix(images, class_names):
    """(n, K) weak labels of OXnet-COCO image dicts: 1 present, 0 absent, NaN unknown (-1, or not
    given); None when no image has a 0 or 1."""
    out = np.full((len(images), len(class_names)), np.nan)
    for i, img in enumerate(images):
        for c, name in enumerate(class_names):
            v = (img.get("image_labels") or {}).get(name)
            if v in (0, 1):
                out[i, c] = float(v)
    return None if np.isnan(out).all() else out


def load_teacher(predictor, weights):
    """The mean teacher saved in the checkpoint ``weights`` (its ``"teacher"`` entry) as a copy of the
    predictor's model, in eval mode; None (with the reason logged) when the file holds none."""
    from oxnet.utils.safe_load import load_weights_file

    ckpt = load_weights_file(weights)
    state = ckpt.get("teacher") if isinstance(ckpt, dict) else None
    if not state:
        logger.info(f"{weights} holds no mean teacher: strategies that need it are skipped")
        return None
    teacher = copy.deepcopy(predictor.model)
    missing, unexpected = teacher.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{weights}: the teacher's weights do not fit the model (missing {list(missing)[:3]}, "
            f"unexpected {list(unexpected)[:3]})"
        )
    teacher.eval()
    return teacher


def _top_and_detections(outputs, num_classes):
    top = np.zeros((len(outputs), num_classes))
    dets = []
    for i, out in enumerate(outputs):
        inst = out["instances"]
        boxes = inst.pred_boxes.tensor.float().numpy()
        scores = inst.scores.float().numpy()
        classes = inst.pred_classes.numpy().astype(np.int64)
        for c, s in zip(classes, scores):
            top[i, c] = max(top[i, c], float(s))
        dets.append({"boxes": boxes, "scores": scores, "classes": classes})
    return top, dets


class _PooledFeatures:
    """Captures the deepest output of the model's ResNet (``backbone.bottom_up``) averaged over space."""

    def __init__(self, model):
        module = getattr(model.backbone, "bottom_up", model.backbone)
        self.values = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        last = output[list(output)[-1]] if isinstance(output, dict) else output
        self.values = last.float().mean(dim=(2, 3)).cpu().numpy()

    def close(self):
        self.handle.remove()


def _normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@torch.no_grad()
def compute_signals(
    predictor,
    images,
    image_paths,
    teacher=None,
    boxed_paths=(),
    batch_size=4,
    progress=None,
    json_file="<pool>",
):
    """:class:`PoolSignals` of ``images`` (OXnet-COCO image dicts, read from ``image_paths``) from an
    :class:`oxnet.engine.predictor.OXnetPredictor`, the mean ``teacher`` (or None) and, for the
    k-center strategy, the features of the already boxed images at ``boxed_paths``.

    An unreadable image is an error naming the pool file, the image id and the problem.
    ``progress(done, total)`` is called after every batch."""
    names = list(predictor.class_names)
    k = len(names)
    pooled = _PooledFeatures(predictor.model)
    tops, dets, t_tops, t_dets, feats, glob = [], [], [], [], [], []
    total = len(image_paths) + len(boxed_paths)
    done = 0

    def prepare(path, image_id):
        try:
            return predictor.prepare(path)
        except (ImageReadError, OSError, ValueError) as e:
            raise ValueError(f"{json_file}: image id={image_id} ({path}): {e}") from e

    try:
        for start in range(0, len(image_paths), batch_size):
            chunk = list(range(start, min(start + batch_size, len(image_paths))))
            inputs = [prepare(image_paths[i], images[i]["id"]) for i in chunk]
            outs = predictor.run(inputs)
            feats.append(pooled.values)
            top, det = _top_and_detections(outs, k)
            tops.append(top)
            dets += det
            if predictor.has_global_scores:
                glob.append(np.stack([o["global_scores"].float().numpy() for o in outs]))
            if teacher is not None:
                t_outs = [{kk: v.to("cpu") for kk, v in o.items()} for o in teacher(inputs)]
                top, det = _top_and_detections(t_outs, k)
                t_tops.append(top)
                t_dets += det
            done += len(chunk)
            if progress:
                progress(done, total)
        boxed = []
        for start in range(0, len(boxed_paths), batch_size):
            chunk = boxed_paths[start : start + batch_size]
            predictor.run([prepare(p, "(boxed)") for p in chunk])
            boxed.append(pooled.values)
            done += len(chunk)
            if progress:
                progress(done, total)
    finally:
        pooled.close()
    n = len(image_paths)
    return PoolSignals(
        image_ids=[img["id"] for img in images],
        file_names=[img["file_name"] for img in images],
        class_names=names,
        det_top=np.concatenate(tops) if tops else np.zeros((0, k)),
        detections=dets,
        labels=label_matrix(images, names),
        global_scores=(np.concatenate(glob) if glob else np.zeros((0, k)))
        if predictor.has_global_scores
        else None,
        teacher_top=(np.concatenate(t_tops) if t_tops else np.zeros((0, k))) if teacher is not None else None,
        teacher_detections=t_dets if teacher is not None else None,
        features=_normalize(np.concatenate(feats)) if n else np.zeros((0, 1)),
        boxed_features=_normalize(np.concatenate(boxed)) if boxed else None,
    )
