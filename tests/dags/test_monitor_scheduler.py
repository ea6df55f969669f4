"""Under a real scheduler, a degraded predictor retrains its group: the monitor DAG's asset event
starts the group's DAG, and the published decision says why."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.launch import airflow_local
from pipelines.training import publish
from tests.dags.scheduler import query, standalone, wait_for

DAG, MONITOR = "forecast__retail_demo", "forecast_monitor__retail_demo"
TRAINED, MONITORED = "2024-05-01", "2024-05-29"
RUNS = "SELECT run_id, state, run_type FROM dag_run WHERE dag_id = %s ORDER BY id"


def monitored(text: str) -> str:
    """Runs only when triggered, on two quick algorithms, retrained once WAPE is 50 % worse than backtested."""
    raw = yaml.safe_load(text)
    raw.update(schedule=None, monitoring={"max_wape_increase": 0.5, "schedule": None})
    raw["training"] = {"algorithms": ["SeasonalNaive", "Theta"]}
    return yaml.safe_dump(raw, sort_keys=False)


@pytest.fixture
def airflow(tmp_path, monkeypatch):
    with standalone(tmp_path, monkeypatch, "retail_demo", [DAG, MONITOR], monitored) as running:
        yield running


def finished(url: str, dag_id: str, count: int, log: Path) -> list[tuple]:
    done = lambda: [r for r in query(url, RUNS, dag_id) if r[1] in ("success", "failed")]  # noqa: E731
    return wait_for(lambda: (runs := done()) and len(runs) >= count and runs, 600, f"{dag_id}: {count} runs", log)


def test_the_monitors_asset_event_retrains_the_group_and_the_decision_says_why(airflow):
    url, env, log, group = airflow
    airflow_local.airflow(["dags", "trigger", DAG, "--conf", json.dumps({"as_of": TRAINED})], env)
    [(_, state, _)] = finished(url, DAG, 1, log)
    assert state == "success"

    target = group.datasets.TARGET_TIME_SERIES.path  # demand triples after the forecast was published
    frame = pd.read_csv(target)
    later = pd.to_datetime(frame["timestamp"]) > pd.Timestamp(TRAINED)
    frame.loc[later, "demand"] = frame.loc[later, "demand"] * 3
    frame.to_csv(target, index=False)
    airflow_local.airflow(["dags", "trigger", MONITOR, "--conf", json.dumps({"as_of": MONITORED})], env)
    [(_, state, _)] = finished(url, MONITOR, 1, log)
    assert state == "success"

    runs = finished(url, DAG, 2, log)
    assert [(s, t) for _, s, t in runs] == [("success", "manual"), ("success", "asset_triggered")], runs
    decision = json.loads((Path(publish.latest(group.storage_root, "forecast")["path"]) / "decision.json").read_text())
    assert "above the backtest" in decision["trigger"], decision
