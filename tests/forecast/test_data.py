"""ForecastData: series on one grid in contiguous arrays, views for backtests, related features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast.data import ForecastData, season_length
from pipelines.frequency import Boundary, Frequency
from pipelines.preparation.steps import import_data


def frame(rows, columns=("item_id", "timestamp", "demand", "filled_by")):
    out = pd.DataFrame(rows, columns=list(columns))
    out["timestamp"] = pd.to_datetime(out["timestamp"])
    return out


def test_rows_in_any_order_land_on_the_grid_with_gaps_unobserved():
    target = frame(
        [
            ("b", "2024-01-04", 7.0, None),
            ("a", "2024-01-03", 3.0, "middlefill"),
            ("a", "2024-01-01", 1.0, None),
            ("b", "2024-01-03", 6.0, None),
            ("a", "2024-01-04", 4.0, None),
        ]
    )
    data = ForecastData.from_frame(target, keys=["item_id"], target_column="demand", freq="1D", horizon=2)
    assert data.keys["item_id"].tolist() == ["b", "a"]  # order of appearance
    assert list(data.periods.strftime("%m-%d")) == ["01-01", "01-02", "01-03", "01-04"]
    assert data.starts.tolist() == [2, 0]
    assert data.lengths.tolist() == [2, 4]
    np.testing.assert_array_equal(data.series(0), [6.0, 7.0])
    np.testing.assert_array_equal(data.series(1), [1.0, np.nan, 3.0, 4.0])
    # Jan 2 is missing and Jan 3 was filled in on import: neither counts as observed.
    assert data.observed_mask(1).tolist() == [True, False, False, True]
    assert list(data.future_periods().strftime("%m-%d")) == ["01-05", "01-06"]


def test_a_second_row_for_a_period_is_an_error():
    target = frame([("a", "2024-01-01", 1.0, None), ("a", "2024-01-01", 2.0, None)])
    with pytest.raises(ValueError, match="more than one row"):
        ForecastData.from_frame(target, keys=["item_id"], target_column="demand", freq="1D", horizon=1)


def test_until_is_a_view_of_the_past_without_copies():
    data = ForecastData.from_arrays([np.arange(10.0), np.arange(4.0)], freq="1M", horizon=3, end="2024-12-01")
    past = data.until(7)
    assert past.values is data.values
    assert past.lengths.tolist() == [7, 1]
    assert np.shares_memory(past.series(0), data.values)
    np.testing.assert_array_equal(past.series(0), np.arange(7.0))
    np.testing.assert_array_equal(past.series(1), [0.0])
    assert data.until(6).lengths.tolist() == [6, 0]  # the short series starts later
    assert past.last_period == pd.Timestamp("2024-09-01")
    assert list(past.future_periods().strftime("%Y-%m")) == ["2024-10", "2024-11", "2024-12"]
    values, seen = data.window(1, 5, 9)
    np.testing.assert_array_equal(values, [np.nan, 0.0, 1.0, 2.0])
    assert seen.tolist() == [False, True, True, True]
    with pytest.raises(ValueError):
        data.until(0)


def test_future_periods_follow_the_frequency_and_boundary():
    weekly = ForecastData.from_arrays([np.ones(5)], freq="1W", horizon=2, end="2024-03-06")  # a Wednesday
    assert list(weekly.future_periods().strftime("%Y-%m-%d")) == ["2024-03-11", "2024-03-18"]
    hourly = ForecastData.from_arrays([np.ones(5)], freq="1H", horizon=2, end="2024-12-31 23:00")
    assert list(hourly.future_periods().strftime("%m-%d %H")) == ["01-01 00", "01-01 01"]
    sunday = ForecastData(
        keys=pd.DataFrame({"item_id": ["a"]}),
        values=np.ones(2),
        observed=np.ones(2, dtype=bool),
        starts=np.array([0]),
        periods=pd.DatetimeIndex(["2024-03-03", "2024-03-10"]),
        freq=Frequency.parse("1W"),
        horizon=1,
        boundary=Boundary(day_of_week=6),
    )
    assert list(sunday.future_periods().strftime("%Y-%m-%d")) == ["2024-03-17"]


@pytest.mark.parametrize(
    ("freq", "expected"), [("1H", 24), ("2H", 12), ("1D", 7), ("2D", 1), ("1W", 52), ("1M", 12), ("3M", 4), ("1Y", 1)]
)
def test_season_length_by_frequency(freq, expected):
    assert season_length(Frequency.parse(freq)) == expected


def test_related_features_by_item_reach_every_store_and_run_into_the_future():
    target = pd.DataFrame(
        {
            "item_id": ["a", "a", "a", "a", "b", "b"],
            "store_id": ["s1", "s1", "s2", "s2", "s1", "s1"],
            "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"] * 3),
            "demand": [1.0, 2, 3, 4, 5, 6],
        }
    )
    related = pd.DataFrame(
        {
            "item_id": ["a"] * 4,
            "timestamp": pd.to_datetime(["2023-12-31", "2024-01-01", "2024-01-03", "2024-01-04"]),
            "price": [9.0, 10, 11, 12],
            "filled_by": [None] * 4,
        }
    )
    data = ForecastData.from_frame(
        target, keys=["item_id", "store_id"], target_column="demand", freq="1D", horizon=2, related=related
    )
    assert data.related.features == ["price"]
    # Both stores of item a get its prices; Jan 3-4 are the future, the row before the target is dropped.
    for i in (0, 1):
        np.testing.assert_array_equal(data.related_for(i)[:, 0], [10, np.nan, 11, 12])
    assert np.isnan(data.related_for(2)).all()  # item b has no related series
    # A backtest view still sees the related values of its own horizon.
    np.testing.assert_array_equal(data.until(1).related_for(0)[:, 0], [10, np.nan, 11])


def test_from_snapshot_reads_what_import_data_wrote(groups):
    target = "item_id,store_id,timestamp,demand\n" + "".join(
        f"{item},{store},2024-01-{day:02d},{day}\n"
        for item in "ab"
        for store in ("s1", "s2")
        for day in range(1, 11)
        if not (item == "b" and day == 4)
    )
    related = "item_id,timestamp,price\n" + "".join(
        f"{item},2024-01-{day:02d},{day / 2}\n" for item in "ab" for day in range(1, 13)
    )
    fields = [("item_id", "string"), ("store_id", "string"), ("timestamp", "timestamp"), ("demand", "float")]
    schema = [{"name": name, "type": kind} for name, kind in fields]
    body = {
        "name": "shops",
        "kind": "forecast",
        "domain": "RETAIL",
        "frequency": "1D",
        "horizon": 2,
        "forecast_dimensions": ["store_id"],
        "datasets": {
            "TARGET_TIME_SERIES": {"path": str(groups.file("t.csv", target)), "schema": schema},
            "RELATED_TIME_SERIES": {
                "path": str(groups.file("r.csv", related)),
                "schema": [
                    {"name": "item_id", "type": "string"},
                    {"name": "timestamp", "type": "timestamp"},
                    {"name": "price", "type": "float"},
                ],
            },
            "ITEM_METADATA": {
                "path": str(groups.file("m.csv", "item_id,category\na,toys\nb,food\nc,food\n")),
                "schema": [{"name": "item_id", "type": "string"}, {"name": "category", "type": "string"}],
            },
        },
    }
    group = groups.group(body)
    manifest = import_data(group, "2024-01-10")
    data = ForecastData.from_snapshot(manifest["snapshot"], group)
    assert data.n_series == 4 and data.series_keys == ["item_id", "store_id"]
    assert data.target == "demand" and data.non_negative and data.horizon == 2
    assert len(data.periods) == 10 and data.lengths.tolist() == [10] * 4
    b_s1 = data.keys.index[(data.keys.item_id == "b") & (data.keys.store_id == "s1")][0]
    assert data.series(b_s1)[3] == 0.0 and not data.observed_mask(b_s1)[3]  # middlefill zero, unobserved
    np.testing.assert_allclose(data.related_for(0)[-2:, 0], [5.5, 6.0])  # Jan 11-12: known future prices
    assert sorted(data.item_metadata["item_id"].astype(str)) == ["a", "b", "c"]
