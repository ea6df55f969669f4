"""Every route under every scope, standalone, mounted under a prefix, and in Airflow's real API server.

The matrix sends one valid request per route with no key, an unknown key and a key holding
exactly one scope (read, write or admin), and expects the route's own answer where the key
may call it (200, 201, or 404 for a name that does not exist: the guard let it through), 401
without a valid key and 403 naming the missing scope otherwise. Open routes answer everyone.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from pipelines.launch.airflow_local import free_port
from pipelines.serving.app import create_app
from pipelines.serving.auth import create_key
from pipelines.serving.store import Store

GROUP = "scoped"
ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/airsight"  # plugins/airsight_serving.py
SCOPES = ("read", "write", "admin")
KEYS = ("none", "unknown", *SCOPES)


@dataclass(frozen=True)
class Case:
    method: str
    route: str | None  # the route's path template; None: a path no route serves
    path: str
    scope: str | None  # what the key needs; None: open
    allowed: int  # the status when the key may call it
    body: Callable[[str], dict] | None = None  # from a tag unique to the request


def _event(tag: str) -> dict:
    event = {"eventType": "click", "itemId": "a_i01", "sentAt": 1_800_000_000}
    return {"trackingId": GROUP, "userId": f"user-{tag}", "sessionId": f"s-{tag}", "eventList": [event]}


CASES = [
    Case("GET", "/health", "/health", None, 200),
    Case("GET", "/openapi.json", "/openapi.json", None, 200),
    Case("GET", "/docs", "/docs", None, 200),
    Case("GET", "/docs/oauth2-redirect", "/docs/oauth2-redirect", None, 200),
    Case("GET", "/redoc", "/redoc", None, 200),
    Case("GET", "/metrics", "/metrics", "read", 200),
    Case("POST", "/recommendations", "/recommendations", "read", 200,
         lambda tag: {"campaignArn": GROUP, "userId": "a_u000", "numResults": 3}),
    Case("POST", "/personalize-ranking", "/personalize-ranking", "read", 200,
         lambda tag: {"campaignArn": GROUP, "userId": "a_u000", "inputList": ["a_i00", "b_i00"]}),
    Case("POST", "/events", "/events", "write", 200, _event),
    Case("POST", "/items", "/items", "write", 200,
         lambda tag: {"datasetArn": f"{GROUP}/ITEMS", "items": [{"itemId": f"item-{tag}", "properties": "{}"}]}),
    Case("POST", "/users", "/users", "write", 404,  # the group has no USERS dataset: the guard let it through
         lambda tag: {"datasetArn": f"{GROUP}/USERS", "users": [{"userId": f"user-{tag}"}]}),
    Case("GET", "/campaigns/{name}", f"/campaigns/{GROUP}", "read", 200),
    Case("PUT", "/campaigns/{name}", f"/campaigns/{GROUP}", "admin", 200, lambda tag: {"campaignConfig": {}}),
    Case("POST", "/filters", "/filters", "admin", 201,
         lambda tag: {"name": f"f-{tag}", "datasetGroup": GROUP,
                      "filterExpression": 'EXCLUDE ItemID WHERE Items.GENRE IN ("a")'}),
    Case("GET", "/filters", "/filters", "read", 200),
    Case("GET", "/filters/{name}", "/filters/no-such-filter", "read", 404),
    Case("DELETE", "/filters/{name}", "/filters/no-such-filter", "admin", 404),
    Case("POST", "/forecasts/query", "/forecasts/query", "read", 200,
         lambda tag: {"forecastArn": "sales", "filters": {"item_id": "i0"}}),
    Case("GET", "/forecasts/{group}/items", "/forecasts/sales/items", "read", 200),
    Case("POST", "/forecasts/what-if", "/forecasts/what-if", "read", 400,
         lambda tag: {"forecastArn": "sales", "scenario": {"name": "s", "transformations": []}}),
    Case("POST", "/batch-inference-jobs", "/batch-inference-jobs", "admin", 404,
         lambda tag: {"jobName": f"job-{tag}", "datasetGroup": GROUP, "jobInput": {"path": "missing.jsonl"},
                      "jobOutput": {"path": f"out-{tag}.jsonl"}}),
    Case("GET", "/batch-inference-jobs/{name}", "/batch-inference-jobs/no-such-job", "read", 404),
    Case("POST", "/batch-segment-jobs", "/batch-segment-jobs", "admin", 404,
         lambda tag: {"jobName": f"seg-{tag}", "datasetGroup": GROUP, "jobInput": {"path": "missing.jsonl"},
                      "jobOutput": {"path": f"seg-{tag}.jsonl"}}),
    Case("GET", "/batch-segment-jobs/{name}", "/batch-segment-jobs/no-such-job", "read", 404),
    Case("GET", None, "/no-such-route", "read", 404),
]  # fmt: skip


@pytest.fixture(scope="module")
def scope_keys(world) -> dict[str, str | None]:
    """One key per scope, each holding that scope only."""
    store = Store(world.database_url)
    keys: dict[str, str | None] = {"none": None, "unknown": "as_000000000000_not-a-real-secret"}
    for scope in SCOPES:
        keys[scope] = create_key(store, f"only-{scope}-{time.time_ns()}", [scope])
    store.close()
    return keys


def expected(case: Case, key: str) -> int:
    if case.scope is None:
        return case.allowed
    if key in ("none", "unknown"):
        return 401
    return case.allowed if key == case.scope else 403


def run_matrix(send: Callable[..., httpx.Response], keys: dict[str, str | None], where: str) -> list[str]:
    """Every case with every key through ``send(method, path, headers, json)``; the mismatches."""
    wrong = []
    for (k, case), key in itertools.product(enumerate(CASES), KEYS):
        tag = f"{where}-{key}-{k}-{time.time_ns()}"
        headers = {} if keys[key] is None else {"Authorization": f"Bearer {keys[key]}"}
        answer = send(case.method, case.path, headers, case.body(tag) if case.body else None)
        want = expected(case, key)
        if answer.status_code != want:
            wrong.append(f"{case.method} {case.path} with the {key} key: {answer.status_code}, expected {want}: "
                         f"{answer.text[:200]}")  # fmt: skip
        elif want == 403 and f"lacks the {case.scope!r} scope" not in answer.json()["message"]:
            wrong.append(f"{case.method} {case.path} with the {key} key: 403 without naming the scope")
    return wrong


def test_the_cases_cover_every_route_the_app_serves(client):
    served = {(m, r.path) for r in client.app.routes if isinstance(r, APIRoute) for m in r.methods}
    served |= {("GET", r.path) for r in client.app.routes if not isinstance(r, APIRoute)}  # docs pages
    assert served == {(c.method, c.route) for c in CASES if c.route is not None}


def test_every_route_and_scope_standalone(client, scope_keys):
    def send(method, path, headers, body):
        return client.request(method, path, headers=headers, json=body)

    assert run_matrix(send, scope_keys, "standalone") == []


def test_every_route_and_scope_mounted_under_a_prefix(world, scope_keys):
    host, app = FastAPI(), create_app(world.settings())
    host.mount(PREFIX, app)  # as Airflow's API server mounts plugin apps
    with TestClient(host) as mounted:

        def send(method, path, headers, body):
            return mounted.request(method, PREFIX + path, headers=headers, json=body)

        assert run_matrix(send, scope_keys, "mounted") == []
        # the bug this guards against: a read key storing events and creating filters under the prefix
        reader = {"Authorization": f"Bearer {scope_keys['read']}"}
        assert mounted.post(f"{PREFIX}/events", json=_event("r"), headers=reader).status_code == 403
    app.state.runtime.stop()


@pytest.fixture(scope="module")
def airflow_api_server(world, tmp_path_factory):
    """``airflow api-server`` in a subprocess with a fresh AIRFLOW_HOME and this repository's plugins folder."""
    pytest.importorskip("airflow")
    home = tmp_path_factory.mktemp("airflow_api")
    (home / "dags").mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRSIGHT_SERVING_DB": world.database_url,
        "AIRSIGHT_GROUPS_DIR": str(world.groups_dir),
        "AIRSIGHT_SERVING_POLL_SECONDS": "3600",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    migrated = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-2000:]
    port, log = free_port(), home / "api-server.log"
    with open(log, "w") as out:
        server = subprocess.Popen([airflow, "api-server", "--port", str(port), "--workers", "1"], env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"airflow api-server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}{PREFIX}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"airflow api-server did not answer in 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_every_route_and_scope_in_airflows_api_server(airflow_api_server, scope_keys):
    with httpx.Client(base_url=airflow_api_server, timeout=30) as http:
        # the plugin is what answers: Airflow's own API is beside it, and our app serves under the prefix
        assert http.get("/api/v2/version").status_code in (200, 401, 403)
        health = http.get(f"{PREFIX}/health").json()
        assert health["models"][GROUP]["status"] == "ok", health

        def send(method, path, headers, body):
            return http.request(method, PREFIX + path, headers=headers, json=body)

        assert run_matrix(send, scope_keys, "airflow") == []
