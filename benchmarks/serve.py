"""Benchmark: deployed inference, eager detectron2 predictor against TorchScript, pt2 and ONNX Runtime.

The model (default: ``make demo``'s ``output/demo/model/model_final.pth``) is exported to TorchScript,
``torch.export`` (pt2) and ONNX in a temporary folder; the four backends of
:func:`oxnet.deploy.runtime.load_model` then run the same decoded images (the demo's test images, read
with ``read_raw``; decoding is not timed) at each batch size, from the array to the final boxes: resize
and normalization, network, decoding, NMS and rescaling. Batches of the four backends are interleaved,
so that a machine shared with other jobs slows them alike and their ratios stay meaningful. Reported
per backend and batch size: images/s (all images / total time), p50 and p99 latency of one batch call,
and the ratio of images/s to the eager predictor. Every backend's results are compared with the eager
model's (boxes within 1e-3 px, scores within 1e-4, same count).

``--ort-sweep`` also times ONNX Runtime's graph optimization levels and intra-op thread counts.

    OMP_NUM_THREADS=2 python benchmarks/serve.py [--weights W] [--images 32] [--batch-sizes 1 8] \\
        [--rounds 3] [--ort-sweep] [--json out.json]
"""

import argparse
import datetime
import glob
import os
import platform
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import oxnet  # noqa: E402,F401

BACKENDS = ("eager", "torchscript", "pt2", "onnx")


def _images(n, size_hint=256):
    from oxnet.data.io import read_raw

    paths = sorted(glob.glob(os.path.join(REPO, "output", "demo", "data", "images", "test", "*.png")))
    if paths:
        return [read_raw(p) for p in paths[:n]], f"{min(n, len(paths))} demo test images"
    rng = np.random.default_rng(0)
    return (
        [
            rng.normal(2000, 300, (size_hint * 2, size_hint * 2)).clip(0, 4095).astype(np.uint16)
            for _ in range(n)
        ],
        f"{n} random 16-bit images",
    )


def _interleaved(runs, images, batch, rounds):
    """Per-call latencies (s) of each ``runs[name]`` (a function of a list of images) over ``images``
    in batches of ``batch``: each batch goes through every run in turn (the order rotating from batch
    to batch), so that a load spike slows them alike."""
    names = list(runs)
    for name in names:
        runs[name](images[:batch])  # warm-up of this shape
    lat = {name: [] for name in names}
    k = 0
    for _ in range(rounds):
        for i in range(0, len(images) - batch + 1, batch):
            for name in names[k % len(names) :] + names[: k % len(names)]:
                t = time.perf_counter()
                runs[name](images[i : i + batch])
                lat[name].append(time.perf_counter() - t)
            k += 1
    return lat


def _summary(latencies, batch, reference=None):
    lat = np.asarray(latencies)
    out = {
        "images_per_s": batch * len(lat) / lat.sum(),
        "p50_ms": 1000 * float(np.percentile(lat, 50)),
        "p99_ms": 1000 * float(np.percentile(lat, 99)),
        "calls": int(len(lat)),
    }
    if reference is not None:  # median over batches of (reference latency / this latency)
        out["vs_eager"] = out["images_per_s"] / (batch * len(reference) / np.sum(reference))
        out["paired_vs_eager"] = float(np.median(np.asarray(reference) / lat))
    return out


def _ort_session(path, level, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--weights",
        default=os.path.join(REPO, "output", "demo", "model", "model_final.pth"),
        help="trained model (config.yaml beside it); default: make demo's",
    )
    p.add_argument("--images", type=int, default=32, help="images per round")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the images")
    p.add_argument("--ort-sweep", action="store_true", help="also time ORT optimization levels and threads")
    p.add_argument("--json", help="write the measurements here")
    args = p.parse_args(argv)
    if not os.path.exists(args.weights):
        sys.exit(
            f"error: {args.weights} does not exist; run `make demo` (it trains the demo model in "
            "minutes) or pass --weights"
        )
    import torch

    from oxnet.deploy.export import export_model, match_results
    from oxnet.deploy.runtime import load_model
    from oxnet.engine.model_files import load_model_config

    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or torch.get_num_threads()
    torch.set_num_threads(threads)
    images, source = _images(args.images)
    load_before = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="oxnet_serve_bench_")
    cfg = load_model_config(args.weights)
    export_s = {}
    for fmt in BACKENDS[1:]:
        t = time.perf_counter()
        export_model(cfg, os.path.join(tmp, fmt), fmt)
        export_s[fmt] = time.perf_counter() - t
    models = {
        "eager": load_model(os.path.dirname(os.path.abspath(args.weights)), "eager", threads=threads),
        **{fmt: load_model(os.path.join(tmp, fmt), fmt, threads=threads) for fmt in BACKENDS[1:]},
    }
    info = models["onnx"].info

    # same boxes: every backend against the eager model, image by image
    reference = [models["eager"].predict(im) for im in images]
    parity = {}
    for name in BACKENDS[1:]:
        got = models[name].predict_batch(images)
        bad = [i for i, (r, g) in enumerate(zip(reference, got)) if match_results(r, g)]
        parity[name] = {
            "images": len(images),
            "mismatched": len(bad),
            "boxes": sum(len(r["detections"]) for r in reference),
        }

    results = {}
    for bs in args.batch_sizes:
        lat = _interleaved({b: models[b].predict_batch for b in BACKENDS}, images, bs, args.rounds)
        for b in BACKENDS:
            results[f"{b}@{bs}"] = _summary(lat[b], bs, lat["eager"])

    sweep = {}
    if args.ort_sweep:  # ONNX Runtime's knobs, at the largest batch, interleaved as above
        import copy

        bs = max(args.batch_sizes)
        runs = {}
        for level in ("ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
            for n in sorted({1, threads}):
                variant = copy.copy(models["onnx"])
                variant._runner = copy.copy(models["onnx"]._runner)
                variant._runner.session = _ort_session(os.path.join(tmp, "onnx", "model.onnx"), level, n)
                runs[f"{level}/threads={n}"] = variant.predict_batch
        lat = _interleaved(runs, images, bs, args.rounds)
        sweep = {k: _summary(v, bs) for k, v in lat.items()}

    load_after = os.getloadavg()
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": threads,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "images": source,
        "input_size": info["input_size"],
        "weights": args.weights,
        "export_s": export_s,
        "parity": parity,
        "results": results,
        "ort_sweep": sweep,
    }
    print(
        f"{source}, input {info['input_size']} px, {threads} thread(s), load average "
        f"{load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} CPUs"
    )
    for name, v in parity.items():
        print(
            f"{name}: {v['mismatched']} of {v['images']} images differ from the eager model "
            f"({v['boxes']} eager boxes)"
        )
    print(
        "| backend | batch | images/s | p50 ms/batch | p99 ms/batch | images/s vs eager "
        "| per batch vs eager (median) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for bs in args.batch_sizes:
        for b in BACKENDS:
            r = results[f"{b}@{bs}"]
            print(
                f"| {b} | {bs} | {r['images_per_s']:.2f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
                f"{r['vs_eager']:.2f}x | {r['paired_vs_eager']:.2f}x |"
            )
    for k, r in sweep.items():
        print(f"ORT {k}: {r['images_per_s']:.2f} images/s, p50 {r['p50_ms']:.0f} ms")
    if args.json:
        from oxnet.utils.atomic import atomic_write_json

        atomic_write_json(args.json, report, indent=1)
    return report


if __name__ == "__main__":
    main()
