"""The prediction service against a live uvicorn on 127.0.0.1: every input kind, bad uploads, the DICOM
SR, the model description, bounded uploads and a bounded queue under 200 concurrent requests."""

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time

import cv2
import httpx
import numpy as np
import pydicom
import pytest

from oxnet.data.io import read_raw, write_dicom
from oxnet.deploy.runtime import load_model
from oxnet.serve.app import ServiceLimits, create_app, declared_size, sniff_kind
from oxnet.testing import REPO_ROOT, SlowModel, free_port, live_server


@contextlib.contextmanager
def live(app):
    """Serve ``app`` on 127.0.0.1 (a deep accept backlog for the concurrency test); yields the base URL."""
    with live_server(app, backlog=512) as url:
        yield url


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One chest-X-ray-like picture (80 wide, 64 high: boxes must come back in this grid) per kind."""
    root = tmp_path_factory.mktemp("uploads")
    rng = np.random.default_rng(0)
    img = rng.normal(70, 8, (64, 80)).clip(0, 255)
    img[10:30, 40:62] = 200
    img[40:52, 8:20] = 150
    out = {}
    out["png8"] = root / "chest8.png"
    cv2.imwrite(str(out["png8"]), img.astype(np.uint8))
    out["png16"] = root / "chest16.png"
    cv2.imwrite(str(out["png16"]), (img * 200).astype(np.uint16))
    out["jpeg"] = root / "chest.jpg"
    cv2.imwrite(str(out["jpeg"]), img.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    out["dicom"] = root / "chest.dcm"
    write_dicom(out["dicom"], (4095 - img * 12).astype(np.uint16), photometric="MONOCHROME1", bits_stored=12)
    good = out["png8"].read_bytes()
    out["corrupt"] = root / "corrupt.png"
    out["corrupt"].write_bytes(good[:60] + bytes(200))  # a PNG header, then garbage
    out["text"] = root / "notes.txt"
    out["text"].write_text("not an image\n" * 20)
    assert cv2.imread(str(out["png16"]), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    return out


@pytest.fixture(scope="module")
def server(model, model_dir):
    app = create_app(model, model_dir, ServiceLimits(max_upload_bytes=200_000, workers=2, max_queue=256))
    with live(app) as url:
        yield url, app


def post(url, path, params=None, name=None):
    with open(path, "rb") as f:
        return httpx.post(
            url + "/v1/predict",
            params=params,
            files={"file": (name or os.path.basename(path), f)},
            timeout=60,
        )


KINDS = {"png8": "png", "png16": "png", "jpeg": "jpeg", "dicom": "dicom"}


@pytest.mark.parametrize("kind", ["png8", "png16", "jpeg", "dicom"])
def test_each_input_kind_gives_the_runtimes_findings_in_the_original_pixel_grid(server, model, files, kind):
    url, _ = server
    r = post(url, files[kind])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == {
        "width": 80,
        "height": 64,
        "kind": KINDS[kind],
        **({"sop_instance_uid": pydicom.dcmread(files[kind]).SOPInstanceUID} if kind == "dicom" else {}),
    }
    direct = model.predict(read_raw(files[kind]))
    assert len(body["detections"]) == len(direct["detections"]) > 0
    for got, want in zip(body["detections"], direct["detections"]):
        assert got["class"] == want["category_name"] and got["category_id"] == want["category_id"]
        assert got["score"] == pytest.approx(want["score"])
        assert got["box"] == pytest.approx(want["bbox"])
        x, y, w, h = got["box"]
        assert x >= 0 and y >= 0 and x + w <= 80 + 1e-3 and y + h <= 64 + 1e-3
    # no thresholds.json: the findings are the highest-scoring detections within the caps, uncalibrated
    scores = [f["score"] for f in body["findings"]]
    assert all(f in body["detections"] for f in body["findings"]) and scores == sorted(scores, reverse=True)
    assert body["calibrated"] is False
    assert set(body["image_scores"]) == set(model.class_names)
    assert body["image_scores"] == pytest.approx(direct["image_scores"])


def test_a_raw_body_upload_equals_the_multipart_one(server, files):
    url, _ = server
    raw = httpx.post(
        url + "/v1/predict",
        content=files["png16"].read_bytes(),
        headers={"content-type": "application/octet-stream"},
        timeout=60,
    )
    assert raw.status_code == 200, raw.text
    assert raw.json()["detections"] == post(url, files["png16"]).json()["detections"]


def test_dicom_sr_for_dicom_uploads_and_a_clear_4xx_otherwise(server, files, tmp_path):
    from oxnet.deploy.sr import read_findings, referenced_instances

    url, _ = server
    r = post(url, files["dicom"], {"format": "dicom-sr"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/dicom"
    assert r.headers["content-disposition"].startswith("attachment")
    sr = pydicom.dcmread(io.BytesIO(r.content))
    source_uid = pydicom.dcmread(files["dicom"]).SOPInstanceUID
    assert referenced_instances(sr) == {source_uid}
    found = read_findings(sr)
    findings = post(url, files["dicom"]).json()["findings"]
    assert len(found) == len(findings)
    assert sorted(f["score"] for f in found) == pytest.approx(sorted(f["score"] for f in findings), abs=1e-4)

    r = post(url, files["png8"], {"format": "dicom-sr"})
    assert r.status_code == 415 and "DICOM upload" in r.json()["detail"]
    assert "PNG" in r.json()["detail"]
    no_series = tmp_path / "no_series.dcm"
    ds = pydicom.dcmread(files["dicom"])
    del ds.SeriesInstanceUID
    ds.save_as(no_series)
    r = post(url, no_series, {"format": "dicom-sr"})
    assert r.status_code == 422 and "SeriesInstanceUID" in r.json()["detail"]
    r = post(url, files["png8"], {"format": "xml"})
    assert r.status_code == 400 and "xml" in r.json()["detail"]


def test_bad_uploads_get_a_clear_4xx(server, files, tmp_path):
    url, _ = server
    r = post(url, files["corrupt"])
    assert r.status_code == 422
    # the detail names the problem, not the client's file name (which may be a patient's)
    assert "the upload" in r.json()["detail"] and "corrupt.png" not in r.json()["detail"]
    assert "PNG" in r.json()["detail"]
    r = post(url, files["text"])
    assert r.status_code == 415 and "not a DICOM, PNG or JPEG" in r.json()["detail"]
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(files["jpeg"].read_bytes()[:300])
    r = post(url, truncated)
    assert r.status_code == 422 and "truncated JPEG" in r.json()["detail"]
    no_pixels = tmp_path / "header.dcm"
    ds = pydicom.dcmread(files["dicom"])
    del ds.PixelData
    ds.save_as(no_pixels)
    r = post(url, no_pixels)
    assert r.status_code == 422 and "no pixel data" in r.json()["detail"]
    huge = bytearray(files["png8"].read_bytes())  # a valid header that declares 100000 x 100000 pixels
    huge[16:24] = (100_000).to_bytes(4, "big") * 2
    r = httpx.post(url + "/v1/predict", content=bytes(huge), timeout=60)
    assert r.status_code == 422 and "100000x100000 pixels" in r.json()["detail"]
    r = httpx.post(
        url + "/v1/predict", data={"other": "x"}, files={"other_file": ("a.png", b"1")}, timeout=60
    )
    assert r.status_code == 400 and "'file'" in r.json()["detail"]
    r = httpx.post(url + "/v1/predict", content=b"", timeout=60)
    assert r.status_code == 400


def test_an_oversized_upload_gets_413_with_or_without_a_content_length(server):
    url, _ = server
    big = b"\x89PNG\r\n\x1a\n" + bytes(300_000)
    r = httpx.post(url + "/v1/predict", files={"file": ("big.png", big)}, timeout=60)
    assert r.status_code == 413 and "200000 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(40):
            yield bytes(10_000)

    r = httpx.post(url + "/v1/predict", content=chunks(), timeout=60)
    assert r.status_code == 413
    assert httpx.get(url + "/healthz").json()["in_progress"] == 0


def test_no_file_is_written_outside_a_private_temporary_folder(
    server, files, model_dir, tmp_path, monkeypatch
):
    url, _ = server
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the service may write
    before = {p: sorted(os.listdir(p)) for p in (model_dir, REPO_ROOT, os.getcwd())}
    for kind in ("png8", "dicom", "corrupt"):
        post(url, files[kind])
    post(url, files["dicom"], {"format": "dicom-sr"})
    assert {p: sorted(os.listdir(p)) for p in before} == before
    assert os.listdir(tmp_path) == []  # each request's temporary folder is gone once it is answered


def test_model_description_health_and_thresholds(model_dir, files):
    with open(os.path.join(model_dir, "thresholds.json"), "w") as f:
        json.dump({"class0": 0.99, "class2": 0.5}, f)
    try:
        model = load_model(model_dir)
        with live(create_app(model, model_dir)) as url:
            info = httpx.get(url + "/v1/model").json()
            assert info["classes"] == ["class0", "class1", "class2"]
            from oxnet.utils.palette import class_palette

            assert info["colors"] == dict(zip(info["classes"], class_palette(3)))  # the review page's colours
            assert info["version"] == __import__("oxnet").__version__ and info["format"] == "eager"
            assert info["thresholds"] == {"class0": 0.99, "class2": 0.5}
            (train,) = info["training_data"].values()
            assert train["images"] == 8 and train["supervision"] == {"full": 4, "weak": 2, "unlabeled": 2}
            assert info["attention"] == {"available": True, "reason": None}
            assert httpx.get(url + "/healthz").json()["status"] == "ok"
            body = post(url, files["png8"]).json()
            kept = [
                d
                for d in body["detections"]
                if d["score"] >= {"class0": 0.99, "class2": 0.5}.get(d["class"], 0)
            ]
            kept.sort(key=lambda d: -d["score"])
            per_class = {}
            capped = [
                d
                for d in kept
                if per_class.setdefault(d["class"], []).append(d) or len(per_class[d["class"]]) <= 3
            ]
            assert body["findings"] == capped[:10] and len(kept) < len(body["detections"])
            assert all(
                d["operating_threshold"] == info["thresholds"].get(d["class"]) for d in body["findings"]
            )
            page = httpx.get(url + "/")
            assert page.status_code == 200 and "OXnet review" in page.text
    finally:
        os.remove(os.path.join(model_dir, "thresholds.json"))


def test_attention_maps_of_the_eager_daa_model_and_a_reason_for_exported_ones(server, model, files):
    from oxnet.serve.app import _attention_unavailable

    url, _ = server
    body = post(url, files["png8"], {"attention": 1, "preview": 1}).json()
    att = body["attention"]
    assert att["classes"] == model.class_names and len(att["maps"]) == 3
    assert np.asarray(att["maps"]).shape[1:] == tuple(att["grid"]) and np.ptp(att["maps"]) > 0
    assert body["preview"].startswith("data:image/png;base64,")

    class Exported:
        info = {"format": "onnx", "method": "oxnet"}

    assert "exported (onnx)" in _attention_unavailable(Exported(), None)
    Exported.info = {"format": "eager", "method": "retinanet"}
    assert "no DAA global head" in _attention_unavailable(Exported(), None)


def test_header_sniffing():
    assert sniff_kind(b"\x89PNG\r\n\x1a\n....") == "png" and sniff_kind(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff_kind(bytes(128) + b"DICM") == "dicom" and sniff_kind(b"\x08\x00", "a.DCM") == "dicom"
    assert sniff_kind(b"%PDF-1.4") is None
    ok, jpg = cv2.imencode(".jpg", np.zeros((37, 51), np.uint8))
    assert declared_size(jpg.tobytes(), "jpeg") == (51, 37)


async def _burst(url, payload, n):
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def one():
            return await client.post(url + "/v1/predict", files={"file": ("c.png", payload)})

        return await asyncio.gather(*(one() for _ in range(n)))


def test_200_concurrent_requests_with_a_bounded_queue(model, model_dir, files):
    payload = files["png8"].read_bytes()
    # A queue as long as the burst: all 200 succeed.
    app = create_app(model, model_dir, ServiceLimits(workers=2, max_queue=200))
    with live(app) as url:
        responses = asyncio.run(_burst(url, payload, 200))
    assert [r.status_code for r in responses] == [200] * 200
    assert len({json.dumps(r.json()["detections"]) for r in responses}) == 1
    service = app.state.service
    assert service.served == 200 and service.pending == 0 and 1 < service.max_pending <= 202

    # One worker and a queue of 2: the rest get 503 with Retry-After, and never more than 3 are admitted.
    app = create_app(SlowModel(model, 0.05), model_dir, ServiceLimits(workers=1, max_queue=2))
    with live(app) as url:
        responses = asyncio.run(_burst(url, payload, 200))
    codes = [r.status_code for r in responses]
    assert set(codes) == {200, 503} and codes.count(200) >= 3 and codes.count(503) >= 20
    for r in responses:
        if r.status_code == 503:
            assert int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["detail"]
    service = app.state.service
    assert service.max_pending == 3 and service.rejected == codes.count(503) and service.pending == 0


def test_the_command_line_serves_a_model_folder(model_dir, files):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "oxnet.serve",
            "--model",
            model_dir,
            "--port",
            str(port),
            "--max-queue",
            "4",
            "--log-level",
            "warning",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "the service did not start"
            time.sleep(0.3)
        assert httpx.get(url + "/healthz").json()["limits"]["max_queue"] == 4
        r = post(url, files["jpeg"])
        assert r.status_code == 200 and r.json()["image"]["width"] == 80
    finally:
        proc.terminate()
        proc.wait(30)
    bad = subprocess.run(
        [sys.executable, "-m", "oxnet.serve", "--model", os.path.join(model_dir, "nope")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_findings_are_capped_and_uncalibrated_output_says_so(model, model_dir, files, tmp_path):
    """Without thresholds.json the findings are the top boxes above the test threshold, at most 3 per
    class and 10 per image (the caps), and the JSON says they are not calibrated; with operating points
    it names them per class."""
    import shutil

    app = create_app(model, model_dir)
    with live(app) as url:
        body = post(url, files["png8"]).json()
    assert body["calibrated"] is False and body["operating_points"] is None
    assert len(body["detections"]) > 10 and len(body["findings"]) <= 10
    per_class = {}
    for f in body["findings"]:
        per_class[f["class"]] = per_class.get(f["class"], 0) + 1
    assert max(per_class.values()) <= 3 and body["capped"] == len(body["detections"]) - len(body["findings"])
    top = sorted((d for d in body["detections"]), key=lambda d: -d["score"])
    assert body["findings"][0] == top[0]  # highest scores first

    folder = tmp_path / "calibrated"
    shutil.copytree(model_dir, folder)
    names = list(model.class_names)
    (folder / "thresholds.json").write_text(json.dumps({n: 0.5 for n in names}))
    point = {"threshold": 0.5, "source": "pooled", "sensitivity": 0.75, "fp_per_image": 1.5, "lesions": 2}
    info = {"sensitivity": 0.8, "images": 4, "val": "/data/val.json", "classes": {n: point for n in names}}
    (folder / "thresholds_info.json").write_text(json.dumps(info))
    with live(create_app(str(folder), caps=(1, 2))) as url:
        body = post(url, files["png8"]).json()
    assert body["calibrated"] is True and body["caps"] == {"per_class": 1, "per_image": 2}
    assert body["operating_points"]["validation_set"] == "val.json"
    assert body["operating_points"]["classes"][names[0]]["source"] == "pooled"
    assert len(body["findings"]) <= 2 and all(f["score"] >= 0.5 for f in body["findings"])
    assert body["summary"] == f"{len(body['findings'])} finding(s) at the operating points"
    # nothing passes: the answer says so, with the highest box and image-level score
    (folder / "thresholds.json").write_text(json.dumps({n: 0.999 for n in names}))
    with live(create_app(str(folder))) as url:
        body = post(url, files["png8"]).json()
    assert body["findings"] == [] and body["detections"]
    top = max(body["detections"], key=lambda d: d["score"])
    assert body["summary"].startswith(
        f"no finding at the operating points; the highest-scoring box is {top['class']} {top['score']:.2f}, "
        "below its threshold 1.00"
    )
    assert "highest image-level score" in body["summary"]
