"""Every real data set in ../shared/data/ validates and imports with the right mapping.

Skipped with a reason where ../shared/data is absent (a user's fresh clone).
"""

from __future__ import annotations

import json

import pandas as pd

from pipelines.preparation.steps import import_data

AS_OF = "2030-01-01"


def schema(*fields) -> list[dict]:
    out = []
    for field in fields:
        name, _, kind = field.partition(":")
        out.append({"name": name, "type": kind or "string"})
    return out


def forecast_group(name, domain, frequency, datasets, **extra) -> dict:
    return {"name": name, "kind": "forecast", "domain": domain, "frequency": frequency, "horizon": 3,
            "datasets": datasets, **extra}  # fmt: skip


def test_electricity_headerless_hourly(groups, shared_data):
    body = forecast_group("electricity", "CUSTOM", "1H", {
        "TARGET_TIME_SERIES": {
            "path": str(shared_data / "forecast/electricity_item_demand_time.csv"),
            "header": False,
            "schema": schema("timestamp:timestamp", "target_value:float", "item_id"),
        }
    })  # fmt: skip
    entry = import_data(groups.group(body), AS_OF)["datasets"]["TARGET_TIME_SERIES"]
    assert entry["series"] == 3 and entry["rows_read"] == 23973
    assert entry["start"] == "2014-01-01 01:00:00"


def test_consumer_electronics_with_store_dimension_and_future_prices(groups, shared_data):
    folder = shared_data / "forecast"
    body = forecast_group("electronics", "RETAIL", "1M", {
        "TARGET_TIME_SERIES": {"path": str(folder / "consumer_electronics_target.csv"),
                               "schema": schema("item_id", "store_id", "timestamp:timestamp", "demand:float")},
        "RELATED_TIME_SERIES": {"path": str(folder / "consumer_electronics_related.csv"),
                                "schema": schema("item_id", "store_id", "timestamp:timestamp", "price:float")},
    }, forecast_dimensions=["store_id"])  # fmt: skip
    manifest = import_data(groups.group(body), AS_OF)
    target, related = manifest["datasets"]["TARGET_TIME_SERIES"], manifest["datasets"]["RELATED_TIME_SERIES"]
    assert target["series"] == 1500 and target["rows"] == 36000
    assert related["end"] == "2019-12-01 00:00:00"  # three months past the target: known future prices


def test_instruments_all_three_dataset_types_with_mapping(groups, shared_data):
    folder = shared_data / "forecast"
    mapping = {"Timestamp": "timestamp", "Model_ID": "item_id"}
    body = forecast_group("instruments", "RETAIL", "1M", {
        "TARGET_TIME_SERIES": {"path": str(folder / "instruments_target.csv"),
                               "column_mapping": {**mapping, "Order_Quantity": "demand"},
                               "schema": schema("item_id", "timestamp:timestamp", "demand:float")},
        "RELATED_TIME_SERIES": {"path": str(folder / "instruments_related.csv"), "column_mapping": mapping,
                                "aggregation": {"Loss_Rate": "avg", "Customer_Request": "sum"},
                                "schema": schema("item_id", "timestamp:timestamp", "Loss_Rate:float",
                                                 "Customer_Request:integer")},
        "ITEM_METADATA": {"path": str(folder / "instruments_item_metadata.csv"),
                          "column_mapping": {"Model_ID": "item_id"}, "schema": schema("item_id", "Model_Type")},
    })  # fmt: skip
    manifest = import_data(groups.group(body), AS_OF)
    frame = pd.read_parquet(f"{manifest['snapshot']}/TARGET_TIME_SERIES.parquet")
    assert (frame["timestamp"].dt.day == 1).all()  # day-30 09:00 readings moved to the month's start
    assert manifest["datasets"]["TARGET_TIME_SERIES"]["series"] == 20
    assert manifest["datasets"]["ITEM_METADATA"]["rows"] == 20


def test_product_demand_with_gaps_is_filled(groups, shared_data):
    folder = shared_data / "forecast"
    body = forecast_group("gaps", "RETAIL", "1M", {
        "TARGET_TIME_SERIES": {"path": str(folder / "product_demand_with_gaps_target.csv"),
                               "schema": schema("item_id", "timestamp:timestamp", "demand:float"),
                               "filling": {"middlefill": "median", "backfill": "zero"}},
        "RELATED_TIME_SERIES": {"path": str(folder / "product_demand_with_gaps_related.csv"),
                                "schema": schema("item_id", "timestamp:timestamp", "price:float"),
                                "filling": {"middlefill": "mean", "backfill": "mean", "futurefill": "mean"}},
    })  # fmt: skip
    manifest = import_data(groups.group(body), AS_OF)
    frame = pd.read_parquet(f"{manifest['snapshot']}/TARGET_TIME_SERIES.parquet")
    assert frame["filled_by"].notna().sum() >= 504
    # a median needs earlier values: only a series' very first period can stay empty
    first = frame.groupby("item_id", observed=True).cumcount() == 0
    assert frame.loc[~first, "demand"].notna().all()
    related = pd.read_parquet(f"{manifest['snapshot']}/RELATED_TIME_SERIES.parquet")
    first = related.groupby("item_id", observed=True).cumcount() == 0
    assert related.loc[~first, "price"].notna().all()
    assert (related["filled_by"] == "futurefill").any()


def test_bike_hourly_target_and_weather_from_one_headerless_file(groups, shared_data):
    path = str(shared_data / "forecast/bike_hourly_with_weather.csv")
    columns = ["timestamp", "season", "holiday", "workingday", "weather", "temp", "atemp", "humidity",
               "windspeed", "casual", "registered", "target_value", "item_id"]  # fmt: skip
    body = forecast_group("bike", "CUSTOM", "1H", {
        "TARGET_TIME_SERIES": {"path": path, "header": False, "columns": columns,
                               "schema": schema("timestamp:timestamp", "target_value:float", "item_id")},
        "RELATED_TIME_SERIES": {"path": path, "header": False, "columns": columns,
                                "aggregation": "avg",
                                "schema": schema("timestamp:timestamp", "item_id", "holiday:integer",
                                                 "workingday:integer", "weather:integer", "temp:float",
                                                 "humidity:float", "windspeed:float")},
    })  # fmt: skip
    manifest = import_data(groups.group(body), AS_OF)
    target = manifest["datasets"]["TARGET_TIME_SERIES"]
    assert target["rows_read"] == 10886
    assert target["rows"] > 10886  # the hours missing between days 19 and 1 are middle-filled
    assert target["filled"]["middlefill"]["target_value"] == target["rows"] - 10886


def test_peyton_manning_single_series(groups, shared_data):
    body = forecast_group("peyton", "CUSTOM", "1D", {
        "TARGET_TIME_SERIES": {"path": str(shared_data / "forecast/peyton_manning_daily.csv"),
                               "column_mapping": {"ds": "timestamp", "y": "target_value"},
                               "constants": {"item_id": "peyton_manning"},
                               "schema": schema("item_id", "timestamp:timestamp", "target_value:float")},
    })  # fmt: skip
    entry = import_data(groups.group(body), AS_OF)["datasets"]["TARGET_TIME_SERIES"]
    assert entry["rows_read"] == 2905 and entry["series"] == 1


def test_m3_monthly_series(groups, shared_data, tmp_path):
    """M3 has no calendar dates: its monthly series are laid out from 1990-01 for the import."""
    data = json.loads((shared_data / "forecast/m3.json").read_text())
    rows = []
    for key, series in data.items():
        if series["period"] == ["MONTHLY"]:
            for i, value in enumerate(series["x"]):
                rows.append((key, f"{1990 + i // 12}-{i % 12 + 1:02d}-01", value))
    path = tmp_path / "m3_monthly.csv"
    pd.DataFrame(rows, columns=["item_id", "timestamp", "target_value"]).to_csv(path, index=False)
    body = forecast_group("m3", "CUSTOM", "1M", {
        "TARGET_TIME_SERIES": {"path": str(path), "schema": schema("item_id", "timestamp:timestamp",
                                                                   "target_value:float")},
    })  # fmt: skip
    entry = import_data(groups.group(body), AS_OF)["datasets"]["TARGET_TIME_SERIES"]
    assert entry["series"] == 1428


INTERACTIONS = schema("USER_ID", "ITEM_ID", "TIMESTAMP:long", "EVENT_TYPE")


def test_movielens_personalize_format(groups, shared_data):
    folder = shared_data / "personalize/movielens_personalize_format"
    body = {"name": "movielens", "kind": "personalize", "training_filter": {"event_types": ["watch"]}, "datasets": {
        "INTERACTIONS": {"path": str(folder / "interactions.csv"), "schema": INTERACTIONS},
        "ITEMS": {"path": str(folder / "item-meta.csv"), "max_rejected_fraction": 0.001,
                  "schema": [{"name": "ITEM_ID", "type": "string"},
                             {"name": "GENRE", "type": ["null", "string"], "categorical": True},
                             {"name": "YEAR", "type": ["null", "int"]}]},
    }}  # fmt: skip
    manifest = import_data(groups.group(body), AS_OF)
    inter, items = manifest["datasets"]["INTERACTIONS"], manifest["datasets"]["ITEMS"]
    assert inter["rows_read"] == 158371 and inter["users"] == 609
    assert items["rows_rejected"] == 1  # YEAR "2006–2007" goes to quarantine with its line and rule
    quarantine = pd.read_csv(f"{manifest['snapshot']}/{items['quarantine']}")
    assert quarantine.iloc[0].to_dict() == {"line": 9520, "rule": "integer_format", "column": "YEAR",
                                            "value": "2006–2007"}  # fmt: skip


def test_movielens_latest_small_as_grouplens_ships_it(groups, shared_data):
    folder = shared_data / "personalize/movielens_latest_small"
    body = {"name": "ml_ratings", "kind": "personalize", "datasets": {
        "INTERACTIONS": {"path": str(folder / "ratings.csv"),
                         "column_mapping": {"userId": "USER_ID", "movieId": "ITEM_ID", "rating": "EVENT_VALUE",
                                            "timestamp": "TIMESTAMP"},
                         "constants": {"EVENT_TYPE": "rating"},
                         "schema": [*INTERACTIONS, {"name": "EVENT_VALUE", "type": "float"}]},
        "ITEMS": {"path": str(folder / "movies.csv"),
                  "column_mapping": {"movieId": "ITEM_ID", "title": "TITLE", "genres": "GENRES"},
                  "schema": [{"name": "ITEM_ID", "type": "string"}, {"name": "TITLE", "type": "string",
                             "textual": True}, {"name": "GENRES", "type": "string", "categorical": True}]},
    }}  # fmt: skip
    manifest = import_data(groups.group(body), AS_OF)
    assert manifest["datasets"]["INTERACTIONS"]["rows"] == 100836
    assert manifest["datasets"]["ITEMS"]["rows"] == 9742
    tags = {"name": "ml_tags", "kind": "personalize", "datasets": {
        "INTERACTIONS": {"path": str(folder / "tags.csv"),
                         "column_mapping": {"userId": "USER_ID", "movieId": "ITEM_ID", "timestamp": "TIMESTAMP",
                                            "tag": "TAG"},
                         "schema": [*INTERACTIONS[:3], {"name": "TAG", "type": "string", "categorical": True}]},
        "ITEMS": {"path": str(folder / "links.csv"), "column_mapping": {"movieId": "ITEM_ID"},
                  "schema": [{"name": "ITEM_ID", "type": "string"}, {"name": "imdbId", "type": "string"},
                             {"name": "tmdbId", "type": ["null", "string"]}]},
    }}  # fmt: skip
    manifest = import_data(groups.group(tags), AS_OF)
    assert manifest["datasets"]["INTERACTIONS"]["rows_read"] == 3683


def test_airline_synthetic_sparse_users(groups, shared_data):
    folder = shared_data / "personalize/airline_synthetic"
    items = ["DSTCity", "SRCCity", "Airline", "DurationDays:integer", "Season", "numberOfSearchByUser:integer",
             "Promotion", "DynamicPrice:float", "DiscountForMember:float", "Expired"]  # fmt: skip
    body = {"name": "airline", "kind": "personalize", "datasets": {
        "INTERACTIONS": {"path": str(folder / "df_interactions.csv"),
                         "schema": [*INTERACTIONS, {"name": "CABIN_TYPE", "type": "string", "categorical": True},
                                    {"name": "EVENT_VALUE", "type": "float"}]},
        "ITEMS": {"path": str(folder / "df_item_deduplicated.csv"), "schema": schema("ITEM_ID", *items),
                  "max_rejected_fraction": 0.02},
        "USERS": {"path": str(folder / "df_users_deduplicated.csv"),
                  "schema": [{"name": "USER_ID", "type": "string"},
                             {"name": "memberClass", "type": "string", "categorical": True}]},
    }}  # fmt: skip
    manifest = import_data(groups.group(body), AS_OF)
    assert manifest["datasets"]["INTERACTIONS"]["rows_read"] == 34853
    # five junk rows (ids "No" and "0", fields shifted) are quarantined with their lines
    assert manifest["datasets"]["ITEMS"]["rows"] == 350
    quarantine = pd.read_csv(f"{manifest['snapshot']}/{manifest['datasets']['ITEMS']['quarantine']}")
    assert sorted(set(quarantine["line"])) == [352, 353, 354, 355, 356]
    assert manifest["datasets"]["USERS"]["rows"] == 24500
