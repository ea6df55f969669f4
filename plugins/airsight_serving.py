"""Airflow plugin: the Airsight serving API mounted in Airflow 3's API server at /airsight.

Airflow does not protect plugin endpoints, so the app's own API keys guard every route but
/health, with the same scopes as standalone: the guard reads the scope from the route that
matches, which does not depend on the prefix (tests/serving/test_scopes.py runs every route
under every scope through ``airflow api-server``). Airflow 3.3's API server runs the lifespan
of mounted FastAPI apps; a host that does not gets the poll thread (champion models, published
forecasts) started on the first request instead. Settings come from the same environment as
``airsight serve`` (AIRSIGHT_HOME, AIRSIGHT_GROUPS_DIR, AIRSIGHT_SERVING_DB, …).
"""

from __future__ import annotations

import logging

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)
URL_PREFIX = "/airsight"


def _apps() -> list[dict]:
    try:
        from pipelines.serving.app import create_app

        app = create_app()
    except Exception:  # a broken serving set-up must not take Airflow's API server down
        log.exception("the Airsight serving API could not be built; it is not mounted")
        return []
    return [{"app": app, "url_prefix": URL_PREFIX, "name": "Airsight serving API"}]


class AirsightServingPlugin(AirflowPlugin):
    name = "airsight_serving"
    fastapi_apps = _apps()
