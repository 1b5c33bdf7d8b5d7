#!/usr/bin/env python
"""The end-to-end demo behind ``make demo``: synthetic chest X-rays -> OXnet training -> evaluation.

1. writes a synthetic omni-supervised dataset (boxes, image labels and unlabeled images) with
   ``datasets/prepare_synthetic.py``, validates it and prints its statistics;
2. draws a contact sheet of the training boxes;
3. trains OXnet (SFL + DAA + GPA) with ``configs/demo_cpu.yaml``, in bfloat16 mixed precision where
   the machine computes bfloat16 natively (``SOLVER.AMP.ENABLED False``: float32); re-running
   continues the run; once training is done only the final weights ``model/model_final.pth`` are kept;
4. evaluates on the test split once (mAP at IoU .40:.75, AP40, AP75, APs/m/l, FROC, AUROC), prints
   the table and writes the report with overlays and attention maps.

The console shows INFO messages; ``OUT/log.txt`` has the full log, including the model's structure
that detectron2 logs when building the trainer (at DEBUG level here). TensorBoard:
``.venv/bin/tensorboard --logdir OUT/model``.

    python tools/demo.py --out output/demo [--iters N] [KEY VALUE ...]
"""

import argparse
import glob
import json
import logging
import os
import subprocess
import sys
import time

import oxnet  # noqa: F401  # isort: skip  (first: compatibility shims and quiet import-time warnings)
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import inference_on_dataset
from detectron2.utils.logger import setup_logger

from oxnet.config import add_oxnet_config
from oxnet.data import register_omni_coco
from oxnet.data.stats import compute_stats, format_stats
from oxnet.data.visualize import contact_sheet
from oxnet.engine import OXnetTrainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLIT = dict(n_full=60, n_weak=120, n_unlabeled=120, n_val=20, n_test=60)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="output/demo", help="output folder (data, model, report)")
    p.add_argument("--config-file", default=os.path.join(REPO, "configs", "demo_cpu.yaml"))
    p.add_argument("--iters", type=int, default=None, help="override SOLVER.MAX_ITER")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p.parse_args(argv)


class ModelDumpAtDebug(logging.Filter):
    """Turn detectron2's INFO record of the whole model structure ("Model:" and the model, logged by
    ``DefaultTrainer.build_model``) into a DEBUG record."""

    def filter(self, record):
        dump = isinstance(record.msg, str) and record.msg.startswith("Model:\n")
        if dump and record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def log_model_at_debug():
    """Install :class:`ModelDumpAtDebug` on the logger of ``detectron2.engine.defaults`` (once)."""
    logger = logging.getLogger("detectron2.engine.defaults")
    if not any(isinstance(f, ModelDumpAtDebug) for f in logger.filters):
        logger.addFilter(ModelDumpAtDebug())


def setup_logging(out):
    """Console: INFO and above; ``out/log.txt``: everything. Return the oxnet logger."""
    os.makedirs(out, exist_ok=True)
    log_file = os.path.join(out, "log.txt")
    loggers = [
        setup_logger(output=log_file, name="detectron2", abbrev_name="d2"),
        setup_logger(output=log_file, name="oxnet"),
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if getattr(handler, "stream", None) in (sys.stdout, sys.stderr):
                handler.setLevel(logging.INFO)
    log_model_at_debug()
    return loggers[1]


def remove_intermediate_checkpoints(folder):
    """Once ``folder`` has ``model_final.pth``, delete the periodic ``model_XXXXXXX.pth`` checkpoints
    (kept until then so that an interrupted run resumes); return the deleted paths."""
    final = os.path.join(folder, "model_final.pth")
    if not os.path.exists(final):
        return []
    deleted = []
    for path in sorted(glob.glob(os.path.join(folder, "model_*.pth"))):
        if path != final:
            os.remove(path)
            deleted.append(path)
    return deleted


def make_data(data_dir, size, seed):
    cmd = [
        sys.executable,
        os.path.join(REPO, "datasets", "prepare_synthetic.py"),
        "--out",
        data_dir,
        "--size",
        str(size),
        "--seed",
        str(seed),
        "--workers",
        "2",
    ]
    for key, value in SPLIT.items():
        cmd += ["--" + key.replace("_", "-"), str(value)]
    subprocess.run(cmd, check=True)


def main(argv=None):
    args = parse_args(argv)
    out = os.path.abspath(args.out)
    logger = setup_logging(out)
    cfg = get_cfg()
    add_oxnet_config(cfg)
    cfg.merge_from_file(args.config_file)
    # bfloat16 mixed precision where the CPU (or GPU) computes bfloat16 natively, float32 elsewhere;
    # `SOLVER.AMP.ENABLED False` on the command line trains in float32
    cfg.SOLVER.AMP.ENABLED = True
    cfg.OXNET.AMP.DTYPE = "auto"
    cfg.merge_from_list(args.opts)
    if args.iters is not None:
        cfg.SOLVER.MAX_ITER = args.iters
        cfg.SOLVER.STEPS = tuple(int(args.iters * 0.75) for _ in cfg.SOLVER.STEPS[:1])
    cfg.OUTPUT_DIR = os.path.join(out, "model")
    cfg.SEED = args.seed
    start = time.time()

    data_dir = os.path.join(out, "data")
    logger.info(f"[1/4] synthetic data ({cfg.OXNET.INPUT_SIZE} px) in {data_dir}")
    make_data(data_dir, cfg.OXNET.INPUT_SIZE, args.seed)
    image_root = os.path.join(data_dir, "images")
    names = {}
    for split in ("train", "val", "test"):
        json_file = os.path.join(data_dir, f"{split}.json")
        names[split] = f"oxnet_demo_{split}"
        if names[split] not in DatasetCatalog.list():
            register_omni_coco(names[split], json_file, image_root)
        with open(json_file) as f:
            coco = json.load(f)
        print(f"--- {split}.json ---\n{format_stats(compute_stats(coco))}")
    cfg.DATASETS.TRAIN = (names["train"],)
    cfg.DATASETS.TEST = ()  # evaluated once, in step 4, not also by the trainer at the end of training
    cfg.freeze()

    sheet = os.path.join(out, "train_boxes.png")
    logger.info(f"[2/4] contact sheet of the training boxes: {sheet}")
    classes = MetadataCatalog.get(names["train"]).thing_classes
    full = [d for d in DatasetCatalog.get(names["train"]) if d["supervision"] == "full"]
    contact_sheet(full, image_root, classes, sheet, max_images=16)

    logger.info(
        f"[3/4] training {cfg.OXNET.METHOD} for {cfg.SOLVER.MAX_ITER} iterations in {cfg.OUTPUT_DIR} "
        "(re-running continues from the last checkpoint)"
    )
    trainer = OXnetTrainer(cfg)
    trainer.resume_or_load(resume=True)
    trainer.train()
    remove_intermediate_checkpoints(cfg.OUTPUT_DIR)

    logger.info(f"[4/4] evaluating on {names['test']}")
    eval_dir = os.path.join(out, "eval")
    model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    results = inference_on_dataset(
        model,
        OXnetTrainer.build_test_loader(cfg, names["test"]),
        OXnetTrainer.build_evaluator(cfg, names["test"], eval_dir),
    )
    from oxnet.data.mapper import OmniDatasetMapper
    from oxnet.evaluation import write_attention_report

    test_dicts = DatasetCatalog.get(names["test"])
    write_attention_report(
        model,
        [d for d in test_dicts if d.get("annotations")],
        OmniDatasetMapper(cfg, is_train=False),
        os.path.join(eval_dir, "attention"),
        n_images=4,
        class_names=classes,
    )
    bbox = results["bbox"]
    print(f"\nOXnet demo finished in {(time.time() - start) / 60:.1f} min.")
    print(f"Test mAP (IoU .40:.75) {bbox['mAP']:.1f}  AP40 {bbox['AP40']:.1f}  AP75 {bbox['AP75']:.1f}")
    print(f"Report:  {os.path.join(eval_dir, 'report.html')} (and report.md, metrics.json)")
    print(f"Model:   {os.path.join(cfg.OUTPUT_DIR, 'model_final.pth')}")
    print(f"Boxes:   {sheet}")
    print(f"Log:     {os.path.join(out, 'log.txt')}")
    print(f"Curves:  .venv/bin/tensorboard --logdir {cfg.OUTPUT_DIR}")
    return results


if __name__ == "__main__":
    logging.captureWarnings(True)
    main()
