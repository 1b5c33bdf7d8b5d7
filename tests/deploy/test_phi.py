"""Patient identifiers stay where they belong. DICOMs whose patient name, ID and birth date are unique
markers go through the service (JSON, SR, preview; and failing uploads), the review page in Chromium
and the PACS bridge (a good and a failing image); then every log line, audit line, response and error
body, the bridge's state file and every file left in the temporary folder are searched for the
markers. Only the SRs (returned by the service, stored in the PACS) may hold them."""

import logging
import os
import shutil
import tempfile

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

import oxnet.pacs as pacs
from oxnet.data.io import write_dicom
from oxnet.deploy.phi import redact
from oxnet.serve.access import AuditLog
from oxnet.serve.app import create_app
from oxnet.serve.auth import TokenStore
from oxnet.testing import live_server, tiny_model_folder

NAME, PID, BIRTH = "Qzxwvk^Marker7781", "MRKID-55913", "19310817"
MARKERS = ("Qzxwvk", "Marker7781", PID, BIRTH)


def _marked_dicom(path, pixels=True, study=None, wrong_rows=False):
    img = np.random.default_rng(1).normal(900, 60, (64, 80)).clip(0, 4095).astype(np.uint16)
    write_dicom(
        path,
        img,
        bits_stored=12,
        attributes=dict(
            Modality="DX",
            PatientName=NAME,
            PatientID=PID,
            PatientBirthDate=BIRTH,
            StudyInstanceUID=study or generate_uid(),
            StudyDate="20240101",
            StudyTime="090000",
            AccessionNumber="ACC-7",
            StudyID="1",
            ReferringPhysicianName="",
            PatientSex="O",
        ),
    )
    if wrong_rows:  # a valid file whose pixel data is too short for its Rows: fails when decoded
        ds = pydicom.dcmread(path)
        ds.Rows = 640
        ds.save_as(path)
    if not pixels:  # a header that parses, pixel data that does not: a failing case after the header
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) - 5000])
    return path


def _leaks(text):
    return [m for m in MARKERS if m in text]


def _files_with_markers(folder):
    found = []
    for root, _, files in os.walk(folder):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                data = fh.read()
            if any(m.encode() in data for m in MARKERS):
                found.append(os.path.join(root, f))
    return found


@pytest.fixture(autouse=True)
def _private_tmp(tmp_path, monkeypatch):
    """Every temporary file of the test's code goes to a folder of its own, searched afterwards."""
    folder = tempfile.mkdtemp(prefix="oxphi-")  # short: Chromium's socket path must fit
    monkeypatch.setenv("TMPDIR", folder)
    monkeypatch.setattr(tempfile, "tempdir", folder)
    for name in ("oxnet", "oxnet.pacs", "oxnet.serve", "uvicorn", "uvicorn.error", "uvicorn.access"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_redact_removes_every_identifying_value_and_its_name_parts():
    ds = pydicom.Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PID, BIRTH
    text = f"bad value {NAME!s} for {PID} born {BIRTH}; family name Qzxwvk alone"
    assert _leaks(redact(text, ds)) == [] and redact(text, None) == text
    assert redact("nothing here", ds) == "nothing here"


def test_no_identifier_leaves_the_service_or_the_bridge(
    tmp_path, _private_tmp, caplog, orthanc, chromium_path
):
    caplog.set_level(logging.DEBUG)
    model_dir = tiny_model_folder(str(tmp_path / "m"), score_shift=3.0)
    good = _marked_dicom(tmp_path / "good.dcm")
    broken = _marked_dicom(tmp_path / "broken.dcm", pixels=False)
    audit = tmp_path / "audit.jsonl"
    bodies, srs = [], []
    app = create_app(model_dir, tokens=TokenStore(None, "tok"), audit=AuditLog(str(audit)))
    auth = {"Authorization": "Bearer tok"}
    # as python -m oxnet.serve runs it: uvicorn's access log (which prints query strings) off
    with live_server(app, log_level="debug", access_log=False) as url:
        for path, params, name in (
            (good, {}, "upload.dcm"),
            (good, {"preview": "1"}, "upload.dcm"),
            (good, {"format": "dicom-sr"}, f"{NAME}.dcm"),  # a file named after the patient
            (broken, {}, f"{PID}.dcm"),
            (broken, {"format": "dicom-sr"}, "b.dcm"),
            (good, {"format": "nonsense"}, "x.dcm"),
        ):
            r = httpx.post(
                url + "/v1/predict",
                params=params,
                files={"file": (name, path.read_bytes())},
                headers=auth,
                timeout=60,
            )
            if params.get("format") == "dicom-sr" and r.status_code == 200:
                srs.append(r.content)
            else:
                bodies.append((r.status_code, r.text))
        r = httpx.post(
            url + "/v1/predict", content=good.read_bytes(), params={"filename": f"{NAME}.dcm"}, headers=auth
        )
        bodies.append((r.status_code, r.text))
        if chromium_path:  # the review page shows the result of a marked DICOM
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
                page = browser.new_page()
                console = []
                page.on("console", lambda m: console.append(m.text))
                page.goto(url + "/")
                page.fill("#token", "tok")
                page.click("#token-box button")
                page.wait_for_function(
                    "document.getElementById('model-info').textContent.includes('classes')"
                )
                page.set_input_files("#file", str(good))
                page.wait_for_function("document.getElementById('status').textContent.includes('detections')")
                shown = page.evaluate("document.body.innerText")
                browser.close()
                assert _leaks(shown) == [] and _leaks("\n".join(console)) == []
    assert {code for code, _ in bodies} >= {200, 400, 422}
    for code, text in bodies:
        assert _leaks(text) == [], (code, text)
    assert srs and all(NAME.encode() in sr for sr in srs)  # the SR carries the patient module, as it must

    # the bridge: one good image and one whose pixels are cut off, in a study of the PACS
    study = generate_uid()
    for path in (
        _marked_dicom(tmp_path / "p1.dcm", study=study),
        _marked_dicom(tmp_path / "p2.dcm", study=study, wrong_rows=True),
    ):
        client = pacs.OrthancClient(orthanc)
        assert client.store(path.read_bytes())["Status"] == "Success"
    state = tmp_path / "bridge_state.json"
    bridge_start = len(caplog.records)
    assert (
        pacs.main(
            [
                "--orthanc",
                orthanc,
                "--model",
                model_dir,
                "--allow-uncalibrated",
                "--once",
                "--state",
                str(state),
            ]
        )
        == 1
    )  # one failed
    assert "failed 1" in caplog.text and "reported 1" in caplog.text
    # the bridge is quiet without -v: no highdicom line per copied attribute
    assert not [r for r in caplog.records[bridge_start:] if r.name.startswith("highdicom")]
    client = pacs.OrthancClient(orthanc)
    study_id = client.lookup_study(study)
    stored = [client.instance_file(i["ID"]) for i in client.get(f"/studies/{study_id}/instances")]
    srs_in_pacs = [d for d in stored if b"operating_points=" in d]
    assert len(srs_in_pacs) == 1 and b"operating_points=uncalibrated" in srs_in_pacs[0]  # it says so

    ours = [
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    ]  # not the client's
    assert [m for m in ours if _leaks(m)] == []
    assert _leaks(audit.read_text()) == [] and _leaks(state.read_text()) == []
    assert _files_with_markers(_private_tmp) == []


@pytest.fixture
def chromium_path():
    import importlib.util

    path = shutil.which("chromium")
    return path if path and importlib.util.find_spec("playwright") else None
