"""Backtests: window placement, no look-ahead, observed values only, Forecast's export and metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast.backtest import backtest, window_starts
from pipelines.forecast.data import ForecastData
from pipelines.forecast.naive import SeasonalNaive

WEEK = np.array([3, 5, 4, 6, 8, 12, 10], dtype=float)


def test_windows_step_back_by_the_offset_oldest_first():
    assert window_starts(100, 10) == [90]
    assert window_starts(100, 10, windows=3, offset=12) == [64, 76, 88]
    assert window_starts(100, 10, windows=5, offset=10) == [50, 60, 70, 80, 90]


@pytest.mark.parametrize(
    ("windows", "offset", "message"),
    [(0, 10, "1 to 5"), (6, 10, "1 to 5"), (1, 9, "shorter than the forecast horizon"), (1, 50, "less than half")],
)
def test_window_settings_outside_forecasts_limits_are_refused(windows, offset, message):
    with pytest.raises(ValueError, match=message):
        window_starts(100, 10, windows=windows, offset=offset)


def weekly_pattern(days=70, filled_day=None, late_start=None) -> ForecastData:
    stamps = pd.date_range("2024-01-01", periods=days, freq="D")
    rows = {"item_id": [], "timestamp": [], "demand": [], "filled_by": []}
    for item, start in (("a", 0), ("b", late_start or 0)):
        for t in range(start, days):
            filled = item == "a" and t == filled_day
            rows["item_id"].append(item)
            rows["timestamp"].append(stamps[t])
            rows["demand"].append(1000.0 if filled else WEEK[t % 7] * (2 if item == "b" else 1))
            rows["filled_by"].append("middlefill" if filled else None)
    return ForecastData.from_frame(
        pd.DataFrame(rows), keys=["item_id"], target_column="demand", freq="1D", horizon=7, non_negative=True
    )


class Recording(SeasonalNaive):
    """Seasonal naive that notes the last period it was trained on."""

    trained_until: list = []  # noqa: RUF012  (shared by the clones backtest makes)

    def fit(self, data):
        Recording.trained_until.append(data.last_period)
        return super().fit(data)


def test_each_window_trains_on_the_past_only_and_forecasts_its_own_periods():
    data = weekly_pattern()
    Recording.trained_until.clear()
    result = backtest(Recording(), data, windows=3, offset=10, quantiles=[0.1, 0.5, 0.9, "mean"])
    starts = [data.periods[s] for s in window_starts(70, 7, 3, 10)]
    assert Recording.trained_until == [s - pd.Timedelta(days=1) for s in starts]
    assert result.windows["TestWindowStart"].tolist() == starts
    assert result.windows["TestWindowEnd"].tolist() == [s + pd.Timedelta(days=6) for s in starts]
    export = result.export
    assert list(export.columns) == [
        "item_id", "timestamp", "demand", "p10", "p50", "p90", "mean",
        "backtest_window", "backtestwindow_start_time", "backtestwindow_end_time",
    ]  # fmt: skip
    assert len(export) == 2 * 7 * 3
    for number, start in enumerate(starts, 1):
        window = export[export.backtest_window == number]
        assert window["timestamp"].min() == start and window["timestamp"].max() == start + pd.Timedelta(days=6)
        assert (window["backtestwindow_start_time"] == start).all()
    # A repeating week is exactly what seasonal naive forecasts.
    np.testing.assert_allclose(export["mean"], export["demand"])
    assert result.summary["WAPE"] == 0 and result.summary["AverageWeightedQuantileLoss"] == 0
    assert result.summary["ForecastType"] == "mean" and result.summary["NumberOfBacktestWindows"] == 3


def test_filled_values_are_not_scored():
    data = weekly_pattern(filled_day=66)  # inside the last window, made up on import
    result = backtest(SeasonalNaive(), data, quantiles=[0.5])
    row = result.export[(result.export.item_id == "a") & (result.export.timestamp == data.periods[66])]
    assert np.isnan(row["demand"]).all()
    assert result.summary["WAPE"] == 0 and result.summary["ForecastType"] == "mean"


def test_items_and_summary_tables():
    rng = np.random.default_rng(0)
    data = ForecastData.from_arrays(
        [np.tile(WEEK, 10) + rng.normal(0, 1, 70), np.tile(WEEK, 10) * 3 + rng.normal(0, 1, 70)],
        freq="1D",
        horizon=7,
        end="2024-03-10",
    )
    result = backtest(SeasonalNaive(), data, windows=2, offset=14)
    assert result.items.groupby("backtest_window").size().tolist() == [2, 2]
    assert set(result.items.columns) >= {"item_id", "wQL[0.1]", "wQL[0.5]", "wQL[0.9]", "WAPE", "RMSE", "MAPE", "MASE"}
    assert result.windows["ItemCount"].tolist() == [2, 2]
    for name in ("wQL[0.1]", "AverageWeightedQuantileLoss", "WAPE", "RMSE", "MASE", "MAPE"):
        assert result.summary[name] == pytest.approx(result.windows[name].mean())
        assert 0 < result.summary[name] < np.inf
    # Forecast's MASE for a window is the items' average.
    assert result.windows["MASE"].iloc[0] == pytest.approx(
        result.items[result.items.backtest_window == 1]["MASE"].mean()
    )


def test_series_that_start_inside_a_window_sit_it_out():
    data = weekly_pattern(days=70, late_start=60)
    result = backtest(SeasonalNaive(), data, windows=2, offset=7)
    first = result.export[result.export.backtest_window == 1]
    assert first["item_id"].astype(str).unique().tolist() == ["a"]  # b starts at day 60, after the split at 56
    assert result.windows["ItemCount"].tolist() == [1, 2]


def test_point_metrics_score_the_mean_even_when_it_is_not_a_forecast_type():
    from pipelines.forecast import metrics

    data = weekly_pattern()
    result = backtest(SeasonalNaive(), data, quantiles=[0.1, 0.9])
    export = result.export
    assert {"p10", "p90", "mean"} <= set(export.columns) and "p50" not in export.columns
    assert result.summary["ForecastType"] == "mean"
    assert result.summary["WAPE"] == pytest.approx(metrics.wape(export["demand"], export["mean"]))


def test_a_local_model_is_refitted_per_window_even_when_refits_are_not_asked_for():
    data = weekly_pattern()
    Recording.trained_until.clear()
    backtest(Recording(), data, windows=3, offset=10, refit=False)
    assert len(Recording.trained_until) == 3  # its fitted state belongs to one history: it cannot roll forward
