"""``teacher_student``: images where the mean teacher and the student disagree."""

import numpy as np

from .base import STRATEGY_REGISTRY, Strategy, top_k

__all__ = ["TeacherStudent", "box_disagreement", "iou_matrix"]


def iou_matrix(a, b):
    """(len(a), len(b)) IoU of XYXY boxes."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _unmatched(src, dst):
    """Score-weighted mean over ``src`` boxes of (1 - the best IoU with a ``dst`` box of its class)."""
    if len(src["scores"]) == 0:
        return 0.0
    iou = iou_matrix(src["boxes"], dst["boxes"])
    same = src["classes"][:, None] == dst["classes"][None, :]
    best = np.where(same, iou, 0.0).max(axis=1) if iou.size else np.zeros(len(src["scores"]))
    w = np.asarray(src["scores"], dtype=np.float64)
    return float((w * (1.0 - best)).sum() / w.sum())


def box_disagreement(student, teacher):
    """The symmetric box term: the mean of :func:`_unmatched` student -> teacher and teacher ->
    student (0: every box has an identical box of its class in the other model's detections, 1: none
    overlaps)."""
    return 0.5 * (_unmatched(student, teacher) + _unmatched(teacher, student))


@STRATEGY_REGISTRY.register()
class TeacherStudent(Strategy):
    """Score: ``max_c |s_c - t_c| + box_disagreement``, the largest gap between the student's and the
    mean teacher's top box score of a class plus how badly their boxes overlap
    (:func:`box_disagreement`), both in [0, 1]. The teacher is the EMA of the student (Sec. 2.3), so
    where they disagree the model is still moving."""

    name = "teacher_student"
    needs = ("teacher",)
    description = "the mean teacher and the student disagree"

    def select(self, signals, budget, rng):
        gap = np.abs(signals.det_top - signals.teacher_top)
        cls = gap.argmax(axis=1) if gap.size else np.zeros(len(signals), dtype=int)
        top_gap = gap.max(axis=1) if gap.size else np.zeros(len(signals))
        boxes = np.array(
            [box_disagreement(s, t) for s, t in zip(signals.detections, signals.teacher_detections)]
        )
        score = top_gap + boxes if len(signals) else np.zeros(0)

        def reason(i):
            c = int(cls[i])
            return (
                f"teacher and student disagree: top {signals.class_names[c]} box "
                f"{signals.teacher_top[i, c]:.2f} vs {signals.det_top[i, c]:.2f}, "
                f"box disagreement {boxes[i]:.2f}"
            )

        return top_k(score, budget, reason)
