"""Personalize import: timestamps, training filter, duplicates, ids, metadata, as_of."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from pipelines.preparation.steps import import_data
from tests.conftest import interactions_csv, personalize

AS_OF = "2030-01-01"


def read(manifest: dict, kind: str = "INTERACTIONS") -> pd.DataFrame:
    return pd.read_parquet(f"{manifest['snapshot']}/{kind}.parquet")


def test_epoch_and_iso_timestamps_become_epoch_seconds(groups):
    text = interactions_csv()
    lines = text.splitlines()
    lines[1] = "u0,i0,2023-11-14 22:13:20,buy,0.5"  # the same instant as 1700000000
    path = groups.file("i.csv", "\n".join(lines) + "\n")
    frame = read(import_data(groups.group(personalize(path)), AS_OF))
    assert frame["TIMESTAMP"].dtype.kind == "i"
    assert 1_700_000_000 in frame["TIMESTAMP"].tolist()


def test_training_filter_and_duplicates(groups):
    text = interactions_csv() + "u0,i0,1700000000,buy,0.5\n" * 3
    path = groups.file("i.csv", text)
    body = personalize(path, training_filter={"event_types": ["buy"], "event_value_threshold": 1.0})
    manifest = import_data(groups.group(body), AS_OF)
    frame = read(manifest)
    assert set(frame["EVENT_TYPE"]) == {"buy"}
    assert (frame["EVENT_VALUE"] >= 1.0).all()
    entry = manifest["datasets"]["INTERACTIONS"]
    assert entry["rows_read"] == 1203
    assert entry["rows"] == len(frame)


def test_duplicate_events_are_dropped_and_counted(groups):
    path = groups.file("i.csv", interactions_csv() + "u0,i0,1700000000,buy,0.5\nu0,i0,1700000000,buy,0.5\n")
    manifest = import_data(groups.group(personalize(path)), AS_OF)
    assert manifest["datasets"]["INTERACTIONS"]["duplicate_events_dropped"] == 2
    assert manifest["datasets"]["INTERACTIONS"]["rows"] == 1200


def test_ids_stay_strings(groups):
    text = interactions_csv().replace("u1,", "007,").replace(",i3,", ",0003,")
    path = groups.file("i.csv", text)
    frame = read(import_data(groups.group(personalize(path)), AS_OF))
    assert "007" in set(frame["USER_ID"]) and "0003" in set(frame["ITEM_ID"])


def test_as_of_cut_off(groups):
    path = groups.file("i.csv", interactions_csv())
    manifest = import_data(groups.group(personalize(path)), "2023-11-17 20:00:00")
    frame = read(manifest)
    assert frame["TIMESTAMP"].max() <= pd.Timestamp("2023-11-17 20:00:00").timestamp()
    assert manifest["datasets"]["INTERACTIONS"]["rows_after_as_of"] > 0


def test_items_and_users_with_multi_valued_categoricals(groups):
    inter = groups.file("i.csv", interactions_csv())
    items = groups.file(
        "items.csv",
        "ITEM_ID,GENRES,PRICE,CREATION_TIMESTAMP\n"
        + "".join(f"i{i},Drama|Comedy,{i}.5,1690000000\n" for i in range(40))
        + "i99,Horror,1.0,1999999999\n",  # created after as_of: left out
    )
    users = groups.file("users.csv", "USER_ID,TIER\n" + "".join(f"u{u},gold\n" for u in range(25)))
    body = personalize(
        inter,
        datasets={
            "ITEMS": {
                "path": str(items),
                "schema": [
                    {"name": "ITEM_ID", "type": "string"},
                    {"name": "GENRES", "type": "string", "categorical": True},
                    {"name": "PRICE", "type": "float"},
                    {"name": "CREATION_TIMESTAMP", "type": "long"},
                ],
            },
            "USERS": {
                "path": str(users),
                "schema": [
                    {"name": "USER_ID", "type": "string"},
                    {"name": "TIER", "type": "string", "categorical": True},
                ],
            },
        },
    )
    manifest = import_data(groups.group(body), "2025-01-01")
    table = pq.read_table(f"{manifest['snapshot']}/ITEMS.parquet")
    assert table.column("GENRES").to_pylist()[0] == ["Drama", "Comedy"]
    assert "i99" not in table.column("ITEM_ID").to_pylist()
    entry = manifest["datasets"]
    assert entry["ITEMS"]["rows"] == 40
    assert entry["USERS"]["rows"] == 25
    details = json.loads(Path(manifest["snapshot"], "manifest.json").read_text())["datasets"]
    assert details["ITEMS"]["interacted_item_ids_without_metadata"] == 10  # i40..i49
    assert details["USERS"]["interacted_user_ids_without_metadata"] == 5


def test_impressions_become_lists(groups):
    lines = interactions_csv().splitlines()
    lines[0] += ",IMPRESSION"
    lines[1:] = [f"{line},i1|i2|i3" for line in lines[1:]]
    path = groups.file("i.csv", "\n".join(lines) + "\n")
    body = personalize(path)
    body["datasets"]["INTERACTIONS"]["schema"].append({"name": "IMPRESSION", "type": ["null", "string"]})
    manifest = import_data(groups.group(body), AS_OF)
    table = pq.read_table(f"{manifest['snapshot']}/INTERACTIONS.parquet")
    assert table.column("IMPRESSION").to_pylist()[0] == ["i1", "i2", "i3"]
