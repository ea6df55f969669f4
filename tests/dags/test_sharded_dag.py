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
import yaml

from pipelines.example_data import RETAIL_SETTINGS, retail
from pipelines.forecast import sharding, workflow
from pipelines.forecast.backtest import backtest
from pipelines.settings import load_group
from pipelines.training import publish
from tests.dags.test_forecast_dag import AS_OF, run

NAMES = ["SeasonalNaive", "Theta", "NPTS"]


@pytest.fixture
def sharded_retail(tmp_path, monkeypatch):
    folder = tmp_path / "retail_demo"
    folder.mkdir()
    for name, frame in retail(items=12, stores=1, days=240, horizon=14, new_items=0).items():
        frame.to_csv(folder / name, index=False)
    groups = tmp_path / "groups.d"
    groups.mkdir()
    settings = yaml.safe_load(RETAIL_SETTINGS.format(horizon=14))
    settings["training"] = {**settings.get("training", {}), "series_per_shard": 5, "hpo_trials": 0}
    settings.pop("explainability", None)
    settings.pop("what_if", None)
    path = groups / "retail_demo.yaml"
    path.write_text(yaml.safe_dump(settings))
    monkeypatch.setenv("AIRSIGHT_GROUPS_DIR", str(groups))
    return load_group(path)


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
