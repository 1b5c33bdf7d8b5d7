"""Who may use the service, what it logs, and the attack suite, against a live uvicorn on 127.0.0.1:
tokens (missing, wrong, revoked, from the environment), a trusted proxy's user header, per-client rate
and upload limits, the audit log, refusing a network address without authentication, path traversal,
oversized headers and bodies, malformed multipart, a body that never finishes, hostile DICOMs."""

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import time

import cv2
import httpx
import numpy as np
import pydicom
import pytest

from oxnet.data.io import write_dicom
from oxnet.serve.access import AuditLog
from oxnet.serve.app import ServiceLimits, create_app
from oxnet.serve.auth import ClientLimits, TokenStore, hash_token
from oxnet.serve.tokens import main as tokens_main
from oxnet.testing import REPO_ROOT, SlowModel, live_server


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    img = np.random.default_rng(0).normal(70, 8, (64, 80)).clip(0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("upload") / "chest.png"
    cv2.imwrite(str(path), img)
    return path.read_bytes()


def _tokens(tmp_path, *names):
    path = str(tmp_path / "tokens.txt")
    out = {}
    for name in names:
        from contextlib import redirect_stdout
        from io import StringIO

        buf = StringIO()
        with redirect_stdout(buf):
            assert tokens_main(["add", name, "--file", path]) == 0
        out[name] = buf.getvalue().strip()
    return path, out


def _audit(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _predict(url, png, token=None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(url + "/v1/predict", files={"file": ("c.png", png)}, headers=headers, timeout=60, **kw)


def test_tokens_gate_every_endpoint_but_health_and_the_page_and_are_audited(tmp_path, model, model_dir, png):
    path, tokens = _tokens(tmp_path, "alice", "pacs-bridge")
    with open(path, encoding="utf-8") as f:
        stored = f.read()
    assert tokens["alice"] not in stored and hash_token(tokens["alice"]) in stored  # only the hash
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    audit = str(tmp_path / "audit.jsonl")
    app = create_app(model, model_dir, tokens=TokenStore(path), audit=AuditLog(audit))
    with live_server(app) as url:
        assert httpx.get(url + "/healthz").status_code == 200
        assert (
            httpx.get(url + "/").status_code == 200
            and httpx.get(url + "/static/review.js").status_code == 200
        )
        for endpoint in ("/v1/model", "/v1/examples/x.png"):
            r = httpx.get(url + endpoint)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
            assert "API token" in r.json()["detail"]
        assert _predict(url, png).status_code == 401
        assert _predict(url, png, token="not-a-token").status_code == 401
        r = httpx.get(url + "/v1/model", headers={"Authorization": "Basic " + tokens["alice"]})
        assert r.status_code == 401
        ok = _predict(url, png, token=tokens["alice"], params={"filename": "smith_john.png"})
        assert ok.status_code == 200
        assert (
            httpx.get(
                url + "/v1/model", headers={"Authorization": f"Bearer {tokens['pacs-bridge']}"}
            ).status_code
            == 200
        )
        # revoked: the file changes, the next request is refused, without a restart
        assert tokens_main(["revoke", "alice", "--file", path]) == 0
        assert _predict(url, png, token=tokens["alice"]).status_code == 401
        assert (
            httpx.get(
                url + "/v1/model", headers={"Authorization": f"Bearer {tokens['pacs-bridge']}"}
            ).status_code
            == 200
        )
    lines = _audit(audit)
    assert {"time", "client", "method", "endpoint", "status", "ms", "study"} == set(lines[0])
    assert [(x["client"], x["endpoint"], x["status"]) for x in lines] == [
        ("anyone", "/", 200),
        ("unauthenticated", "/v1/model", 401),
        ("unauthenticated", "/v1/examples/{name}", 401),
        ("unauthenticated", "/v1/predict", 401),
        ("unauthenticated", "/v1/predict", 401),
        ("unauthenticated", "/v1/model", 401),
        ("alice", "/v1/predict", 200),
        ("pacs-bridge", "/v1/model", 200),
        ("unauthenticated", "/v1/predict", 401),
        ("pacs-bridge", "/v1/model", 200),
    ]
    predicted = next(x for x in lines if x["client"] == "alice")
    assert predicted["study"] == hashlib.sha256(png).hexdigest()[:16]
    with open(audit, encoding="utf-8") as f:
        text = f.read()
    assert "smith_john" not in text and tokens["alice"] not in text


def test_environment_token_and_a_trusted_proxy_user(tmp_path, model, model_dir, png):
    audit = str(tmp_path / "audit.jsonl")
    app = create_app(
        model,
        model_dir,
        tokens=TokenStore.from_options(None, {"OXNET_SERVE_TOKEN": "s3cret-token-from-env"}),
        proxies=("127.0.0.1",),
        user_header="X-Remote-User",
        audit=AuditLog(audit),
    )
    with live_server(app) as url:
        assert _predict(url, png, token="s3cret-token-from-env").status_code == 200
        r = httpx.get(url + "/v1/model", headers={"X-Remote-User": "dr.who"})
        assert r.status_code == 200
    assert [x["client"] for x in _audit(audit)] == ["env", "proxy:dr.who"]
    # the same header from an address that is not a trusted proxy is ignored
    app = create_app(
        model, model_dir, tokens=TokenStore(None, "tok"), proxies=("10.1.2.3",), user_header="X-Remote-User"
    )
    with live_server(app) as url:
        assert httpx.get(url + "/v1/model", headers={"X-Remote-User": "dr.who"}).status_code == 401
    assert TokenStore.from_options(None, {}) is None
    with pytest.raises(ValueError, match="no tokens"):
        (tmp_path / "empty.txt").write_text("# nobody\n")
        TokenStore(str(tmp_path / "empty.txt"))
    (tmp_path / "bad.txt").write_text("alice sha256:1234\n")
    with pytest.raises(ValueError, match="line 1"):
        TokenStore(str(tmp_path / "bad.txt"))


def test_per_client_rate_and_concurrent_uploads_get_429_with_retry_after(tmp_path, model, model_dir, png):
    path, tokens = _tokens(tmp_path, "a", "b")
    app = create_app(
        model, model_dir, tokens=TokenStore(path), client_limits=ClientLimits(rate=3, per=60.0, uploads=5)
    )
    with live_server(app) as url:
        codes = [_predict(url, png, token=tokens["a"]).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = _predict(url, png, token=tokens["a"])
        assert (
            r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "too many" in r.json()["detail"]
        )
        assert _predict(url, png, token=tokens["b"]).status_code == 200  # another client is not affected

    app = create_app(
        SlowModel(model, 0.5), model_dir, ServiceLimits(workers=4, max_queue=8), tokens=TokenStore(path),
        client_limits=ClientLimits(rate=100, per=60.0, uploads=1),
    )  # fmt: skip

    async def two():
        async with httpx.AsyncClient(timeout=60) as client:
            send = lambda t: client.post(  # noqa: E731
                url + "/v1/predict", files={"file": ("c.png", png)}, headers={"Authorization": f"Bearer {t}"}
            )
            return await asyncio.gather(send(tokens["a"]), send(tokens["a"]), send(tokens["b"]))

    with live_server(app) as url:
        codes = sorted(r.status_code for r in asyncio.run(two()))
    assert codes == [200, 200, 429]


def test_a_network_address_without_authentication_is_refused_before_the_model_loads(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "oxnet.serve", "--model", str(tmp_path / "no-model"), *args],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300,
    )  # fmt: skip
    refused = run("--host", "0.0.0.0")
    assert refused.returncode == 2 and "refusing to serve 0.0.0.0 without authentication" in refused.stderr
    assert "does not exist" not in refused.stderr  # checked before the model is loaded
    accepted = run("--host", "0.0.0.0", "--insecure-no-auth")
    assert (
        "without authentication (--insecure-no-auth)" in accepted.stderr
        and "does not exist" in accepted.stderr
    )
    assert "TLS needs both" in run("--ssl-certfile", "cert.pem").stderr
    with socket.socket() as busy:  # a port in use is found before the model loads, with what to do
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = run("--port", str(busy.getsockname()[1]))
    assert taken.returncode == 2 and "is another service using it? choose --port" in taken.stderr
    assert "does not exist" not in taken.stderr


def _raw_request(url, data, read_timeout=30):
    host, port = url.rsplit("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode("latin-1")


def test_attack_suite(tmp_path, model, model_dir, png):
    """Path traversal, oversized headers and bodies, malformed multipart, a stalled body, hostile
    DICOMs: each gets a 4xx and the service stays up with no request left in progress."""
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "ok.png").write_bytes(png)
    (tmp_path / "secret.txt").write_text("do not serve me")
    path, tokens = _tokens(tmp_path, "t")
    auth = {"Authorization": f"Bearer {tokens['t']}"}
    limits = ServiceLimits(max_upload_bytes=100_000, max_pixels=4_000_000, body_timeout=1.0)
    app = create_app(model, model_dir, limits, examples_dir=str(examples), tokens=TokenStore(path))
    results = {}
    with live_server(app) as url:
        assert httpx.get(url + "/v1/examples/ok.png", headers=auth).status_code == 200
        for name in (
            "../secret.txt",
            "..%2Fsecret.txt",
            "%2e%2e%2fsecret.txt",
            "ok.png%00.txt",
            "/etc/passwd",
        ):
            r = httpx.get(url + "/v1/examples/" + name, headers=auth)
            results[f"traversal {name}"] = r.status_code
            assert r.status_code in (404, 400) and "do not serve me" not in r.text
        try:  # uvicorn (h11) refuses headers beyond its limit: an error status or a closed connection
            code = httpx.get(url + "/v1/model", headers={**auth, "X-Big": "a" * 200_000}).status_code
        except httpx.TransportError:
            code = "connection closed"
        results["200 kB header"] = code
        assert code in (400, 413, 431, "connection closed")
        r = httpx.post(url + "/v1/predict", content=b"\0" * 300_000, headers=auth)
        results["300 kB body (limit 100 kB)"] = r.status_code
        assert r.status_code == 413
        form = "multipart/form-data; boundary=xyz"
        for label, ctype, body in (
            ("multipart without boundary", "multipart/form-data", b"--x\r\n\r\n"),
            ("multipart, broken part", form, b"--xyz\r\nContent-Disposition: form-data\r\n\r\nabc"),
            (
                "multipart without a file field",
                form,
                b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--xyz--\r\n',
            ),
        ):
            r = httpx.post(url + "/v1/predict", content=body, headers={**auth, "Content-Type": ctype})
            results[label] = r.status_code
            assert 400 <= r.status_code < 500, (label, r.status_code, r.text)
        # a body that never finishes: Content-Length 5000, 10 bytes sent, then silence
        start = time.time()
        head = (
            f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tokens['t']}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 5000\r\n\r\n"
        ).encode()
        reply = _raw_request(url, head + b"0123456789", read_timeout=10)
        results["stalled body"] = int(reply.split(" ")[1]) if reply else None
        assert reply.startswith("HTTP/1.1 408") and time.time() - start < 9
        # hostile DICOMs: huge declared dimensions, a broken transfer syntax, a script in a text field
        big = tmp_path / "big.dcm"
        write_dicom(big, np.zeros((8, 8), np.uint16))
        ds = pydicom.dcmread(big)
        ds.Rows = ds.Columns = 60000
        ds.save_as(big)
        r = httpx.post(url + "/v1/predict", files={"file": ("big.dcm", big.read_bytes())}, headers=auth)
        results["DICOM 60000 x 60000"] = r.status_code
        assert r.status_code in (413, 422)
        broken = tmp_path / "broken.dcm"
        write_dicom(broken, np.zeros((8, 8), np.uint16))
        syntax = str(pydicom.dcmread(broken).file_meta.TransferSyntaxUID).encode()
        unknown = b"1.2.840.99999.9.9.9"[: len(syntax)].ljust(len(syntax), b"9")  # same length
        broken.write_bytes(broken.read_bytes().replace(syntax, unknown, 1))
        r = httpx.post(url + "/v1/predict", files={"file": ("broken.dcm", broken.read_bytes())}, headers=auth)
        results["DICOM unknown transfer syntax"] = r.status_code
        assert 400 <= r.status_code < 500
        health = httpx.get(url + "/healthz").json()
        assert health["in_progress"] == 0
        assert _predict(url, png, token=tokens["t"]).status_code == 200  # still serving
    print(json.dumps(results, indent=1))


def test_the_command_line_serves_https_with_a_token(tmp_path, model_dir, png):
    from oxnet.testing import free_port, self_signed_certificate

    pair = self_signed_certificate(str(tmp_path))
    if pair is None:
        pytest.skip("openssl is not installed")
    cert, key = pair
    path, tokens = _tokens(tmp_path, "ws1")
    port = free_port()
    audit = tmp_path / "audit.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "oxnet.serve", "--model", model_dir, "--port", str(port), "--token-file", path,
         "--ssl-certfile", cert, "--ssl-keyfile", key, "--audit-log", str(audit), "--log-level", "warning"],
        cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(url + "/healthz", verify=cert, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "the service did not start"
            time.sleep(0.3)
        bearer = {"Authorization": f"Bearer {tokens['ws1']}"}
        r = httpx.post(
            url + "/v1/predict", files={"file": ("c.png", png)}, headers=bearer, verify=cert, timeout=60
        )
        assert r.status_code == 200
        assert httpx.get(url + "/v1/model", verify=cert).status_code == 401
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        proc.terminate()
        proc.wait(30)
    assert [(x["client"], x["status"]) for x in _audit(audit)] == [("ws1", 200), ("unauthenticated", 401)]
