"""The review page in headless Chromium (Playwright driving the system's ``chromium``, no browser
download): upload and pick images, the findings at the operating points listed beside the image (labels
on the image only on hover or on request), zoom and pan with boxes and hover staying on their findings,
the review sliders, attention toggle, JSON and SR downloads, and screenshots.

``tools/screenshots.py`` writes the README's screenshot (``docs/review_page.png``) from the demo model.
"""

import contextlib
import io
import json
import os
import pathlib
import shutil

import httpx
import numpy as np
import pydicom
import pytest

from oxnet.data.io import read_raw, write_dicom, write_png
from oxnet.data.synthetic import SyntheticCXR
from oxnet.deploy.runtime import load_model
from oxnet.serve.app import ServiceLimits, create_app
from oxnet.testing import live_server, tiny_model_folder

CLASSES = ("nodule", "mass", "pleural effusion")


@contextlib.contextmanager
def live(app):
    with live_server(app) as url:
        yield url + "/"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, chromium):
    """A tiny model with operating thresholds that leave two boxes per class on the PNG example, and an
    examples folder with a synthetic chest X-ray as PNG and as DICOM."""
    root = tmp_path_factory.mktemp("review")
    model_dir = tiny_model_folder(str(root), class_names=CLASSES, score_shift=3.0)
    examples = root / "examples"
    image, _ = SyntheticCXR(size=256, seed=0).sample(1)
    write_png(examples / "chest.png", image)
    write_dicom(examples / "chest.dcm", (image.astype(np.uint16) * 16), bits_stored=12)
    result = load_model(model_dir).predict(read_raw(examples / "chest.png"))
    thresholds = {}
    for name in CLASSES:
        scores = [d["score"] for d in result["detections"] if d["category_name"] == name]
        assert len(scores) > 3, "the test model should give several boxes per class"
        thresholds[name] = round((scores[1] + scores[2]) / 2, 4)
        assert scores[1] > thresholds[name] > scores[2], "the test model's scores should not tie"
    with open(os.path.join(model_dir, "thresholds.json"), "w") as f:
        json.dump(thresholds, f)
    return model_dir, examples, thresholds


def _expected(detections, thresholds):
    return sum(d["score"] >= thresholds[d["class"]] - 1e-9 for d in detections)


def _set_slider(page, name, value):
    page.eval_on_selector(
        f'input[data-class="{name}"]',
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }",
        value,
    )


def test_review_page_in_chromium(setup, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    model_dir, examples, thresholds = setup
    model = load_model(model_dir)
    app = create_app(model, model_dir, ServiceLimits(max_queue=8), examples_dir=str(examples))
    with live(app) as url, sync_playwright() as p:
        with open(examples / "chest.png", "rb") as f:
            body = httpx.post(url + "v1/predict", files={"file": ("chest.png", f)}, timeout=60).json()
        detections = body["detections"]
        expected = _expected(detections, thresholds)
        assert expected == 2 * len(CLASSES) < len(detections)

        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 720}, accept_downloads=True)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_function("document.getElementById('model-info').textContent.includes('classes')")
            assert [page.input_value(f'input[data-class="{c}"]') for c in CLASSES] == [
                str(thresholds[c]) for c in CLASSES
            ]

            page.set_input_files("#file", str(examples / "chest.png"))
            page.wait_for_function("document.getElementById('status').textContent.includes('detections')")
            assert page.locator("#box-list li").count() == expected
            assert page.text_content("#box-count") == str(expected)
            assert page.is_disabled("#download-sr") and not page.is_disabled("#download-json")

            # Lowering one class's threshold shows all its boxes; raising every one to 1 hides them all.
            _set_slider(page, "nodule", 0)
            lowered = dict(thresholds, nodule=0.0)
            assert page.locator("#box-list li").count() == _expected(detections, lowered) > expected
            for name in CLASSES:
                _set_slider(page, name, 1)
            assert page.locator("#box-list li").count() == _expected(detections, dict.fromkeys(CLASSES, 1.0))
            assert page.locator("#box-list li").count() < expected
            for name in CLASSES:
                _set_slider(page, name, thresholds[name])
            assert page.locator("#box-list li").count() == expected

            with page.expect_download() as download:
                page.click("#download-json")
            saved = json.loads(pathlib.Path(download.value.path()).read_text())
            assert saved["detections"] == detections and saved["review_thresholds"] == thresholds
            assert "preview" not in saved

            # The eager OXnet model has the DAA head: the attention toggle overlays its map.
            assert not page.is_disabled("#attention")
            page.check("#attention")
            page.wait_for_function("document.getElementById('caption').textContent.includes('DAA map')")
            shot = tmp_path / "review_page.png"
            page.screenshot(path=str(shot))
            page.uncheck("#attention")

            # Picking the DICOM example: the same boxes (same pixels), and the SR can be downloaded.
            page.select_option("#example", "chest.dcm")
            page.wait_for_function("document.getElementById('status').textContent.includes('DICOM')")
            assert page.locator("#box-list li").count() > 0 and not page.is_disabled("#download-sr")
            with page.expect_download() as download:
                page.click("#download-sr")
            sr = pydicom.dcmread(io.BytesIO(pathlib.Path(download.value.path()).read_bytes()))
            from oxnet.deploy.sr import referenced_instances

            assert referenced_instances(sr) == {pydicom.dcmread(examples / "chest.dcm").SOPInstanceUID}

            # A corrupt upload shows the service's message.
            bad = tmp_path / "broken.png"
            bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
            page.set_input_files("#file", str(bad))
            page.wait_for_function("document.getElementById('status').className === 'error'")
            assert "422" in page.text_content("#status") and "broken.png" in page.text_content("#status")
            assert errors == []
        finally:
            browser.close()
    _check_screenshot(shot)


def test_attention_toggle_disabled_with_the_reason_for_an_exported_model(setup, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    from oxnet.deploy.export import export_model
    from oxnet.engine.model_files import load_model_config

    model_dir, _, _ = setup
    export_model(
        load_model_config(os.path.join(model_dir, "model_final.pth")), str(tmp_path), "onnx", check=False
    )
    app = create_app(str(tmp_path))
    with live(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function("document.getElementById('model-info').textContent.includes('classes')")
            assert page.is_disabled("#attention")
            assert "exported (onnx) model" in page.text_content("#attention-reason")
        finally:
            browser.close()


def _check_screenshot(shot):
    import cv2

    img = cv2.imread(str(shot))
    assert img.shape[:2] == (720, 1180) and img.std() > 20


def test_the_page_asks_for_the_token_once_and_shows_hostile_names_as_text(setup, chromium, tmp_path):
    """With authentication on, the page asks for the API token, keeps it for the tab (a reload does not
    ask again) and sends it; an example whose file name is markup is shown as text, never run."""
    from playwright.sync_api import sync_playwright

    from oxnet.serve.auth import TokenStore

    model_dir, examples, _ = setup
    hostile = tmp_path / "examples"
    hostile.mkdir()
    name = '<img src=x onerror="window.pwned=1">.png'
    shutil.copy(examples / "chest.png", hostile / name)
    app = create_app(model_dir, examples_dir=str(hostile), tokens=TokenStore(None, "page-token-123"))
    with live(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            dialogs = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(url)
            page.wait_for_selector("#token-box:not([hidden])")
            assert "API token" in page.text_content("#token-reason")
            page.fill("#token", "wrong")
            page.click("#token-box button")
            page.wait_for_function(
                "document.getElementById('token-reason').textContent.includes('not valid')"
            )
            page.fill("#token", "page-token-123")
            page.click("#token-box button")
            page.wait_for_function("document.getElementById('model-info').textContent.includes('classes')")
            page.reload()
            page.wait_for_function("document.getElementById('model-info').textContent.includes('classes')")
            assert page.is_hidden("#token-box")  # kept for the tab
            page.select_option("#example", name)
            page.wait_for_function("document.getElementById('status').textContent.includes('detections')")
            assert name in page.text_content("#status")
            assert page.evaluate("window.pwned") is None and not dialogs
        finally:
            browser.close()


def test_an_example_named_in_the_url_opens_at_once(setup, chromium, tmp_path):
    """``/?example=NAME`` loads and analyses that example without a click, so a link (or a plain
    headless screenshot) shows the case with its boxes; an unknown name says so."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    model_dir, examples, thresholds = setup
    app = create_app(model_dir, examples_dir=str(examples))
    with live(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url + "?example=chest.png")
            page.wait_for_function("document.getElementById('status').textContent.includes('detections')")
            assert page.input_value("#example") == "chest.png"
            assert int(page.text_content("#box-count")) == 2 * len(CLASSES)
            assert page.text_content("#box-kind") == "findings at the operating points"
            # the plain screenshot shows the boxes: each class's colour outlines its two findings
            colors = httpx.get(url + "v1/model", timeout=30).json()["colors"]
            shot = tmp_path / "example.png"
            page.screenshot(path=str(shot))
            box = page.locator("#view").bounding_box()
            rgb = np.asarray(Image.open(shot).convert("RGB"), int)
            rgb = rgb[
                round(box["y"]) : round(box["y"] + box["height"]),
                round(box["x"]) : round(box["x"] + box["width"]),
            ]
            assert all(_colour_pixels(rgb, colors[c]) > 200 for c in CLASSES)
            page.goto(url + "?example=missing.png")
            page.wait_for_function(
                "document.getElementById('status').textContent.includes('no example named')"
            )
        finally:
            browser.close()


# Every text the page writes on a canvas, with where (the page's own drawing calls are untouched).
RECORD_CANVAS_TEXT = """
window.__canvasTexts = [];
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
  const at = this.getTransform().transformPoint(new DOMPoint(x, y));
  window.__canvasTexts.push([String(text), at.x, at.y, this.canvas.width, this.canvas.height]);
  return fillText.call(this, text, x, y, ...rest);
};
"""


def _open_example(browser, url, name="chest.png", viewport=None):
    page = browser.new_page(viewport=viewport or {"width": 1280, "height": 800})
    page.add_init_script(RECORD_CANVAS_TEXT)
    page.goto(url + "?example=" + name)
    page.wait_for_function("document.getElementById('status').textContent.includes('detections')")
    return page


def _canvas_texts(page):
    """The texts written on the canvas since the last call (each checked to be written inside it)."""
    texts = page.evaluate("window.__canvasTexts.splice(0)")
    for text, x, y, width, height in texts:
        assert 0 <= x < width and 0 <= y < height, f"{text!r} written at ({x}, {y}), off the canvas"
    return [t[0] for t in texts]


def _canvas_rgb(page):
    """The canvas as shown on the screen, RGB."""
    import cv2

    png = page.screenshot(clip=page.locator("#view").bounding_box())
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].astype(int)


def _colour_pixels(rgb, hex_colour, tolerance=24):
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - target).max(axis=2) <= tolerance).sum())


def _client_point(page, ix, iy):
    """Where the image's pixel (ix, iy) is on the screen, from the canvas's place and the page's view."""
    box = page.locator("#view").bounding_box()
    v = page.evaluate("oxnetReview.view")
    return box["x"] + v["tx"] + v["scale"] * ix, box["y"] + v["ty"] + v["scale"] * iy


def _inside(d, ix, iy, margin=0.0):
    x, y, w, h = d["box"]
    return x - margin <= ix <= x + w + margin and y - margin <= iy <= y + h + margin


def _innermost(shown, ix, iy):
    """The index of the smallest shown box containing (ix, iy), or None."""
    inside = [i for i, d in enumerate(shown) if _inside(d, ix, iy)]
    return min(inside, key=lambda i: shown[i]["box"][2] * shown[i]["box"][3]) if inside else None


def _centre(d):
    x, y, w, h = d["box"]
    return x + w / 2, y + h / 2


def test_findings_are_listed_beside_the_image_and_labelled_on_hover_only(setup, chromium):
    """By default the canvas has box outlines and their numbers, no class or score; the list beside it
    gives each finding's class and score. Hovering a row highlights it and its box and writes that
    box's label alone; "labels on image" writes them all."""
    from playwright.sync_api import sync_playwright

    model_dir, examples, _ = setup
    app = create_app(model_dir, examples_dir=str(examples))
    with live(app) as url, sync_playwright() as p:
        with open(examples / "chest.png", "rb") as f:
            body = httpx.post(url + "v1/predict", files={"file": ("chest.png", f)}, timeout=60).json()
        findings = sorted(body["findings"], key=lambda d: -d["score"])
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = _open_example(browser, url)
            rows = page.locator("#box-list li")
            assert rows.count() == len(findings) == 2 * len(CLASSES)
            listed = [
                (rows.nth(i).locator(".index").text_content(), rows.nth(i).locator(".class").text_content(),
                 rows.nth(i).locator(".score").text_content())
                for i in range(rows.count())
            ]  # fmt: skip
            assert listed == [(str(i + 1), d["class"], f"{d['score']:.3f}") for i, d in enumerate(findings)]
            assert sorted(set(_canvas_texts(page))) == sorted(str(i + 1) for i in range(len(findings)))
            assert page.evaluate("oxnetReview.highlighted") is None and rows.locator(".hl").count() == 0
            plain = _canvas_rgb(page)

            rows.nth(2).hover()
            assert page.evaluate("oxnetReview.highlighted") == 2
            assert page.locator("#box-list li.hl").count() == 1 and "hl" in rows.nth(2).get_attribute("class")
            d = findings[2]
            labels = [t for t in _canvas_texts(page) if " " in t]
            assert labels == [f"3 {d['class']} {d['score']:.2f}"]
            assert f"{d['class']} {d['score']:.3f}" in page.text_content("#hover-info")
            assert (np.abs(_canvas_rgb(page) - plain).max(axis=2) > 40).sum() > 100  # the box stands out

            page.hover("h1")
            assert page.evaluate("oxnetReview.highlighted") is None
            assert page.locator("#box-list li.hl").count() == 0 and page.text_content("#hover-info") == ""
            _canvas_texts(page)
            assert np.abs(_canvas_rgb(page) - plain).max() <= 2  # back as it was

            page.check("#labels-on")
            labels = {t for t in _canvas_texts(page) if " " in t}
            assert labels == {f"{i + 1} {d['class']} {d['score']:.2f}" for i, d in enumerate(findings)}
        finally:
            browser.close()


def test_zoom_and_pan_keep_the_boxes_and_the_hover_on_their_findings(setup, chromium):
    """The image fills the room the page has; +/-/0, the wheel (around the pointer), the buttons and
    dragging change the view, and the box drawn and the box found under the pointer stay the finding's."""
    from playwright.sync_api import sync_playwright

    model_dir, examples, _ = setup
    app = create_app(model_dir, examples_dir=str(examples))
    with live(app) as url, sync_playwright() as p:
        colors = httpx.get(url + "v1/model", timeout=30).json()["colors"]
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = _open_example(browser, url)
            shown = page.evaluate("oxnetReview.shown")
            v0 = page.evaluate("oxnetReview.view")
            assert v0["zoom"] == 1 and v0["tx"] == v0["ty"] == 0
            assert v0["width"] == v0["height"] >= 560  # a 256 px image enlarged to the room in 1280x800

            free = next(
                (x, y)
                for y in range(4, 252, 4)
                for x in range(4, 252, 4)
                if not any(_inside(d, x, y, margin=6) for d in shown)
            )
            page.mouse.move(*_client_point(page, *free))
            assert page.evaluate("oxnetReview.highlighted") is None
            target = next(i for i, d in enumerate(shown) if _innermost(shown, *_centre(d)) == i)
            d = shown[target]
            cx, cy = _centre(d)
            page.mouse.move(*_client_point(page, cx, cy))
            assert page.evaluate("oxnetReview.highlighted") == target

            page.keyboard.press("+")  # around the canvas's centre
            v1 = page.evaluate("oxnetReview.view")
            assert v1["zoom"] == pytest.approx(1.25) and v1["scale"] == pytest.approx(1.25 * v0["scale"])
            assert v1["tx"] < 0 and v1["ty"] < 0
            assert (v1["width"] / 2 - v1["tx"]) / v1["scale"] == pytest.approx(v0["width"] / 2 / v0["scale"])

            x, y = _client_point(page, cx, cy)
            page.mouse.move(x, y)
            page.mouse.wheel(0, -200)  # two notches, around the pointer
            page.wait_for_function("oxnetReview.view.zoom > 1.9")
            v2 = page.evaluate("oxnetReview.view")
            assert v2["zoom"] == pytest.approx(1.25**3)
            assert _client_point(page, cx, cy) == pytest.approx((x, y), abs=0.5)
            assert page.evaluate("oxnetReview.highlighted") == target
            # the box is drawn where the hit-test finds it: an edge inside the view is in its class's colour
            rgb = _canvas_rgb(page)
            bx, by, bw, bh = d["box"]
            row = round(v2["ty"] + v2["scale"] * (by + bh / 2))
            edges = [round(v2["tx"] + v2["scale"] * ex) for ex in (bx, bx + bw)]
            edge = next(e for e in edges if 2 <= e < rgb.shape[1] - 2)
            assert _colour_pixels(rgb[row - 1 : row + 2, edge - 2 : edge + 3], colors[d["class"]]) > 0
            assert _colour_pixels(rgb[row - 1 : row + 2, edge + 8 : edge + 13], colors[d["class"]]) == 0

            dx = 80 if x < page.locator("#view").bounding_box()["x"] + v2["width"] / 2 else -80
            page.mouse.down()
            page.mouse.move(x + dx, y + 50, steps=4)
            page.mouse.up()
            v3 = page.evaluate("oxnetReview.view")
            span = 256 * v3["scale"]
            assert v3["tx"] == pytest.approx(min(0, max(v3["width"] - span, v2["tx"] + dx)))
            assert v3["ty"] == pytest.approx(min(0, max(v3["height"] - span, v2["ty"] + 50)))
            assert (v3["tx"], v3["ty"]) != (v2["tx"], v2["ty"])
            page.mouse.move(*_client_point(page, cx, cy))
            assert page.evaluate("oxnetReview.highlighted") == target
            page.mouse.move(*_client_point(page, *free))
            assert page.evaluate("oxnetReview.highlighted") != target

            page.keyboard.press("0")
            assert page.evaluate("oxnetReview.view") == v0
            page.keyboard.press("-")
            assert page.evaluate("oxnetReview.view.zoom") == 1  # never smaller than the whole image
            page.click("#zoom-in")
            assert page.evaluate("oxnetReview.view.zoom") == pytest.approx(1.25)
            assert page.text_content("#zoom-level") == "125%"
            page.click("#zoom-reset")
            assert page.evaluate("oxnetReview.view") == v0
        finally:
            browser.close()


def test_no_finding_at_the_operating_points_is_said_with_the_highest_box(setup, chromium, tmp_path):
    """When no box reaches its operating threshold the page says so, with the highest-scoring box and
    the image-level scores, and draws no box."""
    from playwright.sync_api import sync_playwright

    model_dir, examples, _ = setup
    strict = tmp_path / "model"
    shutil.copytree(model_dir, strict)
    (strict / "thresholds.json").write_text(json.dumps(dict.fromkeys(CLASSES, 0.999)))
    app = create_app(str(strict), examples_dir=str(examples))
    with live(app) as url, sync_playwright() as p:
        with open(examples / "chest.png", "rb") as f:
            body = httpx.post(url + "v1/predict", files={"file": ("chest.png", f)}, timeout=60).json()
        colors = httpx.get(url + "v1/model", timeout=30).json()["colors"]
        top = max(body["detections"], key=lambda d: d["score"])
        assert body["findings"] == [] and top["score"] < 0.999
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = _open_example(browser, url)
            summary = page.text_content("#summary")
            assert (
                f"no finding at the operating points; the highest-scoring box is {top['class']} "
                f"{top['score']:.2f}, below its threshold 1.00" in summary
            )
            assert (
                "highest image-level score" in summary and page.get_attribute("#summary", "class") == "none"
            )
            assert page.text_content("#box-count") == "0" and page.locator("#box-list li").count() == 0
            scores = page.locator("#image-scores tr")
            assert scores.count() == len(CLASSES) == len(body["image_scores"])
            assert {scores.nth(i).locator("td").first.text_content() for i in range(len(CLASSES))} == set(
                CLASSES
            )
            rgb = _canvas_rgb(page)
            assert all(_colour_pixels(rgb, colors[c]) < 5 for c in CLASSES)
            assert _canvas_texts(page) == []
        finally:
            browser.close()
