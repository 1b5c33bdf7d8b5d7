"""A simulated annotation study: which images to box next, each strategy against random choice.

    python -m oxnet.bench advise --data tbx-omni --out DIR [--seeds 3] [--rounds 3] [--per-round N]
        [--strategies random,uncertainty,...] [--iters K] [--round-iters K1] [--warm-start K0]

The spec's training pool is fully boxed; a seeded ``start`` fraction keeps its boxes, the rest are
"hidden-box" images that train as weakly labelled (their image labels from their boxes, as
:func:`oxnet.data.omni.make_omni` makes them), beside the spec's real weak images. Per seed the start
model is RetinaNet trained ``warm`` iterations on the start boxes, then the study's ``method``
``iters`` iterations on everything (shared by every strategy). Then in each of ``rounds`` rounds a
strategy (:mod:`oxnet.advise.strategies`) picks ``per_round`` hidden-box images with the previous
round's model, their boxes are revealed (they turn fully labelled), and the model trains
``round_iters`` more iterations from the previous round's weights (a fresh schedule); it is evaluated on
the spec's test set (with its normal X-rays) after every round. ``random`` uses the same seed and start
as every other strategy, so strategies compare as paired per-seed differences.

Every finished round is recorded in ``OUT/results.json`` (key ``advise/<strategy>/seed<S>/round<R>``,
with its picks), so an interrupted study resumes; ``OUT/advise.md`` and ``OUT/advise.png`` (mAP against
the boxes added) are written at the end.
"""

import hashlib
import json
import logging
import os
import time

import numpy as np

from oxnet.utils.atomic import atomic_write_json, locked

from .runner import (
    METRIC_KEYS,
    Row,
    build_cfg,
    config_fingerprint,
    device_name,
    load_results,
    train_and_evaluate,
)

__all__ = ["run_advise_study", "study_table", "hidden_box_mix", "boxes_to_reach"]

logger = logging.getLogger("oxnet.bench")


def hidden_box_mix(pool, boxed_ids, extra_weak=()):
    """An OXnet-COCO dict of the fully boxed ``pool``: images in ``boxed_ids`` keep their boxes
    ("full"), the others become weak with labels from their boxes (:func:`oxnet.data.omni.as_weak`),
    followed by the ``extra_weak`` image dicts."""
    from oxnet.data.omni import as_weak, box_classes

    boxed = set(boxed_ids)
    names = [c["name"] for c in pool["categories"]]
    classes_of = box_classes(pool)
    images = [
        dict(img, supervision="full")
        if img["id"] in boxed
        else as_weak(img, names, classes_of.get(img["id"], ()))
        for img in pool["images"]
    ]
    return dict(
        pool,
        images=images + [dict(x) for x in extra_weak],
        annotations=[a for a in pool["annotations"] if a["image_id"] in boxed],
    )


def boxes_to_reach(curve, target):
    """The boxes added at which ``curve`` (``[(boxes added, mAP)]``, boxes increasing) first reaches
    ``target`` mAP, linearly interpolated between rounds; None when it never does."""
    for (b0, m0), (b1, m1) in zip(curve, curve[1:]):
        if m0 >= target:
            return float(b0)
        if m1 >= target:
            return float(b0 + (b1 - b0) * (target - m0) / (m1 - m0))
    if curve and curve[-1][1] >= target:
        return float(curve[-1][0])
    return None


class _Study:
    def __init__(self, spec, out_dir, method, seeds, rounds, per_round, start, iters, round_iters, warm):
        from oxnet.data.format import read_omni_coco

        from .data import prepare_data

        self.spec, self.out_dir, self.method = spec, out_dir, method
        self.seeds, self.rounds, self.iters, self.round_iters, self.warm = (
            seeds,
            rounds,
            iters,
            round_iters,
            warm,
        )
        self.data = prepare_data(spec, out_dir)
        self.pool = read_omni_coco(self.data.pool_json)
        n = len(self.pool["images"])
        self.n_start = int(round(start * n)) if start <= 1 else int(start)
        self.per_round = int(round(per_round * n)) if per_round < 1 else int(per_round)
        if self.n_start < 1 or self.n_start + rounds * self.per_round > n:
            raise ValueError(
                f"start {self.n_start} + {rounds} rounds x {self.per_round} images do not fit the pool's {n}"
            )
        self.boxes_of = {}
        for a in self.pool["annotations"]:
            self.boxes_of[a["image_id"]] = self.boxes_of.get(a["image_id"], 0) + 1
        self.test_name = self.data.test_dataset()
        self.image_test_name = self.data.image_test_dataset()
        self.results_path = os.path.join(out_dir, "results.json")

    def start_ids(self, seed):
        ids = [img["id"] for img in self.pool["images"]]
        return sorted(int(i) for i in np.random.default_rng(seed).permutation(ids)[: self.n_start])

    def training_set(self, boxed_ids, with_weak=True):
        """Write (once) and register the training set with these boxed images, the rest of the pool and
        the real weak images weakly labelled (:func:`hidden_box_mix`), or (``with_weak=False``, the
        RetinaNet warm start) the boxed images alone; return its dataset name."""
        from oxnet.data import register_omni_coco
        from oxnet.data.format import write_omni_coco

        digest = hashlib.sha1(json.dumps(sorted(boxed_ids)).encode()).hexdigest()[:12]
        tag = digest if with_weak else f"boxed_{digest}"
        path = os.path.join(self.out_dir, "advise", "data", f"{'train_' if with_weak else ''}{tag}.json")
        if not os.path.exists(path):
            coco = hidden_box_mix(self.pool, boxed_ids, self.data.weak_images)
            if not with_weak:
                coco = dict(coco, images=[i for i in coco["images"] if i["supervision"] == "full"])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_omni_coco(path, coco)
        name = f"{self.data._key}_advise_{tag}"
        register_omni_coco(name, path, self.data.image_root)
        return name

    def cfg(self, method, seed, iters, boxed_ids, weights, folder):
        with_weak = method != "retinanet"
        n_weak = len(self.pool["images"]) - len(boxed_ids) + self.data.n_extra if with_weak else 0
        train = self.training_set(boxed_ids, with_weak)
        row = Row(method, len(boxed_ids), n_weak, 0)
        cfg = build_cfg(self.spec, row, seed, iters, train, self.test_name, "", self.image_test_name)
        cfg.defrost()
        if weights:
            cfg.merge_from_list(list(self.spec["warm_start"].get("opts", [])))
            cfg.MODEL.WEIGHTS = weights
        fp = config_fingerprint(cfg, root=self.out_dir)
        cfg.OUTPUT_DIR = os.path.join(self.out_dir, "runs", "advise", folder + f"_{fp}")
        cfg.freeze()
        return cfg, fp

    def describe(self):
        return (
            f"data {self.spec.get('name', '?')}: {len(self.pool['images'])} boxed training images, "
            f"{self.data.n_extra} real weak images, {self.data.n_test} test images "
            f"({self.data.n_test_normal} normal); start {self.n_start} boxed (seeded per seed), "
            f"{self.rounds} rounds of {self.per_round} images; method {self.method}; "
            f"warm start {self.warm} iterations of RetinaNet, {self.iters} iterations of the method, "
            f"{self.round_iters} per round"
        )

    def record(self, key, cfg, fp, out, seconds, **extra):
        rec = {
            "table": "advise",
            "method": self.method,
            "config": fp,
            "seconds": round(seconds, 1),
            "device": device_name(cfg.MODEL.DEVICE),
            "precision": cfg.OXNET.AMP.DTYPE if cfg.SOLVER.AMP.ENABLED else "float32",
            "metrics": {m: out[m] for m in METRIC_KEYS},
            **extra,
        }
        rec.update({m: out[m] for m in ("normals", "image_auroc") if out.get(m) is not None})
        with locked(self.results_path):
            results = load_results(self.out_dir)
            results[key] = rec
            atomic_write_json(self.results_path, results, indent=2)
        logger.info(f"{key}: mAP {rec['metrics']['mAP']:.2f} in {seconds:.0f} s")
        return rec

    def train(self, key, cfg, fp, **extra):
        done = load_results(self.out_dir).get(key)
        weights = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
        if done and done.get("config") == fp and os.path.exists(weights):
            return done
        start = time.perf_counter()
        out = train_and_evaluate(cfg, self.test_name, keep_weights=True, image_test_name=self.image_test_name)
        return self.record(key, cfg, fp, out, time.perf_counter() - start, **extra)

    def start_model(self, seed):
        """The shared round-0 model of ``seed`` (trained once, under a lock: shards share it)."""
        boxed = self.start_ids(seed)
        with locked(os.path.join(self.out_dir, f"advise_start_seed{seed}"), timeout=4 * 3600):
            weights = ""
            if self.warm:
                cfg, fp = self.cfg("retinanet", seed, self.warm, boxed, "", f"init_seed{seed}")
                self.train(f"advise/init/seed{seed}", cfg, fp, seed=seed)
                weights = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
            cfg, fp = self.cfg(self.method, seed, self.iters, boxed, weights, f"start_seed{seed}")
            rec = self.train(
                f"advise/start/seed{seed}", cfg, fp, seed=seed, round=0, boxed=boxed, picked=[], added_boxes=0
            )
        return cfg, rec

    def advise(self, cfg, strategy, seed, round_, boxed):
        """The ``per_round`` hidden-box images ``strategy`` picks with the model of ``cfg``."""
        from oxnet.advise import candidates, compute_signals, load_teacher, rank_pool
        from oxnet.advise.signals import PoolSignals
        from oxnet.engine.predictor import OXnetPredictor

        coco = hidden_box_mix(self.pool, boxed)  # the hidden-box images are the candidates
        cands, boxed_images = candidates(coco)
        weights = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
        if strategy == "random":  # needs no model output
            k = len(self.pool["categories"])
            signals = PoolSignals(
                [i["id"] for i in cands],
                [i["file_name"] for i in cands],
                [""] * k,
                np.zeros((len(cands), k)),
                [],
            )
        else:
            pcfg = cfg.clone()
            pcfg.defrost()
            pcfg.MODEL.WEIGHTS = weights
            pcfg.freeze()
            predictor = OXnetPredictor(pcfg)
            teacher = load_teacher(predictor, weights) if strategy == "teacher_student" else None
            path = lambda img: os.path.join(self.data.image_root, img["file_name"])  # noqa: E731
            signals = compute_signals(
                predictor,
                cands,
                [path(i) for i in cands],
                teacher=teacher,
                boxed_paths=[path(i) for i in boxed_images] if strategy in ("kcenter", "combined") else [],
            )
        # one seed per (seed, round), the same for every strategy
        rankings, _ = rank_pool(signals, [strategy], self.per_round, seed=1000 * seed + round_)
        return [int(signals.image_ids[p.index]) for p in rankings[strategy]]

    def run_chain(self, strategy, seed):
        cfg, rec = self.start_model(seed)
        boxed = list(rec["boxed"])
        start_boxes = sum(self.boxes_of.get(i, 0) for i in boxed)
        prev_weights_dir = cfg.OUTPUT_DIR
        for r in range(1, self.rounds + 1):
            key = f"advise/{strategy}/seed{seed}/round{r}"
            done = load_results(self.out_dir).get(key)
            if done and done.get("picked_from") == os.path.relpath(prev_weights_dir, self.out_dir):
                picked = done["picked"]
            else:  # picked anew: the training set, hence the config, differs from a stale record's
                picked = self.advise(cfg, strategy, seed, r, boxed)
            boxed = sorted(boxed + picked)
            weights = os.path.join(prev_weights_dir, "model_final.pth")
            cfg, fp = self.cfg(
                self.method, seed, self.round_iters, boxed, weights, f"{strategy}_seed{seed}_r{r}"
            )
            self.train(
                key,
                cfg,
                fp,
                seed=seed,
                round=r,
                strategy=strategy,
                picked=picked,
                picked_from=os.path.relpath(prev_weights_dir, self.out_dir),
                boxed=len(boxed),
                added_boxes=sum(self.boxes_of.get(i, 0) for i in boxed) - start_boxes,
            )
            prev_weights_dir = cfg.OUTPUT_DIR


def run_advise_study(
    spec,
    out_dir,
    strategies,
    seeds=3,
    rounds=3,
    per_round=1 / 12,
    start=0.25,
    iters=None,
    round_iters=None,
    warm=None,
    method="oxnet_neg",
    shard=(0, 1),
    train=True,
):
    """Run the study (see the module docstring) for every (strategy, seed) of this ``shard`` not yet
    recorded; write ``OUT/advise.md`` and ``OUT/advise.png``; return the table's path."""
    from oxnet.advise import STRATEGIES

    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    if "random" not in strategies:
        strategies = ["random"] + list(strategies)
    iters = int(iters if iters is not None else spec["iters"])
    round_iters = int(round_iters if round_iters is not None else max(iters // 2, 1))
    warm = int(warm if warm is not None else (spec.get("warm_start") or {}).get("iters", 0))
    study = _Study(spec, out_dir, method, seeds, rounds, per_round, start, iters, round_iters, warm)
    jobs = [(s, strategy) for s in range(seeds) for strategy in strategies]
    mine = [job for i, job in enumerate(jobs) if i % shard[1] == shard[0]]
    logger.info(
        f"advise study: {len(strategies)} strategies x {seeds} seeds, start {study.n_start} boxed images, "
        f"{rounds} rounds of {study.per_round}; {len(mine)} chains in this shard"
    )
    if train:
        for s, strategy in mine:
            study.run_chain(strategy, s)
    return study_table(load_results(out_dir), strategies, seeds, rounds, out_dir, study.describe())


def _chains(results, strategy, seeds, rounds):
    """{seed: [(boxes added, record)] for rounds 0..R} of complete chains."""
    out = {}
    for s in range(seeds):
        start = results.get(f"advise/start/seed{s}")
        recs = [results.get(f"advise/{strategy}/seed{s}/round{r}") for r in range(1, rounds + 1)]
        if start and all(recs):
            out[s] = [(0, start)] + [(r["added_boxes"], r) for r in recs]
    return out


def _fp50(rec):
    v = (rec.get("normals") or {}).get("fp_per_normal_image_at_sensitivity", {})
    return v.get("0.5")


def study_table(results, strategies, seeds, rounds, out_dir, description=""):
    """Write ``OUT/advise.md`` (per strategy and round: boxes added, mAP, false alarms per normal
    image at 50 % sensitivity, paired differences to random with 95 % t intervals; and the boxes each
    strategy needs to reach random's final mAP) and ``OUT/advise.png``; return the table's path."""
    from oxnet.evaluation.paired import interval_text, paired_t_interval

    lines = [
        "# Simulated annotation study",
        "",
        description,
        "",
        "mAP in percent; FP/normal: false alarms per normal test image at 50 % lesion sensitivity; "
        "differences are paired per seed against `random` (same seed, same start), mean [95 % t "
        "interval], 'better'/'worse' when it excludes zero.",
        "",
        "| strategy | round | seeds | boxes added | mAP | mAP - random | FP/normal | FP/normal - random |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ref = _chains(results, "random", seeds, rounds)
    curves = {}
    for strategy in strategies:
        chains = _chains(results, strategy, seeds, rounds)
        curves[strategy] = chains
        if not chains:
            lines.append(f"| {strategy} | - | 0 | pending | | | | |")
            continue
        for r in range(rounds + 1):
            if r == 0 and strategy != "random":
                continue
            boxes = [chains[s][r][0] for s in chains]
            maps = [chains[s][r][1]["metrics"]["mAP"] for s in chains]
            fps = [_fp50(chains[s][r][1]) for s in chains]
            paired = [s for s in chains if s in ref]
            d_map = [chains[s][r][1]["metrics"]["mAP"] - ref[s][r][1]["metrics"]["mAP"] for s in paired]
            d_fp = [
                None
                if _fp50(chains[s][r][1]) is None or _fp50(ref[s][r][1]) is None
                else _fp50(chains[s][r][1]) - _fp50(ref[s][r][1])
                for s in paired
            ]
            fp_vals = [v for v in fps if v is not None]
            sd = f" ± {np.std(maps, ddof=1):.2f}" if len(maps) > 1 else ""
            fp_cell = f"{np.mean(fp_vals):.2f}" if fp_vals else "n/a"
            if strategy == "random":
                d_map_cell = d_fp_cell = "-"
            else:
                d_map_cell = interval_text(paired_t_interval(d_map))
                d_fp_cell = interval_text(paired_t_interval(d_fp), higher_is_better=False)
            lines.append(
                f"| {strategy} | {r} | {len(chains)} | {np.mean(boxes):.0f} | {np.mean(maps):.2f}{sd} | "
                f"{d_map_cell} | {fp_cell} | {d_fp_cell} |"
            )
    lines += [
        "",
        "Boxes added to reach `random`'s final mAP (same seed), linearly interpolated between rounds, as a "
        "fraction of the boxes `random` added; the target is at most 2/3.",
        "",
        "| strategy | per seed | mean |",
        "|---|---|---|",
    ]
    for strategy in strategies:
        if strategy == "random" or not curves.get(strategy):
            continue
        fracs = []
        for s, chain in curves[strategy].items():
            if s not in ref:
                continue
            target = ref[s][-1][1]["metrics"]["mAP"]
            total = ref[s][-1][0]
            b = boxes_to_reach([(c[0], c[1]["metrics"]["mAP"]) for c in chain], target)
            fracs.append(None if b is None or total == 0 else b / total)
        shown = ", ".join("never" if f is None else f"{f:.2f}" for f in fracs)
        reached = [f for f in fracs if f is not None]
        mean = f"{np.mean(reached):.2f} ({len(reached)}/{len(fracs)} reach it)" if reached else "never"
        lines.append(f"| {strategy} | {shown} | {mean} |")
    path = os.path.join(out_dir, "advise.md")
    from oxnet.utils.atomic import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    _plot(curves, os.path.join(out_dir, "advise.png"))
    return path


def _plot(curves, out_png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from oxnet.utils.palette import class_rgb

    colors = class_rgb(max(len(curves), 1))
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for (strategy, chains), color in zip(curves.items(), colors):
        if not chains:
            continue
        for chain in chains.values():
            ax.plot(
                [c[0] for c in chain], [c[1]["metrics"]["mAP"] for c in chain], color=color, alpha=0.25, lw=1
            )
        n = min(len(c) for c in chains.values())
        xs = [np.mean([c[i][0] for c in chains.values()]) for i in range(n)]
        ys = [np.mean([c[i][1]["metrics"]["mAP"] for c in chains.values()]) for i in range(n)]
        ax.plot(xs, ys, color=color, lw=2.2, marker="o", label=f"{strategy} ({len(chains)} seeds)")
    ax.set_xlabel("boxes added to the start set")
    ax.set_ylabel("test mAP (IoU .40:.75, %)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    from oxnet.utils.atomic import atomic_open

    with atomic_open(out_png, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
