"""Airflow plugin: the Airsight serving API mounted in Airflow 3's API server at /airsight.

Airflow does not protect plugin endpoints, so the app's own API keys guard every route but
/health, with the same scopes as standalone: the guard reads the scope from the route that
matches, which does not depend on the prefix (tests/serving/test_scopes.py runs every route
under every scope through ``airflow api-server``). Airflow 3.3's API server runs the lifespan
of mounted FastAPI apps; a host that does not gets the poll thread (champion models, published
forecasts) started on the first request instead. Settings come from the same environment as
``airsight serve`` (AIRSIGHT_HOME, AIRSIGHT_GROUPS_DIR, AIRSIGHT_SERVING_DB, …).

The plugin also puts Airsight's views (forecast explorer, campaign test page, data and models) in
Airflow's navigation (``external_views``); the app serves them under ``/airsight/ui`` to logged-in
Airflow users only (``pipelines.serving.views``).

Every Airflow process loads plugins (each task, the scheduler, the DAG processor), and only the
API server serves them: the app is built on first use, not at import (``LazyServingApp``).
"""

from __future__ import annotations

import logging
import threading

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)
URL_PREFIX = "/airsight"


class LazyServingApp:
    """An ASGI app that builds the serving app (and its runtime) the first time it is used.

    Airflow's API server enters the lifespan of mounted apps it sees as FastAPI instances, so
    ``__class__`` answers FastAPI (the proxy idiom of Django's ``SimpleLazyObject``) and every
    other attribute (``router``, ``state``, …) is the built app's. A serving set-up that cannot be
    built answers 503 with the reason instead of taking Airflow's API server down.
    """

    def __init__(self, factory=None):
        self._factory, self._app, self._lock = factory, None, threading.Lock()

    @property
    def __class__(self):
        from fastapi import FastAPI

        return FastAPI

    @property
    def built(self) -> bool:
        return self._app is not None

    def _get(self):
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._build()
        return self._app

    def _build(self):
        try:
            if self._factory is not None:
                return self._factory()
            from pipelines.serving.app import create_app

            return create_app(views=True)
        except Exception as exc:  # a broken serving set-up must not take Airflow's API server down
            log.exception("the Airsight serving API could not be built")
            return _unavailable(f"the Airsight serving API could not be built: {type(exc).__name__}: {exc}")

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._get(), name)

    async def __call__(self, scope, receive, send):
        await self._get()(scope, receive, send)


def _unavailable(message: str):
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def unavailable(path: str):
        return JSONResponse({"message": message}, status_code=503)

    return app


def _apps() -> list[dict]:
    return [{"app": LazyServingApp(), "url_prefix": URL_PREFIX, "name": "Airsight serving API"}]


def _views() -> list[dict]:
    """Airsight's pages in Airflow's navigation (category Airsight), each shown in a frame of Airflow's page.

    ``url_route`` gives each its address in the UI (``/plugin/<url_route>``); the pages are the
    serving app's ``/ui`` routes (``pipelines.serving.views``).
    """
    views = [
        ("Forecasts", "forecasts", "airsight-forecasts"),
        ("Recommendations", "recommendations", "airsight-recommendations"),
        ("Data and models", "status", "airsight-status"),
    ]
    return [{"name": name, "href": f"{URL_PREFIX}/ui/{page}", "url_route": route, "category": "Airsight",
             "destination": "nav"} for name, page, route in views]  # fmt: skip


class AirsightServingPlugin(AirflowPlugin):
    name = "airsight_serving"
    fastapi_apps = _apps()
    external_views = _views()
