"""Both DAGs run for real with dag.test() on SQLite: validate_schema >> import_data."""

from __future__ import annotations

import shutil

import pandas as pd

from pipelines.demo import run_dags
from pipelines.settings import load_group
from pipelines.storage import snapshot_dir, validation_dir


def test_both_dags_run_end_to_end_with_an_as_of_param(airflow_home, example_groups):
    states = run_dags(conf={"as_of": "2024-06-01"})
    assert states == {"forecast__retail_demo": "success", "personalize__interactions_demo": "success"}
    for path in example_groups.values():
        group = load_group(path)
        folder = snapshot_dir(group.storage_root, pd.Timestamp("2024-06-01"))
        assert (folder / "manifest.json").is_file()
        assert (validation_dir(group.storage_root, pd.Timestamp("2024-06-01")) / "docs").is_dir()


def test_bad_data_stops_at_validate_schema_and_publishes_nothing(airflow_home, example_groups, tmp_path):
    group = load_group(example_groups["retail_demo"])
    target = group.datasets.TARGET_TIME_SERIES.path
    shutil.copy(target, tmp_path / "good.csv")
    with open(target, "a") as handle:
        handle.write("item_000,store_01,2024-01-05,-3\n")
    states = run_dags(["forecast__retail_demo"], conf={"as_of": "2024-06-01"})
    assert states == {"forecast__retail_demo": "failed"}
    assert not (snapshot_dir(group.storage_root, pd.Timestamp("2024-06-01"))).exists()
