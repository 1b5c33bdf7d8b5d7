"""Markdown tables in the layout of the paper's Tables 1 and 2 (mean and std over seeds, percent).

Data with normal test images (fully labeled, no box) adds a column of false alarms per normal image at
70 % lesion sensitivity; data with an image-level test set adds its image-level AUROC from the top box
score and from the global head."""

import math
import os
import platform
import time

import numpy as np

from oxnet.utils.atomic import atomic_open

__all__ = ["write_table", "summarize", "result_key", "warm_start_iters", "METHOD_NAMES"]

METRIC_KEYS = ("mAP", "AP40", "AP75", "APs", "APm", "APl")
HEADER = (
    "Method",
    "# fully labeled",
    "# weakly labeled",
    "# unlabeled",
    "mAP",
    "AP40",
    "AP75",
    "APS",
    "APM",
    "APL",
)

#: Row names as the paper prints them.
METHOD_NAMES = {
    "retinanet": "RetinaNet",
    "pi_model": "Pi Model",
    "mean_teacher": "Mean Teacher",
    "mmt_psm": "MMT-PSM",
    "focalmix": "FocalMix",
    "pi_model_mt": "Pi Model + MT",
    "mean_teacher_mt": "Mean Teacher + MT",
    "mmt_psm_mt": "MMT-PSM + MT",
    "focalmix_mt": "FocalMix + MT",
    "gap": "RetinaNet + MT",
    "sfl": "SFL",
    "daa": "DAA",
    "daa_gpa": "DAA + GPA",
    "oxnet": "OXnet (SFL+DAA+GPA)",
    "retinanet_neg": "RetinaNet + weak negatives",
    "daa_neg": "DAA + weak negatives",
    "oxnet_neg": "OXnet + weak negatives",
    "oxnet_plus": "OXnet+ (weak negatives, filtered SFL, zero-init head)",
    "sfl_plus": "SFL+ (weak negatives, filtered SFL)",
}

#: The lesion sensitivity at which the table shows false alarms per normal image.
TABLE_SENSITIVITY = "0.7"


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


def _cell(values, digits=1):
    mean, std, n = summarize(values)
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _get(record, *keys):
    for k in keys:
        if not isinstance(record, dict):
            return None
        record = record.get(k)
    return record


def extra_columns(data, runs):
    """The columns beyond AP this data has: [(header, cell function over a row's finished runs)]."""
    has_normals = (
        data.n_test_normal > 0
        if data is not None
        else any(_get(r, "normals", "n_normal_images") for r in runs)
    )
    has_image_test = data.n_image_test > 0 if data is not None else any("image_auroc" in r for r in runs)
    cols = []
    if has_normals:
        cols.append(
            (
                f"FP/normal @{float(TABLE_SENSITIVITY):.0%}",
                lambda done: _cell(
                    [
                        _get(r, "normals", "fp_per_normal_image_at_sensitivity", TABLE_SENSITIVITY)
                        for r in done
                    ],
                    2,
                ),
            )
        )
    if has_image_test:
        for which in ("box", "global"):
            cols.append(
                (
                    f"image AUROC ({which})",
                    lambda done, which=which: _cell([_get(r, "image_auroc", which) for r in done]),
                )
            )
    return cols


def _data_text(data):
    if data is None:
        return ""
    text = f"; training: {data.n_train} images"
    if data.n_extra:
        text += (
            f" + {data.n_extra} weakly labeled ones from label tables ({data.n_extra_normal} normal), "
            "weak for the rows that use image labels, unlabeled for the semi-supervised rows, unused by "
            "RetinaNet"
        )
    text += (
        f"; test: {data.n_test} images, {data.n_test_lesion} with lesions, {data.n_test_normal} normal "
        "(fully labeled, no box)"
    )
    other = data.n_test - data.n_test_lesion - data.n_test_normal
    if other:
        text += f", {other} without a box but not known normal"
    if data.n_image_test:
        text += (
            f"; image-level test set: {data.n_image_test} images, {data.n_image_test_positive} "
            f"positive, {data.n_image_test - data.n_image_test_positive} negative"
        )
    return text


def write_table(table, spec, rows, seeds, iters, results, out_dir, data=None):
    """Write ``OUT/<table>.md`` from ``results`` (runs not finished yet show as "pending")."""
    title = "Table 1: comparison of methods" if table == "table1" else "Table 2: supervision mixes"
    warm = warm_start_iters(spec)
    if warm:
        title += f", every row started from RetinaNet after {warm} iterations"
    lines = [f"# {title}", ""]
    lines.append(
        f"Data: `{spec.get('name', '?')}` ({spec['data']['kind']}"
        + _data_text(data)
        + f"). {iters} iterations per run, seeds 0..{seeds - 1}; "
        "metrics in percent on the test set, mean ± sample std over seeds "
        "(COCO AP averaged over IoU 0.40:0.05:0.75, as in the paper)."
        + (
            f" Each row starts from the weights of RetinaNet trained for {warm} iterations on the "
            "row's box-labeled images with the same seed, then trains its own iterations with "
            f"`{' '.join(map(str, spec['warm_start'].get('opts', [])))}`."
            if warm
            else ""
        )
    )
    if spec.get("overrides"):
        lines.append("Config overrides for every run: `" + " ".join(map(str, spec["overrides"])) + "`.")
    shown = [results.get(result_key(table, row, s, iters, warm)) for row in rows for s in range(seeds)]
    extra = extra_columns(data, [r for r in shown if r])
    if extra:
        notes = []
        if any(h.startswith("FP") for h, _ in extra):
            notes.append(
                f"{extra[0][0]}: false alarms per normal test image at the highest score threshold "
                f"at which the lesion sensitivity reaches {float(TABLE_SENSITIVITY):.0%} (FROC hit, "
                "IoU >= 0.4; n/a where it is never reached)."
            )
        if any(h.startswith("image AUROC") for h, _ in extra):
            notes.append(
                "image AUROC (box, global): AUROC in percent on the image-level test set, from each "
                "image's top box score and from the global head (n/a without one)."
            )
        lines.append(" ".join(notes))
    devices = sorted({r["device"] for r in shown if r and r.get("device")})
    lines.append(
        f"Machine: {platform.node() or '?'} ({platform.machine()}, {os.cpu_count()} CPUs). "
        + (f"Runs trained on: {'; '.join(devices)}. " if devices else "")
        + f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
    )
    header = list(HEADER) + [h for h, _ in extra]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
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
            cells += ["pending"] * (len(METRIC_KEYS) + len(extra))
        else:
            cells += [_cell([r["metrics"][k] for r in done]) for k in METRIC_KEYS]
            cells += [cell(done) for _, cell in extra]
            if len(done) < seeds:
                cells[0] += f" ({len(done)}/{seeds} seeds)"
        lines.append("| " + " | ".join(cells) + " |")
    seconds = [
        r["seconds"]
        for r in results.values()
        if r.get("table") == table and r.get("iters") == iters and r.get("warm", 0) == warm
    ]
    if seconds:
        lines += [
            "",
            f"Run time per (row, seed): {np.mean(seconds) / 60:.1f} min on average, "
            f"{np.max(seconds) / 60:.1f} min at most ({len(seconds)} runs).",
        ]
    path = os.path.join(out_dir, f"{table}_warm{warm}.md" if warm else f"{table}.md")
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path
