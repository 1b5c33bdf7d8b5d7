"""Synthetic chest X-ray generation speed on one CPU core.

    python benchmarks/synthetic_speed.py [--size 512 --n 100 --seed 0]

Prints images/s for rendering (``SyntheticCXR.sample``), for boxes only (``annotate``) and for
rendering plus PNG encoding, with the machine and date.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402

from oxnet.data.synthetic import SyntheticCXR  # noqa: E402


def rate(fn, n):
    """(images per wall-clock second, images per CPU second of this process)."""
    fn(0)  # warm-up (grid caches, imports)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(1, n + 1):
        fn(i)
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--n", type=int, default=100, help="images per measurement")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    gen = SyntheticCXR(size=args.size, seed=args.seed)
    load = os.getloadavg()[0]
    render = rate(gen.sample, args.n)
    annotate = rate(gen.annotate, args.n)
    png = rate(lambda i: cv2.imencode(".png", gen.sample(i)[0]), args.n)
    print(
        f"synthetic CXR {args.size}x{args.size}, {args.n} images, 1 thread, "
        f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores), python "
        f"{platform.python_version()}, {datetime.datetime.now().isoformat(timespec='seconds')}"
    )
    print(f"  load average before: {load:.2f} (CPU-time rates are robust to other load)")
    for name, (wall, cpu) in (
        ("render (sample)", render),
        ("boxes only (annotate)", annotate),
        ("render + PNG encode", png),
    ):
        print(f"  {name:22s} {wall:7.1f} images/s wall, {cpu:7.1f} images per CPU-second")


if __name__ == "__main__":
    main()
