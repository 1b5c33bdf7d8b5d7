#!/usr/bin/env python
"""The README's pictures of what a reader sees, made from the demo's model and images (``make demo``):

* ``docs/review_page.png``: the review page of ``python -m oxnet.serve`` opened on an example by its
  URL (``/?example=NAME``) in headless Chromium, at operating points chosen on the demo's validation
  set by ``python -m oxnet.deploy.thresholds`` (written to a temporary copy of the model folder);
* ``docs/overlay_empty.png``: the overlay ``demo/predict.py --overlays`` writes for a test image where no
  box reaches ``--display-thresh``: it says so and names the highest-scoring box.

Both are reduced to 256 colours. The review page needs Playwright and the system's ``chromium``.

    python tools/screenshots.py [--demo output/demo] [--example syn_000320.png] [--only review|overlay]
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _quantized(src, out):
    from PIL import Image

    Image.open(src).convert("RGB").quantize(256).save(out, optimize=True)
    print(f"wrote {out} ({os.path.getsize(out) // 1024} KiB)")


def review_page(demo, image, out, sensitivity=0.8, viewport=(1280, 860)):
    """Screenshot of the review page opened at ``/?example=<image's name>`` after its boxes are drawn."""
    from playwright.sync_api import sync_playwright

    from oxnet.serve.app import create_app
    from oxnet.testing import live_server

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is not installed (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="oxnet-screenshot-") as tmp:
        model = os.path.join(tmp, "model")
        shutil.copytree(
            os.path.join(demo, "model"),
            model,
            ignore=shutil.ignore_patterns("events.out.*", "metrics.json", "last_checkpoint", "*.txt"),
        )
        data = os.path.join(demo, "data")
        subprocess.run(
            [sys.executable, "-m", "oxnet.deploy.thresholds", "--model", model, "--val",
             os.path.join(data, "val.json"), "--images", os.path.join(data, "images"),
             "--sensitivity", str(sensitivity)],
            check=True,
        )  # fmt: skip
        examples = os.path.join(tmp, "examples")
        os.makedirs(examples)
        shutil.copy(image, examples)
        name = os.path.basename(image)
        shot = os.path.join(tmp, "review_page.png")
        with live_server(create_app(model, examples_dir=examples)) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
                page.goto(f"{url}/?example={urllib.parse.quote(name)}")
                page.wait_for_function(
                    "document.getElementById('status').textContent.includes('detections')", timeout=120_000
                )
                page.screenshot(path=shot)
            finally:
                browser.close()
        _quantized(shot, out)


def empty_overlay(demo, images, out, display_thresh=0.3):
    """The overlay (:func:`oxnet.engine.predictor.write_overlay`, as ``demo/predict.py --overlays``) of the
    first of ``images`` whose boxes all score below ``display_thresh``."""
    from oxnet.data.io import read_image
    from oxnet.engine.predictor import OXnetPredictor, write_overlay

    predictor = OXnetPredictor.from_weights(os.path.join(demo, "model", "model_final.pth"))
    for path in images:
        image = read_image(path)
        output = predictor([image])[0]
        scores = output["instances"].scores
        if len(scores) and float(scores.max()) < display_thresh:
            with tempfile.TemporaryDirectory(prefix="oxnet-screenshot-") as tmp:
                _quantized(
                    write_overlay(tmp, 0, path, image, output, predictor.class_names, display_thresh), out
                )
            return path
    raise SystemExit(
        f"every image has a box scoring {display_thresh} or more; give a higher --display-thresh"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--demo", default=os.path.join(REPO, "output", "demo"), help="the demo's output folder")
    p.add_argument("--example", help="test image shown on the review page (default: the first)")
    p.add_argument("--display-thresh", type=float, default=0.3, help="as demo/predict.py (default 0.3)")
    p.add_argument("--sensitivity", type=float, default=0.8, help="operating points' lesion sensitivity")
    p.add_argument("--out", default=os.path.join(REPO, "docs"), help="folder of the PNGs (default docs/)")
    p.add_argument("--only", choices=("review", "overlay"), help="make one of the two pictures")
    args = p.parse_args(argv)
    weights = os.path.join(args.demo, "model", "model_final.pth")
    tests = sorted(glob.glob(os.path.join(args.demo, "data", "images", "test", "*.png")))
    if not os.path.isfile(weights) or not tests:
        raise SystemExit(f"{args.demo} has no trained model or no test images: run `make demo` first")
    if args.only in (None, "review"):
        image = os.path.join(os.path.dirname(tests[0]), args.example) if args.example else tests[0]
        if not os.path.isfile(image):
            raise SystemExit(f"no test image {image}")
        review_page(args.demo, image, os.path.join(args.out, "review_page.png"), args.sensitivity)
    if args.only in (None, "overlay"):
        empty_overlay(args.demo, tests, os.path.join(args.out, "overlay_empty.png"), args.display_thresh)


if __name__ == "__main__":
    main()
