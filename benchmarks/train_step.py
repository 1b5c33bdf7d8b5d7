"""OXnet's training step and inference against detectron2's plain RetinaNet, on the same images.

    OMP_NUM_THREADS=2 python benchmarks/train_step.py [--repeats 9] [--json out.json]
    python benchmarks/train_step.py --config-file configs/oxnet_R101.yaml --size 512 --device cuda

(the second line: paper scale, ResNet-101 and 512 px, on a GPU).

Training: one OXnet step (method ``oxnet``: the mean teacher's forward on the weak views of the weak
and unlabeled images, the student's forward with RetinaNet's losses, DAA, GPA and the soft focal
loss, backward, Adam, the teacher's EMA update) on FULL + WEAK + UNLABELED images, against one step
of ``detectron2.modeling.RetinaNet`` (forward, backward, Adam) on the same images, all of them as
fully labeled images with their boxes. Reported: seconds per student image (step time / images).
Inference: seconds per image of ``model(inputs)`` in eval mode (OXnet also computes its global
scores) on the same images.

Both models are built from the same config (backbone, input size, head, GroupNorm) and start from
the same weights (the RetinaNet's weights are copied into OXnet); detectron2 v0.6's RetinaNetHead
cannot be built with NORM "GN", so both are built by ``oxnet.modeling.meta_arch.retinanet_parts``
(a GroupNorm callable).
Measurements alternate between the models (the order flips every repeat) and the medians are
reported, which keeps a shared machine's load from favouring either side. On a CPU the ratios use
the CPU seconds of this process (other jobs inflate wall time, not these); wall seconds are shown
too. On CUDA the ratios use wall seconds. ``--breakdown`` adds OXNet
steps with the methods of Table 1 (retinanet, sfl, daa, daa_gpa) on the same batch: the differences
give the cost of the teacher with the soft focal loss, of DAA and of GPA.
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

import oxnet  # noqa: F401  # isort: skip  (first: compatibility shims and quiet import-time warnings)
import torch
from detectron2.config import get_cfg
from detectron2.modeling import RetinaNet, build_model
from detectron2.structures import BoxMode
from detectron2.utils.events import EventStorage

import oxnet.modeling  # noqa: F401  (registers OXNet)
from oxnet.config import add_oxnet_config, resolve_device
from oxnet.data.io import write_png
from oxnet.data.mapper import OmniDatasetMapper
from oxnet.data.synthetic import SyntheticCXR
from oxnet.engine import MeanTeacherHook, OXnetTrainer
from oxnet.methods import uses_teacher
from oxnet.modeling.meta_arch import retinanet_parts
from oxnet.modeling.precision import network_autocast, resolve_dtype
from oxnet.testing import REPO_ROOT

BREAKDOWN_METHODS = ("retinanet", "sfl", "daa", "daa_gpa")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config-file", default=os.path.join(REPO_ROOT, "configs", "demo_cpu.yaml"))
    p.add_argument("--depth", type=int, default=None, help="ResNet depth (default: the config's)")
    p.add_argument("--size", type=int, default=256, help="input size (OXNET.INPUT_SIZE)")
    p.add_argument("--full", type=int, default=4)
    p.add_argument("--weak", type=int, default=2)
    p.add_argument("--unlabeled", type=int, default=2)
    p.add_argument(
        "--norm",
        default="GN",
        choices=("GN", "none"),
        help="normalization of the backbone, FPN and head of both models",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=9, help="measurements per model (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    p.add_argument("--breakdown", action="store_true", help="also time OXNet with the Table 1 methods")
    p.add_argument("--profile", action="store_true", help="also time the pieces of OXnet's step")
    p.add_argument(
        "--flops",
        action="store_true",
        help="also count FLOPs of one step and one inference of each model (load-independent)",
    )
    p.add_argument(
        "--precisions",
        default="float32",
        help="comma-separated: float32, bfloat16, float16 (CUDA). Each model also runs in every "
        "precision after the first, interleaved with the others: OXnet through SOLVER.AMP / "
        "OXNET.AMP.INFERENCE (network pass under autocast, losses in float32), plain RetinaNet "
        "with its whole forward under torch.autocast (as detectron2's AMPTrainer); float16 steps "
        "use a gradient scaler",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p.parse_args(argv)


def make_cfg(args, method="oxnet"):
    cfg = get_cfg()
    add_oxnet_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.MODEL.DEVICE = args.device
    resolve_device(cfg)
    if args.depth is not None:
        cfg.MODEL.RESNETS.DEPTH = args.depth
        if args.depth in (18, 34):
            cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    if args.norm == "none":
        cfg.MODEL.RESNETS.NORM = "FrozenBN"  # detectron2's default for ResNets without GroupNorm
        cfg.MODEL.FPN.NORM = ""
        cfg.MODEL.RETINANET.NORM = ""
    cfg.MODEL.WEIGHTS = ""
    cfg.OXNET.METHOD = method
    cfg.OXNET.INPUT_SIZE = args.size
    b = cfg.OXNET.BATCH
    b.FULL, b.WEAK, b.UNLABELED = args.full, args.weak, args.unlabeled
    cfg.OXNET.DATA.CACHE = ""
    return cfg


def build_plain_retinanet(cfg):
    """``detectron2.modeling.RetinaNet`` from the same config (MODEL.META_ARCHITECTURE "RetinaNet")."""
    return RetinaNet(**retinanet_parts(cfg)).to(torch.device(cfg.MODEL.DEVICE))


def make_inputs(cfg, n_full, n_weak, n_unlabeled, seed, folder):
    """Mapped training inputs of synthetic chest X-rays: (OXnet's batch, the same images all "full")."""
    from oxnet.config import PAPER_CLASSES

    size, num_classes = cfg.OXNET.INPUT_SIZE, cfg.MODEL.RETINANET.NUM_CLASSES
    gen = SyntheticCXR(size=size, seed=seed)
    levels = ["full"] * n_full + ["weak"] * n_weak + ["unlabeled"] * n_unlabeled
    dicts = []
    for i, level in enumerate(levels):
        image, boxes = gen.sample(i)
        path = os.path.join(folder, f"{i:03d}.png")
        write_png(path, image)
        annos = [
            {
                "bbox": b,
                "bbox_mode": BoxMode.XYWH_ABS,
                "iscrowd": 0,
                "category_id": PAPER_CLASSES.index(c) % num_classes,
            }
            for c, b in boxes
        ]
        present = {a["category_id"] for a in annos}
        dicts.append(
            {
                "file_name": path,
                "height": size,
                "width": size,
                "image_id": i,
                "supervision": level,
                "annotations": annos,
                "image_labels": {k: int(k in present) for k in range(num_classes)},
            }
        )
    np.random.seed(seed)
    mapper = OmniDatasetMapper(cfg, is_train=True)
    omni = []
    for d in dicts:
        level = d["supervision"]
        x = mapper(
            {
                **d,
                "annotations": d["annotations"] if level == "full" else [],
                "image_labels": d["image_labels"] if level != "unlabeled" else {},
            }
        )
        omni.append(x)
    plain = [mapper({**d, "supervision": "full"}) for d in dicts]
    return omni, plain


class Stepper:
    """One training step of a model on a fixed batch (as ``OmniStepTrainer.run_step`` does it)."""

    def __init__(self, cfg, model, batch, teacher=False, autocast=None, scaler=False):
        self.model, self.batch = model, batch
        self.model.train()
        self.optimizer = OXnetTrainer.build_optimizer(cfg, model)
        self.teacher_hook = MeanTeacherHook(model, cfg.OXNET.TEACHER.EMA_DECAY) if teacher else None
        self.iter = 0
        self.autocast = autocast  # a dtype: the whole forward under torch.autocast (plain RetinaNet)
        self.scaler = torch.amp.GradScaler(model.device.type) if scaler else None

    def __call__(self):
        self.model.train()
        data = [dict(x) for x in self.batch]  # the teacher adds keys
        if self.teacher_hook is not None:
            self.teacher_hook.attach_soft_targets(data)
        with network_autocast(self.model.device, self.autocast):
            loss_dict = self.model(data)
        losses = sum(v.float() for v in loss_dict.values())
        self.optimizer.zero_grad()
        if self.scaler is None:
            losses.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(losses).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.teacher_hook is not None:
            self.teacher_hook.update(self.model, self.iter)
        self.iter += 1


class Inferencer:
    def __init__(self, model, batch, autocast=None):
        self.model, self.autocast = model, autocast
        self.batch = [{k: x[k] for k in ("image", "height", "width")} for x in batch]

    @torch.no_grad()
    def __call__(self):
        self.model.eval()
        with network_autocast(self.model.device, self.autocast):
            self.model(self.batch)


def interleaved(fns, repeats, warmup, device):
    """Wall and CPU seconds (this process, all threads) of each callable, measured alternately
    (order flipped every repeat): {"wall": {name: [s, ...]}, "cpu": {...}}."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {"wall": {name: [] for name in fns}, "cpu": {name: [] for name in fns}}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            sync()
            wall, cpu = time.perf_counter(), time.process_time()
            fns[name]()
            sync()
            times["wall"][name].append(time.perf_counter() - wall)
            times["cpu"][name].append(time.process_time() - cpu)
    return times


def paired_ratio(a, b):
    return statistics.median(x / y for x, y in zip(a, b))


def profile_pieces(stepper, steps, device):
    """Median seconds per step of the pieces of an OXnet step (CPU seconds of this process on a CPU,
    wall seconds on CUDA): the teacher's forward, the student's forward and, inside it, the network,
    DAA (global head and attention), GPA with the global BCE, the soft focal loss and RetinaNet's
    losses; backward, optimizer, EMA update. The forward pieces are timed by wrapping the model's
    methods (backward cannot be split this way: ``--breakdown`` gives the forward + backward cost of
    each component)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    clock = time.perf_counter if device.startswith("cuda") else time.process_time
    model, hook = stepper.model, stepper.teacher_hook
    times = {}

    def timed(obj, attr, name):
        fn = getattr(obj, attr, None)
        if fn is None:
            return

        def wrapper(*a, **k):
            sync()
            start = clock()
            out = fn(*a, **k)
            sync()
            times[name] = times.get(name, 0.0) + clock() - start
            return out

        setattr(obj, attr, wrapper)

    timed(model, "_run_network", "  network (backbone, FPN, head)")
    timed(model, "_global_logits", "  DAA: global head + attention")
    timed(model, "_weak_losses", "  global BCE + GPA")
    timed(model, "_weak_negative_loss", "  weak negatives (focal loss)")
    timed(model, "_unsupervised_losses", "  soft focal loss")
    timed(model, "losses", "  RetinaNet losses")
    timed(model, "label_anchors", "  RetinaNet anchor matching")
    pieces = {}
    for _ in range(steps):
        times.clear()
        data = [dict(x) for x in stepper.batch]
        model.train()
        sync()
        t0 = clock()
        hook.attach_soft_targets(data)
        sync()
        t1 = clock()
        teacher_network = times.pop("  network (backbone, FPN, head)", 0.0)
        loss_dict = model(data)
        losses = sum(loss_dict.values())
        sync()
        t2 = clock()
        stepper.optimizer.zero_grad()
        losses.backward()
        sync()
        t3 = clock()
        stepper.optimizer.step()
        sync()
        t4 = clock()
        hook.update(model, stepper.iter)
        stepper.iter += 1
        sync()
        t5 = clock()
        row = {
            "whole step": t5 - t0,
            "teacher forward": t1 - t0,
            "student forward": t2 - t1,
            **times,
            "backward": t3 - t2,
            "optimizer step": t4 - t3,
            "teacher EMA update": t5 - t4,
        }
        row["teacher forward"] = max(row["teacher forward"], teacher_network)
        for k, v in row.items():
            pieces.setdefault(k, []).append(v)
    for attr in (
        "_run_network",
        "_global_logits",
        "_weak_losses",
        "_weak_negative_loss",
        "_unsupervised_losses",
        "losses",
        "label_anchors",
    ):
        model.__dict__.pop(attr, None)
    return {k: statistics.median(v) for k, v in pieces.items()}


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    cfg = make_cfg(args)
    device = cfg.MODEL.DEVICE
    n_student = args.full + args.weak + args.unlabeled
    with tempfile.TemporaryDirectory() as folder:
        omni_batch, plain_batch = make_inputs(cfg, args.full, args.weak, args.unlabeled, args.seed, folder)

    retina = build_plain_retinanet(cfg)
    models = {"oxnet": build_model(cfg)}
    if args.breakdown:
        for method in BREAKDOWN_METHODS:
            models[method] = build_model(make_cfg(args, method))
    shared = retina.state_dict()
    for m in models.values():  # the same starting weights everywhere
        missing = set(shared) - set(m.state_dict())
        assert not missing, f"OXNet lacks RetinaNet parameters {sorted(missing)[:5]}"
        m.load_state_dict(shared, strict=False)

    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not precisions or precisions[0] != "float32":
        precisions = ["float32"] + [p for p in precisions if p != "float32"]
    variants = {}  # "oxnet@bfloat16" -> (OXNet copy, dtype), "retinanet@bfloat16" -> (RetinaNet copy, dtype)
    for p in precisions[1:]:
        dtype = resolve_dtype(p, device, "--precisions")
        ox = build_model(cfg)
        ox.load_state_dict(shared, strict=False)
        ox.amp_dtype = ox.inference_dtype = dtype
        rn = build_plain_retinanet(cfg)
        rn.load_state_dict(shared)
        variants[f"oxnet@{p}"], variants[f"retinanet@{p}"] = (ox, dtype), (rn, dtype)

    load = os.getloadavg()[0]
    print(f"Inference: {args.repeats} alternating repeats of {n_student} images ...", file=sys.stderr)
    inferencers = {
        "oxnet": Inferencer(models["oxnet"], plain_batch),
        "retinanet": Inferencer(retina, plain_batch),
    }
    for name, (m, dtype) in variants.items():  # OXNet applies its own inference dtype
        inferencers[name] = Inferencer(m, plain_batch, None if name.startswith("oxnet") else dtype)
    infer = interleaved(inferencers, args.repeats, args.warmup, device)
    for m in list(models.values()) + [retina] + [m for m, _ in variants.values()]:  # weights unchanged
        m.load_state_dict(shared, strict=False)
    steppers = {
        "oxnet": Stepper(cfg, models["oxnet"], omni_batch, teacher=True),
        "retinanet": Stepper(cfg, retina, plain_batch),
    }
    for name, (m, dtype) in variants.items():
        is_ox = name.startswith("oxnet")
        steppers[name] = Stepper(
            cfg,
            m,
            omni_batch if is_ox else plain_batch,
            teacher=is_ox,
            autocast=None if is_ox else dtype,
            scaler=dtype is torch.float16,
        )
    for method in BREAKDOWN_METHODS if args.breakdown else ():
        c = make_cfg(args, method)
        steppers[f"OXNet {method}"] = Stepper(c, models[method], omni_batch, teacher=uses_teacher(method))
    print(f"Training: {args.repeats} alternating repeats of {len(steppers)} models ...", file=sys.stderr)
    with EventStorage():  # RetinaNet's losses log scalars
        train = interleaved(steppers, args.repeats, args.warmup, device)

    # On a shared CPU, CPU seconds of this process are the robust measure (other jobs inflate wall
    # time, not our CPU time); on a GPU, wall time is what counts.
    primary = "wall" if device.startswith("cuda") else "cpu"
    result = {
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}",
        "load_average_before": load,
        "settings": {
            "depth": cfg.MODEL.RESNETS.DEPTH,
            "size": args.size,
            "norm": args.norm,
            "fpn_channels": cfg.MODEL.FPN.OUT_CHANNELS,
            "head_convs": cfg.MODEL.RETINANET.NUM_CONVS,
            "full": args.full,
            "weak": args.weak,
            "unlabeled": args.unlabeled,
            "repeats": args.repeats,
            "precisions": precisions,
        },
        "primary_clock": primary,
        "raw_step_s": train,
        "raw_infer_batch_s": infer,
    }
    for clk in ("cpu", "wall"):
        result[f"train_s_per_student_image_{clk}"] = {
            k: statistics.median(v) / n_student for k, v in train[clk].items()
        }
        result[f"infer_s_per_image_{clk}"] = {
            k: statistics.median(v) / n_student for k, v in infer[clk].items()
        }
        for what, t in (("train", train[clk]), ("infer", infer[clk])):
            result[f"{what}_ratio_{clk}"] = statistics.median(t["oxnet"]) / statistics.median(t["retinanet"])
            # ratios of measurements taken next to each other
            result[f"{what}_ratio_{clk}_paired"] = paired_ratio(t["oxnet"], t["retinanet"])
            # speed-up of each model in each precision over itself in float32 (paired: same repeat)
            for name in variants:
                base = name.split("@")[0]
                result.setdefault(f"{what}_speedup_{clk}_paired", {})[name] = paired_ratio(t[base], t[name])
    if device.startswith("cuda"):  # peak GPU memory of one step of each model, on top of what is held
        result["cuda_step_peak_gib"] = {}
        with EventStorage():
            for name in ["oxnet", "retinanet", *variants]:
                torch.cuda.synchronize()
                held = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                steppers[name]()
                torch.cuda.synchronize()
                result["cuda_step_peak_gib"][name] = (torch.cuda.max_memory_allocated() - held) / 2**30
        result["cuda_device"] = torch.cuda.get_device_name()
    if args.flops:
        from torch.utils.flop_counter import FlopCounterMode

        flops = {}
        with EventStorage():
            for what, fns in (
                ("train", {k: steppers[k] for k in ("oxnet", "retinanet")}),
                (
                    "infer",
                    {
                        "oxnet": Inferencer(models["oxnet"], plain_batch),
                        "retinanet": Inferencer(retina, plain_batch),
                    },
                ),
            ):
                for name, fn in fns.items():
                    with FlopCounterMode(display=False) as counter:
                        fn()
                    flops[f"{what}_{name}"] = counter.get_total_flops()
        result["flops_per_image"] = {k: v / n_student for k, v in flops.items()}
        result["train_ratio_flops"] = flops["train_oxnet"] / flops["train_retinanet"]
        result["infer_ratio_flops"] = flops["infer_oxnet"] / flops["infer_retinanet"]
    if args.profile:
        print(f"Profiling the pieces of {args.repeats} OXnet steps ...", file=sys.stderr)
        with EventStorage():
            result["oxnet_step_pieces_s"] = profile_pieces(steppers["oxnet"], args.repeats, device)

    s = result["settings"]
    print(
        f"\nOXnet vs detectron2 RetinaNet: R{s['depth']}, {args.size} px, norm {args.norm}, FPN "
        f"{s['fpn_channels']} ch, {s['head_convs']} head convs; OXnet batch {args.full} full + {args.weak} "
        f"weak + {args.unlabeled} unlabeled, RetinaNet the same {n_student} images as full; medians of "
        f"{args.repeats} alternating repeats"
    )
    print(f"{result['machine']}; {result['date']}; load average before {load:.2f}")
    print(
        f"| {'measurement':42s} | {'CPU s/img':>9s} | {'ratio':>6s} | {'wall s/img':>10s} | {'ratio':>6s} |"
    )
    print(f"|{'-' * 44}|{'-' * 11}|{'-' * 8}|{'-' * 12}|{'-' * 8}|")
    labels = {
        "train step": {"oxnet": "OXnet (teacher, DAA, GPA, SFL)", "retinanet": "RetinaNet"},
        "inference": {"oxnet": "OXnet (+ global scores)", "retinanet": "RetinaNet"},
    }
    for what, title in (("train_s_per_student_image", "train step"), ("infer_s_per_image", "inference")):
        cpu, wall = result[f"{what}_cpu"], result[f"{what}_wall"]
        for name in cpu:
            label = f"{title}, {labels[title].get(name, name)}"
            print(
                f"| {label:42s} | {cpu[name]:9.4f} | {cpu[name] / cpu['retinanet']:5.2f}x | "
                f"{wall[name]:10.4f} | {wall[name] / wall['retinanet']:5.2f}x |"
            )
    for clk in ("cpu", "wall"):
        tr, ir = result[f"train_ratio_{clk}_paired"], result[f"infer_ratio_{clk}_paired"]
        print(f"Median of the per-repeat ratios ({clk}): train step {tr:.2f}x, inference {ir:.2f}x")
    if variants:
        clk = primary
        print(
            f"\nPrecision ({clk} seconds per image; speed-up: median over repeats of float32 / this, paired)"
        )
        print("| model | precision | train step s/img | speed-up | inference s/img | speed-up |")
        print("|---|---|---|---|---|---|")
        train_s, infer_s = result[f"train_s_per_student_image_{clk}"], result[f"infer_s_per_image_{clk}"]
        for base in ("oxnet", "retinanet"):
            print(f"| {base} | float32 | {train_s[base]:.4f} | 1.00x | {infer_s[base]:.4f} | 1.00x |")
            for p in precisions[1:]:
                name = f"{base}@{p}"
                print(
                    f"| {base} | {p} | {train_s[name]:.4f} | "
                    f"{result[f'train_speedup_{clk}_paired'][name]:.2f}x | {infer_s[name]:.4f} | "
                    f"{result[f'infer_speedup_{clk}_paired'][name]:.2f}x |"
                )
    if args.flops:
        f = result["flops_per_image"]
        print(
            f"GFLOPs per image: train step OXnet {f['train_oxnet'] / 1e9:.2f}, RetinaNet "
            f"{f['train_retinanet'] / 1e9:.2f} ({result['train_ratio_flops']:.3f}x); inference OXnet "
            f"{f['infer_oxnet'] / 1e9:.3f}, RetinaNet {f['infer_retinanet'] / 1e9:.3f} "
            f"({result['infer_ratio_flops']:.4f}x)"
        )
    if "cuda_step_peak_gib" in result:
        m = result["cuda_step_peak_gib"]
        print(
            f"{result['cuda_device']}: peak memory of one step beyond the weights and optimizer state: "
            f"OXnet {m['oxnet']:.2f} GiB, RetinaNet {m['retinanet']:.2f} GiB"
        )
    if args.profile:
        pieces = result["oxnet_step_pieces_s"]
        print(
            f"OXnet step pieces ({'wall' if primary == 'wall' else 'CPU'} s per step, median of "
            f"{args.repeats} steps; the indented pieces are parts of the student's forward):"
        )
        for name, t in pieces.items():
            print(f"  {name:40s} {t:8.3f} s  {100 * t / pieces['whole step']:5.1f}%")
    tr, ir = result[f"train_ratio_{primary}"], result[f"infer_ratio_{primary}"]
    print(
        f"Targets ({primary} time): train step <= 1.3x ({tr:.2f}x: {'met' if tr <= 1.3 else 'MISSED'}), "
        f"inference <= 1.05x ({ir:.2f}x: {'met' if ir <= 1.05 else 'MISSED'})"
    )
    if args.json:
        from oxnet.utils.atomic import atomic_write_json

        atomic_write_json(args.json, result, indent=1)
    return result


if __name__ == "__main__":
    main()
