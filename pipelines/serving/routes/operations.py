"""Health (open to everyone: what serves, its versions and load errors) and the Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from pipelines.serving.routes.dependencies import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/health")
def health(runtime: RuntimeDep) -> dict:
    """Liveness and what serves: each model's version, load errors, each forecast export."""
    runtime.start()
    return runtime.health()


@router.get("/metrics", response_class=Response)
def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus metrics."""
    payload, content_type = runtime.metrics.render()
    return Response(payload, media_type=content_type)
