"""The deploy path end to end, as the README walks it: a small model trained here, its operating points
chosen on a validation set (``python -m oxnet.deploy.thresholds``), exported (``tools/export_model.py``),
served with an API token (``oxnet.serve``), a DICOM SR of a DX chest X-ray, the PACS bridge
(``python -m oxnet.pacs``) storing its report into Orthanc, and the review page in Chromium.

Every finding of the SR passes its class's operating point, the findings stay within the caps, the
review page's plain screenshot shows the example with its boxes in the class colours, and a result
where nothing passes says so, with the highest-scoring class and score."""

import importlib.util
import io
import json
import pathlib
import re
import shutil
import urllib.request

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from oxnet.data.io import write_dx_dicom
from oxnet.data.synthetic.generator import SyntheticCXR
from oxnet.data.toy import write_toy_dataset
from oxnet.deploy.runtime import MAX_FINDINGS_PER_CLASS, MAX_FINDINGS_PER_IMAGE, load_model
from oxnet.deploy.sr import read_findings, referenced_instances
from oxnet.testing import REPO_ROOT, live_server

TOKEN = "end-to-end-token-0123456789"


def _export_tool():
    spec = importlib.util.spec_from_file_location("export_model", f"{REPO_ROOT}/tools/export_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sr_thresholds(data):
    """{class: threshold} the SR's algorithm parameters state (``operating_point[CLASS]=threshold T``)."""
    found = re.findall(rb"operating_point\[([^\]]+)\]=threshold ([0-9.]+)", data)
    return {name.decode(): float(t) for name, t in found}


def _colour_pixels(rgb, hex_colour, tolerance=24):
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - target).max(axis=2) <= tolerance).sum())


def _check_findings(findings, thresholds):
    """Every finding passes its class's operating point; at most the caps per class and per image."""
    assert findings, "the example should have findings at the operating points"
    per_class = {}
    for f in findings:
        name = f["code"][2]
        assert f["score"] >= thresholds[name] - 5e-5, (name, f["score"], thresholds[name])  # SR: 4 decimals
        per_class[name] = per_class.get(name, 0) + 1
    assert max(per_class.values()) <= MAX_FINDINGS_PER_CLASS
    assert len(findings) <= MAX_FINDINGS_PER_IMAGE
    return per_class


@pytest.mark.slow
def test_deploy_path_end_to_end(model_dir, orthanc, dciodvfy, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    import oxnet.pacs as pacs
    from oxnet.deploy.thresholds import main as thresholds_main
    from oxnet.serve.app import create_app
    from oxnet.serve.auth import TokenStore

    # Operating points on a validation set the model did not train on, written into the model folder.
    val = tmp_path / "val"
    val_json = write_toy_dataset(str(val), n_full=12, n_weak=0, n_unlabeled=0, seed=11)
    assert thresholds_main(["--model", model_dir, "--val", val_json, "--images", str(val / "images")]) == 0
    thresholds = json.loads((pathlib.Path(model_dir) / "thresholds.json").read_text())
    info = json.loads((pathlib.Path(model_dir) / "thresholds_info.json").read_text())
    assert set(thresholds) == {"class0", "class1", "class2"}  # every class has one: never "all kept"
    assert all(0 < t <= 1 for t in thresholds.values()) and info["sensitivity"] == 0.8

    # Export: the operating points travel with the model.
    export = tmp_path / "export"
    _export_tool().main(
        ["--weights", f"{model_dir}/model_final.pth", "--format", "onnx", "--out", str(export)]
    )
    assert load_model(export).backend == "onnx"
    assert json.loads((export / "thresholds.json").read_text()) == thresholds

    # A DX chest X-ray with synthetic patient and study attributes, valid for dciodvfy.
    examples = tmp_path / "examples"
    examples.mkdir()
    image, _ = SyntheticCXR(size=256, seed=0).sample(1)
    dicom = examples / "chest.dcm"
    write_dx_dicom(dicom, image.astype(np.uint16) * 16)
    source = pydicom.dcmread(dicom)
    if dciodvfy is not None:
        out, errors = dciodvfy(dicom)
        assert not errors, out

    app = create_app(str(export), examples_dir=str(examples), tokens=TokenStore(None, TOKEN))
    with live_server(app) as url:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = dicom.read_bytes()
        refused = httpx.post(f"{url}/v1/predict", files={"file": ("chest.dcm", body)}, timeout=60)
        assert refused.status_code == 401
        result = httpx.post(
            f"{url}/v1/predict", files={"file": ("chest.dcm", body)}, headers=auth, timeout=60
        )
        assert result.status_code == 200, result.text
        result = result.json()
        assert result["calibrated"] is True and result["thresholds"] == pytest.approx(thresholds)
        resp = httpx.post(
            f"{url}/v1/predict?format=dicom-sr", files={"file": ("chest.dcm", body)}, headers=auth, timeout=60
        )
        assert resp.status_code == 200, resp.text
        sr_path = tmp_path / "service_sr.dcm"
        sr_path.write_bytes(resp.content)
        model_info = httpx.get(f"{url}/v1/model", headers=auth, timeout=30).json()

        # The SR: its findings pass the operating points it states, which are the model folder's.
        sr = pydicom.dcmread(io.BytesIO(resp.content))
        stated = _sr_thresholds(resp.content)
        assert stated == pytest.approx(thresholds, abs=5e-5)
        findings = read_findings(sr)
        per_class = _check_findings(findings, stated)
        assert referenced_instances(sr) == {source.SOPInstanceUID}
        assert len(findings) == len(result["findings"])
        assert sorted(f["score"] for f in findings) == pytest.approx(
            sorted(f["score"] for f in result["findings"]), abs=1e-6
        )
        # what the caps removed were findings too: the JSON's detections above the thresholds
        passing = [d for d in result["detections"] if d["score"] >= thresholds[d["class"]]]
        assert len(findings) == min(
            MAX_FINDINGS_PER_IMAGE,
            sum(min(MAX_FINDINGS_PER_CLASS, sum(d["class"] == c for d in passing)) for c in thresholds),
        )
        assert result["capped"] == len(passing) - len(findings)
        if dciodvfy is not None:
            out, errors = dciodvfy(sr_path)
            assert "Comprehensive3DSR" in out and not errors, out

        # The bridge reports the same image, stored in Orthanc, with one SR: the same findings.
        req = urllib.request.Request(
            orthanc + "/instances", data=body, method="POST", headers={"Content-Type": "application/dicom"}
        )
        with urllib.request.urlopen(req) as r:
            assert json.load(r)["Status"] == "Success"
        assert (
            pacs.main(["--orthanc", orthanc, "--model", str(export), "--study", source.StudyInstanceUID]) == 0
        )
        client = pacs.OrthancClient(orthanc)
        instances = client.get(f"/studies/{client.lookup_study(source.StudyInstanceUID)}/instances")
        stored = [pydicom.dcmread(pacs._buffer(client.instance_file(i["ID"]))) for i in instances]
        reports = [ds for ds in stored if ds.Modality == "SR"]
        assert len(stored) == 2 and len(reports) == 1
        bridged = read_findings(reports[0])
        assert referenced_instances(reports[0]) == {source.SOPInstanceUID}
        assert [(f["code"], round(f["score"], 5)) for f in bridged] == [
            (f["code"], round(f["score"], 5)) for f in findings
        ]

        # The review page, opened on the example by URL: a plain screenshot shows its boxes.
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1180, "height": 720}, extra_http_headers=auth)
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{url}/?example=chest.dcm")
                page.wait_for_function(
                    "document.getElementById('status').textContent.includes('detections')", timeout=60000
                )
                assert int(page.text_content("#box-count")) == len(findings)
                shot = tmp_path / "review.png"
                page.screenshot(path=str(shot))
                box = page.locator("#view").bounding_box()
                assert errors == []
            finally:
                browser.close()
        from PIL import Image

        rgb = np.asarray(Image.open(shot).convert("RGB"), int)
        rgb = rgb[
            round(box["y"]) : round(box["y"] + box["height"]),
            round(box["x"]) : round(box["x"] + box["width"]),
        ]
        colours = model_info["colors"]
        for name, count in per_class.items():  # each class's outlines, about 4 sides x box size
            assert _colour_pixels(rgb, colours[name]) > 40 * count, name
        for name in set(thresholds) - set(per_class):  # no outline of a class without findings
            assert _colour_pixels(rgb, colours[name]) < 20, name

    # Nothing passes: the JSON and the SR say so, with the highest-scoring class and its score.
    strict = tmp_path / "strict"
    shutil.copytree(export, strict)
    (strict / "thresholds.json").write_text(json.dumps(dict.fromkeys(thresholds, 1.0)))
    with live_server(create_app(str(strict))) as url:
        empty = httpx.post(f"{url}/v1/predict", files={"file": ("chest.dcm", body)}, timeout=60).json()
        resp = httpx.post(
            f"{url}/v1/predict?format=dicom-sr", files={"file": ("chest.dcm", body)}, timeout=60
        )
    assert empty["findings"] == [] and empty["detections"]
    top = max(empty["detections"], key=lambda d: d["score"])
    assert empty["summary"].startswith("no finding at the operating points")
    assert (
        f"highest-scoring box is {top['class']} {top['score']:.2f}, below its threshold 1.00"
        in empty["summary"]
    )
    best = max(empty["image_scores"].items(), key=lambda kv: kv[1])
    assert f"highest image-level score: {best[0]} {best[1]:.2f}" in empty["summary"]
    none = pydicom.dcmread(io.BytesIO(resp.content))
    assert read_findings(none) == []
    from highdicom.sr import srread

    none_path = tmp_path / "none.dcm"
    none_path.write_bytes(resp.content)
    (group,) = srread(none_path).content.get_image_measurement_groups()
    assert group.finding_type == codes.DCM.NoAbnormality
