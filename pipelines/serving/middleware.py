"""The ASGI middleware around every route: the body size limit and the access log with its metrics.

The API-key guard sits between them (``auth.ApiKeyGuard``); ``create_app`` stacks the three.
"""

from __future__ import annotations

import logging
import time

from pipelines.serving.errors import error_response
from pipelines.serving.runtime import Runtime

log = logging.getLogger("airsight.serving.access")


class BodyLimit:
    """413 for bodies over ``limit`` bytes: by Content-Length before reading, or while reading a chunked body."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        too_big = error_response(413, f"request body larger than {self.limit} bytes")
        if length is not None:
            if not length.isdigit() or int(length) > self.limit:
                return await too_big(scope, receive, send)
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await too_big(scope, receive, send)
            if not message.get("more_body"):
                break
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


class AccessLog:
    """One JSON log line and the Prometheus counters for each request."""

    def __init__(self, app, runtime: Runtime, routes: list):
        self.app, self.runtime, self.routes = app, runtime, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")  # mounted, a request our router never saw holds the host's Mount here
            path = route.path if route is not None and any(route is r for r in self.routes) else "unmatched"
            metrics = self.runtime.metrics
            metrics.requests.labels(path, scope["method"], str(status[0])).inc()
            metrics.latency.labels(path).observe(seconds)
            if log.isEnabledFor(logging.INFO):
                log.info("request", extra={"method": scope["method"], "path": scope["path"], "route": path,
                                           "status": status[0], "ms": round(seconds * 1000, 3)})  # fmt: skip
