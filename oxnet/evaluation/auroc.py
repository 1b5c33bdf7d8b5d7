"""Image-level AUROC per class (Mann-Whitney rank statistic, ties counted as one half)."""

import numpy as np
from scipy.stats import rankdata

__all__ = ["auroc", "image_auroc", "top_local_scores"]


def auroc(scores, labels):
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 positive, 0 negative).

    AUROC = (R+ - n+ (n+ + 1) / 2) / (n+ n-), with R+ the sum of the positives' mid-ranks.
    Returns None when only one label value is present.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    n_pos = int((labels == 1).sum())
    n_neg = int((labels == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def top_local_scores(preds, num_images, num_classes):
    """[I, K] highest detection score of each class in each image (0 when there is none)."""
    out = np.zeros((num_images, num_classes))
    if len(preds):
        np.maximum.at(out, (preds.image, preds.cls), preds.scores)
    return out


def image_auroc(scores, labels):
    """Per-class AUROC of [I, K] ``scores`` against [I, K] labels (1 / 0; -1 and NaN scores excluded)."""
    out = []
    for k in range(labels.shape[1]):
        keep = (labels[:, k] >= 0) & np.isfinite(scores[:, k])
        out.append(auroc(scores[keep, k], labels[keep, k]))
    return out
