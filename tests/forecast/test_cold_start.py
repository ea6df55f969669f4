"""Cold-start items: the AutoPredictor and every predictor forecast items that have metadata only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pipelines.example_data import write_examples
from pipelines.forecast import workflow
from pipelines.forecast.auto_predictor import AutoPredictor
from pipelines.forecast.base import get_algorithm
from pipelines.forecast.cold_start import cold_start_items, with_cold_start
from pipelines.forecast.data import ForecastData
from pipelines.preparation import steps
from pipelines.settings import load_group


def stores() -> ForecastData:
    """Big-store items sell about 200, small-store ones about 10; one new item of each kind."""
    rng = np.random.default_rng(5)
    series, ids, kinds = [], [], []
    for n in range(8):
        kind = "big" if n % 2 else "small"
        level = 200.0 if kind == "big" else 10.0
        series.append(level + rng.normal(0, level / 20, 36))
        ids.append(f"item_{n}")
        kinds.append(kind)
    meta = pd.DataFrame({"item_id": [*ids, "new_big", "new_small"], "store": [*kinds, "big", "small"]})
    data = ForecastData.from_arrays(series, freq="1M", horizon=6, end="2024-12-01", ids=ids, non_negative=True)
    return dataclasses.replace(data, item_metadata=meta)


@pytest.mark.parametrize("model", [AutoPredictor(["SeasonalNaive", "Theta"]), get_algorithm("ETS")])
def test_items_without_history_borrow_from_the_items_most_like_them(model):
    data = stores()
    assert cold_start_items(data)[1].tolist() == ["new_big", "new_small"]
    model.fit(data)
    frame = (
        model.predict([0.1, 0.5, 0.9, "mean"])
        if isinstance(model, AutoPredictor)
        else with_cold_start(model, data, [0.1, 0.5, 0.9, "mean"])
    )
    assert len(frame) == 10 * 6 and frame["item_id"].astype(str).tolist()[-12:] == ["new_big"] * 6 + ["new_small"] * 6
    cold = frame.set_index(frame["item_id"].astype(str))
    assert 180 < cold.loc["new_big", "mean"].mean() < 220 and 8 < cold.loc["new_small", "mean"].mean() < 12
    assert (cold.loc["new_big", "p10"] <= cold.loc["new_big", "p90"]).all()


def test_the_published_forecast_of_the_example_group_holds_every_item_of_the_metadata(tmp_path):
    group = load_group(write_examples(tmp_path / "examples")["retail_demo"])
    group = group.model_copy(update={"training": group.training.model_copy(update={"plots": 0})})
    as_of = "2024-06-01"
    overrides = {"algorithms": ["SeasonalNaive"]}
    steps.import_data(group, as_of)
    candidates = [workflow.hpo_train(group, as_of, "SeasonalNaive", overrides)]
    selection = workflow.backtest(group, as_of, candidates, overrides)
    forecasted = workflow.forecast(group, as_of, selection, overrides)
    published = workflow.publish(group, as_of, selection, forecasted, overrides)
    frame = pd.read_parquet(f"{published['path']}/forecast.parquet")
    meta = pd.read_csv(tmp_path / "examples" / "retail_demo" / "items.csv")
    assert set(frame["item_id"].astype(str)) == set(meta["item_id"])  # 40 with history, 4 new
    new = frame[frame["store_id"].isna()]
    assert sorted(new["item_id"].astype(str).unique()) == ["item_040", "item_041", "item_042", "item_043"]
    assert len(new) == 4 * group.horizon and new[["p10", "p50", "p90"]].notna().all().all()
