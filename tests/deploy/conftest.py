"""Orthanc fixtures: a private Orthanc server started for the tests and stopped after them, without
authentication (``orthanc``) or with it and remote access on, as a production PACS (``orthanc_auth``)."""

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

ORTHANC = os.environ.get("OXNET_ORTHANC", "/usr/sbin/Orthanc")
TRY_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "configs", "orthanc", "try.json"
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


with open(TRY_CONFIG, encoding="utf-8") as _f:
    #: The user of ``orthanc_auth``: the one of the repository's configuration for a try (README).
    ORTHANC_USER, ORTHANC_PASSWORD = next(iter(json.load(_f)["RegisteredUsers"].items()))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny trained model folder whose scores spread over (0, 1) (one per test module)."""
    from oxnet.testing import tiny_model_folder

    return tiny_model_folder(str(tmp_path_factory.mktemp("deploy_model")), score_shift=3.0)


@pytest.fixture(scope="module")
def model(model_dir):
    from oxnet.deploy.runtime import load_model

    return load_model(model_dir)


@pytest.fixture(scope="session")
def chromium():
    """The system Chromium's path for Playwright; the test is skipped without Chromium or Playwright."""
    import importlib.util

    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); the page tests need it")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (requirements/base.txt)")
    return path


@pytest.fixture(scope="session")
def dciodvfy():
    """``check(path) -> (report, error lines)``: dicom3tools' ``dciodvfy`` on a DICOM file; None when
    it is not installed (Debian package dicom3tools)."""
    binary = shutil.which("dciodvfy")
    if binary is None:
        return None

    def check(path):
        proc = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr
        return out, [line for line in out.splitlines() if line.startswith("Error")]

    return check


@pytest.fixture
def orthanc(tmp_path):
    """Base URL of a fresh Orthanc on a free local port: storage and index in tmp, DICOM server
    disabled, no remote access, no authentication, no plugins; killed at teardown."""
    with _orthanc(tmp_path) as url:
        yield url


@pytest.fixture
def orthanc_auth(tmp_path):
    """``(base URL, (user, password))`` of a fresh Orthanc as a hospital runs it: authentication on
    (one registered user), remote access allowed."""
    with _orthanc(tmp_path, {ORTHANC_USER: ORTHANC_PASSWORD}) as url:
        yield url, (ORTHANC_USER, ORTHANC_PASSWORD)


@contextlib.contextmanager
def _orthanc(tmp_path, users=None):
    binary = ORTHANC if os.path.exists(ORTHANC) else shutil.which("Orthanc")
    if not binary:
        pytest.skip(f"Orthanc is not installed ({ORTHANC}; Debian package orthanc)")
    folder = tmp_path / "orthanc"
    folder.mkdir()
    port = _free_port()
    with open(TRY_CONFIG, encoding="utf-8") as f:
        config = json.load(f)  # the repository's configuration for a try, with the test's settings over it
    config.update({
        "Name": "oxnet-test",
        "HttpPort": port,
        "HttpBindAddress": "127.0.0.1",
        "DicomServerEnabled": False,
        "DicomPort": 0,
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "RemoteAccessAllowed": bool(users),
        "AuthenticationEnabled": bool(users),
        "RegisteredUsers": users or {},
        "Plugins": [],
    })  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115  (Orthanc writes to it until the fixture ends)
    proc = subprocess.Popen(
        [binary, str(folder / "config.json")], stdout=log, stderr=subprocess.STDOUT, cwd=folder
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                req = urllib.request.Request(url + "/system")
                if users:
                    user, password = next(iter(users.items()))
                    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
                    req.add_header("Authorization", "Basic " + basic)
                with urllib.request.urlopen(req, timeout=2) as r:
                    json.load(r)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    tail = (folder / "orthanc.log").read_text(errors="replace")[-2000:]
                    pytest.fail(f"Orthanc did not start on port {port} (exit {proc.poll()}):\n{tail}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
