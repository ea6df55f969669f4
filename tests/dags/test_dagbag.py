"""DAG files import cleanly, one DAG per group, and load nothing heavy at parse time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

from pipelines.launch.demo import DAGS_FOLDER

HEAVY = ("pandas", "numpy", "pyarrow", "great_expectations", "torch", "mlflow", "prophet", "statsmodels", "optuna")


def test_dagbag_has_one_dag_per_group_and_no_import_errors(airflow_home, example_groups):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    assert sorted(bag.dags) == ["forecast__retail_demo", "personalize__interactions_demo"]
    steps = {"forecast": "forecast", "personalize": "recommend"}
    for dag_id, dag in bag.dags.items():
        first = [
            "plan",
            "validate_schema",
            "import_data",
            "partition",
            "hpo_train",
            "backtest",
            "plan_fit",
            "fit_shard",
        ]
        order = [*first, steps[dag_id.split("__")[0]]]
        assert [t.task_id for t in dag.topological_sort()] == [*order, "publish"]
        assert {"dataset_group", "as_of", "hpo_trials", "force_promotion", "optimization_metric"} <= set(dag.params)
        assert dag.get_task("hpo_train").is_mapped
        assert dag.get_task("validate_schema").retries == 0  # bad data fails fast
        assert dag.get_task("import_data").retries == 2
        assert {t.execution_timeout for t in dag.tasks} == {timedelta(hours=6)}  # the settings' default
    assert bag.dags["forecast__retail_demo"].schedule == "@weekly"  # from the settings file
    assert {"algorithms", "horizon", "forecast_types", "backtest_windows"} <= set(
        bag.dags["forecast__retail_demo"].params
    )
    assert {"recipes", "num_results"} <= set(bag.dags["personalize__interactions_demo"].params)


def test_dag_files_import_nothing_heavy(example_groups):
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1]);"
        "import forecast, personalize;"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(DAGS_FOLDER)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_no_groups_means_no_dags_and_no_errors(airflow_home, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRSIGHT_GROUPS_DIR", str(tmp_path / "empty"))
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    assert bag.dags == {}


def test_a_broken_settings_file_shows_as_an_import_error_naming_file_and_key(airflow_home, example_groups):
    from airflow.dag_processing.dagbag import DagBag

    broken = example_groups["retail_demo"].with_name("broken.yaml")
    broken.write_text(
        example_groups["retail_demo"].read_text().replace("name: retail_demo", "name: broken\nhorizon_x: 3")
    )
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    errors = "\n".join(bag.import_errors.values())
    assert "broken.yaml" in errors and "horizon_x: unknown key" in errors


def test_each_task_times_out_after_the_groups_minutes_for_it(airflow_home, example_groups):
    from airflow.dag_processing.dagbag import DagBag

    settings = example_groups["retail_demo"]
    settings.write_text(settings.read_text() + "task_timeouts: {default: 90, hpo_train: 30, forecast: 45.5}\n")
    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags["forecast__retail_demo"]
    minutes = {t.task_id: t.execution_timeout / timedelta(minutes=1) for t in dag.tasks}
    assert minutes == {"plan": 90, "validate_schema": 90, "import_data": 90, "partition": 90, "hpo_train": 30,
                       "backtest": 90, "plan_fit": 90, "fit_shard": 90,
                       "forecast": 45.5, "publish": 90}  # fmt: skip
