"""The views' routes in the plugin's app (``create_app(views=True)``): refused without an Airflow login,
never opened by an API key, and answering through the serving API's own code once signed in.

The signed-in cases stand in Airflow's user check with a dependency override (the check itself is
Airflow's ``resolve_user_from_token``, run for real by tests/ui/test_views_browser.py in Airflow's API
server); the refusals run the real guard.
"""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from pipelines.serving.app import create_app
from pipelines.serving.views.login import airflow_user, page_user
from pipelines.serving.views.routes import PAGES
from tests.serving.conftest import recommend

GROUP = "viewshop"


@pytest.fixture(scope="module")
def app(world):
    return create_app(world.settings(), views=True)


@pytest.fixture(scope="module")
def anonymous(app):
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def signed_in(app, anonymous):
    app.dependency_overrides[airflow_user] = app.dependency_overrides[page_user] = lambda: "viewer"
    yield anonymous
    app.dependency_overrides.clear()


def _view_routes(app) -> list[tuple[str, str]]:
    return sorted((m, r.path) for r in app.routes if isinstance(r, APIRoute) and r.path.startswith("/ui/")
                  for m in r.methods)  # fmt: skip


def test_every_view_route_refuses_a_request_without_an_airflow_login(app, anonymous, world):
    routes = _view_routes(app)
    assert len(routes) >= 12
    for method, path in routes:
        concrete = path.replace("{group}", "sales").replace("{name}", "chart.js").replace("{run}", "as_of=1")
        concrete = concrete.replace("{path}", "index.html")
        for headers in ({}, world.headers("admin"), {"X-API-Key": world.keys["admin"]}):  # a key does not open them
            answer = anonymous.request(method, concrete, headers=headers, json={})
            assert answer.status_code == 401, (method, concrete, headers, answer.text)
    page = anonymous.get("/ui/forecasts")
    assert "text/html" in page.headers["content-type"] and "Sign in to Airflow" in page.text


def test_the_standalone_app_has_no_views(client):
    assert not [r for r in client.app.routes if getattr(r, "path", "").startswith("/ui")]
    assert client.get("/ui/forecasts").status_code == 401  # an unknown path costs a key, as any other


def test_pages_and_assets_come_from_the_package(signed_in):
    for name, title in PAGES.items():
        page = signed_in.get(f"/ui/{name}")
        assert page.status_code == 200 and f"<title>Airsight · {title}</title>" in page.text
        assert f'src="static/{name}.js"' in page.text
        script = signed_in.get(f"/ui/static/{name}.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    for shared in ("chart.js", "common.js", "airsight.css"):
        assert signed_in.get(f"/ui/static/{shared}").status_code == 200
    for missing in ("nope.js", "forecasts.html", ".hidden"):
        assert signed_in.get(f"/ui/static/{missing}").status_code == 404, missing
    assert signed_in.get("/ui/static/..%2Froutes.py").status_code == 401  # no route: the API's own 401


def test_forecast_explorer_searches_and_serves_one_series(signed_in, world):
    (group,) = signed_in.get("/ui/api/forecast-groups").json()
    assert group["name"] == "sales" and group["series"] == 8 and group["keys"] == ["item_id", "store"]
    assert group["dimensions"] == {"store": ["s1", "s2"]}
    found = signed_in.get("/ui/api/forecasts/sales/search", params={"q": "I1", "store": "s2"}).json()
    assert found["total"] == 1 and found["items"] == [{"item_id": "i1", "store": "s2"}]
    assert signed_in.get("/ui/api/forecasts/sales/search", params={"q": "i"}).json()["total"] == 8
    detail = signed_in.get("/ui/api/forecasts/sales/series", params={"item_id": "i1", "store": "s2"}).json()
    assert detail["item"] == {"item_id": "i1", "store": "s2"} and len(detail["forecast"]) == 10
    first = detail["forecast"][0]
    assert first["p10"] == first["p50"] - 2 == first["p90"] - 4  # the published rows, as QueryForecast serves them
    same = {"forecastArn": "sales", "filters": {"item_id": "i1", "store": "s2"}}  # the API's own answer
    query = signed_in.post("/forecasts/query", json=same, headers=world.headers("reader"))
    assert [p["value"] for p in query.json()["forecast"]["series"][0]["predictions"]["p50"]] == [
        r["p50"] for r in detail["forecast"]
    ]
    assert detail["backtests"] == [] and detail["whatIf"] == {} and detail["history"] == []  # none published here
    csv = signed_in.get("/ui/api/forecasts/sales/series.csv", params={"item_id": "i1", "store": "s2"})
    assert csv.status_code == 200 and csv.headers["content-disposition"].startswith('attachment; filename="sales_i1_s2')
    assert csv.text.splitlines()[0] == "item_id,store,date,p10,p50,p90" and len(csv.text.splitlines()) == 11
    unknown = signed_in.get("/ui/api/forecasts/sales/series", params={"item_id": "nope", "store": "s1"})
    assert unknown.status_code == 404 and "no series" in unknown.json()["message"]
    partial = signed_in.get("/ui/api/forecasts/sales/series", params={"item_id": "i1"})
    assert partial.status_code == 400 and partial.json()["errors"][0]["field"] == "store"
    assert signed_in.get("/ui/api/forecasts/nogroup/search").status_code == 404


def test_campaign_page_answers_as_the_api_does_and_reacts_to_a_test_event(signed_in, world):
    (campaign,) = signed_in.get("/ui/api/campaigns").json()
    assert campaign["name"] == GROUP and campaign["recipe"] == "sims" and campaign["version"] == world.version
    assert "a_u000" in campaign["users"] and campaign["items"]
    body = {"campaignArn": GROUP, "userId": "a_u001", "numResults": 5}
    through_view = signed_in.post("/ui/api/recommendations", json=body).json()
    through_api = recommend(signed_in, world, "a_u001", numResults=5)
    assert through_view["itemList"] == through_api["itemList"] and through_view["modelVersion"] == world.version
    event = {"eventType": "click", "itemId": "b_i05", "sentAt": 1_800_000_000}
    sent = signed_in.post("/ui/api/events", json={"trackingId": GROUP, "userId": "a_u001", "sessionId": "ui",
                                                  "eventList": [event] * 3})  # fmt: skip
    assert sent.status_code == 200 and sent.json()["eventsStored"] == 3
    after = signed_in.post("/ui/api/recommendations", json=body).json()
    assert after["itemList"] != through_view["itemList"]
    bad = signed_in.post("/ui/api/recommendations", json={"campaignArn": "nope", "userId": "a_u001"})
    assert bad.status_code == 404 and bad.json()["errors"][0]["field"] == "campaignArn"


def test_status_view_lists_every_group_with_its_model_history(signed_in, world):
    groups = {g["name"]: g for g in signed_in.get("/ui/api/status").json()}
    assert set(groups) == {GROUP, "sales"}
    (version,) = groups[GROUP]["models"]["versions"]
    assert version["version"] == world.version and "champion" in version["aliases"]
    assert version["decision"] == "promoted" and version["metric"] == "coverage" and version["score"] == 0.5
    assert groups["sales"]["models"]["versions"] == [] and groups["sales"]["models"]["error"] is None
    assert groups[GROUP]["snapshot"] is None or groups[GROUP]["snapshot"]["folder"].startswith("as_of=")
    for path in ("..%2F..%2F..%2Fserving.db", "%2Fetc%2Fpasswd", "index.html"):  # outside its Data Docs, or none
        assert signed_in.get(f"/ui/data-docs/{GROUP}/as_of=20240101T000000/{path}").status_code == 404, path
    assert signed_in.get(f"/ui/data-docs/{GROUP}/not-a-run/index.html").status_code == 404


def test_the_plugin_lists_each_view_in_airflows_navigation():
    from tests.serving.test_plugin_lazy import load_plugin

    views = load_plugin().AirsightServingPlugin.external_views
    assert [v["name"] for v in views] == list(PAGES.values())
    for view, page in zip(views, PAGES, strict=True):
        assert view["href"] == f"/airsight/ui/{page}" and view["category"] == "Airsight"
        assert view["url_route"] == f"airsight-{page}" and view["destination"] == "nav"
