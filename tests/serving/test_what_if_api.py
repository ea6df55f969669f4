"""POST /forecasts/what-if: a scenario forecast by the served model, over HTTP, in QueryForecast's shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from pipelines.example_data import RETAIL_SETTINGS, retail
from pipelines.forecast import workflow
from pipelines.preparation import steps
from pipelines.serving.app import create_app
from pipelines.serving.auth import create_key
from pipelines.serving.settings import ServingSettings
from pipelines.serving.store import Store
from pipelines.settings import load_group

AS_OF = "2023-07-19"
QUICK = {"epochs": 30, "context_length": 28, "channels": 16, "num_batches_per_epoch": 20}


@pytest.fixture(scope="module")
def served(mlflow_store):
    """A tiny retail group trained with CNN-QR and published through the forecast steps."""
    root = mlflow_store / "what_if_api"
    folder = root / "retail_demo"
    folder.mkdir(parents=True)
    frames = retail(items=6, stores=1, days=200, horizon=14, new_items=1)
    for name, frame in frames.items():
        frame.to_csv(folder / name, index=False)
    groups = root / "groups.d"
    groups.mkdir()
    raw = yaml.safe_load(RETAIL_SETTINGS.format(horizon=14))
    raw["training"] = {"plots": 0, "algorithm_params": {"CNN-QR": QUICK}}
    raw["storage"] = str(root / "store")  # not under the per-test AIRSIGHT_HOME
    (groups / "retail_demo.yaml").write_text(yaml.safe_dump(raw))
    group = load_group(groups / "retail_demo.yaml")
    overrides = {"algorithms": ["CNN-QR"]}
    steps.import_data(group, AS_OF)
    selection = workflow.backtest(group, AS_OF, [workflow.hpo_train(group, AS_OF, "CNN-QR", overrides)], overrides)
    workflow.publish(group, AS_OF, selection, workflow.forecast(group, AS_OF, selection, overrides), overrides)
    database = f"sqlite:///{root / 'serving.db'}"
    store = Store(database)
    key = create_key(store, "what-if-reader", ["read"])
    store.close()
    settings = ServingSettings(database_url=database, groups_dir=str(groups), poll_seconds=3600, load_models=False)
    with TestClient(create_app(settings)) as client:
        yield client, {"Authorization": f"Bearer {key}"}, frames["items.csv"].set_index("item_id")["category"]


def series(answer: dict) -> dict[str, np.ndarray]:
    return {
        s["item"]["item_id"]: np.array([p["value"] for p in s["predictions"]["p50"]])
        for s in answer["forecast"]["series"]
    }


def test_a_scenario_changes_only_the_items_it_matches_and_answers_like_query_forecast(served):
    client, headers, category = served
    chosen = category["item_000"]
    scenario = {
        "name": "promo",
        "transformations": [
            {
                "action": {"attribute": "promotion", "operation": "ADD", "value": 1},
                "conditions": [{"attribute": "category", "value": chosen, "condition": "EQUALS"}],
            }
        ],
    }
    baseline = client.post("/forecasts/query", json={"forecastArn": "retail_demo", "maxResults": 100}, headers=headers)
    answer = client.post(
        "/forecasts/what-if",
        json={"forecastArn": "retail_demo", "scenario": scenario, "maxResults": 100},
        headers=headers,
    )
    assert baseline.status_code == 200 and answer.status_code == 200, answer.text
    body = answer.json()
    assert body["whatIf"] == "promo" and set(body["forecast"]) == {"asOf", "series"}
    before, after = series(baseline.json()), series(body)
    assert set(before) == set(after)
    for item, values in after.items():
        if item in category.index[:6] and category[item] != chosen:
            np.testing.assert_allclose(values, before[item], rtol=1e-9)  # not matched: the baseline exactly
    matched = [i for i in category.index[:6] if category[i] == chosen]
    assert any(not np.allclose(after[i], before[i]) for i in matched)
    one = client.post(
        "/forecasts/what-if",
        json={"forecastArn": "retail_demo", "scenario": scenario, "filters": {"item_id": "item_000"}},
        headers=headers,
    )
    assert [s["item"]["item_id"] for s in one.json()["forecast"]["series"]] == ["item_000"]


@pytest.mark.parametrize(
    ("scenario", "status", "says"),
    [
        ({"name": "x", "transformations": [{"action": {"attribute": "colour", "operation": "ADD", "value": 1}}]},
         400, "'colour' is not a related time series feature"),
        ({"name": "x", "transformations": [{"action": {"attribute": "price", "operation": "POWER", "value": 1}}]},
         400, "operation"),
        ({"name": "x", "replacement": {"path": "/etc/passwd"}}, 400, "a replacement file is a group setting"),
    ],
)  # fmt: skip
def test_bad_scenarios_get_400_naming_the_problem(served, scenario, status, says):
    client, headers, _ = served
    answer = client.post(
        "/forecasts/what-if", json={"forecastArn": "retail_demo", "scenario": scenario}, headers=headers
    )
    assert answer.status_code == status and says in answer.text, answer.text
    unknown = client.post("/forecasts/what-if", json={"forecastArn": "nope", "scenario": scenario}, headers=headers)
    assert unknown.status_code == 404


def test_a_scenario_past_its_time_bound_is_a_504(served, monkeypatch):
    import time

    from pipelines.forecast import what_if

    client, headers, _ = served
    real = what_if.forecast
    monkeypatch.setattr(what_if, "forecast", lambda *a, **k: (time.sleep(1.5), real(*a, **k))[1])
    scenario = {
        "name": "slow",
        "transformations": [{"action": {"attribute": "price", "operation": "MULTIPLY", "value": 0.9}}],
    }
    body = {"forecastArn": "retail_demo", "scenario": scenario, "timeoutSeconds": 0.2}
    answer = client.post("/forecasts/what-if", json=body, headers=headers)
    assert answer.status_code == 504 and "retry" in answer.text
    assert pd.Timestamp(AS_OF)  # the published as_of the scenario ran against
