"""Serve a model: ``python -m oxnet.serve --model DIR [--host 127.0.0.1] [--port 8000]``.

DIR is an eager model folder (``model_final.pth`` + ``config.yaml``, as training writes it) or an
exported one (``tools/export_model.py``); its ``thresholds.json`` (``python -m oxnet.deploy.thresholds``)
sets the per-class operating thresholds. The review page is at ``http://HOST:PORT/``.
"""

import argparse
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m oxnet.serve", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder (eager or exported)")
    p.add_argument(
        "--backend",
        choices=("eager", "torchscript", "onnx"),
        help="which model of the folder to run (default: onnx, then torchscript, then eager)",
    )
    p.add_argument(
        "--precision",
        choices=("float32", "bfloat16", "float16", "auto"),
        help="the eager model's inference precision (OXNET.AMP.INFERENCE; default: its config's)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="inferences run at the same time (threads)")
    p.add_argument(
        "--max-queue",
        type=int,
        default=32,
        help="requests that may wait for a worker; beyond them requests get 503 + Retry-After",
    )
    p.add_argument("--max-upload-mb", type=float, default=64.0, help="largest upload accepted (MiB)")
    p.add_argument("--max-pixels", type=int, default=100_000_000, help="largest image accepted (pixels)")
    p.add_argument("--examples", help="a folder of images the review page offers to pick from")
    p.add_argument("--no-attention", action="store_true", help="do not offer DAA attention maps")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import uvicorn

    import oxnet  # noqa: F401  (compatibility shims before detectron2)
    from oxnet.deploy.runtime import load_model

    from .app import ServiceLimits, create_app

    try:
        model = load_model(args.model, backend=args.backend, precision=args.precision)
        limits = ServiceLimits(
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            max_pixels=args.max_pixels,
            workers=args.workers,
            max_queue=args.max_queue,
        )
        app = create_app(
            model,
            model_dir=args.model,
            limits=limits,
            examples_dir=args.examples,
            attention=not args.no_attention,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
