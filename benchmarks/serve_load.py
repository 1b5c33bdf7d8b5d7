"""Benchmark: the service under load with authentication on and off, measured in one run.

Two ``python -m oxnet.serve`` processes serve the same model folder (default: ``make demo``'s
``output/demo/model``) on 127.0.0.1: one with a token file, per-client limits (high enough not to
refuse) and an audit log file, one without authentication. ``--clients`` concurrent clients (asyncio,
one connection each) send ``--requests`` requests per round to each server in turn, for ``--rounds``
alternating rounds, to two endpoints: ``POST /v1/predict`` (a 256 px PNG) and ``GET /v1/model``
(no inference: the access control's own cost shows there). Reported per endpoint and server:
requests/s, p50 and p99 latency, non-200 answers, and the ratio of requests/s with authentication to
without.

    OMP_NUM_THREADS=1 python benchmarks/serve_load.py [--model output/demo/model] [--clients 20] \\
        [--requests 200] [--rounds 3] [--workers 2] [--json out.json]
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def _cpu():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def _start(model, port, workers, extra, env):
    cmd = [
        sys.executable,
        "-m",
        "oxnet.serve",
        "--model",
        model,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    cmd += ["--max-queue", "256", "--log-level", "warning", *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.DEVNULL)


def _wait(url, proc, timeout=300):
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service at {url} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the service at {url} did not start")


async def _round(url, endpoint, payload, clients, requests, headers):
    import httpx

    latencies, codes = [], []
    queue = asyncio.Queue()
    for _ in range(requests):
        queue.put_nowait(None)

    async def client():
        async with httpx.AsyncClient(timeout=120, headers=headers) as c:
            while not queue.empty():
                queue.get_nowait()
                start = time.perf_counter()
                if endpoint == "predict":
                    r = await c.post(url + "/v1/predict", files={"file": ("cxr.png", payload)})
                else:
                    r = await c.get(url + "/v1/model")
                latencies.append(time.perf_counter() - start)
                codes.append(r.status_code)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - start, latencies, codes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=os.path.join(REPO, "output", "demo", "model"), help="model folder")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--requests", type=int, default=200, help="requests per round, endpoint and server")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="the services' --workers")
    p.add_argument("--json", help="write the measurements here")
    args = p.parse_args(argv)
    if not os.path.isdir(args.model):
        p.error(f"{args.model} is not a model folder (run make demo, or give --model)")
    import cv2

    from oxnet.serve.tokens import main as tokens_main
    from oxnet.testing import free_port

    img = np.random.default_rng(0).normal(110, 30, (256, 256)).clip(0, 255).astype(np.uint8)
    payload = cv2.imencode(".png", img)[1].tobytes()
    work = tempfile.mkdtemp(prefix="oxnet-load-")
    token_file = os.path.join(work, "tokens.txt")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        tokens_main(["add", "load", "--file", token_file])
    token = out.getvalue().strip()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    servers = {}
    limits = ["--rate-limit", "100000", "--uploads-per-client", "1000"]  # the same for both: none refuses
    auth_extra = ["--token-file", token_file, "--audit-log", os.path.join(work, "audit.jsonl")]
    for name, extra in (("auth", auth_extra + limits), ("no auth", limits)):
        port = free_port()
        servers[name] = (f"http://127.0.0.1:{port}", _start(args.model, port, args.workers, extra, env))
    results = {}
    try:
        for url, proc in servers.values():
            _wait(url, proc)
        headers = {"auth": {"Authorization": f"Bearer {token}"}, "no auth": {}}
        samples = {
            (e, s): {"seconds": 0.0, "latencies": [], "codes": []}
            for e in ("predict", "model")
            for s in servers
        }
        for r in range(args.rounds):
            for endpoint in ("predict", "model"):
                order = list(servers) if r % 2 == 0 else list(servers)[::-1]
                for name in order:
                    secs, lat, codes = asyncio.run(
                        _round(
                            servers[name][0], endpoint, payload, args.clients, args.requests, headers[name]
                        )
                    )
                    s = samples[(endpoint, name)]
                    s["seconds"] += secs
                    s["latencies"] += lat
                    s["codes"] += codes
        for (endpoint, name), s in samples.items():
            lat = np.asarray(s["latencies"])
            results[f"{endpoint}/{name}"] = {
                "requests_per_s": len(lat) / s["seconds"],
                "p50_ms": float(np.percentile(lat, 50) * 1000),
                "p99_ms": float(np.percentile(lat, 99) * 1000),
                "non_200": int(sum(c != 200 for c in s["codes"])),
                "requests": len(lat),
            }
    finally:
        for _, proc in servers.values():
            proc.terminate()
            proc.wait(30)
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"# {now:%Y-%m-%d %H:%M} UTC, {_cpu()}, {os.cpu_count()} cores")
    print(
        f"# {args.clients} clients, {args.rounds} rounds x {args.requests} requests, --workers {args.workers}"
    )
    print("| endpoint | server | requests/s | p50 ms | p99 ms | non-200 | requests/s auth / no auth |")
    print("|---|---|---|---|---|---|---|")
    for endpoint in ("predict", "model"):
        for name in servers:
            m = results[f"{endpoint}/{name}"]
            ratio = m["requests_per_s"] / results[f"{endpoint}/no auth"]["requests_per_s"]
            rate, p50, p99 = m["requests_per_s"], m["p50_ms"], m["p99_ms"]
            print(
                f"| {endpoint} | {name} | {rate:.1f} | {p50:.0f} | {p99:.0f} | {m['non_200']} | {ratio:.2f} |"
            )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "cpu": _cpu(), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
