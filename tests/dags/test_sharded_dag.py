"""Work spread over workers: with ``training.series_per_shard``, the Forecast DAG maps each local
algorithm's backtest over shards of series, and the merged result is the unsharded one.

A generated retail group of 12 series with shards of 5 gives 3 shards per candidate: 9 mapped
``hpo_train`` tasks for 3 candidates. The published leaderboard and backtest export must equal
what one backtest over every series computes; a failed shard fails its candidate only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast import sharding, workflow
from pipelines.forecast.backtest import backtest
from pipelines.training import publish
from tests.dags.conftest import retail_group
from tests.dags.test_forecast_dag import AS_OF, run

NAMES = ["SeasonalNaive", "Theta", "NPTS"]


@pytest.fixture
def sharded_retail(tmp_path, monkeypatch):
    def sharded(settings: dict) -> dict:
        settings["training"] = {**settings.get("training", {}), "series_per_shard": 5, "hpo_trials": 0}
        for insight in ("explainability", "what_if"):
            settings.pop(insight, None)
        return settings

    return retail_group(tmp_path, monkeypatch, items=12, new_items=0, edit=sharded)


def test_partition_cuts_local_algorithms_only():
    assert sharding.partition(["ETS", "DeepAR+", "AutoPredictor"], 12, 5, lambda n: False) == [
        "ETS#0/3", "ETS#1/3", "ETS#2/3", "DeepAR+", "AutoPredictor"
    ]  # fmt: skip
    assert sharding.partition(["ETS", "Theta"], 12, 5, lambda n: n == "ETS") == ["ETS", "Theta#0/3", "Theta#1/3",
                                                                                  "Theta#2/3"]  # fmt: skip
    assert sharding.partition(["ETS"], 5, 5, lambda n: False) == ["ETS"]  # one shard: nothing to cut
    assert sharding.partition(["ETS"], 12, None, lambda n: False) == ["ETS"]
    assert sharding.parse("DeepAR+#1/3") == ("DeepAR+", 1, 3) and sharding.parse("DeepAR+") == ("DeepAR+", None, None)
    cut = [sharding.shard_series(12, k, 3) for k in range(3)]
    assert [len(c) for c in cut] == [4, 4, 4] and np.array_equal(np.concatenate(cut), np.arange(12))


def test_sharded_backtests_equal_one_backtest_of_every_series(airflow_home, sharded_retail):
    state, tasks = run({"algorithms": NAMES, "hpo_trials": 0})
    assert state == "success", tasks
    mapped = sorted(i for (task, i) in tasks if task == "hpo_train")
    assert mapped == list(range(9)) and {tasks[("hpo_train", i)] for i in mapped} == {"success"}
    fits = sorted(i for (task, i) in tasks if task == "fit_shard")  # the winner's final fit, by shard too
    assert fits == [0, 1, 2] and {tasks[("fit_shard", i)] for i in fits} == {"success"}
    published = Path(publish.latest(sharded_retail.storage_root, "forecast")["path"])
    board = {c["name"]: c for c in json.loads((published / "leaderboard.json").read_text())["candidates"]}
    assert sorted(board) == sorted(NAMES)

    group, training = workflow.wf.options(sharded_retail, {"hpo_trials": 0})
    data = workflow.load_data(group, pd.Timestamp(AS_OF))
    whole = {}
    for name in NAMES:
        model = workflow.algorithm({"name": name, "params": {}}, training)
        whole[name] = backtest(model, data, training.backtest_windows, training.backtest_offset,
                               training.forecast_types)  # fmt: skip
        assert board[name]["score"] == pytest.approx(whole[name].summary[training.optimization_metric], rel=1e-12)
    winner = min(NAMES, key=lambda n: board[n]["score"])
    exported = pd.read_parquet(published / "backtest_export.parquet")
    expected = whole[winner].export
    pd.testing.assert_frame_equal(exported.reset_index(drop=True)[expected.columns], expected, check_dtype=False,
                                  check_categorical=False)  # fmt: skip
    folder = workflow.wf.run_dir(group, pd.Timestamp(AS_OF)) / "candidates" / workflow.wf.config_key({"name": winner})
    summary = json.loads((folder / "summary.json").read_text())
    assert [s["series"] for s in summary["shards"]] == [4, 4, 4]

    # The final model, assembled from the shards' fits, is one model over every series: it forecasts
    # what one fit of every series forecasts; the forecast the shards made of their series, gathered,
    # is that forecast; and the export holds every series.
    whole_fit = workflow.algorithm({"name": winner, "params": {}}, training).fit(data)
    ids, mean, quant, _ = whole_fit.predict_arrays(training.forecast_types)
    assembled, gathered = workflow.fitted(group, pd.Timestamp(AS_OF), data, "challenger",
                                          {"name": winner, "params": {}}, training)  # fmt: skip
    got = assembled.predict_arrays(training.forecast_types)
    assert np.array_equal(got[0], ids) and np.allclose(got[1], mean) and np.allclose(got[2], quant)
    pd.testing.assert_frame_equal(gathered, whole_fit.predict(training.forecast_types))
    forecast = pd.read_parquet(published / "forecast.parquet")
    assert forecast["item_id"].nunique() == 12


def test_a_failed_shard_fails_its_candidate_only(airflow_home, sharded_retail, monkeypatch):
    real = sharding.run_shard

    def broken(data, model, training, shard, of, folder):
        if model.name == "NPTS" and shard == 1:
            raise FloatingPointError("diverged")
        return real(data, model, training, shard, of, folder)

    monkeypatch.setattr(sharding, "run_shard", broken)
    state, tasks = run({"algorithms": ["SeasonalNaive", "NPTS"], "hpo_trials": 0})
    assert state == "success", tasks
    assert [tasks[("hpo_train", i)] for i in range(6)] == ["success"] * 4 + ["failed", "success"]
    board = json.loads((Path(publish.latest(sharded_retail.storage_root, "forecast")["path"]) / "leaderboard.json")
                       .read_text())["candidates"]  # fmt: skip
    assert [(c["name"], c["error"]) for c in board] == [
        ("SeasonalNaive", None), ("NPTS", "shard 2 of 3: FloatingPointError: diverged")
    ]  # fmt: skip
