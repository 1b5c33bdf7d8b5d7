"""What stays of a benchmark run's folder once the run is trained and evaluated."""

import glob
import logging
import os

from oxnet.utils.atomic import atomic_open

__all__ = ["prune_run", "FINAL_WEIGHTS", "CONFIG_NAME"]

logger = logging.getLogger("oxnet.bench")

FINAL_WEIGHTS = "model_final.pth"
CONFIG_NAME = "config.yaml"
LAST_CHECKPOINT = "last_checkpoint"


def prune_run(cfg, keep_weights=False):
    """Delete the checkpoints of the finished run in ``cfg.OUTPUT_DIR``; return the deleted paths.

    Without ``keep_weights`` every checkpoint (``*.pth``) and the ``last_checkpoint`` tag are deleted.
    With it, only the final weights ``model_final.pth`` stay (the periodic ``model_XXXXXXX.pth`` are
    deleted), with the run's config ``config.yaml`` beside them (written from ``cfg`` unless training
    already wrote one) so that ``train_net.py --eval-only`` or ``demo/predict.py`` can rebuild the
    model, and ``last_checkpoint`` names ``model_final.pth``, so that the run resumes as finished.
    Logs, metrics and evaluation outputs are kept either way.
    """
    folder = cfg.OUTPUT_DIR
    keep = set()
    if keep_weights:
        if os.path.exists(os.path.join(folder, FINAL_WEIGHTS)):
            keep.add(FINAL_WEIGHTS)
        else:  # not expected after training: keep what the run would resume from rather than nothing
            keep.add(_last_checkpoint(folder) or FINAL_WEIGHTS)
            logger.warning(f"{folder} has no {FINAL_WEIGHTS}; keeping {sorted(keep)}")
    deleted = []
    for path in sorted(glob.glob(os.path.join(folder, "*.pth"))):
        if os.path.basename(path) not in keep:
            os.remove(path)
            deleted.append(path)
    last = os.path.join(folder, LAST_CHECKPOINT)
    if keep_weights:
        kept = [k for k in keep if os.path.exists(os.path.join(folder, k))]
        if kept:
            with atomic_open(last, "w", encoding="utf-8") as f:
                f.write(kept[0])
        config = os.path.join(folder, CONFIG_NAME)
        if not os.path.exists(config):
            with atomic_open(config, "w", encoding="utf-8") as f:
                f.write(cfg.dump())
    elif os.path.exists(last):
        os.remove(last)
        deleted.append(last)
    return deleted


def _last_checkpoint(folder):
    path = os.path.join(folder, LAST_CHECKPOINT)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read().strip() or None
