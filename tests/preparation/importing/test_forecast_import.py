"""Forecast import: alignment, aggregation, filling, related series, incremental mode."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.preparation.importing.forecast import FILL_WINDOW, fill_grid
from pipelines.preparation.steps import import_data
from tests.conftest import retail

AS_OF = "2024-06-30"


def snapshot(manifest: dict, kind: str = "TARGET_TIME_SERIES") -> pd.DataFrame:
    return pd.read_parquet(f"{manifest['snapshot']}/{kind}.parquet")


@pytest.mark.parametrize(
    ("how", "expected"),
    [("sum", [6.0, 30.0]), ("avg", [2.0, 10.0]), ("first", [1.0, 10.0]), ("min", [1.0, 5.0]), ("max", [3.0, 15.0])],
)
def test_hourly_rows_aggregate_into_days(groups, how, expected):
    rows = "item_id,timestamp,demand\na,2024-01-01 09:00:00,1\na,2024-01-01 13:30:00,2\na,2024-01-01 23:59:59,3\n"
    rows += "a,2024-01-02 00:00:00,10\na,2024-01-02 08:00:00,5\na,2024-01-02 12:00:00,15\n"
    path = groups.file("t.csv", rows)
    frame = snapshot(import_data(groups.group(retail(path, target={"aggregation": how})), AS_OF))
    assert frame["timestamp"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-01", "2024-01-02"]
    assert frame["demand"].tolist() == expected


def test_weekly_alignment_starts_on_monday_and_honours_a_boundary(groups):
    rows = "item_id,timestamp,demand\n" + "".join(f"a,2024-01-{d:02d},1\n" for d in range(1, 15))  # Mon 1 .. Sun 14
    path = groups.file("t.csv", rows)
    frame = snapshot(import_data(groups.group(retail(path, frequency="1W")), AS_OF))
    assert frame["timestamp"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-01", "2024-01-08"]
    assert frame["demand"].tolist() == [7.0, 7.0]
    sunday = retail(path, name="sunday", frequency="1W", time_alignment_boundary={"day_of_week": "SUNDAY"})
    frame = snapshot(import_data(groups.group(sunday), AS_OF))
    assert frame["timestamp"].dt.strftime("%Y-%m-%d").tolist() == ["2023-12-31", "2024-01-07", "2024-01-14"]
    assert frame["demand"].tolist() == [6.0, 7.0, 1.0]


def test_monthly_alignment_with_day_of_month_boundary(groups):
    rows = "item_id,timestamp,demand\na,2024-01-10,1\na,2024-01-20,2\na,2024-02-14,4\na,2024-02-15,8\n"
    path = groups.file("t.csv", rows)
    frame = snapshot(import_data(groups.group(retail(path, frequency="1M")), AS_OF))
    assert frame["demand"].tolist() == [3.0, 12.0]
    body = retail(path, name="mid", frequency="1M", time_alignment_boundary={"day_of_month": 15})
    frame = snapshot(import_data(groups.group(body), AS_OF))
    assert frame["timestamp"].dt.strftime("%Y-%m-%d").tolist() == ["2023-12-15", "2024-01-15", "2024-02-15"]
    assert frame["demand"].tolist() == [1.0, 6.0, 8.0]


GAPPY = (
    "item_id,timestamp,demand\n"
    + "".join(f"a,2024-01-{d:02d},{v}\n" for d, v in [(1, 4), (2, 2), (4, 6), (5, ""), (6, 10)])
    + "b,2024-01-01,1\nb,2024-01-03,3\n"
)


@pytest.mark.parametrize(
    ("middlefill", "backfill", "a_values", "b_values"),
    [
        ({"middlefill": "zero"}, {"backfill": "zero"}, [4, 2, 0, 6, 0, 10], [1, 0, 3, 0, 0, 0]),
        ({"middlefill": "value", "middlefill_value": 7}, {"backfill": "nan"}, [4, 2, 7, 6, 7, 10], [1, 7, 3]),
        ({"middlefill": "mean"}, {"backfill": "max"}, [4, 2, 3, 6, 4, 10], [1, 1, 3, 3, 3, 3]),
        ({"middlefill": "median"}, {"backfill": "min"}, [4, 2, 3, 6, 4, 10], [1, 1, 3, 1, 1, 1]),
        (
            {"middlefill": "min"},
            {"backfill": "value", "backfill_value": -1},
            [4, 2, 2, 6, 2, 10],
            [1, 1, 3, -1, -1, -1],
        ),
    ],
)
def test_target_filling(groups, middlefill, backfill, a_values, b_values):
    path = groups.file("t.csv", GAPPY)
    body = retail(path, target={"filling": {**middlefill, **backfill}})
    frame = snapshot(import_data(groups.group(body), AS_OF))
    a = frame[frame.item_id == "a"]
    b = frame[frame.item_id == "b"]
    assert a["demand"].tolist() == a_values
    assert b["demand"].dropna().tolist() == b_values
    # b runs to the dataset's last day (backfill); nothing before a series' first row (no frontfill)
    assert b["timestamp"].max() == a["timestamp"].max()
    assert b["timestamp"].min() == pd.Timestamp("2024-01-01")
    assert a.loc[a.timestamp == "2024-01-03", "filled_by"].item() == "middlefill"
    assert a.loc[a.timestamp == "2024-01-05", "filled_by"].item() == "middlefill"  # empty value in the file
    assert b.loc[b.timestamp == "2024-01-06", "filled_by"].item() == "backfill"
    assert a.loc[a.timestamp == "2024-01-01", "filled_by"].item() is pd.NA


def test_statistics_look_at_the_64_most_recent_values():
    periods = pd.date_range("2024-01-01", periods=FILL_WINDOW + 11, freq="D")
    values = np.concatenate([np.full(10, 1000.0), np.arange(FILL_WINDOW, dtype=float), [np.nan]])
    frame = pd.DataFrame({"item_id": "a", "timestamp": periods, "demand": values})
    out, stats = fill_grid(frame, ["item_id"], ["demand"], pd.DatetimeIndex(periods), len(periods) - 1,
                           {"middlefill": ("mean", None), "backfill": ("mean", None)}, "demand")  # fmt: skip
    assert out["demand"].iloc[-1] == pytest.approx(np.arange(FILL_WINDOW).mean())  # the 1000s are older than 64
    assert stats["filled"]["backfill"]["demand"] == 1


def test_related_series_with_futurefill_and_dimensions(groups):
    target = "item_id,store_id,timestamp,demand\n" + "".join(
        f"a,s{s},2024-01-{d:02d},{d}\n" for s in (1, 2) for d in range(1, 6)
    )
    related = "item_id,store_id,timestamp,price\n" + "".join(
        f"a,s{s},2024-01-{d:02d},{p}\n" for s in (1, 2) for d, p in [(1, 10), (2, 12), (4, 14), (6, 20)]
    )
    body = {
        "name": "stores",
        "kind": "forecast",
        "domain": "RETAIL",
        "frequency": "1D",
        "horizon": 3,
        "forecast_dimensions": ["store_id"],
        "datasets": {
            "TARGET_TIME_SERIES": {
                "path": str(groups.file("t.csv", target)),
                "schema": [
                    {"name": "item_id", "type": "string"},
                    {"name": "store_id", "type": "string"},
                    {"name": "timestamp", "type": "timestamp"},
                    {"name": "demand", "type": "float"},
                ],
            },
            "RELATED_TIME_SERIES": {
                "path": str(groups.file("r.csv", related)),
                "schema": [
                    {"name": "item_id", "type": "string"},
                    {"name": "store_id", "type": "string"},
                    {"name": "timestamp", "type": "timestamp"},
                    {"name": "price", "type": "float"},
                ],
                "filling": {"middlefill": "max", "futurefill": "value", "futurefill_value": 99},
            },
        },
    }
    manifest = import_data(groups.group(body), "2024-01-05")
    frame = snapshot(manifest, "RELATED_TIME_SERIES")
    s1 = frame[frame.store_id == "s1"]
    # through as_of + horizon (Jan 8); Jan 6 is a known future value, Jan 7-8 are futurefill
    assert s1["timestamp"].dt.day.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert s1["price"].tolist() == [10, 12, 12, 14, 14, 20, 99, 99]
    assert s1["filled_by"].tolist()[-2:] == ["futurefill", "futurefill"]
    assert manifest["datasets"]["RELATED_TIME_SERIES"]["series"] == 2


def test_incremental_import_replaces_overlap_and_keeps_the_rest(groups):
    first = groups.file("t.csv", "item_id,timestamp,demand\na,2024-01-01,1\na,2024-01-02,2\na,2024-01-03,3\n")
    body = retail(first, target={"import_mode": "INCREMENTAL"})
    group = groups.group(body)
    import_data(group, "2024-01-03")
    groups.file("t.csv", "item_id,timestamp,demand\na,2024-01-03,30\na,2024-01-05,5\nb,2024-01-05,7\n")
    manifest = import_data(group, "2024-01-10")
    frame = snapshot(manifest)
    assert frame[frame.item_id == "a"]["demand"].tolist() == [1, 2, 30, 0, 5]
    assert frame[frame.item_id == "b"]["demand"].tolist() == [7]
    assert manifest["incremental_base"].endswith("as_of=20240103T000000")


def test_reimport_of_the_same_as_of_is_identical(groups):
    path = groups.file("t.csv", GAPPY)
    group = groups.group(retail(path))
    one = pd.read_parquet(f"{import_data(group, AS_OF)['snapshot']}/TARGET_TIME_SERIES.parquet")
    two = pd.read_parquet(f"{import_data(group, AS_OF)['snapshot']}/TARGET_TIME_SERIES.parquet")
    pd.testing.assert_frame_equal(one, two)


def test_quarantine_when_a_fraction_of_bad_rows_is_allowed(groups):
    rows = "item_id,timestamp,demand\n" + "".join(f"a,2024-01-{d:02d},{d}\n" for d in range(1, 29))
    rows += "a,2024-01-29,many\nb,2024-02-30,1\n"
    path = groups.file("t.csv", rows)
    manifest = import_data(groups.group(retail(path, target={"max_rejected_fraction": 0.1})), AS_OF)
    entry = manifest["datasets"]["TARGET_TIME_SERIES"]
    assert entry["rows_rejected"] == 2
    quarantine = pd.read_csv(f"{manifest['snapshot']}/{entry['quarantine']}")
    assert quarantine.to_dict("records") == [
        {"line": 30, "rule": "float_format", "column": "demand", "value": "many"},
        {"line": 31, "rule": "parseable_value", "column": "timestamp", "value": "2024-02-30"},
    ]


def test_parquet_input_and_single_series_constants(groups, tmp_path):
    path = tmp_path / "data" / "t.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=5), "y": [1.0, 2, 3, 4, 5]}).to_parquet(path)
    body = retail(path, target={"column_mapping": {"ds": "timestamp", "y": "demand"}, "constants": {"item_id": "solo"}})
    frame = snapshot(import_data(groups.group(body), AS_OF))
    assert frame["item_id"].unique().tolist() == ["solo"]
    assert frame["demand"].tolist() == [1, 2, 3, 4, 5]


def test_fsspec_url_input(groups):
    import fsspec

    with fsspec.open("memory://bucket/t.csv", "w") as handle:
        handle.write("item_id,timestamp,demand\na,2024-01-01,1\na,2024-01-02,2\n")
    frame = snapshot(import_data(groups.group(retail("memory://bucket/t.csv")), AS_OF))
    assert frame["demand"].tolist() == [1, 2]
