#!/usr/bin/env python
"""Per-seed comparison of Table 1 rows from an ``oxnet.bench`` results.json.

    python benchmarks/compare_rows.py OUT/results.json [--reference retinanet] [--warm 250] [--curves]
        [--bootstrap 1000] [--merge OTHER/results.json:SUFFIX ...]
    python benchmarks/compare_rows.py OUT/results.json --against BASE/results.json [--warm 250]

For each row: mAP mean ± sample std over seeds, mAP per seed, and for mAP, the false alarms per normal
image at 50 % and 70 % lesion sensitivity and the image-level AUROC (top box score, global head) where
recorded: the paired difference to the reference row trained from the same seed (and warm start) with
its 95 % confidence interval (paired t over seeds) and its reading: "better" or "worse" when the
interval excludes zero (fewer false alarms are better), else "not resolved". With ``--bootstrap N``
the mAP difference also gets a paired bootstrap interval over seeds x test images (N replicates,
:func:`oxnet.evaluation.bootstrap.paired_bootstrap`), recomputed from each run's predictions.json
in OUT/runs and the test set OUT/data/test.json. ``--merge OTHER/results.json:SUFFIX`` adds the rows of
another folder on the same data (e.g. a variant trained with trailing config overrides), each method
named with SUFFIX appended, paired by seed with this folder's reference row.
With ``--curves`` (runs trained with ``--eval-period``): the learning curves instead, one table per
quantity (mAP, false alarms per normal image at 70 %, image AUROC from the box score and the global
head), a row per method and a column per evaluation, each cell the mean over the seeds that reached it.
With ``--against``: a variant folder (the same rows trained with one option changed) against a
baseline folder, per row and seed, after checking that both started from the same warm-start weights
(equal warm-start mAP for every seed).
Prints markdown; reads results.json only, trains nothing.
"""

import argparse
import json
import os
import statistics
import sys

from oxnet.evaluation.paired import interval_text, paired_t_interval, verdict


def _fmt(values, digits=1, sign=False):
    out = []
    for v in values:
        out.append("n/a" if v is None else (f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"))
    return ", ".join(out)


def _mean_std(values, digits=1):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


# the paired per-seed t interval and its verdict (the annotation study's table uses them too)
paired_interval = paired_t_interval


def _interval_text(interval):
    return interval_text(interval)


def rows_by_method(results, table="table1", warm=None, iters=None):
    """{method: {seed: record}} of the finished runs of ``table`` (with warm start ``warm``)."""
    out = {}
    for rec in results.values():
        if rec.get("table") != table or rec.get("warm") != warm or (iters and rec.get("iters") != iters):
            continue
        out.setdefault(rec["method"], {})[rec["seed"]] = rec
    return out


#: (name, column title, value of a record or None, digits, whether higher is better)
QUANTITIES = (
    ("mAP", "mAP", lambda r: r["metrics"]["mAP"], 1, True),
    ("fp50", "FP/normal @50%", lambda r: _fp(r, "0.5"), 2, False),
    ("fp70", "FP/normal @70%", lambda r: _fp(r, "0.7"), 2, False),
    ("auroc_box", "image AUROC box", lambda r: (r.get("image_auroc") or {}).get("box"), 1, True),
    ("auroc_global", "image AUROC global", lambda r: (r.get("image_auroc") or {}).get("global"), 1, True),
)


def _fp(rec, level):
    return (rec.get("normals") or {}).get("fp_per_normal_image_at_sensitivity", {}).get(level)


def _reading(interval, higher_is_better):
    word = verdict(interval)
    if word in ("better", "worse") and not higher_is_better:
        word = "worse" if word == "better" else "better"
    return word


def _diff_text(interval, higher_is_better, digits):
    if interval is None:
        return "n/a"
    mean, low, high = interval
    return (
        f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}] {_reading(interval, higher_is_better)}"
    )


def merge_results(results, other, suffix, other_dir):
    """``results`` plus the runs of ``other`` (another folder's results.json, at ``other_dir``), their
    methods renamed ``method + suffix``; each merged run remembers its folder (for its predictions)."""
    out = dict(results)
    for key, rec in other.items():
        if rec.get("table") != "table1":
            continue
        out[f"{key}{suffix}"] = {
            **rec,
            "method": rec["method"] + suffix,
            "_out_dir": other_dir,
            "_method": rec["method"],
        }
    return out


def run_predictions(out_dir, rec):
    """The predictions.json of a recorded bench run (OUT/runs/<table>/<row>/seed*_<fingerprint>/)."""
    import glob

    out_dir = rec.get("_out_dir", out_dir)
    rec = {**rec, "method": rec.get("_method", rec["method"])}

    row = f"{rec['method']}_f{rec['full']}_w{rec['weak']}_u{rec['unlabeled']}"
    folders = glob.glob(
        os.path.join(
            out_dir, "runs", rec["table"], row, f"seed{rec['seed']}_iters{rec['iters']}_{rec['config']}"
        )
    )
    for folder in folders:
        for path in [os.path.join(folder, "inference", "predictions.json")] + sorted(
            glob.glob(os.path.join(folder, "inference", "*_test", "predictions.json"))
        ):
            if os.path.exists(path):
                return path
    raise FileNotFoundError(
        f"no predictions.json for {rec['method']} seed {rec['seed']} under {out_dir}/runs"
    )


def bootstrap_difference(out_dir, by_seed, ref, seeds, n_boot, seed=0):
    """:func:`oxnet.evaluation.bootstrap.paired_bootstrap` of mAP (in percent) between a row and the
    reference over ``seeds``, from the runs' predictions and OUT/data/test.json."""
    from oxnet.evaluation import evaluate_detections
    from oxnet.evaluation.bootstrap import paired_bootstrap
    from oxnet.evaluation.inputs import load_ground_truth

    gt = load_ground_truth(os.path.join(out_dir, "data", "test.json"))  # every merged folder has the same
    evaluate = lambda rec: evaluate_detections(gt, run_predictions(out_dir, rec))  # noqa: E731
    runs = [evaluate(by_seed[s]) for s in seeds]
    base = [evaluate(ref[s]) for s in seeds]
    for s, run in zip(seeds, runs):  # the predictions are the recorded runs'
        recorded = by_seed[s]["metrics"]["mAP"]
        if abs(100 * run.metrics["mAP"] - recorded) > 1e-6:
            raise ValueError(
                f"{by_seed[s]['method']} seed {s}: its predictions give mAP "
                f"{100 * run.metrics['mAP']}, results.json records {recorded}"
            )
    out = paired_bootstrap(runs, base, "mAP", n_boot=n_boot, seed=seed)
    if out["interval"] is None:
        return None
    return 100 * out["point"], 100 * out["interval"][0], 100 * out["interval"][1]


def compare(results, reference="retinanet", warm=None, iters=None, bootstrap=0, out_dir=None):
    """Markdown: one row per method (mAP, its per-seed values and differences), then for each quantity
    of :data:`QUANTITIES` its mean ± std and the paired difference to ``reference`` [95 % CI]."""
    rows = rows_by_method(results, warm=warm, iters=iters)
    ref = rows.get(reference, {})
    head = ["row", "mAP", "per seed", f"minus {reference} (same seed)", "mAP difference [95 % CI], paired t"]
    if bootstrap:
        head.append("mAP difference [95 % CI], bootstrap seeds x images")
    for _, title, _, _, _ in QUANTITIES[1:]:
        head += [title, f"{title} difference [95 % CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, by_seed in rows.items():
        seeds = sorted(by_seed)
        paired = [s for s in seeds if s in ref]
        is_ref = method == reference
        cells = [method]
        for name, _, get, digits, higher in QUANTITIES:
            values = [get(by_seed[s]) for s in seeds]
            diffs = [
                None if get(by_seed[s]) is None or get(ref[s]) is None else get(by_seed[s]) - get(ref[s])
                for s in paired
            ]
            interval = None if is_ref else paired_interval(diffs)
            if name == "mAP":
                cells += [
                    _mean_std(values),
                    _fmt(values),
                    "-" if is_ref else _fmt(diffs, sign=True),
                    "-" if is_ref else _diff_text(interval, True, 2),
                ]
                if bootstrap:
                    boot = None
                    if not is_ref and len(paired) >= 2:
                        boot = bootstrap_difference(out_dir, by_seed, ref, paired, bootstrap)
                    cells.append("-" if is_ref else _diff_text(boot, True, 2))
            else:
                cells += [_mean_std(values, digits), "-" if is_ref else _diff_text(interval, higher, digits)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def against(results, base, warm=None, iters=None):
    """Markdown: each row of ``results`` beside the same row of ``base``, paired by seed, preceded by a
    line saying whether the warm starts of both folders are the same weights (equal mAP per seed)."""
    lines = []
    if warm:
        here, there = rows_by_method(results, "init", None, warm), rows_by_method(base, "init", None, warm)
        pairs = [
            (s, r["metrics"]["mAP"], there[m][s]["metrics"]["mAP"])
            for m, by_seed in here.items()
            for s, r in sorted(by_seed.items())
            if s in there.get(m, {})
        ]
        differ = [f"seed {s}: {a:.4f} against {b:.4f}" for s, a, b in pairs if a != b]
        lines.append(
            "Warm starts: "
            + (
                "none in common"
                if not pairs
                else f"differ ({'; '.join(differ)})"
                if differ
                else f"identical (mAP {_fmt([a for _, a, _ in pairs], 4)})"
            )
        )
        lines.append("")
    rows, ref = rows_by_method(results, warm=warm, iters=iters), rows_by_method(base, warm=warm, iters=iters)
    lines += [
        "| row | mAP | baseline mAP | minus baseline (same seed) | mean difference [95 % CI], paired t "
        "| FP/normal @70% | baseline FP/normal @70% | image AUROC box | baseline image AUROC box |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, by_seed in rows.items():
        seeds = [s for s in sorted(by_seed) if s in ref.get(method, {})]
        if not seeds:
            continue
        a, b = [by_seed[s] for s in seeds], [ref[method][s] for s in seeds]
        maps, base_maps = [r["metrics"]["mAP"] for r in a], [r["metrics"]["mAP"] for r in b]
        box = lambda runs: [(r.get("image_auroc") or {}).get("box") for r in runs]  # noqa: E731
        lines.append(
            f"| {method} | {_mean_std(maps)} | {_mean_std(base_maps)} | "
            f"{_fmt([x - y for x, y in zip(maps, base_maps)], sign=True)} | "
            f"{_interval_text(paired_interval([x - y for x, y in zip(maps, base_maps)]))} | "
            f"{_mean_std([_fp(r, '0.7') for r in a], 2)} | {_mean_std([_fp(r, '0.7') for r in b], 2)} | "
            f"{_mean_std(box(a))} | {_mean_std(box(b))} |"
        )
    return "\n".join(lines)


CURVE_QUANTITIES = (
    ("mAP", "mAP", 1),
    ("fp_per_normal@70", "false alarms per normal image @70%", 2),
    ("image_auroc_box", "image AUROC (box)", 1),
    ("image_auroc_global", "image AUROC (global)", 1),
)


def curves(results, warm=None, iters=None):
    """Markdown tables of the mean learning curve of each row, one per quantity of CURVE_QUANTITIES."""
    rows = rows_by_method(results, warm=warm, iters=iters)
    points = sorted(
        {int(i) for by_seed in rows.values() for r in by_seed.values() for i in r.get("curve", {})}
    )
    if not points:
        return "no learning curve in these runs (train with --eval-period)"
    out = []
    for key, title, digits in CURVE_QUANTITIES:
        lines = [
            f"{title}, mean over seeds, by iteration:",
            "",
            "| row | " + " | ".join(str(p) for p in points) + " |",
            "|---" * (len(points) + 1) + "|",
        ]
        for method, by_seed in rows.items():
            cells = []
            for p in points:
                vals = [
                    r["curve"][str(p)][key]
                    for r in by_seed.values()
                    if key in r.get("curve", {}).get(str(p), {})
                ]
                cells.append(f"{statistics.mean(vals):.{digits}f}" if vals else "n/a")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", help="results.json of python -m oxnet.bench")
    p.add_argument("--reference", default="retinanet", help="row the per-seed differences are taken to")
    p.add_argument("--warm", type=int, default=None, help="warm-start iterations of the runs (default: none)")
    p.add_argument("--iters", type=int, default=None, help="only runs of this many iterations")
    p.add_argument("--curves", action="store_true", help="print the mean learning curves instead")
    p.add_argument(
        "--merge",
        action="append",
        default=[],
        metavar="RESULTS:SUFFIX",
        help="also the rows of another results.json on the same data, their names + SUFFIX",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="also a paired bootstrap interval of the mAP difference over seeds x test images, "
        "N replicates (from the runs' predictions under the results' folder)",
    )
    p.add_argument(
        "--against",
        metavar="BASE_RESULTS",
        help="compare each row to the same row and seed of "
        "this other results.json (a baseline folder) instead of to the reference row",
    )
    args = p.parse_args(argv)
    with open(args.results, encoding="utf-8") as f:
        results = json.load(f)
    for item in args.merge:
        path, _, suffix = item.rpartition(":")
        with open(path, encoding="utf-8") as f:
            results = merge_results(results, json.load(f), suffix, os.path.dirname(os.path.abspath(path)))
    if args.against:
        with open(args.against, encoding="utf-8") as f:
            print(against(results, json.load(f), args.warm, args.iters))
        return 0
    print(
        curves(results, args.warm, args.iters)
        if args.curves
        else compare(
            results,
            args.reference,
            args.warm,
            args.iters,
            args.bootstrap,
            os.path.dirname(os.path.abspath(args.results)),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
