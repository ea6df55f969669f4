"""The Forecast DAG as a user triggers it: every algorithm trains and scores, failures show in the grid.

A tiny generated retail group (four items, 240 days, related series, metadata, US holidays) keeps
each run short; the tasks run for real with ``dag.test()`` on SQLite and a real MLflow registry.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines import domains
from pipelines.forecast import workflow
from pipelines.training import publish, registry
from pipelines.training import pyfunc as models

DAG_ID = "forecast__retail_demo"
AS_OF = "2023-08-29"
# Short budgets: what the matrix checks is that each algorithm runs from the DAG, not its accuracy.
QUICK = {
    "DeepAR+": {"epochs": 2, "num_batches_per_epoch": 4, "num_cells": 30, "num_samples": 20},
    "CNN-QR": {"epochs": 2, "num_batches_per_epoch": 4, "channels": 8},
    "AutoPredictor": {"candidates": ["SeasonalNaive", "Theta"]},
    "ETS": {"simulations": 200},
    "Prophet": {"num_samples": 100},
}


def run(conf: dict):
    """dag.test() the Forecast DAG; the run's state and each task instance's state by task and map index."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    from pipelines.launch.demo import DAGS_FOLDER

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags[DAG_ID]
    dag_run = dag.test(run_conf={"as_of": AS_OF, **conf})
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=DAG_ID, run_id=dag_run.run_id).all()
        states = {(ti.task_id, ti.map_index): str(ti.state) for ti in tis}
    return str(dag_run.state), states


def published_leaderboard(group) -> dict:
    pointer = publish.latest(group.storage_root, "forecast")
    return json.loads((Path(pointer["path"]) / "leaderboard.json").read_text())


def test_every_forecast_algorithm_trains_and_scores_through_the_dag(airflow_home, tiny_retail):
    names = list(domains.FORECAST_ALGORITHMS)
    assert {"ARIMA", "Prophet", "DeepAR+", "CNN-QR", "AutoPredictor"} <= set(names)  # the heavy ones run here too
    state, tasks = run({"algorithms": names, "algorithm_params": QUICK})
    assert state == "success", tasks
    assert [tasks[("hpo_train", i)] for i in range(len(names))] == ["success"] * len(names)
    board = published_leaderboard(tiny_retail)
    assert sorted(c["name"] for c in board["candidates"]) == sorted(names)
    published = Path(publish.latest(tiny_retail.storage_root, "forecast")["path"])
    velocity = pd.read_csv(published / "backtest_accuracy_by_velocity.csv")  # Forecast's accuracy by velocity
    assert set(velocity["velocity"]) <= {"high", "medium", "low"} and "WAPE" in velocity.columns and len(velocity)
    for candidate in board["candidates"]:
        assert candidate["error"] is None and candidate["score"] > 0, candidate
    # The holidays feature reached the data every candidate trained on.
    data = workflow.load_data(tiny_retail, pd.Timestamp(AS_OF))
    assert data.related.features == ["price", "promotion", "holiday_US"]


def test_a_failing_candidate_is_red_in_the_grid_and_the_others_still_compete(airflow_home, tiny_retail, monkeypatch):
    real = workflow.algorithm

    def broken(config, training):
        if config["name"] == "NPTS":
            raise FloatingPointError("diverged")
        return real(config, training)

    monkeypatch.setattr(workflow, "algorithm", broken)
    state, tasks = run({"algorithms": ["SeasonalNaive", "NPTS"]})
    assert state == "success"
    assert tasks[("hpo_train", 0)] == "success" and tasks[("hpo_train", 1)] == "failed"
    assert tasks[("backtest", -1)] == "success" and tasks[("publish", -1)] == "success"
    board = published_leaderboard(tiny_retail)
    assert [(c["name"], c["error"]) for c in board["candidates"]] == [
        ("SeasonalNaive", None),
        ("NPTS", "FloatingPointError: diverged"),
    ]
    experiment = registry.client().get_experiment_by_name(models.registered_name("forecast", tiny_retail.name))
    runs = registry.client().search_runs([experiment.experiment_id], "tags.`airsight.error` != ''")
    failed = [(r.info.status, r.data.tags["airsight.error"]) for r in runs]
    assert failed == [("FAILED", "FloatingPointError: diverged")]

    # Every candidate failing fails the run, and the backtest task names each error.
    def all_broken(config, training):
        raise FloatingPointError(f"{config['name']} diverged")

    monkeypatch.setattr(workflow, "algorithm", all_broken)
    with pytest.raises(RuntimeError, match="no candidate trained: ETS: FloatingPointError: ETS diverged; Theta"):
        workflow.backtest(
            tiny_retail,
            AS_OF,
            [{"name": n, "score": None, "error": f"FloatingPointError: {n} diverged"} for n in ("ETS", "Theta")],
        )
    state, tasks = run({"as_of": "2023-08-30", "algorithms": ["ETS", "Theta"]})
    assert state == "failed"
    assert tasks[("hpo_train", 0)] == tasks[("hpo_train", 1)] == "failed" and tasks[("backtest", -1)] == "failed"
    assert tasks[("forecast", -1)] == "upstream_failed"
    assert publish.latest(tiny_retail.storage_root, "forecast")["as_of"] == f"{AS_OF}T00:00:00"  # the last good one


def test_a_metric_the_forecast_types_cannot_score_is_refused_at_plan(airflow_home, tiny_retail):
    state, tasks = run({"forecast_types": ["mean"], "algorithms": ["SeasonalNaive"]})
    assert state == "failed" and tasks[("plan", -1)] == "failed"
    assert tasks[("hpo_train", -1)] == "upstream_failed"
