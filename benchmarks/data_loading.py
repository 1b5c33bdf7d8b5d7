#!/usr/bin/env python
"""Images/s on one CPU core: reading the prepared cache vs decoding PNG and DICOM on the fly.

    OMP_NUM_THREADS=1 python benchmarks/data_loading.py [--data ../shared/data] [--size 512]

Every path produces the same thing, an SxS uint8 grey image min-max scaled as the paper prepares its
inputs: on the fly by decoding the file and resizing (``oxnet.data.cache.decode_resized``), from the
cache by ``ImageCache.read``. Sources: the NIH sample (1024x1024 8-bit PNG), TBX11K-TB500 (512x512
8-bit PNG) and the NIH sample written as 16-bit uncompressed DICOM (real DICOMs are not in the shared
data). The cache is read warm (in the page cache) and cold (its pages dropped with posix_fadvise before
each pass). Everything runs in this process on one thread; the numbers are printed as a table and the
ratios to PNG decoding.
"""

import argparse
import os
import pathlib
import tempfile
import time

import numpy as np

import oxnet  # noqa: F401


def _rate(fn, items, min_seconds):
    """Images/s of ``fn`` over ``items``, repeated until ``min_seconds`` have passed."""
    n, start = 0, time.perf_counter()
    while True:
        for x in items:
            fn(x)
        n += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return n / elapsed


def _drop_page_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main(argv=None):
    import cv2

    from oxnet.data.cache import ImageCache, build_cache, decode_resized
    from oxnet.data.io import read_raw, write_dicom

    default_data = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("OXNET_SHARED_DATA", default_data))
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--seconds", type=float, default=3.0, help="minimum time per measurement")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    data = pathlib.Path(args.data)
    nih = sorted((data / "nih-cxr14-sample" / "images").glob("*.png"))
    tbx = sorted((data / "tbx11k-tb500" / "images").glob("*.png"))[:100]
    if not nih or not tbx:
        raise SystemExit(f"shared data not found under {data}")

    with tempfile.TemporaryDirectory() as tmp:
        dicoms = []
        for f in nih:
            grey = read_raw(str(f)).astype(np.uint16) * 16  # 12-bit range like a real radiograph
            out = os.path.join(tmp, f.stem + ".dcm")
            write_dicom(out, grey, bits_stored=12)
            dicoms.append(out)
        sources = {
            "NIH PNG 1024px 8-bit": [str(f) for f in nih],
            "TBX11K PNG 512px 8-bit": [str(f) for f in tbx],
            "NIH DICOM 1024px 16-bit": dicoms,
        }
        rows = {}
        for name, files in sources.items():
            rows[f"decode {name}"] = _rate(lambda f: decode_resized(f, args.size), files, args.seconds)
        rows["cv2.imread only, NIH PNG (no scaling)"] = _rate(
            lambda f: cv2.imread(f, cv2.IMREAD_UNCHANGED), sources["NIH PNG 1024px 8-bit"], args.seconds
        )
        all_files = [f for files in sources.values() for f in files]
        t0 = time.perf_counter()
        cache = build_cache(
            [{"file_name": f} for f in all_files], os.path.join(tmp, "cache"), args.size, progress=False
        )
        build_s = time.perf_counter() - t0
        order = np.random.default_rng(0).permutation(len(all_files))
        shuffled = [all_files[i] for i in order]
        rows["cache read, warm (random order)"] = _rate(cache.read, shuffled, args.seconds)
        npy = cache.npy
        del cache  # unmap, so that its pages can be dropped

        def cold_pass():
            _drop_page_cache(npy)
            fresh = ImageCache(os.path.join(tmp, "cache"))
            start = time.perf_counter()
            for f in shuffled:
                fresh.read(f)
            fresh._array = None
            return len(shuffled) / (time.perf_counter() - start)

        rows["cache read, cold (pages dropped)"] = float(np.median([cold_pass() for _ in range(5)]))

    png = rows["decode NIH PNG 1024px 8-bit"]
    print(f"data loading, {args.size}x{args.size} uint8 output, one process, one thread")
    print(f"cache build: {len(all_files)} images in {build_s:.1f} s")
    print(f"{'path':42s} {'images/s':>10s} {'x NIH PNG':>10s}")
    for k, v in rows.items():
        print(f"{k:42s} {v:10.1f} {v / png:10.1f}")
    return rows


if __name__ == "__main__":
    main()
