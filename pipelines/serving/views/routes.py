"""The views' routes under ``/ui``: three pages, their scripts, the JSON they read and the Data Docs files.

Every route needs an Airflow login (``login.airflow_user``); a page asked for without one answers
401 with a link to Airflow's login page.
"""

from __future__ import annotations

import html
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from pipelines.serving import schemas as s
from pipelines.serving.errors import ApiError
from pipelines.serving.routes.dependencies import RuntimeDep
from pipelines.serving.views import campaigns, forecasts, status
from pipelines.serving.views.login import airflow_user, page_user

PREFIX = "/ui"
PAGES = {"forecasts": "Forecasts", "recommendations": "Recommendations", "status": "Data and models"}
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}

# The pages answer a missing login with a page of their own; everything else with the API's 401.
pages = APIRouter(prefix=PREFIX, tags=["views"], include_in_schema=False)
router = APIRouter(prefix=PREFIX, tags=["views"], include_in_schema=False, dependencies=[Depends(airflow_user)])


def _static(name: str) -> bytes | None:
    entry = resources.files("pipelines.serving.views").joinpath("static", name)
    return entry.read_bytes() if "/" not in name and name[:1] != "." and entry.is_file() else None


def _login_url(request: Request) -> str:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login()
    except Exception:  # no auth manager (a host other than Airflow's API server)
        return "/auth/login"


def _page(request: Request, name: str, user) -> Response:
    if isinstance(user, ApiError):
        exc = user
        login = html.escape(_login_url(request), quote=True)
        body = f"<!doctype html><title>Sign in</title><p>{html.escape(exc.message)}</p><p><a href='{login}' " \
               "target='_top'>Sign in to Airflow</a></p>"  # fmt: skip
        return HTMLResponse(body, status_code=exc.status)
    return HTMLResponse(document(name), headers={"Cache-Control": "no-store"})


def document(name: str) -> str:
    """A view's page: the shared head (styles, the view's module script) around its body from ``static/``."""
    body = _static(f"{name}.html").decode()
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Airsight · {html.escape(PAGES[name])}</title>
<link rel="stylesheet" href="static/airsight.css">
<script type="module" src="static/{name}.js"></script>
</head>
<body>
{body}</body>
</html>
"""


def _page_route(name: str):
    async def view(request: Request, user: Annotated[Any, Depends(page_user)]) -> Response:
        return _page(request, name, user)

    view.__name__ = f"{name}_page"
    return view


for _name in PAGES:
    pages.add_api_route(f"/{_name}", _page_route(_name), methods=["GET"], response_class=HTMLResponse)


@router.get("/static/{name}")
async def asset(name: str) -> Response:
    content = _static(name)
    if content is None or name.endswith(".html"):
        raise ApiError(404, f"no view asset {name!r}", "name")
    media = next((t for suffix, t in TYPES.items() if name.endswith(suffix)), "application/octet-stream")
    return Response(content, media_type=media, headers={"Cache-Control": "private, max-age=300"})


@router.get("/api/forecast-groups")
def forecast_groups(runtime: RuntimeDep) -> list[dict]:
    return forecasts.groups(runtime)


def _series_filters(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if k not in ("q", "limit")}


@router.get("/api/forecasts/{group}/search")
def forecast_search(group: str, request: Request, runtime: RuntimeDep,
                    q: str = Query("", max_length=200), limit: int = Query(50, ge=1, le=500)) -> dict:  # fmt: skip
    """Series whose keys hold ``q``; other query parameters narrow by forecast dimension (store_id=…)."""
    from pipelines.serving import forecasts as fq

    try:
        return forecasts.search(forecasts.export_for(runtime, group), q, _series_filters(request), limit)
    except fq.QueryError as exc:
        raise ApiError(400, exc.message, exc.field) from None


@router.get("/api/forecasts/{group}/series")
def forecast_series(group: str, request: Request, runtime: RuntimeDep) -> dict:
    """One series (its keys as query parameters: item_id=…&store_id=…) with everything the chart draws."""
    return forecasts.detail(runtime, group, _series_filters(request))


@router.get("/api/forecasts/{group}/series.csv")
def forecast_series_csv(group: str, request: Request, runtime: RuntimeDep) -> Response:
    name, text = forecasts.csv_rows(runtime, group, _series_filters(request))
    return Response(text, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/api/campaigns")
def campaign_list(runtime: RuntimeDep) -> list[dict]:
    return campaigns.campaigns(runtime)


@router.post("/api/recommendations")
async def recommendations(body: s.RecommendationsRequest, runtime: RuntimeDep) -> JSONResponse:
    """GetRecommendations, through the API's own route function."""
    from pipelines.serving.routes.recommendations import get_recommendations

    return await get_recommendations(body, runtime)


@router.post("/api/events")
def events(body: s.PutEventsRequest, runtime: RuntimeDep) -> dict:
    """PutEvents (a test event from the page), through the API's own route function."""
    from pipelines.serving.routes.events import put_events

    return put_events(body, runtime)


@router.get("/api/status")
def group_status(request: Request, runtime: RuntimeDep) -> list[dict]:
    base = str(request.url.path).rsplit("/api/status", 1)[0]
    return status.status(runtime, base)


@router.get("/data-docs/{group}/{run}/{path:path}")
def data_docs(group: str, run: str, path: str, runtime: RuntimeDep) -> Response:
    """A file of a validation run's Great Expectations Data Docs (HTML, styles, images)."""
    found = runtime.groups.get(group)
    target = status.data_docs_file(found, run, path) if found is not None else None
    if target is None:
        raise ApiError(404, f"no Data Docs file {path!r} for {group!r} {run!r}", "path")
    return FileResponse(target)
