"""The holidays supplementary feature: dates by country, and holiday periods at every frequency."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast.data import ForecastData
from pipelines.forecast.holidays import data_holiday_indicator, holiday_dates, holiday_indicator
from pipelines.frequency import Frequency
from pipelines.importing import calendar


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
