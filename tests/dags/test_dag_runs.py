"""Both DAGs run for real with dag.test() on SQLite, from validate_schema to publish.

MLflow runs on a SQLite store in each test's AIRSIGHT_HOME, so the registry gate is real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipelines.launch.demo import run_dags
from pipelines.settings import load_group
from pipelines.storage import snapshot_dir, validation_dir
from pipelines.training import publish, registry
from pipelines.training import pyfunc as models

FAST = {"algorithms": ["SeasonalNaive", "Theta"], "recipes": ["popularity-count", "sims"]}


def aliases(kind: str, group: str) -> dict:
    found = registry.client().get_registered_model(models.registered_name(kind, group)).aliases
    return {alias: str(version) for alias, version in found.items()}


def test_both_dags_run_end_to_end_with_an_as_of_param(airflow_home, example_groups):
    states = run_dags(conf={"as_of": "2024-06-01", **FAST})
    assert states == {"forecast__retail_demo": "success", "personalize__interactions_demo": "success"}
    for path in example_groups.values():
        group = load_group(path)
        folder = snapshot_dir(group.storage_root, pd.Timestamp("2024-06-01"))
        assert (folder / "manifest.json").is_file()
        assert (validation_dir(group.storage_root, pd.Timestamp("2024-06-01")) / "docs").is_dir()
        pointer = publish.latest(group.storage_root, group.kind)
        assert pointer["as_of"] == "2024-06-01T00:00:00" and pointer["promoted"] and pointer["version"] == "1"
        assert aliases(group.kind, group.name) == {"champion": "1", "challenger": "1"}

    retail = load_group(example_groups["retail_demo"])
    published = Path(publish.latest(retail.storage_root, "forecast")["path"])
    forecast = pd.read_parquet(published / "forecast.parquet")
    assert list(forecast.columns) == ["item_id", "store_id", "date", "p10", "p50", "p90"]
    # 40 items x 3 stores with history, and the 4 cold-start items of the metadata (no store)
    assert len(forecast) == (120 + 4) * retail.horizon and forecast["date"].min() > pd.Timestamp("2024-05-31")
    assert forecast[forecast["store_id"].isna()]["item_id"].nunique() == 4
    assert ((forecast["p10"] <= forecast["p50"]) & (forecast["p50"] <= forecast["p90"])).all()
    assert {"backtest_forecasts.csv", "backtest_accuracy_metrics.csv", "forecast.csv"} <= {
        p.name for p in published.iterdir()
    }
    assert (published / "plots" / "summary.png").is_file()
    leaderboard = json.loads((published / "leaderboard.json").read_text())
    assert [c["name"] for c in leaderboard["candidates"]] == ["Theta", "SeasonalNaive"]  # best first

    shop = load_group(example_groups["interactions_demo"])
    published = Path(publish.latest(shop.storage_root, "personalize")["path"])
    lines = (published / "batch_recommendations.jsonl").read_text().splitlines()
    assert len(lines) == 600 and len(json.loads(lines[0])["output"]["recommendedItems"]) == 25
    assert (published / "related_items.jsonl").is_file()  # sims won: it has related items
    version, native = models.load_champion("personalize", shop.name)
    assert version == "1" and native.name == "sims"


def test_the_gate_keeps_a_worse_model_as_challenger_and_promotes_a_better_one(airflow_home, example_groups):
    dag = ["personalize__interactions_demo"]
    shop = load_group(example_groups["interactions_demo"])
    assert run_dags(dag, conf={"as_of": "2024-05-01", "recipes": ["popularity-count"]})[dag[0]] == "success"
    assert aliases("personalize", shop.name) == {"champion": "1", "challenger": "1"}

    assert run_dags(dag, conf={"as_of": "2024-05-15", "recipes": ["sims"]})[dag[0]] == "success"
    assert aliases("personalize", shop.name) == {"champion": "2", "challenger": "2"}

    # popularity is worse than sims on the same split: it stays challenger, sims keeps serving.
    assert run_dags(dag, conf={"as_of": "2024-06-01", "recipes": ["popularity-count"]})[dag[0]] == "success"
    assert aliases("personalize", shop.name) == {"champion": "2", "challenger": "3"}
    tags = registry.client().get_model_version(models.registered_name("personalize", shop.name), "3").tags
    assert tags["gate.decision"] == "kept challenger" and float(tags["gate.champion_score"]) > float(
        tags["score.normalized_discounted_cumulative_gain_at_25"]
    )
    pointer = publish.latest(shop.storage_root, "personalize")
    assert pointer["served"] == "champion" and pointer["served_version"] == "2"
    assert (Path(pointer["path"]) / "related_items.jsonl").is_file()  # written by the sims champion

    # A forced promotion says so.
    conf = {"as_of": "2024-06-15", "recipes": ["popularity-count"], "force_promotion": True}
    assert run_dags(dag, conf=conf)[dag[0]] == "success"
    assert aliases("personalize", shop.name)["champion"] == "4"
    tags = registry.client().get_model_version(models.registered_name("personalize", shop.name), "4").tags
    assert tags["gate.forced"] == "true" and tags["gate.reason"].startswith("forced promotion")


def test_rerunning_a_date_reproduces_its_outputs_and_registers_nothing_twice(airflow_home, example_groups):
    dag = ["personalize__interactions_demo"]
    shop = load_group(example_groups["interactions_demo"])
    conf = {"as_of": "2024-06-01", "recipes": ["popularity-count", "sims"]}
    assert run_dags(dag, conf=conf)[dag[0]] == "success"
    first = publish.latest(shop.storage_root, "personalize")
    assert run_dags(dag, conf=conf)[dag[0]] == "success"
    second = publish.latest(shop.storage_root, "personalize")
    assert first["checksums"] == second["checksums"] and first["version"] == second["version"] == "1"
    name = models.registered_name("personalize", shop.name)
    assert len(registry.client().search_model_versions(f"name='{name}'")) == 1


def test_bad_params_are_refused_by_the_form_or_fail_the_plan_before_any_work(airflow_home, example_groups):
    from airflow.sdk.exceptions import ParamValidationError

    dag = ["forecast__retail_demo"]
    retail = load_group(example_groups["retail_demo"])
    with pytest.raises(ParamValidationError, match="backtest_windows"):
        run_dags(dag, conf={"as_of": "2024-06-01", "backtest_windows": 9})
    # JSON Schema lets 0.001 through; the settings model does not, in the first task.
    assert run_dags(dag, conf={"as_of": "2024-06-01", "forecast_types": ["0.001"]})[dag[0]] == "failed"
    assert not snapshot_dir(retail.storage_root, pd.Timestamp("2024-06-01")).exists()


def test_bad_data_stops_at_validate_schema_and_publishes_nothing(airflow_home, example_groups, tmp_path):
    group = load_group(example_groups["retail_demo"])
    target = group.datasets.TARGET_TIME_SERIES.path
    shutil.copy(target, tmp_path / "good.csv")
    with open(target, "a") as handle:
        handle.write("item_000,store_01,2024-01-05,-3\n")
    states = run_dags(["forecast__retail_demo"], conf={"as_of": "2024-06-01"})
    assert states == {"forecast__retail_demo": "failed"}
    assert not (snapshot_dir(group.storage_root, pd.Timestamp("2024-06-01"))).exists()
    assert publish.latest(group.storage_root, "forecast") is None
    assert registry.current_champion(models.registered_name("forecast", group.name)) is None


def test_a_task_past_its_timeout_fails_the_run_and_publishes_nothing(airflow_home, example_groups):
    from airflow.dag_processing.dagbag import DagBag

    from pipelines.launch.demo import DAGS_FOLDER

    settings = Path(example_groups["retail_demo"])
    settings.write_text(settings.read_text() + "task_timeouts: {validate_schema: 0.0005}\n")  # 30 ms
    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags["forecast__retail_demo"]
    run = dag.test(run_conf={"as_of": "2024-06-01", **FAST})
    assert str(run.state) == "failed"
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["validate_schema"] == "failed" and states["publish"] == "upstream_failed", states
    group = load_group(settings)
    assert publish.latest(group.storage_root, "forecast") is None
