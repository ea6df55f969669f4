"""Airsight's views as a person uses them: `make airflow`'s stack, a login in headless Chromium, each view
opened from Airflow's navigation.

The example groups are trained and published by ``airsight demo`` (their DAGs through ``dag.test``),
then ``airflow standalone`` starts on a fresh PostgreSQL database through the launcher `make airflow`
runs (``pipelines.launch.airflow_local``), with the plugin's serving API and views and the same
MLflow store. Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright) signs in with the
generated admin password, opens Plugins > Airsight > each view, and checks what a person would look
at: the chart of a published forecast with its band, backtest and what-if layers; the campaign test
page's recommendations, changed after a test event; each group's validation and model history.
Every page error or console error fails the test. Screenshots go to ``build/test-artifacts/ui/``
(``AIRSIGHT_TEST_ARTIFACTS`` to move them). Skips with the reason where Chromium, Playwright or
PostgreSQL is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from pipelines.launch import airflow_local

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("AIRSIGHT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("AIRSIGHT_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts")) / "ui"
SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
FORECAST, CAMPAIGN = "retail_demo", "interactions_demo"


def _missing() -> str | None:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set AIRSIGHT_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed (pip install -e '.[dev]')"
    if not airflow_local.reachable(SERVER):
        return "no PostgreSQL at 127.0.0.1:5432: Airflow's stack needs one"
    return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Airflow's stack serving the trained example groups; yields (base URL, admin password)."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from pipelines.example_data import write_examples

    tmp = tmp_path_factory.mktemp("ui_stack")
    home, tracking = tmp / "home", f"sqlite:///{tmp / 'home' / 'mlflow.db'}"
    write_examples(tmp / "examples")
    patch = pytest.MonkeyPatch()
    for name, value in {"AIRSIGHT_HOME": str(home), "AIRSIGHT_GROUPS_DIR": str(tmp / "examples" / "groups.d"),
                        "MLFLOW_TRACKING_URI": tracking, "AIRSIGHT_SERVING_DB": f"sqlite:///{tmp / 'serving.db'}",
                        "AIRSIGHT_MLFLOW_ARTIFACTS": (tmp / "artifacts").as_uri()}.items():  # fmt: skip
        patch.setenv(name, value)
    demo = subprocess.run([str(Path(sys.executable).with_name("airsight")), "demo"], env=dict(os.environ),
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/airsight_ui_{uuid.uuid4().hex[:10]}"
    log, process = tmp / "standalone.log", None
    try:
        process, _, port = airflow_local.start(tmp / "airflow", url, airflow_local.free_port(), log, tracking)
        airflow_local.wait_for_api(port)
        base = f"http://127.0.0.1:{port}"
        _wait_until_served(base, log)
        password = json.loads((tmp / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
        yield base, password["admin"]
    finally:
        if process is not None:
            airflow_local.stop(process)
        airflow_local.drop_database(url)
        patch.undo()


def _wait_until_served(base: str, log: Path, timeout: float = 120) -> None:
    """Until the mounted serving API has loaded the published forecast and the campaign's champion."""
    deadline, health = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{base}/airsight/health", timeout=10).json()
            if health["forecasts"][FORECAST]["status"] == "ok" and health["models"][CAMPAIGN]["status"] == "ok":
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(2)
    raise TimeoutError(f"the mounted API did not serve both groups: {health}\n{log.read_text()[-3000:]}")


def _airflow_token(base: str, password: str) -> str:
    answer = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["access_token"]


def test_views_need_an_airflow_login_and_api_keys_do_not_open_them(stack):
    base, password = stack
    from pipelines.serving.auth import create_key
    from pipelines.serving.settings import ServingSettings
    from pipelines.serving.store import Store

    store = Store(ServingSettings.from_env().resolved_database_url())
    admin_key = create_key(store, f"ui-admin-{uuid.uuid4().hex[:6]}", ["read", "write", "admin"])
    store.close()
    with httpx.Client(base_url=f"{base}/airsight/ui", timeout=30) as http:
        page = http.get("/forecasts")
        assert page.status_code == 401 and "Sign in to Airflow" in page.text
        for path in ("/api/forecast-groups", "/api/campaigns", "/api/status", "/static/chart.js"):
            assert http.get(path).status_code == 401, path
            assert http.get(path, headers={"Authorization": f"Bearer {admin_key}"}).status_code in (401, 403), path
        event = {"trackingId": CAMPAIGN, "userId": "u0001", "sessionId": "s",
                 "eventList": [{"eventType": "click", "itemId": "i0001", "sentAt": 1_800_000_000}]}  # fmt: skip
        assert http.post("/api/events", json=event, headers={"X-API-Key": admin_key}).status_code == 401
        assert http.get("/api/status", cookies={"_token": "not.a.jwt"}).status_code in (401, 403)
        token = {"Authorization": f"Bearer {_airflow_token(base, password)}"}
        groups = http.get("/api/forecast-groups", headers=token)
        assert groups.status_code == 200 and [g["name"] for g in groups.json()] == [FORECAST]
        assert http.get("/forecasts", headers=token).status_code == 200
        # the API itself still takes its keys, and a key does not reach the views through the API's prefix
        assert httpx.get(f"{base}/airsight/forecasts/{FORECAST}/items", headers={"X-API-Key": admin_key},
                         timeout=30).status_code == 200  # fmt: skip


class Browser:
    """One signed-in Chromium page that records page errors and console errors."""

    def __init__(self, playwright, base: str):
        self.base, self.errors = base, []
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        self.page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))

    def sign_in(self, password: str) -> None:
        page = self.page
        page.goto(f"{self.base}/auth/login")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{self.base}/")
        self.errors.clear()  # the UI's requests before the sign-in answer 401 by design

    def open_view(self, name: str):
        """Plugins > Airsight > ``name`` in Airflow's navigation; the view's frame."""
        page = self.page
        page.get_by_role("button", name="Plugins").click()
        page.get_by_role("menuitem", name="Airsight").click()
        page.get_by_role("menuitem", name=name).click()
        return page.frame_locator("iframe")

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000
        return path


@pytest.fixture(scope="module")
def browser(stack):
    from playwright.sync_api import sync_playwright

    base, password = stack
    with sync_playwright() as playwright:
        browser = Browser(playwright, base)
        browser.sign_in(password)
        yield browser
        browser.browser.close()


def test_forecast_explorer_charts_a_published_forecast(browser):
    frame = browser.open_view("Forecasts")
    assert browser.page.url == f"{browser.base}/plugin/airsight-forecasts"
    assert browser.page.locator("iframe").get_attribute("src").endswith("/airsight/ui/forecasts")
    drawn = frame.locator("body[data-drawn]")
    drawn.wait_for(timeout=30_000)
    first = json.loads(drawn.get_attribute("data-drawn"))
    chart = frame.get_by_test_id("chart")
    layers = chart.locator("[data-layer]")
    names = {layers.nth(i).get_attribute("data-layer") for i in range(layers.count())}
    assert {"history", "forecast p10–p90", "forecast p50", "backtest 1 p10–p90"} <= names, names
    assert any(n.startswith("what-if promo_electronics") for n in names), names
    assert len(chart.locator("path[data-layer='forecast p50']").get_attribute("d").split("L")) == 28  # the horizon
    assert "Impact scores of this series" in frame.locator("#details").inner_text()
    browser.shot("forecasts")

    frame.get_by_test_id("search").fill("item_007")  # search by item, narrowed by a dimension
    frame.locator("[data-dimension=store_id]").select_option("store_02")
    frame.locator("#found").filter(has_text="1 series match").wait_for()
    frame.get_by_test_id("results").locator("button").first.click()
    frame.locator("body[data-drawn*='item_007']").wait_for()
    assert json.loads(drawn.get_attribute("data-drawn")) == {"item_id": "item_007", "store_id": "store_02"} != first
    href = frame.get_by_test_id("download").get_attribute("href")  # relative to the view
    csv = browser.page.request.get(f"{browser.base}/airsight/ui/{href}")
    assert csv.status == 200 and csv.text().splitlines()[0] == "item_id,store_id,date,p10,p50,p90"
    assert len(csv.text().splitlines()) == 1 + 28
    frame.get_by_test_id("chart").locator("svg").last.hover()  # the tooltip follows the pointer
    assert frame.locator(".tooltip").is_visible()
    assert browser.errors == []


def test_campaign_page_recommends_and_reacts_to_a_test_event(browser):
    frame = browser.open_view("Recommendations")
    frame.get_by_test_id("get").click()
    rows = frame.get_by_test_id("items").locator("tbody tr")
    rows.first.wait_for(timeout=30_000)
    before = frame.get_by_test_id("items").locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert len(before) == 10 and len(set(before)) == 10
    frame.locator("[data-send]").nth(4).click()  # a click on the fifth item, by the form's user
    frame.get_by_test_id("recommendation-id").filter(has_text="changed since the previous list").wait_for()
    after = frame.get_by_test_id("items").locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert "1 stored" in frame.get_by_test_id("sent").inner_text()
    assert after != before and len(after) == 10
    browser.shot("recommendations")

    frame.get_by_test_id("mode").select_option("itemId")  # related items of an item
    frame.get_by_test_id("id").fill(before[0])
    frame.get_by_test_id("get").click()
    frame.get_by_test_id("recommendation-id").filter(has_text="changed").wait_for()
    related = frame.get_by_test_id("items").locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert related and before[0] not in related
    assert browser.errors == []


def test_data_and_models_view_shows_validation_snapshot_and_model_history(browser):
    frame = browser.open_view("Data and models")
    sections = frame.locator("section[data-group]")
    sections.first.wait_for(timeout=30_000)
    assert sorted(sections.nth(i).get_attribute("data-group") for i in range(sections.count())) == [CAMPAIGN, FORECAST]
    retail = frame.locator(f"section[data-group={FORECAST}]")
    assert "passed" in retail.locator("h3").first.inner_text()
    assert "TARGET_TIME_SERIES" in retail.get_by_test_id("snapshot").inner_text()
    history = retail.get_by_test_id("models")
    assert "champion" in history.inner_text() and "promoted" in history.inner_text()
    docs = retail.get_by_test_id("data-docs").get_attribute("href")
    answer = browser.page.request.get(f"{browser.base}{docs}")
    assert answer.status == 200 and "<html" in answer.text().lower()
    browser.shot("data-and-models")
    assert browser.errors == []
