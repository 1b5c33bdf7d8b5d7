"""Where one OXnet training step spends its time: the PyTorch profiler over real trainer steps.

    OMP_NUM_THREADS=2 python benchmarks/profile_step.py --json output/demo/data/train.json \\
        --images output/demo/data/images [--precision float32|bfloat16] [--steps 10] [--warmup 3]

Trains ``configs/demo_cpu.yaml`` (OXnet: mean teacher, DAA, GPA, SFL) with ``OXnetTrainer`` on the
given OXnet-COCO file (``make demo`` writes one), stepping the trainer by hand inside the profiler.
Each piece of the step is a ``record_function`` range: data loading (the loader's ``next``), the
teacher's pass, the student's forward and within it the losses, the step's guards (buffer copy and
finiteness checks), backward, the optimizer, the metrics and the teacher's EMA update. Printed: each
piece's CPU seconds per step and share of the step, then the operators with the most self CPU time.
"""

import argparse
import contextlib
import datetime
import os
import platform
import sys
import tempfile

import oxnet  # noqa: F401  # isort: skip  (first: compatibility shims and quiet import-time warnings)
import torch
from detectron2.config import get_cfg
from detectron2.utils.events import EventStorage
from torch.profiler import ProfilerActivity, profile, record_function

from oxnet.config import add_oxnet_config
from oxnet.data import register_omni_coco
from oxnet.engine import OXnetTrainer
from oxnet.engine.hooks import unwrap
from oxnet.testing import REPO_ROOT

PIECES = (
    "data loading",
    "teacher pass",
    "student forward",
    "  losses (RetinaNet, global BCE + GPA, weak negatives, SFL)",
    "guards (buffer copy, finiteness checks)",
    "backward",
    "optimizer step",
    "metrics",
    "teacher EMA update",
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True, help="OXnet-COCO training file")
    p.add_argument("--images", required=True, help="its image folder")
    p.add_argument("--config-file", default=os.path.join(REPO_ROOT, "configs", "demo_cpu.yaml"))
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--steps", type=int, default=10, help="profiled steps")
    p.add_argument("--warmup", type=int, default=3, help="steps before profiling")
    p.add_argument("--top", type=int, default=15, help="operators listed")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p.parse_args(argv)


def _ranged(obj, attr, name):
    fn = getattr(obj, attr)

    def wrapper(*a, **k):
        with record_function(name):
            return fn(*a, **k)

    setattr(obj, attr, wrapper)


def main(argv=None):
    args = parse_args(argv)
    cfg = get_cfg()
    add_oxnet_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.MODEL.DEVICE = "cpu"
    register_omni_coco("profile_train", args.json, args.images)
    cfg.DATASETS.TRAIN = ("profile_train",)
    cfg.SOLVER.AMP.ENABLED = args.precision != "float32"
    cfg.OXNET.AMP.DTYPE = args.precision if args.precision != "float32" else "bfloat16"
    cfg.SOLVER.MAX_ITER = args.warmup + args.steps + 1
    cfg.OUTPUT_DIR = tempfile.mkdtemp(prefix="oxnet_profile_")  # metrics.json of the profiled steps
    torch.manual_seed(0)
    trainer = OXnetTrainer(cfg)
    trainer.resume_or_load(resume=False)
    step, model = trainer._trainer, unwrap(trainer.model)

    iterator = step._data_loader_iter

    class _Loader:
        def __next__(self):
            with record_function(PIECES[0]):
                return next(iterator)

    step._data_loader_iter = _Loader()
    _ranged(trainer.teacher_hook, "attach_soft_targets", PIECES[1])
    _ranged(model, "forward", PIECES[2])
    for attr in ("losses", "_weak_losses", "_weak_negative_loss", "_unsupervised_losses"):
        _ranged(model, attr, PIECES[3])
    for attr in ("_nonfinite_terms", "_nonfinite_gradients"):
        _ranged(step, attr, PIECES[4])
    _ranged(step.optimizer, "step", PIECES[6])
    _ranged(step, "_write_metrics", PIECES[7])
    _ranged(trainer.teacher_hook, "update", PIECES[8])
    backward = torch.Tensor.backward

    def ranged_backward(self, *a, **k):
        with record_function(PIECES[5]):
            return backward(self, *a, **k)

    torch.Tensor.backward = ranged_backward

    def one_step():
        trainer.before_step()
        trainer.run_step()
        trainer.after_step()
        trainer.iter += 1

    with EventStorage(0) as trainer.storage:
        trainer.iter = trainer.start_iter = 0
        trainer.before_train()
        for _ in range(args.warmup):
            one_step()
        with profile(activities=[ProfilerActivity.CPU]) as prof, record_function("whole step"):
            for _ in range(args.steps):
                one_step()
    torch.Tensor.backward = backward

    events = {e.key: e for e in prof.key_averages()}
    whole = events["whole step"].cpu_time_total / args.steps / 1e6
    print(
        f"OXnet step profile, {args.precision}, {cfg.MODEL.RESNETS.DEPTH} layers, {cfg.OXNET.INPUT_SIZE} px, "
        f"batch {cfg.OXNET.BATCH.FULL}/{cfg.OXNET.BATCH.WEAK}/{cfg.OXNET.BATCH.UNLABELED}, "
        f"{args.steps} steps after {args.warmup}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}"
    )
    print("| piece | CPU s / step | share |")
    print("|---|---|---|")
    print(f"| whole step | {whole:.3f} | 100 % |")
    for name in PIECES:
        e = events.get(name)
        s = e.cpu_time_total / args.steps / 1e6 if e is not None else 0.0
        print(f"| {name} | {s:.3f} | {100 * s / whole:.1f} % |")
    print(f"\nTop {args.top} operators by self CPU time:")
    print(
        prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=50)
    )
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
