"""API keys: random secrets shown once, stored only as salted SHA-256 digests, checked on each request.

A key reads ``as_<key id>_<secret>``. The key id finds the stored row; the secret is hashed
with that row's salt and compared in constant time. The secret has 256 random bits, so a
fast salted hash is as safe as a slow one (slow hashes protect guessable passwords), and a
request pays microseconds. Verified keys are cached for ``key_cache_seconds``, which is also
how long a revoked key may keep working in a server that has just seen it.

Scopes: ``read`` (recommendations, rankings, forecasts, listing filters and jobs, metrics),
``write`` (PutEvents, PutItems, PutUsers), ``admin`` (creating and deleting filters, updating campaigns,
starting batch inference and batch segment jobs).
A key holds each scope it may use; ``admin`` does not imply the others.

``ApiKeyGuard`` is the middleware that asks for them: the scope comes from ``ROUTE_SCOPES``, keyed
by method and the path template of the route that matches (never the raw path), and
``document_security`` writes the same table into the OpenAPI spec.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pipelines.serving.store import Store, StoredKey

if TYPE_CHECKING:
    from fastapi import FastAPI

    from pipelines.serving.runtime import Runtime

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


OPEN_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
VIEWS = "/ui/"  # the views in Airflow's UI: Airflow's login guards them (``views.login``), not API keys
ROUTE_SCOPES = {
    ("POST", "/events"): "write",
    ("POST", "/items"): "write",
    ("POST", "/users"): "write",
    ("PUT", "/campaigns/{name}"): "admin",
    ("POST", "/filters"): "admin",
    ("DELETE", "/filters/{name}"): "admin",
    ("POST", "/batch-inference-jobs"): "admin",
    ("POST", "/batch-segment-jobs"): "admin",
}


def required_scope(method: str, route: str) -> str | None:
    """The scope a request to ``route`` (a route's path template, as the app declares it) needs; None: open.

    Anything not listed, unmatched paths included, needs ``read``: a 404 costs a valid key too. The
    views' routes (only the plugin's app has them) need no key: they need an Airflow login instead.
    """
    if (method in ("GET", "HEAD") and route in OPEN_PATHS) or route.startswith(VIEWS):
        return None
    return ROUTE_SCOPES.get((method, route), "read")


def matched_route(routes, scope) -> str | None:
    """The path template of the route that will serve ``scope``, or None if none matches in full.

    Routes match on the path relative to ``scope["root_path"]`` (Starlette's own rule), so the
    answer is the same standalone, behind ``--root-path`` and mounted under a prefix (Airflow's
    API server mounts plugin apps with ``app.mount("/airsight", app)``, and inside the app
    ``scope["path"]`` still starts with ``/airsight``).
    """
    from starlette.routing import Match

    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route.path
    return None


class ApiKeyGuard:
    """401 or 403 before the handler runs or the body is read; a key may come as Bearer or X-API-Key.

    The scope comes from the route that matches, not from the raw path, so it holds wherever
    the app is mounted.
    """

    def __init__(self, app, runtime: Runtime, routes: list):
        self.app, self.runtime, self.routes = app, runtime, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = matched_route(self.routes, scope)
        needed = required_scope(scope["method"], route) if route is not None else "read"
        if needed is not None:
            self.runtime.start()  # a host that sends no lifespan events: load on first use
            presented = None
            for name, value in scope["headers"]:
                if name == b"x-api-key":
                    presented = value.decode("latin-1").strip()
                    break
                if name == b"authorization" and value[:7].lower() == b"bearer ":
                    presented = value[7:].decode("latin-1").strip()
            try:
                self.runtime.keys.check(presented, needed)
            except AuthError as exc:
                from pipelines.serving.errors import error_response

                headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
                return await error_response(exc.status, exc.message, headers=headers)(scope, receive, send)
        return await self.app(scope, receive, send)


def document_security(app: FastAPI) -> None:
    """Put the key schemes and the 401/403 answers in the OpenAPI spec (the guard is middleware, not a dependency)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                needed = required_scope(method.upper(), path)
                if needed is None:
                    continue
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
                operation["description"] = (
                    operation.get("description", "") + f"\n\nNeeds the `{needed}` scope."
                ).strip()
                operation["responses"]["401"] = {"description": "missing, unknown or revoked API key"}
                operation["responses"]["403"] = {"description": f"the key lacks the {needed} scope"}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
