"""API keys: random secrets shown once, stored only as salted SHA-256 digests, checked on each request.

A key reads ``as_<key id>_<secret>``. The key id finds the stored row; the secret is hashed
with that row's salt and compared in constant time. The secret has 256 random bits, so a
fast salted hash is as safe as a slow one (slow hashes protect guessable passwords), and a
request pays microseconds. Verified keys are cached for ``key_cache_seconds``, which is also
how long a revoked key may keep working in a server that has just seen it.

Scopes: ``read`` (recommendations, rankings, forecasts, listing filters and jobs, metrics),
``write`` (PutEvents, PutItems, PutUsers), ``admin`` (creating and deleting filters, updating campaigns,
starting batch inference jobs).
A key holds each scope it may use; ``admin`` does not imply the others.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable

from pipelines.serving.store import Store, StoredKey

SCOPES = ("read", "write", "admin")
DEFAULT_SCOPES = ("read", "write")
PREFIX = "as_"


class AuthError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def create_key(store: Store, name: str, scopes: Iterable[str] = DEFAULT_SCOPES) -> str:
    """Create a key named ``name`` with ``scopes``; return the key, which is not stored anywhere."""
    scopes = sorted(set(scopes))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes {unknown or scopes}: expected one or more of {list(SCOPES)}")
    if not name or len(name) > 100:
        raise ValueError("a key needs a name of 1 to 100 characters")
    key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_hex(16)
    store.add_key(key_id, name, salt, _digest(salt, secret), scopes)
    return f"{PREFIX}{key_id}_{secret}"


class KeyChecker:
    """Answers "which key is this and may it do that" for each request."""

    def __init__(self, store: Store, cache_seconds: float = 10.0):
        self.store, self.cache_seconds = store, cache_seconds
        self._cache: dict[str, tuple[float, StoredKey | None]] = {}
        self._lock = threading.Lock()

    def check(self, presented: str | None, scope: str) -> StoredKey:
        """The key if it exists and has ``scope``; AuthError 401 (no or unknown key) or 403 (scope)."""
        if not presented:
            raise AuthError(401, "missing API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        key = self._lookup(presented)
        if key is None:
            raise AuthError(401, "unknown or revoked API key")
        if scope not in key.scopes:
            raise AuthError(403, f"API key {key.name!r} lacks the {scope!r} scope (it has {sorted(key.scopes)})")
        return key

    def _lookup(self, presented: str) -> StoredKey | None:
        now = time.monotonic()
        cached = self._cache.get(presented)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        key = self._verify(presented)
        with self._lock:
            if len(self._cache) > 10_000:  # a flood of bad keys must not grow memory without end
                self._cache.clear()
            self._cache[presented] = (now, key)
        return key

    def _verify(self, presented: str) -> StoredKey | None:
        if not presented.startswith(PREFIX) or presented.count("_") < 2 or len(presented) > 200:
            return None
        key_id, secret = presented[len(PREFIX) :].split("_", 1)
        stored = self.store.get_key(key_id)
        if stored is None or stored.revoked:
            return None
        if not hmac.compare_digest(_digest(stored.salt, secret), stored.digest):
            return None
        return stored
