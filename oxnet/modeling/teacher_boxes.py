"""The mean teacher's boxes for the filtered soft focal loss (``OXNET.SFL.TEACHER_BOXES``).

"inference" (the default) takes the teacher's detections as detectron2's RetinaNet produces them at
inference (score above ``SCORE_THRESH_TEST``, top-k per level, NMS per class, at most
``DETECTIONS_PER_IMAGE``). "authors" follows the authors' ``ResNet.forward`` in EMA mode
(LLYXC/OXnet ``retinanet/model.py`` l.422-459), :func:`authors_teacher_boxes`.
"""

import torch
from torchvision.ops import nms

__all__ = ["TEACHER_BOX_MODES", "authors_teacher_boxes"]

TEACHER_BOX_MODES = ("inference", "authors")
#: The authors' thresholds: candidates above the first go through NMS, boxes above the last are kept.
CANDIDATE_SCORE, NMS_IOU, KEEP_SCORE = 0.01, 0.5, 0.5


def authors_teacher_boxes(probs, boxes, index_bug=False):
    """The authors' teacher boxes of one image.

    Args:
        probs: (R, K) the teacher's class probabilities on every anchor.
        boxes: (R, 4) every anchor's decoded box, clipped to the image.
        index_bug: reproduce ``model.py`` l.452 (``OXNET.SFL.TEACHER_BOX_INDEX_BUG``): the kept
            boxes' coordinates are read from the candidate list at the positions the kept boxes have
            in the NMS output, i.e. they are the first K candidates in anchor order.

    Returns:
        (boxes (n, 4), scores (n,), classes (n,)): score = max class probability; candidates with
        score > 0.01, one NMS over all classes at IoU 0.5 (highest score first), kept when > 0.5,
        in decreasing score.
    """
    scores = probs.max(dim=1).values
    candidates = scores > CANDIDATE_SCORE
    cand_boxes, cand_probs, cand_scores = boxes[candidates], probs[candidates], scores[candidates]
    order = nms(cand_boxes.float(), cand_scores.float(), NMS_IOU)  # positions in the candidate list
    nms_scores, nms_classes = cand_probs[order].max(dim=1)
    kept = torch.nonzero(nms_scores > KEEP_SCORE).flatten()  # positions in the NMS output
    chosen = kept if index_bug else order[kept]
    return cand_boxes[chosen], nms_scores[kept], nms_classes[kept]
