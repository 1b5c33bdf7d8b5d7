"""Who may call the service: named API tokens, a trusted reverse proxy's user header, per-client limits.

Tokens live hashed in a token file, one ``NAME sha256:HEX`` line each (``python -m oxnet.serve.tokens
add NAME --file FILE`` writes one and prints the token once), or come from the environment variable
``OXNET_SERVE_TOKEN`` (one token, named "env"). The file is read again when it changes, so removing a
line revokes its token without a restart. Clients send ``Authorization: Bearer TOKEN``. A reverse
proxy that authenticates users itself may pass the user's name in a header, trusted only from the
proxy addresses given.

Per client (token name, proxy user, or address without authentication): at most ``rate`` requests per
``per`` seconds (a token bucket) and ``uploads`` predictions at the same time; beyond them 429 with
``Retry-After``.
"""

import hashlib
import hmac
import math
import os
import secrets
import threading
import time

__all__ = [
    "ENV_TOKEN",
    "ClientLimits",
    "TokenStore",
    "hash_token",
    "new_token",
]

ENV_TOKEN = "OXNET_SERVE_TOKEN"
_PREFIX = "sha256:"


def new_token():
    """A new random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def hash_token(token):
    """``sha256:HEX`` of a token: what the token file stores."""
    return _PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """The named tokens of a token file and/or of ``OXNET_SERVE_TOKEN``; :meth:`verify` gives the
    name of a presented token or None."""

    def __init__(self, path=None, env_token=None):
        self.path = os.fspath(path) if path else None
        self._env = hash_token(env_token) if env_token else None
        self._lock = threading.Lock()
        self._stamp = None
        self._hashes = {}
        if self.path:
            self._reload()
        if not self._hashes and not self._env:
            where = f"{self.path} has no tokens" if self.path else f"neither a token file nor {ENV_TOKEN}"
            raise ValueError(f"authentication needs at least one token: {where}")

    @classmethod
    def from_options(cls, path=None, environ=os.environ):
        """The store of ``--token-file`` and ``OXNET_SERVE_TOKEN``, or None when neither is set."""
        env = environ.get(ENV_TOKEN) or None
        if not path and not env:
            return None
        return cls(path, env)

    def _reload(self):
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise ValueError(f"token file {self.path} does not exist") from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        hashes = {}
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.split()
                if len(parts) != 2 or not parts[1].startswith(_PREFIX) or len(parts[1]) != len(_PREFIX) + 64:
                    raise ValueError(f"{self.path}, line {number}: expected 'NAME sha256:<64 hex digits>'")
                if parts[0] in hashes.values():
                    raise ValueError(f"{self.path}, line {number}: the name {parts[0]!r} is used twice")
                hashes[parts[1]] = parts[0]
        self._hashes, self._stamp = hashes, stamp

    @property
    def names(self):
        with self._lock:
            if self.path:
                self._reload()
            return sorted(self._hashes.values()) + (["env"] if self._env else [])

    def verify(self, token):
        """The token's name, or None for an unknown or revoked token."""
        if not token:
            return None
        digest = hash_token(token)
        with self._lock:
            if self.path:
                try:
                    self._reload()
                except ValueError:
                    pass  # a file being rewritten: keep the last good tokens
            for known, name in self._hashes.items():
                if hmac.compare_digest(known, digest):
                    return name
        if self._env and hmac.compare_digest(self._env, digest):
            return "env"
        return None


class ClientLimits:
    """Per-client request rate (token bucket of ``rate`` requests per ``per`` seconds) and concurrent
    predictions (``uploads``)."""

    def __init__(self, rate=120, per=60.0, uploads=2, clock=time.monotonic):
        if rate < 1 or per <= 0 or uploads < 1:
            raise ValueError("the per-client rate and upload limits must be positive")
        self.rate, self.per, self.uploads, self.clock = int(rate), float(per), int(uploads), clock
        self._buckets = {}
        self._active = {}
        self._lock = threading.Lock()

    def take(self, client):
        """Spend one request of ``client``'s budget: None, or the seconds to wait (429)."""
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(client, (float(self.rate), now))
            tokens = min(float(self.rate), tokens + (now - last) * self.rate / self.per)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                return max(1, math.ceil((1.0 - tokens) * self.per / self.rate))
            self._buckets[client] = (tokens - 1.0, now)
            return None

    def start_upload(self, client):
        """Whether ``client`` may start one more prediction (then :meth:`end_upload` it)."""
        with self._lock:
            if self._active.get(client, 0) >= self.uploads:
                return False
            self._active[client] = self._active.get(client, 0) + 1
            return True

    def end_upload(self, client):
        with self._lock:
            left = self._active.get(client, 1) - 1
            if left > 0:
                self._active[client] = left
            else:
                self._active.pop(client, None)
