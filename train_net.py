#!/usr/bin/env python
"""Train or evaluate OXnet (or any of its baselines) with detectron2.

    python train_net.py --config-file configs/oxnet_R101.yaml [--num-gpus N] [KEY VALUE ...]
    python train_net.py --config-file configs/oxnet_R101.yaml --eval-only MODEL.WEIGHTS model_final.pth
    python train_net.py --config-file ... --resume          # continue the run in OUTPUT_DIR

Datasets: register OXnet-COCO files through the config,
``OXNET.DATASETS (("name", "path/to/file.json", "path/to/images"), ...)``, and name them in
``DATASETS.TRAIN`` / ``DATASETS.TEST``. On a machine without CUDA, ``--num-gpus N`` starts N CPU
processes (gloo).
"""
import logging
import os

import oxnet  # noqa: F401  (compatibility shims before detectron2)
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils import comm

import oxnet.modeling  # noqa: F401  (registers the OXNet meta-architecture)
from oxnet.config import add_oxnet_config, resolve_device
from oxnet.data import register_omni_coco
from oxnet.engine import OXnetTrainer, launch

logger = logging.getLogger("oxnet")


def setup(args):
    cfg = get_cfg()
    add_oxnet_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    resolve_device(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    if cfg.MODEL.DEVICE == "cpu":
        logger.warning("CUDA is not available: running on the CPU")
    register_datasets(cfg)
    return cfg


def register_datasets(cfg):
    for entry in cfg.OXNET.DATASETS:
        if len(entry) != 3:
            raise ValueError(f"OXNET.DATASETS entries are (name, json_file, image_root), got {entry!r}")
        register_omni_coco(*entry)


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = OXnetTrainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = OXnetTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = OXnetTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
