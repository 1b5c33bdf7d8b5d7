#!/usr/bin/env python
"""Train or evaluate OXnet (or any of its baselines) with detectron2.

    python train_net.py --config-file configs/oxnet_R101.yaml [--num-gpus N] [KEY VALUE ...]
    python train_net.py --eval-only MODEL.WEIGHTS output/oxnet_R101/model_final.pth  # its config.yaml
    python train_net.py --config-file ... --resume          # continue the run in OUTPUT_DIR

Datasets: register OXnet-COCO files through the config,
``OXNET.DATASETS (("name", "path/to/file.json", "path/to/images"), ...)``, and name them in
``DATASETS.TRAIN`` / ``DATASETS.TEST``. On a machine without CUDA, ``--num-gpus N`` starts N CPU
processes (gloo).

SIGTERM or SIGINT during training saves a checkpoint at the end of the current step and exits 0;
``--resume`` continues the run. ``--dist-timeout`` bounds how long a process waits for the others.

With ``OXNET.WARM_START`` (``configs/authors/oxnet_R101.yaml``) the RetinaNet stage that config names is
trained first (in ``OUTPUT_DIR/warm_start``) and the run starts its student and mean teacher from it.
"""

import datetime
import logging
import os

import oxnet  # noqa: F401  # isort: skip  (first: compatibility shims and quiet import-time warnings)
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import oxnet.modeling  # noqa: F401  (registers the OXNet meta-architecture)
from oxnet.config import add_oxnet_config, resolve_device
from oxnet.data import register_omni_coco
from oxnet.engine import OXnetTrainer, launch
from oxnet.engine.model_files import StrictCheckpointer, load_model_config, split_weights
from oxnet.engine.warm_start import train_warm_start

logger = logging.getLogger("oxnet")


def setup(args):
    if args.config_file:
        cfg = get_cfg()
        add_oxnet_config(cfg)
        cfg.merge_from_file(args.config_file)
        cfg.merge_from_list(args.opts)
    elif args.eval_only and split_weights(args.opts)[0]:
        # The model's own config, written beside its weights by training.
        weights, opts = split_weights(args.opts)
        cfg = load_model_config(weights, opts=opts)
        if "OUTPUT_DIR" not in args.opts[::2]:  # leave the model's folder and its config.yaml as they are
            cfg.OUTPUT_DIR = os.path.join(os.path.dirname(os.path.abspath(weights)), "eval")
    else:
        raise SystemExit(
            "error: --config-file is required (with --eval-only MODEL.WEIGHTS FILE, the "
            "config.yaml beside FILE is used by default)"
        )
    resolve_device(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    # OXnet's messages (skipped steps, preemption, final state) on the console and in OUTPUT_DIR/log.txt
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="oxnet")
    if cfg.MODEL.DEVICE == "cpu":
        logger.info("no CUDA device: running on the CPU")
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
        # Strict: weights that do not fit the config's model are an error, not a partly random model.
        # MODEL.WEIGHTS is named by the user: detectron2 .pkl weights are read (numpy arrays only).
        checkpointer = StrictCheckpointer(model, save_dir=cfg.OUTPUT_DIR, allow_pickle=True)
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = OXnetTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    resuming = args.resume and os.path.exists(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))
    if cfg.OXNET.WARM_START and not cfg.MODEL.WEIGHTS and not resuming:
        cfg = train_warm_start(cfg, args.config_file, args.opts)
        if cfg is None:
            logger.warning("Stopped during the warm start's RetinaNet stage; the same command resumes it")
            return None
    trainer = OXnetTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    result = trainer.train()
    if trainer.preempted:
        logger.warning(
            f"Stopped by {trainer.preempted} after iteration {trainer.iter}; the checkpoint in "
            f"{cfg.OUTPUT_DIR} continues the run with --resume"
        )
    return result


EPILOG = """\
OXnet's options are config keys (OXNET.*), set in the config file or as trailing KEY VALUE pairs,
e.g. OXNET.METHOD daa OXNET.BATCH.WEAK 4. docs/config.md lists every key with its default and
meaning (regenerate it with tools/gen_config_docs.py); --list-methods lists the methods.
"""


def print_methods(file=None):
    """Print every ``OXNET.METHOD`` with the components it enables (:mod:`oxnet.methods`)."""
    from oxnet.methods import COMPONENT_TITLES, describe_methods

    rows = [("OXNET.METHOD", *COMPONENT_TITLES.values())]
    rows += [(method, *parts.values()) for method, parts in describe_methods()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip(), file=file)


def parse_args(argv=None):
    """detectron2's training options plus ``--list-methods``, which prints the methods and exits."""
    parser = default_argument_parser(epilog=EPILOG)
    parser.description = __doc__
    parser.add_argument(
        "--list-methods",
        action="store_true",
        help="print every OXNET.METHOD with the components it enables, and exit",
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=1800,
        metavar="SECONDS",
        help="with several processes: how long one waits for the others in a collective "
        "operation before failing with an error (default 1800)",
    )
    args = parser.parse_args(argv)
    if args.list_methods:
        print_methods()
        raise SystemExit(0)
    return args


def run(argv=None):
    """The command line: parse ``argv`` and run :func:`main` in every process of the launch."""
    args = parse_args(argv)
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        timeout=datetime.timedelta(seconds=args.dist_timeout),
    )


if __name__ == "__main__":
    run()
