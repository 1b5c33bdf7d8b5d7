"""The annotation view (``python -m oxnet.serve --annotate POOL_JSON``): its API against a live uvicorn
(queue in the advisor's order, image, proposals, saving as fully supervised with who and when, revision
conflicts, bad boxes, saves refused without a user, the plain COCO export) and the page in headless
Chromium (accept a proposal, draw a box, undo, mark "no finding", save, then validate the file and train
one step on it; two reviewers saving the same image).

``OXNET_WRITE_ANNOTATE_SCREENSHOT=1`` also copies the screenshot (reduced to 256 colours) to
``docs/annotate.png``.
"""

import contextlib
import importlib.util
import json
import os
import pathlib

import cv2
import httpx
import numpy as np
import pytest

from oxnet.data.format import load_omni_coco, read_omni_coco, validate_omni_coco
from oxnet.data.io import write_png
from oxnet.data.synthetic import SyntheticCXR
from oxnet.serve.annotate import AnnotationPool, default_annotations_path
from oxnet.serve.app import create_app
from oxnet.serve.auth import TokenStore, hash_token
from oxnet.testing import REPO_ROOT, live_server, read_json, tiny_model_folder, toy_run_config

CLASSES = ("nodule", "mass", "pleural effusion")
TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-9876543210"}
SIZE = 256
CAPS = (1, 3)  # one proposal per class, three per image


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny trained model with the pool's class names (its scores spread over (0, 1))."""
    return tiny_model_folder(
        str(tmp_path_factory.mktemp("annotate_model")), class_names=CLASSES, score_shift=3.0
    )


def make_pool(folder, n=4):
    """A pool of synthetic chest X-rays: weak images (with report labels) and unlabeled ones, and an
    advice file ranking them in reverse order. Returns (pool.json, advice.json)."""
    folder = pathlib.Path(folder)
    images = []
    gen = SyntheticCXR(size=SIZE, seed=0)
    for i in range(n):
        image, _ = gen.sample(i)
        name = f"images/cxr_{i}.png"
        write_png(folder / name, image)
        entry = {"id": 10 + i, "file_name": name, "width": SIZE, "height": SIZE}
        if i % 2 == 0:
            entry.update(supervision="weak", image_labels={"nodule": 1, "mass": 0})
        else:
            entry["supervision"] = "unlabeled"
        images.append(entry)
    pool = {
        "images": images,
        "annotations": [],
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)],
    }
    (folder / "pool.json").write_text(json.dumps(pool))
    advice = {
        "strategy": "test",
        "images": [
            {"image_id": img["id"], "rank": r + 1, "score": 1.0 - r / 10, "reason": f"reason {img['id']}"}
            for r, img in enumerate(reversed(images))
        ],
    }
    (folder / "advice.json").write_text(json.dumps(advice))
    return str(folder / "pool.json"), str(folder / "advice.json")


def token_store(folder):
    path = pathlib.Path(folder) / "tokens.txt"
    path.write_text("".join(f"{name} {hash_token(tok)}\n" for name, tok in TOKENS.items()))
    return TokenStore(str(path))


@pytest.fixture(scope="module")
def model(model_dir):
    from oxnet.deploy.runtime import load_model

    return load_model(model_dir)


@contextlib.contextmanager
def serve(model, pool_json, advice=None, tokens=None):
    pool = AnnotationPool(pool_json, advice=advice)
    app = create_app(model, model.folder, tokens=tokens, caps=CAPS, annotate=pool)
    with live_server(app) as url:
        yield url, pool


def auth(user):
    return {"Authorization": f"Bearer {TOKENS[user]}"}


def post(url, image_id, body, user="alice"):
    headers = auth(user) if user else {}
    return httpx.post(f"{url}/v1/annotate/images/{image_id}", json=body, headers=headers, timeout=30)


def get(url, path, user="alice"):
    return httpx.get(url + path, headers=auth(user) if user else {}, timeout=60)


# -- the API ---------------------------------------------------------------------------------------------
@pytest.fixture
def live(model, tmp_path):
    pool_json, advice = make_pool(tmp_path)
    with serve(model, pool_json, advice, token_store(tmp_path)) as (url, pool):
        yield url, pool


def test_queue_image_and_proposals(live):
    url, pool = live
    q = get(url, "/v1/annotate/queue").json()
    assert [im["id"] for im in q["images"]] == [13, 12, 11, 10]  # the advice's ranks, not the pool order
    assert [im["rank"] for im in q["images"]] == [1, 2, 3, 4] and q["images"][0]["reason"] == "reason 13"
    assert q["images"][1]["image_labels"] == {"nodule": 1, "mass": 0}
    assert {im["status"] for im in q["images"]} == {"not reviewed"} and q["user"] == "alice" and q["can_save"]
    assert [c["name"] for c in q["categories"]] == list(CLASSES)
    assert get(url, "/v1/annotate/queue", user=None).status_code == 401

    r = get(url, "/v1/annotate/images/12")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape == (SIZE, SIZE) and img.dtype == np.uint8 and img.max() == 255

    props = get(url, "/v1/annotate/images/12/proposals").json()["proposals"]
    assert 0 < len(props) <= CAPS[1] and len({p["category"] for p in props}) == len(props)  # the caps
    for p in props:
        x, y, w, h = p["box"]
        assert p["category"] in CLASSES and 0 < p["score"] < 1
        assert w > 0 and h > 0 and x >= -1 and y >= -1 and x + w <= SIZE + 1 and y + h <= SIZE + 1
    assert get(url, "/v1/annotate/images/99").status_code == 404
    assert "no image with id '99'" in get(url, "/v1/annotate/images/99/proposals").json()["detail"]


def test_save_writes_full_images_that_validate_and_load(live):
    url, pool = live
    boxes = [
        {"category": "mass", "box": [20, 30, 40, 50], "source": "proposal"},
        {"category": 1, "box": [100.5, 90, 30, 20]},  # a category id works too; source defaults to drawn
    ]
    r = post(url, 12, {"boxes": boxes, "base_revision": 0})
    assert r.status_code == 200, r.text
    assert r.json()["revision"] == 1 and r.json()["by"] == "alice"
    r = post(url, 13, {"no_finding": True, "base_revision": 0}, user="bob")
    assert r.status_code == 200, r.text

    out = default_annotations_path(pool.pool_json)
    assert out.endswith("pool.annotations.json") and os.path.exists(out)
    saved = read_omni_coco(out)
    validate_omni_coco(saved, out, os.path.dirname(out))
    assert [im["id"] for im in saved["images"]] == [12, 13]  # pool order
    boxed, normal = saved["images"]
    assert boxed["supervision"] == normal["supervision"] == "full"
    assert boxed["image_labels"] == {"nodule": 1, "mass": 1, "pleural effusion": 0}  # from the boxes
    assert normal["image_labels"] == dict.fromkeys(CLASSES, 0)
    assert boxed["review"]["by"] == "alice" and normal["review"]["by"] == "bob"
    assert boxed["review"]["revision"] == 1 and normal["review"]["no_finding"] is True
    assert boxed["review"]["at"].endswith("+00:00")
    assert [(a["image_id"], a["category_id"], a["bbox"], a["source"]) for a in saved["annotations"]] == [
        (12, 2, [20, 30, 40, 50], "proposal"),
        (12, 1, [100.5, 90, 30, 20], "drawn"),
    ]
    dicts, meta = load_omni_coco(out, os.path.dirname(out))  # what train_net.py's registration loads
    assert meta["thing_classes"] == list(CLASSES)
    assert [len(d["annotations"]) for d in dicts] == [2, 0]

    q = get(url, "/v1/annotate/queue").json()
    status = {im["id"]: (im["status"], im["reviewed_by"], im["revision"]) for im in q["images"]}
    assert status[12] == ("reviewed", "alice", 1) and status[13] == ("reviewed", "bob", 1)
    assert status[10] == ("not reviewed", None, 0) and q["reviewed"] == 2
    ann = get(url, "/v1/annotate/images/12/annotation").json()
    assert ann["revision"] == 1 and [b["category"] for b in ann["boxes"]] == ["mass", "nodule"]
    assert get(url, "/v1/annotate/images/13/annotation").json()["no_finding"] is True

    # saving again from the current revision replaces the image's boxes; annotation ids stay unique
    r = post(url, 12, {"boxes": boxes[:1], "base_revision": 1}, user="bob")
    assert r.status_code == 200 and r.json()["revision"] == 2
    saved = read_omni_coco(out)
    validate_omni_coco(saved, out, os.path.dirname(out))
    assert [a["image_id"] for a in saved["annotations"]] == [12]
    assert saved["images"][0]["review"]["by"] == "bob"
    assert saved["images"][0]["image_labels"]["nodule"] == 0


def test_a_stale_revision_is_a_conflict_naming_who_and_when(live):
    url, pool = live
    first = post(url, 11, {"boxes": [{"category": "nodule", "box": [10, 10, 20, 20]}], "base_revision": 0})
    assert first.status_code == 200
    out = default_annotations_path(pool.pool_json)
    before = pathlib.Path(out).read_bytes()
    late = post(
        url, 11, {"boxes": [{"category": "mass", "box": [50, 50, 20, 20]}], "base_revision": 0}, "bob"
    )
    assert late.status_code == 409
    detail = late.json()["detail"]
    assert "alice" in detail and first.json()["at"] in detail and "revision 1" in detail
    assert "image 11 (images/cxr_1.png)" in detail and "nothing was overwritten" in detail
    assert pathlib.Path(out).read_bytes() == before
    # a revision from the future is stale too
    assert post(url, 11, {"no_finding": True, "base_revision": 5}, "bob").status_code == 409
    assert post(url, 10, {"no_finding": True, "base_revision": 1}, "bob").status_code == 409  # never saved
    assert pathlib.Path(out).read_bytes() == before


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"boxes": [{"category": "fracture", "box": [1, 1, 5, 5]}]}, "unknown category 'fracture'"),
        ({"boxes": [{"category": "mass", "box": [200, 200, 80, 20]}]}, "outside the 256x256 image"),
        ({"boxes": [{"category": "mass", "box": [10, 10, -5, 20]}]}, "non-positive width or height"),
        ({"boxes": [{"category": "mass", "box": [10, 10, 5]}]}, "4 finite numbers"),
        ({"boxes": []}, "no boxes"),
        ({"boxes": [{"category": "mass", "box": [1, 1, 5, 5]}], "no_finding": True}, "marked 'no finding'"),
        ({"boxes": [{"category": "mass", "box": [1, 1, 5, 5]}], "base_revision": None}, "'base_revision'"),
    ],
)
def test_bad_input_is_422_naming_the_image_and_the_problem(live, body, problem):
    url, pool = live
    body = {"base_revision": 0, **body}
    r = post(url, 10, body)
    assert r.status_code == 422
    assert "image 10 (images/cxr_0.png)" in r.json()["detail"] and problem in r.json()["detail"]
    assert not os.path.exists(default_annotations_path(pool.pool_json))


def test_a_box_just_over_the_edge_is_clipped_and_a_malformed_body_is_422(live):
    url, pool = live
    r = post(url, 10, {"boxes": [{"category": "mass", "box": [-0.5, 200, 60, 56.8]}], "base_revision": 0})
    assert r.status_code == 200
    saved = read_json(default_annotations_path(pool.pool_json))
    assert saved["annotations"][0]["bbox"] == [0, 200, 59.5, 56]
    r = httpx.post(f"{url}/v1/annotate/images/10", content=b"{not json", headers=auth("alice"))
    assert r.status_code == 422 and "not JSON" in r.json()["detail"]


def test_saving_needs_a_known_user(model, tmp_path):
    """Without authentication the view shows the pool but refuses saves (it cannot say who saved)."""
    pool_json, _ = make_pool(tmp_path, n=2)
    with serve(model, pool_json) as (url, pool):
        q = get(url, "/v1/annotate/queue", user=None).json()
        assert [im["id"] for im in q["images"]] == [10, 11] and not q["can_save"]  # no advice: pool order
        r = post(url, 10, {"no_finding": True, "base_revision": 0}, user=None)
        assert r.status_code == 403 and "needs a known user" in r.json()["detail"]
        assert "--token-file" in r.json()["detail"]
        assert not os.path.exists(pool.out)


def test_the_coco_export_is_the_saved_boxes(live):
    url, pool = live
    post(url, 12, {"boxes": [{"category": "mass", "box": [20, 30, 40, 50]}], "base_revision": 0})
    post(url, 13, {"no_finding": True, "base_revision": 0})
    r = get(url, "/v1/annotate/export.coco")
    assert r.status_code == 200 and "pool.annotations.coco.json" in r.headers["content-disposition"]
    coco = r.json()
    assert set(coco) == {"images", "annotations", "categories"}
    saved = read_json(pool.out)
    assert coco["images"] == [
        {k: im[k] for k in ("id", "file_name", "width", "height")} for im in saved["images"]
    ]
    keys = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")
    assert coco["annotations"] == [{k: a[k] for k in keys} for a in saved["annotations"]]
    assert [(c["id"], c["name"]) for c in coco["categories"]] == list(enumerate(CLASSES, 1))


def test_the_page_is_served_only_with_annotate_and_without_a_token(model, live):
    url, _ = live
    r = httpx.get(url + "/annotate")  # the page asks for the token itself
    assert r.status_code == 200 and "OXnet annotation" in r.text
    assert httpx.get(url + "/static/annotate.js").status_code == 200
    with live_server(create_app(model, model.folder)) as plain:
        assert httpx.get(plain + "/annotate").status_code == 404
        assert httpx.get(plain + "/v1/annotate/queue").status_code == 404


def test_pool_and_advice_errors_are_clear(tmp_path):
    pool_json, advice = make_pool(tmp_path, n=2)
    bad = tmp_path / "bad_advice.json"
    bad.write_text(json.dumps({"images": [{"image_id": 77, "rank": 1}]}))
    with pytest.raises(ValueError, match="image_id 77 is not in the pool"):
        AnnotationPool(pool_json, advice=str(bad))
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="a list under 'images'"):
        AnnotationPool(pool_json, advice=str(bad))
    by_name = tmp_path / "by_name.json"
    by_name.write_text(json.dumps({"images": [{"file_name": "images/cxr_1.png", "rank": 1, "reason": "x"}]}))
    assert AnnotationPool(pool_json, advice=str(by_name)).queue == ["11"]
    with pytest.raises(ValueError, match="must not be the pool itself"):
        AnnotationPool(pool_json, out=pool_json)
    os.remove(tmp_path / "images" / "cxr_1.png")
    with pytest.raises(ValueError, match="image files are missing"):
        AnnotationPool(pool_json)


def test_the_command_line_options(tmp_path, capsys):
    from oxnet.serve.__main__ import main, parse_args

    args = parse_args(
        ["--model", "m", "--annotate", "p.json", "--advice", "a.json", "--annotations-out", "o.json"]
    )
    assert (args.annotate, args.advice, args.annotations_out, args.annotate_images) == (
        "p.json",
        "a.json",
        "o.json",
        None,
    )
    assert main(["--model", str(tmp_path), "--advice", "a.json", "--port", "0"]) == 2
    assert "go with --annotate POOL_JSON" in capsys.readouterr().err
    assert main(["--model", str(tmp_path), "--annotate", str(tmp_path / "nope.json"), "--port", "0"]) == 2
    assert "nope.json does not exist" in capsys.readouterr().err


# -- the page in Chromium --------------------------------------------------------------------------------
def open_page(browser, url, user):
    """A page of its own browser context, the annotation view opened with ``user``'s token."""
    page = browser.new_context(viewport={"width": 1280, "height": 760}).new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/annotate")
    page.wait_for_selector("#token-box:not([hidden])")
    page.fill("#token", TOKENS[user])
    page.click("#token-box button")
    page.wait_for_function("document.getElementById('status').textContent.includes('proposals')")
    return page, errors


def to_page(page, x, y):
    """Page coordinates of image pixel (x, y) (the canvas keeps its transform in data attributes)."""
    box = page.locator("#view").bounding_box()
    t = page.eval_on_selector(
        "#view", "c => [Number(c.dataset.scale), Number(c.dataset.ox), Number(c.dataset.oy)]"
    )
    return box["x"] + t[1] + x * t[0], box["y"] + t[2] + y * t[0]


def drag(page, start, end):
    page.mouse.move(*to_page(page, *start))
    page.mouse.down()
    page.mouse.move(*to_page(page, *end), steps=6)
    page.mouse.up()


def free_square(boxes, side=40, margin=6):
    """The square nearest the image's centre that meets none of ``boxes``."""
    free = [
        [x, y, side, side]
        for y in range(8, SIZE - side - 8, 4)
        for x in range(8, SIZE - side - 8, 4)
        if all(
            x + side + margin < b[0]
            or b[0] + b[2] + margin < x
            or y + side + margin < b[1]
            or b[1] + b[3] + margin < y
            for b in boxes
        )
    ]
    assert free, f"no free square beside {boxes}"
    return min(free, key=lambda s: (s[0] + side / 2 - SIZE / 2) ** 2 + (s[1] + side / 2 - SIZE / 2) ** 2)


def test_annotate_in_chromium_then_validate_and_train_one_step(model, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    pool_json, advice = make_pool(tmp_path)
    with serve(model, pool_json, advice, token_store(tmp_path)) as (url, pool), sync_playwright() as p:
        props = get(url, "/v1/annotate/images/13/proposals").json()["proposals"]
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page, errors = open_page(browser, url, "alice")
            assert page.locator("#queue li").count() == 4
            assert "reason 13" in page.text_content("#queue li.current")  # the advisor's first image
            assert page.locator("#proposal-list li").count() == len(props) > 1

            # accept the first proposal; undo brings it back; accept it again
            page.click("#proposal-list li >> nth=0")
            page.keyboard.press("a")
            assert page.locator("#box-list li").count() == 1
            page.keyboard.press("Control+z")
            assert page.locator("#box-list li").count() == 0
            assert page.locator("#proposal-list li.pending").count() == len(props)
            page.click("#proposal-list li >> nth=0")
            page.keyboard.press("a")
            assert page.locator("#box-list li").count() == 1

            # draw one "mass" box (key 2) with the mouse on empty image area
            square = free_square([q["box"] for q in props])
            page.keyboard.press("2")
            drag(page, square[:2], (square[0] + square[2], square[1] + square[3]))
            assert page.locator("#box-list li").count() == 2
            assert "drew a mass box" in page.text_content("#status")
            # move it by its body, resize it by its bottom-right corner; reject the second proposal
            x, y, side = square[0], square[1], square[2]
            drag(page, (x + side / 2, y + side / 2), (x + side / 2 + 8, y + side / 2 + 4))
            drag(page, (x + 8 + side, y + 4 + side), (x + 18 + side, y + 10 + side))
            moved = [x + 8, y + 4, side + 10, side + 6]
            shot = tmp_path / "annotate.png"
            page.screenshot(path=str(shot))
            page.click("#proposal-list li >> nth=1")
            page.keyboard.press("r")
            assert page.locator("#proposal-list li.rejected").count() == 1

            page.keyboard.press("s")
            page.wait_for_function("document.getElementById('status').textContent.includes('saved 2 box')")
            assert "saved by alice" in page.text_content("#queue li.current")

            # the next image: no finding
            page.keyboard.press("j")
            page.wait_for_function("document.querySelector('#queue li.current').dataset.id === '12'")
            page.wait_for_function("document.getElementById('status').textContent.includes('proposals')")
            page.keyboard.press("n")
            assert "no finding" in page.text_content("#image-state")
            page.keyboard.press("s")
            page.wait_for_function(
                "document.getElementById('status').textContent.includes('saved as no finding')"
            )
            assert errors == []
        finally:
            browser.close()

    saved = read_omni_coco(pool.out)
    validate_omni_coco(saved, pool.out, os.path.dirname(pool.out))
    assert [im["id"] for im in saved["images"]] == [12, 13]
    assert all(im["supervision"] == "full" and im["review"]["by"] == "alice" for im in saved["images"])
    anns = [(a["category_id"], a["bbox"], a["source"]) for a in saved["annotations"]]
    accepted = props[0]
    assert anns[0] == (CLASSES.index(accepted["category"]) + 1, accepted["box"], "proposal")
    assert anns[1][0] == 2 and anns[1][2] == "drawn"
    assert np.allclose(anns[1][1], moved, atol=2.0), (anns[1][1], moved)
    _check_screenshot(shot)

    # train_net.py trains on the saved file as it is: one iteration of the tiny network
    train_net = _train_net()
    config = toy_run_config(tmp_path / "run", max_iter=1)
    out_dir = tmp_path / "run" / "out"
    train_net.main(
        train_net.parse_args(
            [
                "--config-file",
                config,
                "OXNET.DATASETS",
                repr((("boxed", pool.out, os.path.dirname(pool.out)),)),
                "DATASETS.TRAIN",
                "('boxed',)",
                "OUTPUT_DIR",
                str(out_dir),
            ]
        )  # fmt: skip
    )
    assert (out_dir / "model_final.pth").exists()
    metrics = [json.loads(line) for line in (out_dir / "metrics.json").read_text().splitlines()]
    assert metrics[-1]["iteration"] == 0 and np.isfinite(metrics[-1]["total_loss"])


def test_two_reviewers_saving_the_same_image_see_a_conflict(model, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    pool_json, advice = make_pool(tmp_path, n=2)
    with serve(model, pool_json, advice, token_store(tmp_path)) as (url, pool), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:  # two reviewers: two browser contexts (their own tab storage), two tokens
            pages = [open_page(browser, url, user)[0] for user in ("alice", "bob")]
            for page in pages:  # both start from the same image, not saved yet
                assert page.eval_on_selector("#queue li.current", "li => li.dataset.id") == "11"
            first, second = pages
            first.click("#proposal-list li >> nth=0")
            first.keyboard.press("a")
            first.keyboard.press("Control+s")
            first.wait_for_function("document.getElementById('status').textContent.includes('saved 1 box')")
            before = pathlib.Path(pool.out).read_bytes()

            second.keyboard.press("n")
            second.keyboard.press("s")
            second.wait_for_selector("#conflict:not([hidden])")
            text = second.text_content("#conflict")
            assert "Not saved" in text and "saved by alice" in text and "revision 1" in text
            assert "not saved (conflict)" in second.text_content("#status")
            assert pathlib.Path(pool.out).read_bytes() == before  # the first save is kept

            # the second reviewer loads the saved version (alice's box) and may save from it
            second.click("#load-saved")
            second.wait_for_function(
                "document.getElementById('status').textContent.includes('saved by alice')"
            )
            assert second.is_hidden("#conflict") and second.locator("#box-list li").count() == 1
            second.keyboard.press("n")
            second.keyboard.press("s")
            second.wait_for_function("document.getElementById('status').textContent.includes('revision 2')")
        finally:
            browser.close()
    saved = read_json(pool.out)
    assert saved["images"][0]["review"]["by"] == "bob" and saved["images"][0]["review"]["revision"] == 2


def _train_net():
    spec = importlib.util.spec_from_file_location(
        "train_net_annotate", os.path.join(REPO_ROOT, "train_net.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_screenshot(shot):
    from PIL import Image

    img = cv2.imread(str(shot))
    assert img.shape[:2] == (760, 1280) and img.std() > 20
    if os.environ.get("OXNET_WRITE_ANNOTATE_SCREENSHOT") == "1":
        out = pathlib.Path(REPO_ROOT) / "docs" / "annotate.png"
        Image.open(shot).convert("RGB").quantize(256).save(out, optimize=True)
