"""The serving API: GetRecommendations, GetPersonalizedRanking, PutEvents, PutItems, PutUsers, campaigns,
filters and forecast queries.

``create_app()`` builds one FastAPI app from the environment (see ``settings``); uvicorn runs it
with ``--factory``, and the Airflow plugin mounts it in Airflow's API server. The routes live in
``routes/``, one router per resource, and reach the server's ``Runtime`` through a dependency
that reads it from the app's state. Every route but /health (and the OpenAPI spec and its docs
page, which hold no data) needs an API key; see ``auth``. Requests larger than
``max_body_bytes`` get 413 before their body is read; invalid bodies get 422 naming each field
and the reason (``errors``).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from pipelines.serving import errors
from pipelines.serving.auth import ApiKeyGuard, document_security
from pipelines.serving.middleware import AccessLog, BodyLimit
from pipelines.serving.routes import ROUTERS
from pipelines.serving.runtime import Runtime
from pipelines.serving.settings import ServingSettings


def lifespan_of(runtime: Runtime):
    """Load champions and exports before the first request; stop the poll thread and close the store at the end.

    Bound to the runtime, not read from the app passed in: a host that runs a mounted app's lifespan
    may pass itself or a proxy.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runtime.start()
        yield
        runtime.stop()

    return lifespan


def create_app(settings: ServingSettings | None = None, runtime: Runtime | None = None, views: bool = False) -> FastAPI:
    """The serving app; ``runtime`` is built from ``settings`` (default: the environment) unless given.

    With ``views`` (the Airflow plugin), the app also serves Airsight's views in Airflow's UI under
    ``/ui``, guarded by Airflow's login instead of API keys (``views``).
    """
    runtime = runtime or Runtime(settings or ServingSettings.from_env())
    if not logging.getLogger("airsight").handlers:
        from pipelines.serving.observability import configure_logging

        configure_logging()
    app = FastAPI(
        title="Airsight serving API",
        version="1",
        description="Recommendations, rankings, events, filters and forecast queries. Every route but "
        "/health needs an API key (`airsight serve --create-key NAME`).",
        lifespan=lifespan_of(runtime),
    )
    app.state.runtime = runtime
    for exception, handler in errors.HANDLERS.items():
        app.add_exception_handler(exception, handler)
    for router in ROUTERS:
        app.include_router(router)
    if views:
        from pipelines.serving.views import ROUTERS as VIEWS

        for router in VIEWS:
            app.include_router(router)
    app.add_middleware(BodyLimit, limit=runtime.settings.max_body_bytes)
    # Before the body is read (no key, no 413 or 422); scopes by the route that will answer.
    app.add_middleware(ApiKeyGuard, runtime=runtime, routes=app.router.routes)
    # Outermost: 401s and 413s are logged and counted too.
    app.add_middleware(AccessLog, runtime=runtime, routes=app.router.routes)
    document_security(app)
    return app
