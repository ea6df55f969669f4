"""The holidays supplementary feature: dates by country, and holiday periods at every frequency."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast.data import ForecastData
from pipelines.forecast.holidays import data_holiday_indicator, holiday_dates, holiday_indicator
from pipelines.frequency import Frequency
from pipelines.preparation.importing import calendar


def test_holiday_dates_are_a_frame_of_dates_and_names_for_a_country():
    us = holiday_dates("us", "2024-01-01", "2024-12-31")
    assert list(us.columns) == ["date", "holiday"] and len(us) == 11
    assert us["date"].is_monotonic_increasing
    july = us[us["date"] == pd.Timestamp("2024-07-04")]
    assert july["holiday"].tolist() == ["Independence Day"]
    germany = holiday_dates("DE", "2024-03-01", "2024-04-30")["date"].dt.strftime("%m-%d").tolist()
    assert germany == ["03-29", "04-01"]  # Good Friday, Easter Monday: not US holidays
    assert holiday_dates("US", "2024-03-01", "2024-03-31").empty


@pytest.mark.parametrize("bad", ["XX", "USA", "", "1A"])
def test_unknown_or_malformed_country_codes_are_refused(bad):
    with pytest.raises(ValueError, match="country"):
        holiday_dates(bad, "2024-01-01", "2024-12-31")


def test_daily_periods_are_holidays_on_the_day_even_with_a_later_day_boundary():
    days = pd.date_range("2024-07-01", "2024-07-07", freq="D")
    np.testing.assert_array_equal(holiday_indicator("US", days, "1D"), [0, 0, 0, 1, 0, 0, 0])
    from_six = days + pd.Timedelta(hours=6)  # a day that runs 06:00 to 06:00 is the date it starts on
    np.testing.assert_array_equal(holiday_indicator("US", from_six, "1D"), [0, 0, 0, 1, 0, 0, 0])


def test_hours_are_holidays_all_day_long():
    hours = pd.date_range("2024-12-24 12:00", "2024-12-26 11:00", freq="h")
    flags = holiday_indicator("US", hours, Frequency.parse("1H"))
    assert flags.sum() == 24
    assert (flags[hours.normalize() == pd.Timestamp("2024-12-25")] == 1).all()


def test_weeks_and_months_are_holiday_periods_when_they_hold_a_holiday():
    mondays = pd.date_range("2024-06-24", periods=3, freq="7D")  # the week of 1 July holds the 4th
    np.testing.assert_array_equal(holiday_indicator("US", mondays, "1W"), [0, 1, 0])
    months = calendar.periods(Frequency.parse("1M"), "2024-01-01", "2024-12-01")
    flags = holiday_indicator("US", months, "1M")
    assert [m for m, f in zip(months.month, flags, strict=True) if f == 0] == [3, 4, 8]
    counts = holiday_indicator("US", months, "1M", count=True)
    assert counts[0] == 2 and counts[10] == 2 and counts.sum() == 11  # January and November hold two
    quarters = calendar.periods(Frequency.parse("3M"), "2024-01-01", "2024-10-01")
    np.testing.assert_array_equal(holiday_indicator("US", quarters, "3M", count=True), [3, 2, 2, 4])


def test_indicator_covers_a_datasets_history_and_horizon():
    data = ForecastData.from_arrays([np.ones(10)], freq="1D", horizon=5, end="2024-12-28")
    flags = data_holiday_indicator(data, "US")
    assert len(flags) == 15  # 19-28 December, then 29 December to 2 January
    assert flags.sum() == 2 and flags[6] == 1 and flags[13] == 1  # Christmas Day and New Year's Day


def holiday_demand(n_series: int = 6, seed: int = 3) -> pd.DataFrame:
    """Two years of daily demand with a weekly pattern and triple sales on US holidays."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2022-01-01", "2023-12-31", freq="D")
    on_holiday = holiday_indicator("US", days, "D")
    rows = []
    for s in range(n_series):
        level = 20 + 10 * s
        weekly = 1 + 0.3 * np.sin(2 * np.pi * days.dayofweek / 7)
        mean = level * weekly * np.where(on_holiday > 0, 3.0, 1.0)
        rows.append(pd.DataFrame({"item_id": f"i{s}", "timestamp": days, "demand": rng.poisson(mean)}))
    return pd.concat(rows, ignore_index=True)


def test_with_holidays_adds_the_indicator_to_every_series_related_or_not():
    from pipelines.forecast.holidays import with_holidays

    frame = holiday_demand(3)
    related = frame[frame.item_id != "i2"][["item_id", "timestamp"]].assign(price=1.0)
    data = ForecastData.from_frame(
        frame, keys=["item_id"], target_column="demand", freq="D", horizon=14, related=related
    )
    both = with_holidays(data, "US")
    assert both.related.features == ["price", "holiday_US"]
    expected = data_holiday_indicator(data, "US")
    for i in range(3):  # i2 has no related series: it gets the holidays alone
        np.testing.assert_array_equal(both.related_for(i)[:, 1], expected[data.starts[i] :])
    assert np.isnan(both.related_for(2)[:, 0]).all() and (both.related_for(0)[: data.lengths[0], 0] == 1.0).all()
    bare = ForecastData.from_frame(frame, keys=["item_id"], target_column="demand", freq="D", horizon=14)
    alone = with_holidays(bare, "US")
    assert alone.related.features == ["holiday_US"]
    np.testing.assert_array_equal(alone.related_for(1)[:, 0], expected)


@pytest.mark.parametrize("algorithm", ["ARIMA", "Prophet"])
def test_a_holiday_effect_is_learned_from_holidays_country(algorithm):
    """Forecasts on holiday dates miss by less with the feature than without it (Nov-Dec window)."""
    from pipelines.forecast.backtest import backtest
    from pipelines.forecast.base import get_algorithm
    from pipelines.forecast.holidays import with_holidays

    data = ForecastData.from_frame(
        holiday_demand(), keys=["item_id"], target_column="demand", freq="D", horizon=61, non_negative=True
    )
    errors = {}
    for label, view in {"without": data, "with": with_holidays(data, "US")}.items():
        export = backtest(get_algorithm(algorithm), view, quantiles=[0.1, 0.5, 0.9]).export
        holiday = export["timestamp"].isin(holiday_dates("US", "2023-11-01", "2023-12-31")["date"]).to_numpy()
        assert holiday.sum() >= 3 * 6  # Veterans Day, Thanksgiving, Christmas for each item
        errors[label] = float(np.mean(np.abs(export["demand"] - export["mean"])[holiday]))
    assert errors["with"] < 0.6 * errors["without"], errors
