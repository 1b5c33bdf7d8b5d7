#!/usr/bin/env python
"""Screenshot an evaluation report.html in headless Chromium and check that every figure loaded.

    python tools/screenshot_report.py OUT/eval/report.html --out report.png [--width 1280] [--max-height 8000]

Chromium (the Debian package ``chromium``; ``apt-get install -y chromium``) is driven through its command
line: once with ``--dump-dom`` on a copy of the page that records, after the load event, each ``<img>``'s
``naturalWidth`` and the page's height, then with ``--screenshot`` at that height. Exit status 1 when a
figure did not load (broken or missing file) or the screenshot is blank.
"""

import argparse
import html
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

__all__ = ["find_chromium", "check_page", "screenshot", "screenshot_report"]

_CHECK_ID = "oxnet-report-check"
_CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.map.call(document.images, function (img) {
    return {src: img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0,
            width: img.naturalWidth, height: img.naturalHeight};
  });
  var out = document.createElement("pre");
  out.id = "{check_id}";
  out.textContent = JSON.stringify({images: images, width: document.documentElement.scrollWidth,
                                    height: document.documentElement.scrollHeight});
  document.body.appendChild(out);
});
</script>""".replace("{check_id}", _CHECK_ID)


def find_chromium():
    """Path of the system's Chromium (``chromium``, ``chromium-browser``, ``google-chrome``), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(chromium, args, url, timeout):
    with tempfile.TemporaryDirectory(prefix="oxnet-chromium-") as profile:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            "--allow-file-access-from-files",
            f"--user-data-dir={profile}",
            *args,
            url,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def check_page(html_path, width=1280, chromium=None, timeout=120):
    """Load ``html_path`` in headless Chromium and report its figures.

    Returns:
        {"images": [{"src", "loaded", "width", "height"}], "width", "height"} (page size in CSS pixels).
    """
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium is not installed (apt-get install -y chromium)")
    page = pathlib.Path(html_path).resolve()
    text = page.read_text(encoding="utf-8")
    base = f'<base href="{html.escape(page.parent.as_uri())}/">'  # the figures' relative paths still resolve
    text = (
        re.sub(r"<head[^>]*>", lambda m: m.group(0) + base, text, count=1, flags=re.I)
        if re.search(r"<head[^>]*>", text, re.I)
        else base + text
    )
    text = (
        re.sub(r"</body>", _CHECK_SCRIPT + "</body>", text, count=1, flags=re.I)
        if re.search(r"</body>", text, re.I)
        else text + _CHECK_SCRIPT
    )
    with tempfile.TemporaryDirectory(prefix="oxnet-report-check-") as tmp:
        probe = pathlib.Path(tmp) / "check.html"
        probe.write_text(text, encoding="utf-8")
        dom = _run(
            chromium,
            ["--dump-dom", "--virtual-time-budget=10000", f"--window-size={width},900"],
            probe.as_uri(),
            timeout,
        )
    m = re.search(rf'<pre id="{_CHECK_ID}">(.*?)</pre>', dom, re.S)
    if m is None:
        raise RuntimeError(f"{html_path}: the page did not finish loading in chromium")
    return json.loads(html.unescape(m.group(1)))


def screenshot(html_path, png_path, width=1280, height=900, chromium=None, timeout=120):
    """Screenshot the top ``width`` x ``height`` CSS pixels of ``html_path`` into ``png_path``."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium is not installed (apt-get install -y chromium)")
    png_path = pathlib.Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    if png_path.exists():
        png_path.unlink()
    _run(
        chromium,
        [f"--screenshot={png_path}", f"--window-size={width},{height}", "--virtual-time-budget=10000"],
        pathlib.Path(html_path).resolve().as_uri(),
        timeout,
    )
    if not png_path.exists():
        raise RuntimeError(f"chromium wrote no screenshot {png_path}")
    return str(png_path)


def _blank(png_path):
    """True when the screenshot has (almost) a single colour."""
    import cv2

    img = cv2.imread(str(png_path))
    return img is None or float(img.std()) < 2.0


def screenshot_report(html_path, png_path, width=1280, max_height=8000, chromium=None):
    """Check the report's figures, then screenshot the whole page (at most ``max_height`` pixels tall).

    Returns:
        {"images", "width", "height" (page), "screenshot", "blank", "ok"}: ``ok`` when the page has
        figures, all of them loaded, and the screenshot is not blank.
    """
    info = check_page(html_path, width, chromium)
    height = max(200, min(int(info["height"]), max_height))
    info["screenshot"] = screenshot(html_path, png_path, width, height, chromium)
    info["blank"] = _blank(info["screenshot"])
    info["ok"] = bool(info["images"]) and all(i["loaded"] for i in info["images"]) and not info["blank"]
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", help="report.html")
    p.add_argument("--out", help="screenshot PNG (default: report.png beside the report)")
    p.add_argument("--width", type=int, default=1280, help="window width in CSS pixels")
    p.add_argument("--max-height", type=int, default=8000, help="cut the page's screenshot at this height")
    args = p.parse_args(argv)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.report)), "report.png")
    if find_chromium() is None:
        print("error: chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 2
    info = screenshot_report(args.report, out, args.width, args.max_height)
    for img in info["images"]:
        state = f"{img['width']}x{img['height']}" if img["loaded"] else "NOT LOADED"
        print(f"  {img['src']}: {state}")
    print(
        f"page {info['width']}x{info['height']} px; screenshot {info['screenshot']}"
        + (" (blank!)" if info["blank"] else "")
    )
    if not info["images"]:
        print("error: the report shows no figure", file=sys.stderr)
    return 0 if info["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
