"""Backtest metrics by velocity bucket: items split by mean training demand, metrics per bucket."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.forecast.backtest import backtest, velocity_buckets
from pipelines.forecast.data import ForecastData
from pipelines.forecast.naive import SeasonalNaive


def test_buckets_split_items_at_the_terciles_of_their_mean_demand():
    labels = velocity_buckets([1.0, 6.0, 3.0, 2.0, 5.0, 4.0])
    assert labels.tolist() == ["low", "high", "medium", "low", "high", "medium"]
    # Ties share a bucket; an item with no observed history has none.
    assert velocity_buckets([0.0, 0.0, 0.0, 0.0, 9.0, np.nan]).tolist() == ["low"] * 4 + ["high", None]
    # Other cut-points: the top 20% are high movers, the bottom half low.
    labels = velocity_buckets(np.arange(1.0, 11.0), quantiles=(0.5, 0.8))
    assert labels.tolist() == ["low"] * 5 + ["medium"] * 3 + ["high"] * 2
    with pytest.raises(ValueError, match="velocity quantiles"):
        velocity_buckets([1.0, 2.0], quantiles=(0.7, 0.3))


def flat_then_step(levels, days=35, horizon=7) -> ForecastData:
    """Item k holds ``levels[k]`` for the first days - horizon days, then ``levels[k] + 1``."""
    series = [np.r_[np.full(days - horizon, c), np.full(horizon, c + 1.0)] for c in levels]
    ids = [f"item_{c:g}" for c in levels]
    return ForecastData.from_arrays(series, freq="1D", horizon=horizon, end="2024-03-31", ids=ids)


def test_each_bucket_is_scored_on_its_own_items():
    # Seasonal naive repeats the flat history, so each item's forecast is its level c (all quantiles)
    # and the actual is c + 1: per bucket, WAPE = 7 * items / (7 * sum(c + 1)).
    data = flat_then_step([1, 2, 3, 4, 5, 6])
    result = backtest(SeasonalNaive(), data, quantiles=[0.1, 0.5, 0.9])
    velocity = result.velocity.set_index("velocity")
    assert velocity["ItemCount"].to_dict() == {"high": 2, "medium": 2, "low": 2}
    assert velocity.loc["high", ["MinMeanDemand", "MaxMeanDemand"]].tolist() == [5.0, 6.0]
    expected = {"high": 2 / 13, "medium": 2 / 9, "low": 2 / 5}  # (1 + 1) / ((6 + 7) or (4 + 5) or (2 + 3))
    for bucket, wape in expected.items():
        assert velocity.loc[bucket, "WAPE"] == pytest.approx(wape)
        # Under-forecast by 1 everywhere: wQL[tau] = 2 * tau * WAPE.
        assert velocity.loc[bucket, "wQL[0.1]"] == pytest.approx(0.2 * wape)
        assert velocity.loc[bucket, "wQL[0.9]"] == pytest.approx(1.8 * wape)
        assert velocity.loc[bucket, "AverageWeightedQuantileLoss"] == pytest.approx(wape)
        assert velocity.loc[bucket, "RMSE"] == pytest.approx(1.0)
    items = result.item_velocity.set_index(result.item_velocity["item_id"].astype(str))
    assert items.loc["item_6", "velocity"] == "high" and items.loc["item_1", "mean_demand"] == 1.0
    # The existing fields are untouched: the whole predictor's WAPE is over all six items.
    assert result.summary["WAPE"] == pytest.approx(6 / 27)
    assert list(result.items.columns)[:2] == ["item_id", "backtest_window"]


def test_velocity_summary_averages_the_windows_per_bucket():
    # Two windows of 7 days: in window 1 every item is flat (perfect forecast), in window 2 it steps up.
    data = flat_then_step([1, 2, 3, 4, 5, 6], days=42)
    result = backtest(SeasonalNaive(), data, windows=2, offset=7, quantiles=[0.5])
    assert len(result.velocity) == 6 and sorted(set(result.velocity["backtest_window"])) == [1, 2]
    summary = result.velocity_summary().set_index("velocity")
    assert list(summary.index) == ["high", "medium", "low"]
    assert summary.loc["low", "WAPE"] == pytest.approx((0 + 2 / 5) / 2)
    assert summary.loc["high", "ItemCount"] == 2
