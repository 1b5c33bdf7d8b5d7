"""Markdown tables in the layout of the paper's Tables 1 and 2 (mean and std over seeds, percent)."""
import math
import os
import platform
import time

import numpy as np

from oxnet.utils.atomic import atomic_open

__all__ = ["write_table", "summarize", "result_key", "warm_start_iters", "METHOD_NAMES"]

METRIC_KEYS = ("mAP", "AP40", "AP75", "APs", "APm", "APl")
HEADER = ("Method", "# fully labeled", "# weakly labeled", "# unlabeled",
          "mAP", "AP40", "AP75", "APS", "APM", "APL")

#: Row names as the paper prints them.
METHOD_NAMES = {
    "retinanet": "RetinaNet", "pi_model": "Pi Model", "mean_teacher": "Mean Teacher", "mmt_psm": "MMT-PSM",
    "focalmix": "FocalMix", "pi_model_mt": "Pi Model + MT", "mean_teacher_mt": "Mean Teacher + MT",
    "mmt_psm_mt": "MMT-PSM + MT", "focalmix_mt": "FocalMix + MT", "gap": "RetinaNet + MT", "sfl": "SFL",
    "daa": "DAA", "daa_gpa": "DAA + GPA", "oxnet": "OXnet (SFL+DAA+GPA)",
}


def warm_start_iters(spec):
    """Iterations of the RetinaNet every row starts from (spec ``warm_start.iters``; 0: from scratch)."""
    return int((spec.get("warm_start") or {}).get("iters", 0))


def result_key(table, row, seed, iters, warm=0):
    """The ``results.json`` key of one run (``warm``: iterations of the RetinaNet it started from)."""
    return f"{table}/{row.key}/seed{seed}/iters{iters}" + (f"/warm{warm}" if warm else "")


def summarize(values):
    """(mean, sample std or None, n) of the finite values."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if len(v) == 0:
        return None, None, 0
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None), len(v)


def _cell(values):
    mean, std, n = summarize(values)
    if mean is None:
        return "n/a"
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def write_table(table, spec, rows, seeds, iters, results, out_dir, data=None):
    """Write ``OUT/<table>.md`` from ``results`` (runs not finished yet show as "pending")."""
    title = "Table 1: comparison of methods" if table == "table1" else "Table 2: supervision mixes"
    warm = warm_start_iters(spec)
    if warm:
        title += f", every row started from RetinaNet after {warm} iterations"
    lines = [f"# {title}", ""]
    lines.append(f"Data: `{spec.get('name', '?')}` ({spec['data']['kind']}"
                 + (f", {data.n_train} training / {data.n_test} test images" if data is not None else "")
                 + f"). {iters} iterations per run, seeds 0..{seeds - 1}; "
                 "metrics in percent on the test set, mean ± sample std over seeds "
                 "(COCO AP averaged over IoU 0.40:0.05:0.75, as in the paper)."
                 + (f" Each row starts from the weights of RetinaNet trained for {warm} iterations on the "
                    "row's box-labeled images with the same seed, then trains its own iterations with "
                    f"`{' '.join(map(str, spec['warm_start'].get('opts', [])))}`." if warm else ""))
    if spec.get("overrides"):
        lines.append("Config overrides for every run: `" + " ".join(map(str, spec["overrides"])) + "`.")
    shown = [results.get(result_key(table, row, s, iters, warm)) for row in rows for s in range(seeds)]
    devices = sorted({r["device"] for r in shown if r and r.get("device")})
    lines.append(f"Machine: {platform.node() or '?'} ({platform.machine()}, {os.cpu_count()} CPUs). "
                 + (f"Runs trained on: {'; '.join(devices)}. " if devices else "")
                 + f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
    lines += ["", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    previous = None
    for row in rows:
        runs = [results.get(result_key(table, row, s, iters, warm)) for s in range(seeds)]
        done = [r for r in runs if r is not None]
        name = METHOD_NAMES.get(row.method, row.method)
        if table == "table2" and row.method == previous:
            name = ""
        previous = row.method
        cells = [name, str(row.full), str(row.weak), str(row.unlabeled)]
        if not done:
            cells += ["pending"] * len(METRIC_KEYS)
        else:
            cells += [_cell([r["metrics"][k] for r in done]) for k in METRIC_KEYS]
            if len(done) < seeds:
                cells[0] += f" ({len(done)}/{seeds} seeds)"
        lines.append("| " + " | ".join(cells) + " |")
    seconds = [r["seconds"] for r in results.values()
               if r.get("table") == table and r.get("iters") == iters and r.get("warm", 0) == warm]
    if seconds:
        lines += ["", f"Run time per (row, seed): {np.mean(seconds) / 60:.1f} min on average, "
                      f"{np.max(seconds) / 60:.1f} min at most ({len(seconds)} runs)."]
    path = os.path.join(out_dir, f"{table}_warm{warm}.md" if warm else f"{table}.md")
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path
