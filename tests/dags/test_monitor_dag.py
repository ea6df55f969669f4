"""The predictor monitor DAG: it scores the published forecast on new actuals and, once accuracy
degrades past ``monitoring.max_wape_increase``, emits the asset event the group's DAG retrains on.

Runs with dag.test() on SQLite; the asset event and the training run it queues are read from
Airflow's own tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipelines.launch.demo import DAGS_FOLDER
from pipelines.settings import load_group

FAST = {"algorithms": ["SeasonalNaive", "Theta"]}
TRAINED = "2024-05-01"
MONITORED = "2024-05-29"  # four weeks of actuals after the forecast published as of TRAINED
DAG, MONITOR = "forecast__retail_demo", "forecast_monitor__retail_demo"


def dags(example_groups, monitoring: str) -> tuple:
    from airflow.dag_processing.dagbag import DagBag

    settings = Path(example_groups["retail_demo"])
    settings.write_text(settings.read_text() + f"monitoring: {monitoring}\n")
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag.dags, load_group(settings)


def unpause(dag_id: str) -> None:
    """As a user does in the UI: a paused DAG is not queued by asset events."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(DagModel).filter_by(dag_id=dag_id).update({"is_paused": False})


def task_states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def degraded_events() -> list[tuple[dict, list[str]]]:
    """Each event of the retail group's degraded-predictor asset: its extra, and the DAGs it queued."""
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        asset = session.query(AssetModel).filter_by(name="airsight_predictor_degraded__retail_demo").one()
        events = session.query(AssetEvent).filter_by(asset_id=asset.id).order_by(AssetEvent.id).all()
        queued = [q.target_dag_id for q in session.query(AssetDagRunQueue).filter_by(asset_id=asset.id)]
        return [(dict(e.extra or {}), queued) for e in events]


def test_the_monitor_retrains_only_once_the_forecast_degrades(airflow_home, example_groups):
    from airflow.sdk import AssetOrTimeSchedule

    found, group = dags(example_groups, "{max_wape_increase: 0.5, schedule: '@daily'}")
    assert [t.task_id for t in found[MONITOR].topological_sort()] == ["validate_schema", "import_data",
                                                                     "check_accuracy"]  # fmt: skip
    assert found[MONITOR].schedule == "@daily"
    schedule = found[DAG].schedule
    assert isinstance(schedule, AssetOrTimeSchedule)
    assert schedule.timetable.expression == "0 0 * * 0"  # the group's @weekly still holds
    assert [a.uri for a in schedule.asset_condition.objects] == ["airsight://retail_demo/predictor_degraded"]

    assert str(found[DAG].test(run_conf={"as_of": TRAINED, **FAST}).state) == "success"
    unpause(DAG)
    held = found[MONITOR].test(run_conf={"as_of": MONITORED})
    assert str(held.state) == "success" and task_states(held)["check_accuracy"] == "skipped"
    summary = json.loads((Path(group.storage_root) / "monitor" / "as_of=20240529T000000" / "summary.json").read_text())
    assert summary["degraded"] is False and "within" in summary["reason"], summary
    assert not degraded_events()

    # Demand triples after the forecast was published: the same check now retrains.
    target = group.datasets.TARGET_TIME_SERIES.path
    frame = pd.read_csv(target)
    later = pd.to_datetime(frame["timestamp"]) > pd.Timestamp(TRAINED)
    frame.loc[later, "demand"] = frame.loc[later, "demand"] * 3
    frame.to_csv(target, index=False)
    flagged = found[MONITOR].test(run_conf={"as_of": MONITORED})
    assert str(flagged.state) == "success" and task_states(flagged)["check_accuracy"] == "success"
    [(extra, queued)] = degraded_events()
    assert extra["as_of"] == "as_of=20240529T000000" and "above the backtest" in extra["reason"], extra
    assert queued == [DAG]  # the scheduler's next loop starts the group's retraining run


def test_no_threshold_means_no_monitor_dag_and_the_plain_schedule(airflow_home, example_groups):
    found, _ = dags(example_groups, "{}")
    assert MONITOR not in found and found[DAG].schedule == "@weekly"
