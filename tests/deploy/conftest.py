"""Orthanc fixtures: a private Orthanc server started for the tests and stopped after them."""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

ORTHANC = os.environ.get("OXNET_ORTHANC", "/usr/sbin/Orthanc")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def orthanc(tmp_path):
    """Base URL of a fresh Orthanc on a free local port: storage and index in tmp, DICOM server
    disabled, no remote access, no authentication, no plugins; killed at teardown."""
    binary = ORTHANC if os.path.exists(ORTHANC) else shutil.which("Orthanc")
    if not binary:
        pytest.skip(f"Orthanc is not installed ({ORTHANC}; Debian package orthanc)")
    folder = tmp_path / "orthanc"
    folder.mkdir()
    port = _free_port()
    config = {
        "Name": "oxnet-test",
        "HttpPort": port,
        "HttpBindAddress": "127.0.0.1",
        "DicomServerEnabled": False,
        "DicomPort": 0,
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
    }
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
                with urllib.request.urlopen(url + "/system", timeout=2) as r:
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
