"""python -m oxnet.pacs against a real Orthanc (started by the ``orthanc`` fixture): one SR per chest
X-ray in the image's study, none for other instances, none twice (state file, lost state file, crash),
and a report saying "none found" for an image without findings."""

import json
import logging
import shutil
import urllib.request

import cv2
import pydicom
import pytest
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

import oxnet.pacs as pacs
from oxnet.data.io import read_raw, write_dx_dicom
from oxnet.deploy.runtime import load_model
from oxnet.deploy.sr import LOCAL_SCHEME, read_findings, referenced_instances


@pytest.fixture(autouse=True)
def _logs_reach_caplog(monkeypatch):
    """detectron2's setup_logger (run by training in earlier tests of the same session) stops the
    "oxnet" loggers from propagating to the root logger, where caplog listens."""
    for name in ("oxnet", "oxnet.pacs"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A trained tiny eager model folder (score threshold lowered so that it reports boxes, at most
    three per image) and the toy dataset's images."""
    from oxnet.engine.model_files import load_model_config
    from oxnet.testing import train_toy_and_save, write_toy_dataset

    root = tmp_path_factory.mktemp("pacs_toy")
    json_file = write_toy_dataset(root / "data")
    model = root / "model"
    train_toy_and_save(json_file, root / "data" / "images", model, max_iter=2)
    cfg = load_model_config(str(model / "model_final.pth"))
    cfg.defrost()
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = 0.0
    cfg.TEST.DETECTIONS_PER_IMAGE = 3
    (model / "config.yaml").write_text(cfg.dump())
    return {"model": model, "images": sorted((root / "data" / "images").glob("*.png"))}


def _store_cxr(url, png, folder, study_uid, modality="DX", photometric="MONOCHROME2", auth=None):
    """Store the toy PNG in Orthanc as a 12-bit DX chest X-ray with synthetic patient and study
    attributes (valid for dciodvfy); ``modality`` and ``photometric`` other than DX and MONOCHROME2
    make it an image the bridge must pass over or cannot read."""
    path = folder / f"{png.stem}_{modality}.dcm"
    extra = {} if modality == "DX" else {"Modality": modality}
    if photometric != "MONOCHROME2":
        extra["PhotometricInterpretation"] = photometric
    write_dx_dicom(
        path,
        cv2.imread(str(png), cv2.IMREAD_GRAYSCALE).astype("uint16") * 16,
        StudyInstanceUID=study_uid,
        PatientName="Test^Patient",
        PatientID="P-42",
        PatientBirthDate="19500101",
        PatientSex="M",
        StudyDate="20240101",
        AccessionNumber="ACC1",
        **extra,
    )
    req = urllib.request.Request(
        url + "/instances",
        data=path.read_bytes(),
        method="POST",
        headers={"Content-Type": "application/dicom", **({"Authorization": auth} if auth else {})},
    )
    with urllib.request.urlopen(req) as r:
        assert json.load(r)["Status"] == "Success"
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _reports(url, study_uid, credentials=None):
    """The SRs in a study, as (SR dataset, SOP Instance UIDs it references)."""
    client = pacs.OrthancClient(url, credentials=credentials)
    study_id = client.lookup_study(study_uid)
    out = []
    for inst in client.get(f"/studies/{study_id}/instances"):
        ds = pydicom.dcmread(pacs._buffer(client.instance_file(inst["ID"])))
        if ds.Modality == "SR":
            out.append((ds, referenced_instances(ds)))
    return out


def _run(url, model, *extra, calibrated=False):
    """The bridge on ``model``; the toy model has no operating points, so --allow-uncalibrated unless
    ``calibrated``."""
    allow = [] if calibrated else ["--allow-uncalibrated"]
    return pacs.main(["--orthanc", url, "--model", str(model), *allow, *extra])


@pytest.mark.slow
def test_each_image_reported_once(orthanc, toy, tmp_path, caplog, monkeypatch, dciodvfy):
    caplog.set_level(logging.INFO, logger="oxnet.pacs")
    study = generate_uid()
    images = [_store_cxr(orthanc, png, tmp_path, study) for png in toy["images"][:2]]
    _store_cxr(orthanc, toy["images"][2], tmp_path, study, modality="OT")  # not a chest X-ray
    state = tmp_path / "state.json"

    # A crash after the second report is stored, before the cursor moves past its image.
    real_process, calls = pacs.Reporter.process, []

    def crashing(self, orthanc_id):
        outcome = real_process(self, orthanc_id)
        calls.append(outcome)
        if calls.count("reported") == 2:
            raise RuntimeError("simulated crash")
        return outcome

    monkeypatch.setattr(pacs.Reporter, "process", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(orthanc, toy["model"], "--once", "--state", str(state))
    monkeypatch.setattr(pacs.Reporter, "process", real_process)
    assert len(_reports(orthanc, study)) == 2
    crash_cursor = json.loads(state.read_text())["since"]

    caplog.clear()
    assert _run(orthanc, toy["model"], "--once", "--state", str(state)) == 0
    reports = _reports(orthanc, study)
    assert sorted(uid for _, refs in reports for uid in refs) == sorted(images)
    assert caplog.text.count("already reported") == 1  # the image of the crash, found in Orthanc
    assert caplog.text.count("finding(s), SR") == 0
    for ds, _ in reports:
        findings = read_findings(ds)
        assert 1 <= len(findings) <= 3
        assert all(f["code"][1] == LOCAL_SCHEME for f in findings)  # the toy classes are "class0", ...
        assert ds.StudyInstanceUID == study and ds.PatientID == "P-42"
        if dciodvfy is not None:  # the SR of a valid DX image is valid too
            path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            out, errors = dciodvfy(path)
            assert "Comprehensive3DSR" in out and not errors, out
    saved = json.loads(state.read_text())
    assert saved["since"] > crash_cursor and sorted(saved["reported"]) == sorted(images)
    with urllib.request.urlopen(orthanc + "/changes?limit=1000") as r:
        assert saved["since"] == json.load(r)["Last"]

    # Again with the state file: the cursor is at the end, nothing is looked at.
    caplog.clear()
    assert _run(orthanc, toy["model"], "--once", "--state", str(state)) == 0
    assert len(_reports(orthanc, study)) == 2 and "instance" not in caplog.text

    # Without the state file the whole feed is read again; the reports in Orthanc stop duplicates.
    caplog.clear()
    assert _run(orthanc, toy["model"], "--once") == 0
    assert len(_reports(orthanc, study)) == 2
    assert caplog.text.count("already reported") == 2

    caplog.clear()
    assert _run(orthanc, toy["model"], "--study", study) == 0
    assert len(_reports(orthanc, study)) == 2
    assert caplog.text.count("already reported") == 2


@pytest.mark.slow
def test_image_without_findings_gets_a_report_saying_so(orthanc, toy, tmp_path):
    model = tmp_path / "strict_model"
    model.mkdir()
    for name in ("model_final.pth", "config.yaml"):
        shutil.copy(toy["model"] / name, model / name)
    (model / "thresholds.json").write_text(json.dumps({f"class{c}": 1.0 for c in range(3)}))
    study = generate_uid()
    image = _store_cxr(orthanc, toy["images"][0], tmp_path, study, modality="DX")
    assert _run(orthanc, model, "--study", study) == 0
    ((ds, refs),) = _reports(orthanc, study)
    assert refs == {image} and read_findings(ds) == []
    group = ds.ContentSequence[-1].ContentSequence[0]  # Imaging Measurements > Measurement Group
    finding = [
        item
        for item in group.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == codes.DCM.Finding.value
    ]
    assert finding[0].ConceptCodeSequence[0].CodeValue == codes.DCM.NoAbnormality.value
    # The model finds boxes in that image: the operating thresholds removed them all.
    assert load_model(model).predict(read_raw(tmp_path / f"{toy['images'][0].stem}_DX.dcm"))["detections"]


@pytest.mark.slow
def test_unreadable_image_is_recorded_and_the_feed_goes_on(orthanc, toy, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="oxnet.pacs")
    study = generate_uid()
    bad = _store_cxr(orthanc, toy["images"][0], tmp_path, study, modality="DX", photometric="PALETTE COLOR")
    good = _store_cxr(orthanc, toy["images"][1], tmp_path, study)
    state = tmp_path / "state.json"
    assert _run(orthanc, toy["model"], "--once", "--state", str(state)) == 1
    ((_, refs),) = _reports(orthanc, study)
    assert refs == {good}
    failed = json.loads(state.read_text())["failed"]
    assert list(failed) == [bad] and "PALETTE COLOR" in failed[bad] and bad in caplog.text


def test_state_file_errors_name_the_file(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=f"state file {path}: unreadable"):
        pacs.State(path, "http://127.0.0.1:8042")
    path.write_text(json.dumps({"orthanc": "http://other:8042", "since": 3}))
    with pytest.raises(ValueError, match="belongs to http://other:8042"):
        pacs.State(path, "http://127.0.0.1:8042")
    path.write_text(json.dumps({"orthanc": "http://127.0.0.1:8042", "since": "3"}))
    with pytest.raises(ValueError, match="'since' missing or not an integer"):
        pacs.State(path, "http://127.0.0.1:8042")
    state = pacs.State(tmp_path / "new.json", "http://127.0.0.1:8042")
    state.data["reported"]["1.2.3"] = "1.2.4"
    state.save(since=7)
    again = pacs.State(tmp_path / "new.json", "http://127.0.0.1:8042")
    assert again.since == 7 and again.data["reported"] == {"1.2.3": "1.2.4"}


def _basic(user, password):
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_bridge_logs_in_to_an_orthanc_with_authentication(
    orthanc_auth, toy, tmp_path, caplog, monkeypatch
):
    """A PACS as a hospital runs it (authentication on, remote access allowed): credentials from the
    environment or a file, never from the command line or the URL, never in the log; without them or
    with a wrong password a clear error after a bounded back-off; an unreachable PACS likewise."""
    orthanc_auth, (ORTHANC_USER, ORTHANC_PASSWORD) = orthanc_auth
    caplog.set_level(logging.INFO, logger="oxnet.pacs")
    study = generate_uid()
    image = _store_cxr(
        orthanc_auth, toy["images"][0], tmp_path, study, auth=_basic(ORTHANC_USER, ORTHANC_PASSWORD)
    )
    fast = ["--retries", "2", "--retry-delay", "0.05"]
    monkeypatch.delenv("OXNET_ORTHANC_USER", raising=False)
    monkeypatch.delenv("OXNET_ORTHANC_PASSWORD", raising=False)
    assert _run(orthanc_auth, toy["model"], "--once", *fast) == 2
    assert "requires a login and no credentials were given" in caplog.text
    assert caplog.text.count("try ") == 2  # two waits, then the error
    caplog.clear()

    monkeypatch.setenv("OXNET_ORTHANC_USER", ORTHANC_USER)
    monkeypatch.setenv("OXNET_ORTHANC_PASSWORD", "wrong-password")
    assert _run(orthanc_auth, toy["model"], "--once", *fast) == 2
    assert "credentials given were refused" in caplog.text and "wrong-password" not in caplog.text
    caplog.clear()

    monkeypatch.setenv("OXNET_ORTHANC_PASSWORD", ORTHANC_PASSWORD)
    assert _run(orthanc_auth, toy["model"], "--once", "--state", str(tmp_path / "s.json")) == 0
    reports = _reports(orthanc_auth, study, (ORTHANC_USER, ORTHANC_PASSWORD))
    assert [refs for _, refs in reports] == [{image}]
    assert ORTHANC_PASSWORD not in caplog.text

    monkeypatch.delenv("OXNET_ORTHANC_USER")
    monkeypatch.delenv("OXNET_ORTHANC_PASSWORD")
    creds = tmp_path / "orthanc.cred"
    creds.write_text(f"{ORTHANC_USER}:{ORTHANC_PASSWORD}\n")
    assert _run(orthanc_auth, toy["model"], "--study", study, "--credentials", str(creds)) == 0
    assert len(_reports(orthanc_auth, study, (ORTHANC_USER, ORTHANC_PASSWORD))) == 1  # not reported twice
    caplog.clear()

    with_password = orthanc_auth.replace("http://", f"http://{ORTHANC_USER}:{ORTHANC_PASSWORD}@")
    assert _run(with_password, toy["model"], "--once") == 2
    assert "do not put credentials in the URL" in caplog.text and ORTHANC_PASSWORD not in caplog.text
    caplog.clear()
    from oxnet.testing import free_port

    assert _run(f"http://127.0.0.1:{free_port()}", toy["model"], "--once", *fast) == 2
    assert "is Orthanc running at" in caplog.text and caplog.text.count("try ") == 2


def test_the_bridge_verifies_an_https_pacs_against_its_ca_file(toy, tmp_path, caplog, monkeypatch):
    """HTTPS with a self-signed certificate: refused (certificate verification) without ``--ca-file``,
    accepted with it, and the credentials sent. Debian's Orthanc 1.10 crashes with ``SslEnabled``, so a
    stand-in HTTPS server answers Orthanc's ``/system`` and ``/changes`` here."""
    import http.server
    import ssl
    import threading

    from oxnet.testing import self_signed_certificate

    pair = self_signed_certificate(str(tmp_path))
    if pair is None:
        pytest.skip("openssl is not installed")
    cert, key = pair
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            answer = (
                {"Version": "stand-in", "ApiVersion": 18}
                if self.path == "/system"
                else {"Changes": [], "Done": True, "Last": 0}
            )
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}"
    caplog.set_level(logging.INFO, logger="oxnet.pacs")
    monkeypatch.setenv("OXNET_ORTHANC_USER", "bridge")
    monkeypatch.setenv("OXNET_ORTHANC_PASSWORD", "tls-pass")
    try:
        assert _run(url, toy["model"], "--once", "--retries", "1", "--retry-delay", "0.01") == 2
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text and not seen
        caplog.clear()
        assert _run(url, toy["model"], "--once", "--ca-file", cert) == 0
        assert "Orthanc stand-in" in caplog.text and seen and all(a.startswith("Basic ") for a in seen)
        assert _run(url.replace("https", "http"), toy["model"], "--once", "--ca-file", cert) == 2
        assert "--ca-file is for an https://" in caplog.text
    finally:
        server.shutdown()


def test_errors_say_what_to_check(orthanc, toy, tmp_path, caplog):
    """A server that is not Orthanc, a study that is not there: messages that say what to check, without
    the changes cursor (which --study does not use)."""
    from oxnet.serve.app import create_app
    from oxnet.testing import live_server

    caplog.set_level(logging.INFO, logger="oxnet.pacs")
    with live_server(create_app(str(toy["model"]))) as other:  # OXnet's own service: not Orthanc
        assert _run(other, toy["model"], "--once", "--retries", "0") == 2
    assert "does not answer as Orthanc: is --orthanc its REST API" in caplog.text
    caplog.clear()
    assert _run(orthanc, toy["model"], "--study", "1.2.3.4.5") == 2
    assert "study 1.2.3.4.5 is not in" in caplog.text and "cursor" not in caplog.text
    caplog.clear()
    assert _run("127.0.0.1:8042", toy["model"], "--once") == 2
    assert "give Orthanc's REST API as http://HOST:PORT" in caplog.text


def test_a_model_without_operating_points_is_refused_unless_allowed(orthanc, toy, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="oxnet.pacs")
    assert _run(orthanc, toy["model"], "--once", calibrated=True) == 2
    assert (
        "has no operating points (thresholds.json)" in caplog.text and "--allow-uncalibrated" in caplog.text
    )
    model = tmp_path / "calibrated"
    shutil.copytree(toy["model"], model)
    (model / "thresholds.json").write_text(json.dumps({n: 0.2 for n in load_model(str(model)).class_names}))
    caplog.clear()
    assert _run(orthanc, model, "--once", calibrated=True) == 0
    assert (
        _run(orthanc, model, "--once", "--no-thresholds", calibrated=True) == 2
    )  # ignoring them is uncalibrated
