"""Start a run from a trained detector (``OXNET.WARM_START``): train the RetinaNet stage its config
names, then start the run's student and mean teacher from that stage's final weights.

The authors train RetinaNet on the boxes (``train_retinanet.py``) and load it into both models of
``train_oxnet.py``; ``configs/authors/oxnet_R101.yaml`` names ``retinanet_R101.yaml`` so that one
``train_net.py`` command does both. The stage runs in ``OUTPUT_DIR/warm_start`` and resumes there when
interrupted; once its ``model_final.pth`` exists it is not trained again.
"""

import logging
import os

from detectron2.config import get_cfg

from oxnet.config import add_oxnet_config, resolve_device

from .trainer import OXnetTrainer

__all__ = ["STAGE_DIR", "resolve_warm_start", "stage_config", "train_warm_start"]

logger = logging.getLogger(__name__)

STAGE_DIR = "warm_start"
#: Command-line overrides that belong to the run, not to its RetinaNet stage.
RUN_ONLY_KEYS = ("OXNET.METHOD", "OXNET.WARM_START", "MODEL.WEIGHTS", "OUTPUT_DIR")


def resolve_warm_start(path, config_file=""):
    """``OXNET.WARM_START``'s file: relative to the folder of ``config_file`` when it exists there,
    else to the working directory."""
    if config_file and not os.path.isabs(path):
        beside = os.path.join(os.path.dirname(os.path.abspath(config_file)), path)
        if os.path.exists(beside):
            return beside
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"OXNET.WARM_START {path!r}: no such config file"
            + (f" beside {config_file} or" if config_file else "")
            + " in the working directory"
        )
    return path


def stage_config(cfg, config_file="", opts=()):
    """The RetinaNet stage's config: its file, then the command line's ``opts`` except those that
    name the run (:data:`RUN_ONLY_KEYS`), written to ``cfg.OUTPUT_DIR/warm_start``."""
    path = resolve_warm_start(cfg.OXNET.WARM_START, config_file)
    stage = get_cfg()
    add_oxnet_config(stage)
    stage.merge_from_file(path)
    pairs = list(zip(opts[::2], opts[1::2]))
    stage.merge_from_list([x for k, v in pairs if k not in RUN_ONLY_KEYS for x in (k, v)])
    stage.OXNET.WARM_START = ""
    stage.MODEL.WEIGHTS = ""
    stage.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, STAGE_DIR)
    resolve_device(stage)
    stage.freeze()
    return stage


def train_warm_start(cfg, config_file="", opts=()):
    """Train the stage unless its ``model_final.pth`` exists; return ``cfg`` with ``MODEL.WEIGHTS``
    set to it, or None when the stage was stopped by a signal (resume it with the same command)."""
    stage = stage_config(cfg, config_file, opts)
    weights = os.path.join(stage.OUTPUT_DIR, "model_final.pth")
    if os.path.exists(weights):
        logger.info(f"Warm start: {weights} exists; the RetinaNet stage is not trained again")
    else:
        logger.info(
            f"Warm start: training {stage.OXNET.METHOD} ({cfg.OXNET.WARM_START}) in {stage.OUTPUT_DIR}"
        )
        trainer = OXnetTrainer(stage)
        trainer.resume_or_load(resume=True)
        trainer.train()
        if trainer.preempted:
            return None
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = weights
    cfg.freeze()
    logger.info(f"Warm start: the student and the mean teacher start from {weights}")
    return cfg
