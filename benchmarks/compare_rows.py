#!/usr/bin/env python
"""Per-seed comparison of Table 1 rows from an ``oxnet.bench`` results.json.

    python benchmarks/compare_rows.py OUT/results.json [--reference retinanet] [--warm 250] [--curves]
    python benchmarks/compare_rows.py OUT/results.json --against BASE/results.json [--warm 250]

For each row: mAP mean ± sample std over seeds, mAP per seed, the difference to the reference row
trained from the same seed (and the same warm start) with the mean difference's 95 % confidence
interval (paired t over seeds) and its reading: "better" or "worse" when the interval excludes zero,
else "not resolved", and where recorded the false alarms per
normal image at 70 % lesion sensitivity and the image-level AUROC (top box score, global head).
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
import statistics
import sys


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


def paired_interval(diffs, level=0.95):
    """``(mean, low, high)``: the mean of paired per-seed differences and its two-sided ``level``
    confidence interval (Student's t with n - 1 degrees of freedom); None for fewer than 2 pairs."""
    from scipy import stats

    diffs = [d for d in diffs if d is not None]
    if len(diffs) < 2:
        return None
    mean = statistics.mean(diffs)
    half = stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return mean, mean - half, mean + half


def verdict(interval):
    """ "better" or "worse" when the interval excludes 0, else "not resolved" (n/a without one)."""
    if interval is None:
        return "n/a"
    _, low, high = interval
    return "better" if low > 0 else "worse" if high < 0 else "not resolved"


def _interval_text(interval):
    if interval is None:
        return "n/a"
    mean, low, high = interval
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}] {verdict(interval)}"


def rows_by_method(results, table="table1", warm=None, iters=None):
    """{method: {seed: record}} of the finished runs of ``table`` (with warm start ``warm``)."""
    out = {}
    for rec in results.values():
        if rec.get("table") != table or rec.get("warm") != warm or (iters and rec.get("iters") != iters):
            continue
        out.setdefault(rec["method"], {})[rec["seed"]] = rec
    return out


def _fp70(rec):
    return (rec.get("normals") or {}).get("fp_per_normal_image_at_sensitivity", {}).get("0.7")


def compare(results, reference="retinanet", warm=None, iters=None):
    rows = rows_by_method(results, warm=warm, iters=iters)
    ref = rows.get(reference, {})
    lines = [
        "| row | mAP | per seed | minus " + reference + " (same seed) | mean difference [95 % CI], "
        "paired t | FP/normal @70% | image AUROC box | image AUROC global |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, by_seed in rows.items():
        seeds = sorted(by_seed)
        maps = [by_seed[s]["metrics"]["mAP"] for s in seeds]
        diffs = [by_seed[s]["metrics"]["mAP"] - ref[s]["metrics"]["mAP"] if s in ref else None for s in seeds]
        fps = [_fp70(by_seed[s]) for s in seeds]
        box = [(by_seed[s].get("image_auroc") or {}).get("box") for s in seeds]
        glob = [(by_seed[s].get("image_auroc") or {}).get("global") for s in seeds]
        is_ref = method == reference
        lines.append(
            f"| {method} | {_mean_std(maps)} | {_fmt(maps)} | "
            f"{_fmt(diffs, sign=True) if not is_ref else '-'} | "
            f"{_interval_text(paired_interval(diffs)) if not is_ref else '-'} | "
            f"{_mean_std(fps, 2)} | {_mean_std(box)} | {_mean_std(glob)} |"
        )
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
            f"{_mean_std([_fp70(r) for r in a], 2)} | {_mean_std([_fp70(r) for r in b], 2)} | "
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
        "--against",
        metavar="BASE_RESULTS",
        help="compare each row to the same row and seed of "
        "this other results.json (a baseline folder) instead of to the reference row",
    )
    args = p.parse_args(argv)
    with open(args.results, encoding="utf-8") as f:
        results = json.load(f)
    if args.against:
        with open(args.against, encoding="utf-8") as f:
            print(against(results, json.load(f), args.warm, args.iters))
        return 0
    print(
        curves(results, args.warm, args.iters)
        if args.curves
        else compare(results, args.reference, args.warm, args.iters)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
