"""Forecast frequencies and calendar alignment."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.frequency import Boundary, Frequency
from pipelines.preparation.importing import calendar


@pytest.mark.parametrize("text", ["1min", "59min", "15min", "1H", "23H", "D", "6D", "1W", "4W", "1M", "11M", "1Y"])
def test_forecast_frequencies_parse(text):
    assert str(Frequency.parse(text)).endswith(text.lstrip("0123456789"))


@pytest.mark.parametrize("text", ["60min", "24H", "7D", "5W", "12M", "2Y", "1S", "daily", ""])
def test_other_frequencies_are_refused(text):
    with pytest.raises(ValueError):
        Frequency.parse(text)


STAMPS = pd.Series(pd.to_datetime(["2024-01-03 05:10:00", "2024-01-07 23:00:00", "2024-02-15 00:00:00"]))


@pytest.mark.parametrize(
    ("freq", "boundary", "expected"),
    [
        ("15min", None, ["2024-01-03 05:00", "2024-01-07 23:00", "2024-02-15 00:00"]),
        ("1H", None, ["2024-01-03 05:00", "2024-01-07 23:00", "2024-02-15 00:00"]),
        ("1D", Boundary(hour=6), ["2024-01-02 06:00", "2024-01-07 06:00", "2024-02-14 06:00"]),
        ("1W", None, ["2024-01-01 00:00", "2024-01-01 00:00", "2024-02-12 00:00"]),
        ("1M", None, ["2024-01-01 00:00", "2024-01-01 00:00", "2024-02-01 00:00"]),
        ("3M", None, ["2024-01-01 00:00", "2024-01-01 00:00", "2024-01-01 00:00"]),
        ("1Y", Boundary(month=2), ["2023-02-01 00:00", "2023-02-01 00:00", "2024-02-01 00:00"]),
    ],
)
def test_alignment(freq, boundary, expected):
    aligned = calendar.align(Frequency.parse(freq), STAMPS, boundary)
    assert aligned.dt.strftime("%Y-%m-%d %H:%M").tolist() == expected


def test_periods_and_shift():
    month = Frequency.parse("1M")
    assert calendar.periods(month, "2024-01-20", "2024-04-02").strftime("%m-%d").tolist() == [
        "01-01", "02-01", "03-01", "04-01",
    ]  # fmt: skip
    assert calendar.shift(month, pd.Timestamp("2024-01-20"), 3) == pd.Timestamp("2024-04-01")
    hourly = Frequency.parse("1H")
    assert len(calendar.periods(hourly, "2014-01-01 01:00", "2014-11-29 23:00")) == 7991  # no float drift
