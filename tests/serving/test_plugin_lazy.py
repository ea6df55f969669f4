"""The plugin costs nothing where it is only loaded (every task, the scheduler): the app is built on first use."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

GROUP = "lazy"
PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "airsight_serving.py"


def load_plugin():
    spec = importlib.util.spec_from_file_location("airsight_serving_lazy", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loading_the_plugin_builds_nothing_and_imports_neither_fastapi_nor_the_serving_code(tmp_path):
    pytest.importorskip("airflow")
    code = f"""
import importlib.util, json, sys, time
import airflow.plugins_manager
began = time.perf_counter()
spec = importlib.util.spec_from_file_location("plugin", {str(PLUGIN)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
seconds = time.perf_counter() - began
(entry,) = module.AirsightServingPlugin.fastapi_apps
loaded = sorted(m for m in sys.modules if m == "fastapi" or m.startswith("pipelines.serving"))
print(json.dumps({{"seconds": seconds, "loaded": loaded, "built": entry["app"].built}}))
"""
    env = {"AIRSIGHT_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["loaded"] == [] and found["built"] is False
    assert not list(tmp_path.iterdir())  # no serving database, no store opened
    print(f"plugin load: {found['seconds'] * 1000:.2f} ms")


def test_airflows_api_server_lifespan_builds_and_starts_the_app_once(world, monkeypatch):
    pytest.importorskip("airflow")
    from airflow.api_fastapi.app import lifespan

    monkeypatch.setenv("AIRSIGHT_SERVING_DB", world.database_url)
    monkeypatch.setenv("AIRSIGHT_GROUPS_DIR", str(world.groups_dir))
    (entry,) = load_plugin().AirsightServingPlugin.fastapi_apps
    app = entry["app"]
    assert not app.built and isinstance(app, FastAPI)  # what Airflow checks before entering its lifespan

    host = FastAPI(lifespan=lifespan)  # Airflow's own lifespan: enters mounted FastAPI apps' lifespans
    host.mount(entry["url_prefix"], app)
    with TestClient(host) as client:
        assert app.built
        runtime = app.state.runtime
        assert runtime._thread is not None and runtime._thread.is_alive()  # started by the lifespan
        body = {"campaignArn": GROUP, "userId": "a_u000", "numResults": 3}
        answer = client.post("/airsight/recommendations", json=body, headers=world.headers("reader"))
        assert answer.status_code == 200, answer.text
        assert client.post("/airsight/recommendations", json=body).status_code == 401
        assert app.state.runtime is runtime  # built once
    assert runtime._thread is None or not runtime._thread.is_alive()  # stopped with Airflow's server


def test_a_serving_set_up_that_cannot_be_built_answers_503_and_leaves_the_host_up():
    module = load_plugin()

    def broken():
        raise RuntimeError("AIRSIGHT_SERVING_DB is unreachable")

    host = FastAPI()
    host.mount("/airsight", module.LazyServingApp(broken))
    host.get("/ok")(lambda: {"ok": True})
    with TestClient(host) as client:
        answer = client.get("/airsight/forecasts/sales")
        assert answer.status_code == 503 and "AIRSIGHT_SERVING_DB is unreachable" in answer.json()["message"]
        assert client.get("/ok").json() == {"ok": True}
