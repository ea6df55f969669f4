"""The Airflow plugin mounts the serving app under a prefix Airflow allows, guarded by our own keys."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

GROUP = "plugged"
PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "airsight_serving.py"


def test_the_plugin_mounts_the_app_in_airflows_api_server(world, monkeypatch):
    pytest.importorskip("airflow")
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES

    monkeypatch.setenv("AIRSIGHT_SERVING_DB", world.database_url)
    monkeypatch.setenv("AIRSIGHT_GROUPS_DIR", str(world.groups_dir))
    spec = importlib.util.spec_from_file_location("airsight_serving_plugin", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (entry,) = module.AirsightServingPlugin.fastapi_apps
    assert not any(entry["url_prefix"].startswith(p) for p in RESERVED_URL_PREFIXES)

    host = FastAPI()  # as Airflow's API server does with plugin apps: mount, no lifespan
    host.mount(entry["url_prefix"], entry["app"])
    client = TestClient(host)
    body = {"campaignArn": GROUP, "userId": "a_u000", "numResults": 3}
    assert client.post("/airsight/recommendations", json=body).status_code == 401
    answer = client.post("/airsight/recommendations", json=body, headers=world.headers("reader"))
    assert answer.status_code == 200, answer.text  # the first request loaded the champion
    assert len(answer.json()["itemList"]) == 3
    entry["app"].state.runtime.stop()
