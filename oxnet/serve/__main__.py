"""Serve a model: ``python -m oxnet.serve --model DIR [--host 127.0.0.1] [--port 8000]``.

DIR is an eager model folder (``model_final.pth`` + ``config.yaml``, as training writes it) or an
exported one (``tools/export_model.py``); its ``thresholds.json`` (``python -m oxnet.deploy.thresholds``)
sets the per-class operating thresholds. The review page is at ``http://HOST:PORT/``.

``--annotate POOL_JSON`` (``--annotate-images DIR``, ``--advice ADVICE_JSON``, ``--annotations-out FILE``)
adds the annotation view at ``http://HOST:PORT/annotate`` (:mod:`oxnet.serve.annotate`): saving boxes
needs authentication, which names the user recorded with each image.

Authentication: ``--token-file FILE`` (``python -m oxnet.serve.tokens add NAME --file FILE``) and/or
the environment variable ``OXNET_SERVE_TOKEN``; every endpoint but ``/healthz`` and the review page
then needs ``Authorization: Bearer TOKEN``. On an address other than loopback the service refuses
to start without authentication unless ``--insecure-no-auth`` is given. TLS: ``--ssl-certfile`` and
``--ssl-keyfile`` (uvicorn's). Every request is written to the audit log (``--audit-log FILE``, else
the console), without patient data.
"""

import argparse
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m oxnet.serve", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder (eager or exported)")
    p.add_argument(
        "--backend",
        choices=("eager", "torchscript", "onnx", "pt2"),
        help="which model of the folder to run (default: onnx, then torchscript, then pt2, then eager)",
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
    p.add_argument(
        "--max-findings-per-class", type=int, default=3, help="findings kept per class (default 3)"
    )
    p.add_argument(
        "--max-findings-per-image", type=int, default=10, help="findings kept per image (default 10)"
    )
    p.add_argument(
        "--body-timeout", type=float, default=30.0, help="seconds an upload may stall before 408 (default 30)"
    )
    ann = p.add_argument_group("annotation view (/annotate)")
    ann.add_argument(
        "--annotate",
        metavar="POOL_JSON",
        help="an OXnet-COCO file of weak/unlabeled images to box: serves the annotation view at /annotate",
    )
    ann.add_argument(
        "--annotate-images",
        metavar="DIR",
        help="the folder the pool's file names are relative to (default: its folder)",
    )
    ann.add_argument(
        "--advice",
        metavar="ADVICE_JSON",
        help="the ranked images to box (python -m oxnet.advise): the queue order (default: the pool order)",
    )
    ann.add_argument(
        "--annotations-out",
        metavar="FILE",
        help="the OXnet-COCO file the saved boxes go to (default: <pool>.annotations.json beside the pool)",
    )
    auth = p.add_argument_group("access")
    auth.add_argument("--token-file", help="file of named, hashed API tokens (python -m oxnet.serve.tokens)")
    auth.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow serving a non-loopback address without authentication (anyone on the network "
        "may then upload studies and read results)",
    )
    auth.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="a reverse proxy whose user header (--proxy-user-header) names the client (repeatable)",
    )
    auth.add_argument("--proxy-user-header", default="X-Forwarded-User")
    auth.add_argument(
        "--rate-limit", type=int, default=120, help="requests per minute per client (default 120)"
    )
    auth.add_argument(
        "--uploads-per-client", type=int, default=2, help="predictions one client may run at once (default 2)"
    )
    auth.add_argument(
        "--audit-log", help="append the audit log (JSON lines) to this file (default: the console)"
    )
    auth.add_argument("--ssl-certfile", help="TLS certificate (PEM); with --ssl-keyfile serves HTTPS")
    auth.add_argument("--ssl-keyfile", help="TLS private key (PEM)")
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_port(host, port):
    """An error message when ``host:port`` cannot be listened on (checked before the model loads)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            return (
                f"cannot listen on {host}:{port} ({e.strerror}): is another service using it? choose --port"
            )
    return None


def check_exposure(host, tokens, proxies, insecure):
    """Refuse a non-loopback address without authentication (tokens or a trusted proxy) unless
    ``--insecure-no-auth``: an error message, or None."""
    if host in LOOPBACK or tokens is not None or proxies:
        return None
    if insecure:
        print(
            f"warning: serving {host} without authentication (--insecure-no-auth): anyone who can reach "
            "it may upload studies and read results",
            file=sys.stderr,
        )
        return None
    return (
        f"refusing to serve {host} without authentication: give --token-file (python -m "
        "oxnet.serve.tokens add NAME --file FILE) or OXNET_SERVE_TOKEN, or --trusted-proxy, or "
        "--insecure-no-auth to accept the risk"
    )


def main(argv=None):
    args = parse_args(argv)
    import uvicorn

    import oxnet  # noqa: F401  (compatibility shims before detectron2)
    from oxnet.deploy.runtime import load_model

    from .access import AuditLog
    from .app import ServiceLimits, create_app
    from .auth import ClientLimits, TokenStore

    try:
        tokens = TokenStore.from_options(args.token_file)
        refusal = check_exposure(args.host, tokens, args.trusted_proxy, args.insecure_no_auth)
        refusal = refusal or check_port(args.host, args.port)
        if refusal:
            raise ValueError(refusal)
        if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
            raise ValueError("TLS needs both --ssl-certfile and --ssl-keyfile")
        pool = None
        if args.annotate:
            from .annotate import AnnotationPool

            pool = AnnotationPool(args.annotate, args.annotate_images, args.advice, args.annotations_out)
            if tokens is None and not args.trusted_proxy:
                print(
                    "warning: without authentication (--token-file, OXNET_SERVE_TOKEN or --trusted-proxy) "
                    "the annotation view shows the pool but refuses saves: it cannot record who saved",
                    file=sys.stderr,
                )
        elif args.advice or args.annotate_images or args.annotations_out:
            raise ValueError("--advice, --annotate-images and --annotations-out go with --annotate POOL_JSON")
        client_limits = ClientLimits(rate=args.rate_limit, per=60.0, uploads=args.uploads_per_client)
        model = load_model(args.model, backend=args.backend, precision=args.precision)
        limits = ServiceLimits(
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            max_pixels=args.max_pixels,
            workers=args.workers,
            max_queue=args.max_queue,
            body_timeout=args.body_timeout,
        )
        app = create_app(
            model,
            model_dir=args.model,
            limits=limits,
            examples_dir=args.examples,
            attention=not args.no_attention,
            tokens=tokens,
            client_limits=client_limits,
            proxies=args.trusted_proxy,
            user_header=args.proxy_user_header,
            audit=AuditLog(args.audit_log),
            caps=(args.max_findings_per_class, args.max_findings_per_image),
            annotate=pool,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ssl = {"ssl_certfile": args.ssl_certfile, "ssl_keyfile": args.ssl_keyfile} if args.ssl_certfile else {}
    # uvicorn's access log prints query strings (a file name may be a patient's); the audit log replaces it
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False, **ssl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
