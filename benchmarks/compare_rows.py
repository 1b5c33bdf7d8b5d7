#!/usr/bin/env python
"""Per-seed comparison of Table 1 rows from an ``oxnet.bench`` results.json.

    python benchmarks/compare_rows.py OUT/results.json [--reference retinanet] [--warm 250]

For each row: mAP mean ± sample std over seeds, mAP per seed, the difference to the reference row
trained from the same seed (and the same warm start), and where recorded the false alarms per
normal image at 70 % lesion sensitivity and the image-level AUROC (top box score, global head).
Prints a markdown table; reads results.json only, trains nothing.
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


def rows_by_method(results, table="table1", warm=None, iters=None):
    """{method: {seed: record}} of the finished runs of ``table`` (with warm start ``warm``)."""
    out = {}
    for rec in results.values():
        if rec.get("table") != table or rec.get("warm") != warm or (iters and rec.get("iters") != iters):
            continue
        out.setdefault(rec["method"], {})[rec["seed"]] = rec
    return out


def compare(results, reference="retinanet", warm=None, iters=None):
    rows = rows_by_method(results, warm=warm, iters=iters)
    ref = rows.get(reference, {})
    lines = ["| row | mAP | per seed | minus " + reference + " (same seed) | FP/normal @70% | "
             "image AUROC box | image AUROC global |", "|---|---|---|---|---|---|---|"]
    for method, by_seed in rows.items():
        seeds = sorted(by_seed)
        maps = [by_seed[s]["metrics"]["mAP"] for s in seeds]
        diffs = [by_seed[s]["metrics"]["mAP"] - ref[s]["metrics"]["mAP"] if s in ref else None for s in seeds]
        fps = [(by_seed[s].get("normals") or {}).get("fp_per_normal_image_at_sensitivity", {}).get("0.7")
               for s in seeds]
        box = [(by_seed[s].get("image_auroc") or {}).get("box") for s in seeds]
        glob = [(by_seed[s].get("image_auroc") or {}).get("global") for s in seeds]
        lines.append(f"| {method} | {_mean_std(maps)} | {_fmt(maps)} | "
                     f"{_fmt(diffs, sign=True) if method != reference else '-'} | "
                     f"{_mean_std(fps, 2)} | {_mean_std(box)} | {_mean_std(glob)} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", help="results.json of python -m oxnet.bench")
    p.add_argument("--reference", default="retinanet", help="row the per-seed differences are taken to")
    p.add_argument("--warm", type=int, default=None, help="warm-start iterations of the runs (default: none)")
    p.add_argument("--iters", type=int, default=None, help="only runs of this many iterations")
    args = p.parse_args(argv)
    with open(args.results, encoding="utf-8") as f:
        results = json.load(f)
    print(compare(results, args.reference, args.warm, args.iters))
    return 0


if __name__ == "__main__":
    sys.exit(main())
