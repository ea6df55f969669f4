"""Predictor monitoring: the last published forecast scored on the actuals that arrived, drift, the flag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.example_data import RETAIL_SETTINGS, retail
from pipelines.forecast import monitoring, workflow
from pipelines.preparation import steps
from pipelines.settings import load_group

FIRST, SECOND = "2023-06-19", "2023-07-03"  # two weeks apart: the first forecast's horizon has arrived


def run(group, as_of: str) -> dict:
    overrides = {"algorithms": ["SeasonalNaive"]}
    steps.import_data(group, as_of)
    selection = workflow.backtest(
        group, as_of, [workflow.hpo_train(group, as_of, "SeasonalNaive", overrides)], overrides
    )
    forecasted = workflow.forecast(group, as_of, selection, overrides)
    return workflow.publish(group, as_of, selection, forecasted, overrides)


@pytest.fixture
def tiny(tmp_path):
    folder = tmp_path / "retail_demo"
    folder.mkdir()
    frames = retail(items=6, stores=1, days=200, horizon=14, new_items=0)
    for name, frame in frames.items():
        frame.to_csv(folder / name, index=False)
    raw = yaml.safe_load(RETAIL_SETTINGS.format(horizon=14))
    raw.update(training={"plots": 0}, monitoring={"max_wape_increase": 1.0}, storage=str(tmp_path / "store"))
    path = tmp_path / "groups.d" / "retail_demo.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw))
    return load_group(path), folder / "target.csv"


@pytest.mark.parametrize("shift", [1.0, 0.2])  # steady, and sales collapsing to a fifth
def test_an_injected_level_shift_is_flagged_and_steady_demand_is_not(tiny, shift):
    group, target = tiny
    first = run(group, FIRST)
    assert not (Path(first["path"]) / "monitoring").exists()  # nothing was published before to score
    frame = pd.read_csv(target)
    late = pd.to_datetime(frame["timestamp"]) > pd.Timestamp(FIRST)
    frame.loc[late, "demand"] = (frame.loc[late, "demand"] * shift).round()
    frame.to_csv(target, index=False)
    second = run(group, SECOND)
    summary = json.loads((Path(second["path"]) / "monitoring" / "summary.json").read_text())
    assert summary["scored_forecast"] == "as_of=20230619T000000" and summary["ActualCount"] == 6 * 14
    assert summary["degraded"] is (shift != 1), summary["reason"]
    by_step = pd.read_csv(f"{second['path']}/monitoring/accuracy_by_step.csv")
    assert by_step["step"].tolist() == list(range(1, 15)) and by_step["WAPE"].notna().all()
    drift = pd.read_csv(f"{second['path']}/monitoring/drift.csv").set_index("attribute")
    assert bool(drift.loc["demand", "psi"] > 0.5) is (shift != 1)  # the target's distribution moved
    history = pd.read_csv(f"{second['path']}/monitoring/history.csv")
    assert history["as_of"].tolist() == ["as_of=20230703T000000"]


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 5000)
    assert monitoring.psi(base, rng.normal(0, 1, 5000)) < 0.02
    assert monitoring.psi(base, rng.normal(2, 1, 5000)) > 1.0
    assert np.isnan(monitoring.psi(base, np.array([])))
