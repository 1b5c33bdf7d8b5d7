"""Train and evaluate every (row, seed) of a table with identical data, schedule and evaluation.

Each run trains in ``OUT/runs/<table>/<row>/seed<S>_iters<K>_<config>`` (resumable from its periodic
checkpoints), is evaluated on the test set with :class:`oxnet.evaluation.OXnetEvaluator`, and its
metrics are added to ``OUT/results.json`` (written atomically, under a lock: several processes may
share one OUT, e.g. one ``--shard`` per GPU) with the fingerprint of its full config: ``metrics`` (AP
in percent), ``normals`` (test images with and without lesions, false alarms per normal image at
50/70/80 % lesion sensitivity, :mod:`oxnet.evaluation.normals`) and, for data with an image-level
test set, ``image_auroc`` (percent, from the top box score and from the global head). Finished runs
are skipped when the command is repeated, unless their config changed since (another spec, other
defaults): those are run again and the stale result is not shown.
"""

import glob
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass

from oxnet.methods import method_components
from oxnet.utils.atomic import atomic_write_json, locked

from .cleanup import prune_run
from .presets import TABLE1_EXTRA_ROWS, TABLE1_ROWS

__all__ = ["Row", "table1_rows", "table2_rows", "run_table", "config_file"]

logger = logging.getLogger("oxnet.bench")

METRIC_KEYS = ("mAP", "AP40", "AP75", "APs", "APm", "APl")
CONFIG_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs", "table1"
)


@dataclass(frozen=True)
class Row:
    """One table row: a method trained on ``full`` / ``weak`` / ``unlabeled`` training images."""

    method: str
    full: int
    weak: int
    unlabeled: int

    @property
    def key(self):
        return f"{self.method}_f{self.full}_w{self.weak}_u{self.unlabeled}"


def config_file(method):
    """The row's config file ``configs/table1/<method>.yaml``."""
    path = os.path.join(CONFIG_DIR, f"{method}.yaml")
    if not os.path.exists(path):
        raise ValueError(f"no config file {path} for method {method!r}")
    return path


def _count(value, n):
    return int(round(value * n)) if isinstance(value, float) and value <= 1 else int(value)


def uses_weak_images(method):
    """Whether a method learns from image labels: a global head, or weak negatives (RetinaNet trained on
    the weak images' absent classes)."""
    parts = method_components(method)
    return bool(parts["global_head"] or parts.get("weak_negatives"))


def table1_rows(spec, n_train, methods=None, n_extra=0):
    """Table 1: the same box-labeled images for every row; the rest, and the ``n_extra`` real weakly
    labeled images, are weakly labeled for methods that use image labels, unlabeled for methods with
    only an unsupervised loss, unused by RetinaNet. ``methods``: default the spec's ``table1.rows`` or
    :data:`TABLE1_ROWS`."""
    if methods is None:
        methods = spec["table1"].get("rows") or TABLE1_ROWS
    full = _count(spec["table1"]["full"], n_train)
    rest = n_train - full + n_extra
    rows = []
    for m in methods:
        parts = method_components(m)
        weak = rest if uses_weak_images(m) else 0
        unlabeled = rest if parts["unsup"] and not weak else 0
        rows.append(Row(m, full, weak, unlabeled))
    return rows


def table2_rows(spec, n_train):
    """Table 2: the paper's supervision mixes scaled to the training set (or the spec's); RetinaNet
    for box-only settings and OXnet for the others unless the spec names the methods. ``n_train``
    counts the real weak images too (they fill the weak, then the unlabeled counts)."""
    from oxnet.data.omni import table2_settings

    settings = spec["table2"].get("settings") or table2_settings(n_train)
    methods = spec["table2"].get("methods") or [
        "retinanet" if w == 0 and u == 0 else "oxnet" for _, w, u in settings
    ]
    if len(methods) != len(settings):
        raise ValueError(f"table2: {len(methods)} methods for {len(settings)} settings")
    return [Row(m, *(int(c) for c in s)) for m, s in zip(methods, settings)]


def add_finer_anchor_level(cfg):
    """A row whose config adds P2 (six head levels, the authors' P2-P7) on a spec that sets five
    anchor sizes (P3-P7) gets half the P3 sizes on P2, as the authors' 16 px anchors are half of
    RetinaNet's 32."""
    sizes = [list(s) for s in cfg.MODEL.ANCHOR_GENERATOR.SIZES]
    if len(cfg.MODEL.RETINANET.IN_FEATURES) == len(sizes) + 1:
        cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[round(v / 2, 2) for v in sizes[0]]] + sizes


def build_cfg(spec, row, seed, iters, train_name, test_name, output_dir, image_test_name=None):
    """The config of one run: the row's config file, then the spec's ``opts``, then the run's data
    (and its classes), seed and schedule (steps at 75% and 90%, warm-up over the first 10%, at
    most 50 iterations). With the spec's ``eval_period`` the test set (and the image-level test set
    ``image_test_name``, when there is one) is also evaluated during training."""
    from detectron2.config import get_cfg
    from detectron2.data import MetadataCatalog

    from oxnet.config import add_oxnet_config

    cfg = get_cfg()
    add_oxnet_config(cfg)
    cfg.merge_from_file(config_file(row.method))
    cfg.merge_from_list(list(spec.get("opts", [])))
    add_finer_anchor_level(cfg)
    cfg.DATASETS.TRAIN = (train_name,)
    classes = MetadataCatalog.get(test_name).thing_classes
    cfg.MODEL.RETINANET.NUM_CLASSES = len(classes)
    cfg.OXNET.CLASS_NAMES = tuple(classes)
    cfg.SEED = seed
    cfg.SOLVER.MAX_ITER = iters
    cfg.SOLVER.STEPS = tuple(sorted({s for s in (int(0.75 * iters), int(0.9 * iters)) if 0 < s < iters}))
    cfg.SOLVER.WARMUP_ITERS = min(50, iters // 10)
    cfg.SOLVER.CHECKPOINT_PERIOD = max(iters // 4, 1)
    cfg.OXNET.RAMPUP.BURN_IN_ITERS = int(spec.get("burn_in_fraction", 0.0) * iters)
    cfg.OXNET.RAMPUP.ITERS = int(spec.get("rampup_fraction", 0.0) * iters)
    # the test set is evaluated after training by train_and_evaluate; with the spec's eval_period also
    # during training (a learning curve in the run's metrics.json)
    period = _count(spec.get("eval_period", 0), iters)
    tests = (test_name,) + ((image_test_name,) if image_test_name else ())
    cfg.DATASETS.TEST = tests if period > 0 else ()
    cfg.TEST.EVAL_PERIOD = period
    cfg.OXNET.SOLVER.PLATEAU_PATIENCE = 0  # needs periodic validation; the fixed steps replace it
    cfg.OUTPUT_DIR = output_dir
    from oxnet.config import resolve_device
    from oxnet.modeling.precision import dtype_name, resolve_dtype

    resolve_device(cfg)
    # the spec's precision, resolved on this machine: the fingerprint sees the dtype that trains
    dtype = resolve_dtype(spec.get("precision", "float32"), cfg.MODEL.DEVICE, "the bench's precision")
    cfg.SOLVER.AMP.ENABLED = dtype is not None
    cfg.OXNET.AMP.DTYPE = dtype_name(dtype) if dtype is not None else "bfloat16"
    cfg.freeze()
    return cfg


def _pct(v):
    return None if v is None else round(100.0 * float(v), 4)


def normals_record(metrics):
    """What results.json keeps of ``metrics["normals"]`` (:mod:`oxnet.evaluation.normals`)."""
    n = metrics["normals"]
    return {
        k: n[k]
        for k in (
            "n_normal_images",
            "n_lesion_images",
            "n_lesions",
            "fp_per_normal_image_at_sensitivity",
            "normal_images_flagged_at_sensitivity",
            "score_threshold_at_sensitivity",
        )
    }


def image_auroc_record(metrics):
    """Image-level AUROC (percent, mean over classes) from the top box score ("box") and the global
    head ("global", None without one), with the image count and each class's positive and negative
    images."""
    return {
        "box": _pct(metrics["auroc"]["local"]),
        "global": _pct(metrics["auroc"]["global"]),
        "images": metrics["settings"]["num_images"],
        "labels": {
            name: {"positive": r["num_positive_images"], "negative": r["num_negative_images"]}
            for name, r in metrics["per_class"].items()
        },
    }


def train_and_evaluate(cfg, test_name, keep_weights=False, image_test_name=None):
    """Train (resuming from OUTPUT_DIR when it has a checkpoint), evaluate the student on the
    dataset ``test_name`` and return its bbox metrics in percent, plus ``normals``
    (:func:`normals_record`) and, with ``image_test_name`` (an image-level test set),
    ``image_auroc`` (:func:`image_auroc_record`)."""
    from detectron2.evaluation import inference_on_dataset
    from detectron2.utils.env import seed_all_rng

    from oxnet.engine import OXnetTrainer
    from oxnet.engine.hooks import unwrap
    from oxnet.evaluation import OXnetEvaluator

    seed_all_rng(cfg.SEED)
    trainer = OXnetTrainer(cfg)
    trainer.resume_or_load(resume=True)
    if trainer.start_iter < cfg.SOLVER.MAX_ITER:
        trainer.train()
    model = unwrap(trainer.model)
    evaluator = OXnetEvaluator(
        test_name, output_dir=os.path.join(cfg.OUTPUT_DIR, "inference"), write_report=False, distributed=False
    )
    results = inference_on_dataset(model, OXnetTrainer.build_test_loader(cfg, test_name), evaluator)
    out = {k: float(results["bbox"][k]) for k in METRIC_KEYS}
    if evaluator.result is not None:
        out["normals"] = normals_record(evaluator.result.metrics)
    if image_test_name:
        image_evaluator = OXnetEvaluator(
            image_test_name,
            write_report=False,
            distributed=False,
            output_dir=os.path.join(cfg.OUTPUT_DIR, "inference_image"),
        )
        inference_on_dataset(model, OXnetTrainer.build_test_loader(cfg, image_test_name), image_evaluator)
        if image_evaluator.result is not None:
            out["image_auroc"] = image_auroc_record(image_evaluator.result.metrics)
    prune_run(cfg, keep_weights)
    return out


CURVE_KEYS = {
    "mAP": "bbox/mAP",
    "fp_per_normal@70": "normals/fp@0.7",
    "image_auroc_box": "auroc/local",
    "image_auroc_global": "auroc/global",
}


def learning_curve(folder, max_iter, test_name=None, image_test_name=None):
    """{iterations done: {"mAP", "fp_per_normal@70", "image_auroc_box", "image_auroc_global"}} of the
    evaluations during training, from detectron2's log ``metrics.json`` (its EvalHook logs an
    evaluation at the 0-based iteration that ends with it, and the last one, after training, at
    ``max_iter``). mAP and false alarms per normal image come from the test set, the image AUROCs
    from the image-level test set when there is one (else from the test set); with two test sets
    detectron2 prefixes each key with its dataset name. Values that were not logged are left out."""
    path = os.path.join(folder, "metrics.json")
    curve = {}
    if not os.path.exists(path):
        return curve
    sources = {
        "mAP": test_name,
        "fp_per_normal@70": test_name,
        "image_auroc_box": image_test_name or test_name,
        "image_auroc_global": image_test_name or test_name,
    }
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interruption
                continue
            point = {}
            for name, key in CURVE_KEYS.items():
                for k in ((f"{sources[name]}/{key}",) if sources[name] else ()) + (key,):
                    v = rec.get(k)
                    if isinstance(v, (int, float)) and v == v:  # NaN: not defined at that point
                        point[name] = round(float(v), 3)
                        break
            if "mAP" in point:
                curve[min(int(rec["iteration"]) + 1, max_iter)] = point
    return curve


def device_name(device):
    """What a run trained on: the GPU's name for a CUDA device, else the CPU, its core count and the
    threads PyTorch used (the thread count changes the order of floating-point sums, so the same seed
    gives bitwise identical runs only with the same count)."""
    import platform

    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    threads = torch.get_num_threads()
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, {threads} thread{'s' * (threads != 1)}"


def config_fingerprint(cfg, root=None):
    """A short hash of everything that defines a run: the config without its output folder (and with
    MODEL.WEIGHTS relative to ``root``, so that a moved benchmark folder keeps its results), and
    without the options of :data:`oxnet.config.NEUTRAL_OPTIONS` that have their neutral value."""
    from oxnet.config import NEUTRAL_OPTIONS

    cfg = cfg.clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = ""
    for name, neutral in NEUTRAL_OPTIONS.items():
        *parents, key = name.split(".")
        node = cfg
        for part in parents:
            node = node.get(part, {})
        if key in node and (tuple(node[key]) if isinstance(neutral, tuple) else node[key]) == neutral:
            del node[key]
        parent = cfg.get(parents[0], {}) if len(parents) > 1 else {}
        if len(parents) == 2 and parents[1] in parent and not parent[parents[1]]:
            del parent[parents[1]]  # a group of neutral options only (OXNET.BACKBONE) leaves no trace
    if root and cfg.MODEL.WEIGHTS:
        cfg.MODEL.WEIGHTS = os.path.relpath(cfg.MODEL.WEIGHTS, root)
    return hashlib.sha1(cfg.dump(sort_keys=True).encode()).hexdigest()[:10]


def run_dir(out_dir, table, row, seed, iters, fingerprint):
    """The folder of one run: a run whose config changed gets a new folder, not the old checkpoints."""
    return os.path.join(out_dir, "runs", table, row.key, f"seed{seed}_iters{iters}_{fingerprint}")


def _drop_weights(folder, keep=()):
    for path in glob.glob(os.path.join(folder, "*.pth")):
        if os.path.basename(path) not in keep:
            os.remove(path)
    last = os.path.join(folder, "last_checkpoint")
    if os.path.exists(last):
        os.remove(last)


def load_results(out_dir):
    path = os.path.join(out_dir, "results.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def select_rows(table, spec, data, rows=None):
    """``(rows to run, rows the table shows)``: every row of ``table`` (Table 1: the spec's rows;
    Table 2: its settings), or the ``rows`` asked for (Table 1: method names, which the table then
    lists too; Table 2: 1-based setting numbers). Fails early on an unknown row or a missing config."""
    if table == "table1":
        all_rows = shown = table1_rows(spec, data.n_train, n_extra=data.n_extra)
        if rows:
            unknown = [r for r in rows if r not in TABLE1_ROWS + TABLE1_EXTRA_ROWS]
            if unknown:
                raise ValueError(
                    f"unknown table1 rows {unknown}; choose from {', '.join(TABLE1_ROWS + TABLE1_EXTRA_ROWS)}"
                )
            listed = [r.method for r in shown]
            shown = shown + table1_rows(
                spec, data.n_train, [r for r in rows if r not in listed], n_extra=data.n_extra
            )
            all_rows = [r for r in shown if r.method in rows]
    elif table == "table2":
        all_rows = shown = table2_rows(spec, data.n_train + data.n_extra)
        if rows:
            bad = [r for r in rows if not (str(r).isdigit() and 1 <= int(r) <= len(all_rows))]
            if bad:
                raise ValueError(f"table2 --rows are setting numbers 1..{len(all_rows)}, got {bad}")
            all_rows = [all_rows[int(r) - 1] for r in rows]
    else:
        raise ValueError(f"unknown table {table!r}; choose table1 or table2")
    for row in all_rows:
        config_file(row.method)  # fail early on a missing config
    return all_rows, shown


def run_configs(spec, data, rows, seeds, iters, warm, out_dir, key):
    """The frozen config of every (row, seed), as ``({key(row, seed): cfg}, inits)``. With a warm
    start (``warm`` iterations) each run starts from its RetinaNet's weights: ``inits`` maps
    ``(stage method, boxes, seed)`` (:func:`warm_start_key`) to that RetinaNet's ``(row, cfg,
    fingerprint)``, shared by the rows with the same boxes and RetinaNet stage (the method's
    ``warm_start``: "retinanet", or "retinanet_authors" for the authors' recipe); the runs add the
    spec's ``warm_start.opts``."""
    test_name, image_test_name = data.test_dataset(), data.image_test_dataset()
    inits, cfgs = {}, {}
    for row in rows:
        for s in range(seeds):
            mix = data.mix(row.full, row.weak, row.unlabeled)
            cfg = build_cfg(spec, row, s, iters, mix, test_name, "", image_test_name)
            if warm:
                init_key = warm_start_key(row, s)
                if init_key not in inits:  # rows with the same boxes and stage share their warm start
                    init_row = Row(init_key[0], row.full, 0, 0)
                    init_mix = data.mix(row.full, 0, 0)
                    init_cfg = build_cfg(spec, init_row, s, warm, init_mix, test_name, "", image_test_name)
                    init_fp = config_fingerprint(init_cfg)
                    init_cfg.defrost()
                    init_cfg.OUTPUT_DIR = run_dir(out_dir, "init", init_row, s, warm, init_fp)
                    init_cfg.freeze()
                    inits[init_key] = (init_row, init_cfg, init_fp)
                init_cfg = inits[init_key][1]
                cfg.defrost()
                cfg.merge_from_list(list(spec["warm_start"].get("opts", [])))
                cfg.MODEL.WEIGHTS = os.path.join(init_cfg.OUTPUT_DIR, "model_final.pth")
                cfg.freeze()
            cfgs[key(row, s)] = cfg
    return cfgs, inits


def warm_start_key(row, seed):
    """``(RetinaNet stage method, boxes, seed)``: which warm start a row's run starts from."""
    from oxnet.methods import get_method

    return (get_method(row.method).warm_start, row.full, seed)


def shard_jobs(jobs, shard, warm):
    """The (row, seed) jobs of shard ``(index, count)``: every count-th group of jobs from the
    index-th, where jobs sharing a warm start (same boxes and seed) form one group."""
    shard_index, shards = shard
    if shards <= 1:
        return jobs
    group = lambda row, s: warm_start_key(row, s) if warm else (row, s)  # noqa: E731
    groups = list(dict.fromkeys(group(*job) for job in jobs))
    mine = {g for i, g in enumerate(groups) if i % shards == shard_index}
    return [job for job in jobs if group(*job) in mine]


def run_table(
    table,
    spec,
    out_dir,
    seeds=None,
    iters=None,
    rows=None,
    keep_weights=False,
    progress=True,
    train=True,
    shard=(0, 1),
):
    """Run every (row, seed) of ``table`` ("table1" or "table2"), or of the ``rows`` given, not yet in
    ``OUT/results.json`` (none with ``train=False``) and write ``OUT/<table>.md`` with the ``rows``
    given, or every row of the table (those not run yet marked "pending"); return the path of the
    table.

    With a warm start (spec ``"warm_start": {"iters": K0, "opts": [...]}``) every run starts from the
    weights of RetinaNet trained K0 iterations on the run's box-labeled images with the same seed
    (trained once, kept in ``runs/init``, its test metrics under ``init/...`` in results.json), then
    trains its own iterations with ``opts`` on top of the spec's; the table goes to
    ``OUT/<table>_warm<K0>.md``.

    ``shard=(i, n)`` trains only every n-th run starting at the i-th (runs sharing a warm start stay
    together), so that n processes, e.g. one per GPU, share the work and one OUT. The split depends on
    the table, rows and seeds alone, not on what is done: a shard started again trains the same runs."""
    from tqdm import tqdm

    from .data import prepare_data
    from .tables import result_key, warm_start_iters, write_table

    shard_index, shards = shard
    if not 0 <= shard_index < shards:
        raise ValueError(f"shard {shard_index}/{shards}: need 0 <= index < count")
    seeds = int(seeds if seeds is not None else spec["seeds"])
    iters = int(iters if iters is not None else spec["iters"])
    if seeds < 1 or iters < 1:
        raise ValueError(f"--seeds and --iters must be >= 1, got {seeds} and {iters}")
    data = prepare_data(spec, out_dir)  # creates out_dir
    all_rows, shown = select_rows(table, spec, data, rows)
    test_name = data.test_dataset()
    image_test_name = data.image_test_dataset()
    warm = warm_start_iters(spec)
    key = lambda row, s: result_key(table, row, s, iters, warm)  # noqa: E731
    cfgs, inits = run_configs(spec, data, shown, seeds, iters, warm, out_dir, key)
    fingerprints = {k: config_fingerprint(c, root=out_dir) for k, c in cfgs.items()}

    def ensure_init(init_key):  # train the warm start's RetinaNet unless its weights are there
        init_row, init_cfg, fp = inits[init_key]
        s = init_key[2]
        k = result_key("init", init_row, s, warm)
        weights = os.path.join(init_cfg.OUTPUT_DIR, "model_final.pth")
        if load_results(out_dir).get(k, {}).get("config") == fp and os.path.exists(weights):
            return
        train_and_record(k, "init", init_row, s, warm, init_cfg, fp, keep_weights=True)
        _drop_weights(init_cfg.OUTPUT_DIR, keep=("model_final.pth",))

    def train_and_record(k, table_name, row, s, n_iters, cfg, fp, keep_weights, **extra):
        start = time.perf_counter()
        image_test = {"image_test_name": image_test_name} if image_test_name else {}
        out = train_and_evaluate(cfg, test_name, keep_weights, **image_test)
        seconds = round(time.perf_counter() - start, 1)
        metrics = {m: out[m] for m in METRIC_KEYS}
        record = {
            "table": table_name,
            "method": row.method,
            "full": row.full,
            "weak": row.weak,
            "unlabeled": row.unlabeled,
            "seed": s,
            "iters": n_iters,
            **extra,
            "config": fp,
            "seconds": seconds,
            "device": device_name(cfg.MODEL.DEVICE),
            "precision": cfg.OXNET.AMP.DTYPE if cfg.SOLVER.AMP.ENABLED else "float32",
            "metrics": metrics,
        }
        record.update({m: out[m] for m in ("normals", "image_auroc") if out.get(m) is not None})
        curve = learning_curve(cfg.OUTPUT_DIR, cfg.SOLVER.MAX_ITER, test_name, image_test_name)
        if curve:
            record["curve"] = curve
        path = os.path.join(out_dir, "results.json")
        with locked(path):  # other processes may add runs meanwhile
            results = load_results(out_dir)
            results[k] = record
            atomic_write_json(path, results, indent=2)
        logger.info(f"{k}: mAP {metrics['mAP']:.2f} in {seconds:.0f} s")

    def current(results):  # the results of runs with today's configs
        return {
            k: r for k, r in results.items() if k not in fingerprints or r.get("config") == fingerprints[k]
        }

    results = load_results(out_dir)
    done = current(results)
    jobs = [(row, s) for row in all_rows for s in range(seeds)]
    total = len(jobs)
    jobs = shard_jobs(jobs, shard, warm)
    missing = [(row, s) for row, s in jobs if key(row, s) not in done]
    todo = missing if train else []
    stale = [key(row, s) for row, s in todo if key(row, s) in results]
    if stale:
        logger.warning(
            f"{len(stale)} finished runs had another config and are run again: "
            f"{', '.join(stale[:3])}{' ...' if len(stale) > 3 else ''}"
        )
    logger.info(
        f"{table}: {total} runs ({len(all_rows)} rows x {seeds} seeds, {iters} iterations)"
        + (f", {len(jobs)} in shard {shard_index}/{shards}" if shards > 1 else "")
        + f", {len(jobs) - len(missing)} already done"
        + ("" if train else " (report only: nothing is trained)")
    )
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=table, disable=not progress)
    for row, s in todo:
        bar.set_postfix_str(f"{row.method} {row.full}/{row.weak}/{row.unlabeled} seed {s}")
        fp = fingerprints[key(row, s)]
        cfg = cfgs[key(row, s)].clone()
        cfg.defrost()
        cfg.OUTPUT_DIR = run_dir(out_dir, table, row, s, iters, fp)
        cfg.freeze()
        if warm:
            ensure_init(warm_start_key(row, s))
        train_and_record(key(row, s), table, row, s, iters, cfg, fp, keep_weights, warm=warm)
        bar.update(1)
    bar.close()
    return write_table(
        table, spec, all_rows if rows else shown, seeds, iters, current(load_results(out_dir)), out_dir, data
    )
