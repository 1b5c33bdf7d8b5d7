"""Access control and the audit log of the service, as one ASGI middleware around the app.

Every request but ``/healthz``, the review page and its static files needs a client: a valid
``Authorization: Bearer`` token (:class:`oxnet.serve.auth.TokenStore`), or the user named in
``user_header`` by a trusted proxy address, or, when the service runs without authentication, its
address. Missing or unknown tokens get 401 with ``WWW-Authenticate: Bearer``; a client over its
limits 429 with ``Retry-After`` (:class:`oxnet.serve.auth.ClientLimits`).

The audit log gets one JSON line per request: time (UTC, ISO 8601), client (token name, proxy user
or address), method, endpoint (the route, never a query string or a file name), status, duration in
milliseconds and, for predictions, ``study``: the first 16 hex digits of the upload's SHA-256 (an
opaque handle that links the lines of one file, not a patient identifier).
"""

import json
import logging
import threading
import time
from datetime import datetime, timezone

__all__ = ["AccessControl", "AuditLog", "OPEN_PATHS"]

logger = logging.getLogger(__name__)

#: Paths anyone may fetch: liveness, the review page and the annotation view themselves (they ask for
#: the token; without --annotate, /annotate is a 404).
OPEN_PATHS = ("/healthz", "/", "/annotate", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)
#: Endpoints named by their route in the audit log (the example's file name stays out).
ROUTES = (("/v1/examples/", "/v1/examples/{name}"),)


class AuditLog:
    """JSON lines to a file (appended, one write per line) or to the ``oxnet.serve.audit`` logger."""

    def __init__(self, path=None):
        self.path = path
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8", buffering=1) if path else None  # noqa: SIM115
        self._logger = logging.getLogger("oxnet.serve.audit")

    def write(self, record):
        line = json.dumps(record, sort_keys=True)
        if self._file is None:
            self._logger.info(line)
            return
        with self._lock:
            self._file.write(line + "\n")

    def close(self):
        if self._file is not None:
            self._file.close()


def _endpoint(path):
    for prefix, route in ROUTES:
        if path.startswith(prefix):
            return route
    return path


class AccessControl:
    """The middleware: ``tokens`` (None: no authentication), ``limits`` (None: none), the trusted
    ``proxies`` (addresses) and their ``user_header``, and the ``audit`` log (None: none)."""

    def __init__(self, app, tokens=None, limits=None, proxies=(), user_header="x-forwarded-user", audit=None):
        self.app, self.tokens, self.limits, self.audit = app, tokens, limits, audit
        self.proxies, self.user_header = set(proxies), user_header.lower().encode("latin-1")

    def _client(self, scope):
        """(client name or None, why not) of a request."""
        headers = dict(scope.get("headers") or [])
        address = (scope.get("client") or ("?", 0))[0]
        if address in self.proxies and self.user_header in headers:
            user = headers[self.user_header].decode("latin-1").strip()
            if user:
                return f"proxy:{user}", None
        if self.tokens is None:
            return f"address:{address}", None
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, "this service needs an API token: send 'Authorization: Bearer <token>'"
        name = self.tokens.verify(token.strip())
        if name is None:
            return None, "the API token is not valid (unknown or revoked)"
        return name, None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        path = scope.get("path", "")
        status = {"code": 500}
        scope.setdefault("state", {})

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        client, why = (None, None)
        try:
            if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
                client = "open"
                return await self.app(scope, receive, send_status)
            client, why = self._client(scope)
            if client is None:
                return await _reply(send_status, 401, why, {"WWW-Authenticate": 'Bearer realm="oxnet"'})
            if self.limits is not None:
                wait = self.limits.take(client)
                if wait is not None:
                    return await _reply(
                        send_status,
                        429,
                        f"too many requests from {client}: retry in {wait} s",
                        {"Retry-After": str(wait)},
                    )
            scope["state"]["client"] = client
            uploading = path == "/v1/predict" and self.limits is not None
            if uploading and not self.limits.start_upload(client):
                return await _reply(
                    send_status,
                    429,
                    f"{client} already has {self.limits.uploads} predictions running: retry when one is done",
                    {"Retry-After": "1"},
                )
            try:
                return await self.app(scope, receive, send_status)
            finally:
                if uploading:
                    self.limits.end_upload(client)
        finally:
            if self.audit is not None and path != "/healthz" and not path.startswith(OPEN_PREFIXES):
                self.audit.write(
                    {
                        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                        "client": client
                        if client not in (None, "open")
                        else ("anyone" if client else "unauthenticated"),
                        "method": scope.get("method"),
                        "endpoint": _endpoint(path),
                        "status": status["code"],
                        "ms": round(1000 * (time.perf_counter() - start), 1),
                        "study": scope["state"].get("study"),
                    }
                )


async def _reply(send, status, detail, headers):
    body = json.dumps({"detail": detail}).encode("utf-8")
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
