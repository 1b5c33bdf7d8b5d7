"""The review page in headless Chromium (Playwright driving the system's ``chromium``, no browser
download): upload and pick images, boxes above the per-class thresholds, sliders, attention toggle,
JSON and SR downloads, and a screenshot.

``OXNET_WRITE_REVIEW_SCREENSHOT=1`` also copies the screenshot (reduced to 256 colours) to
``docs/review_page.png``.
"""

import contextlib
import importlib.util
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
from oxnet.testing import REPO_ROOT, live_server, tiny_model_folder

CLASSES = ("nodule", "mass", "pleural effusion")


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium")
    if path is None:
        pytest.skip(
            "chromium is not installed (Debian: apt-get install -y chromium); the review page test needs it"
        )
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (requirements/base.txt)")
    return path


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
    from PIL import Image

    img = cv2.imread(str(shot))
    assert img.shape[:2] == (720, 1180) and img.std() > 20
    if os.environ.get("OXNET_WRITE_REVIEW_SCREENSHOT") == "1":
        out = pathlib.Path(REPO_ROOT) / "docs" / "review_page.png"
        Image.open(shot).convert("RGB").quantize(256).save(out, optimize=True)


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
            page.goto(url + "?example=missing.png")
            page.wait_for_function(
                "document.getElementById('status').textContent.includes('no example named')"
            )
        finally:
            browser.close()
