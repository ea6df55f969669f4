"""InteractionData: time order, id maps, metadata alignment, snapshot loading, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.personalize import InteractionData


def frames():
    interactions = pd.DataFrame(
        {
            "USER_ID": ["u2", "u1", "u1", "u2", "u1"],
            "ITEM_ID": ["i9", "i1", "i2", "i1", "i1"],
            "TIMESTAMP": [300, 100, 100, 200, 400],
            "EVENT_TYPE": ["click", "click", "buy", None, "click"],
            "EVENT_VALUE": [np.nan, np.nan, 9.5, np.nan, np.nan],
            "DEVICE": ["web", "app", "app", "web", "app"],
        }
    )
    items = pd.DataFrame({"ITEM_ID": ["i1", "i2", "i9", "new"], "GENRES": [["a"], ["b"], ["a", "b"], ["c"]]})
    users = pd.DataFrame({"USER_ID": ["u1", "u2"], "TIER": ["gold", "free"]})
    return interactions, items, users


def test_events_sorted_by_time_with_ties_in_file_order():
    data = InteractionData.from_frames(*frames())
    assert data.timestamps.tolist() == [100, 100, 200, 300, 400]
    assert data.to_frame()["ITEM_ID"].tolist() == ["i1", "i2", "i1", "i9", "i1"]
    types = data.to_frame()["EVENT_TYPE"]
    assert types.isna().tolist() == [False, False, True, False, False]
    assert types.dropna().tolist() == ["click", "buy", "click", "click"]
    assert data.event_values[1] == 9.5 and np.isnan(data.event_values[0])
    assert data.context["DEVICE"].tolist() == ["app", "app", "web", "web", "app"]


def test_ids_map_to_indexes_and_metadata_only_items_join_the_catalog():
    data = InteractionData.from_frames(*frames())
    assert list(data.user_ids) == ["u1", "u2"]
    assert list(data.item_ids) == ["i1", "i2", "i9", "new"]  # first interaction order, then metadata only
    assert data.item_index["new"] == 3 and data.n_items == 4
    assert data.item_metadata["ITEM_ID"].tolist() == list(data.item_ids)
    assert list(data.item_metadata.loc[2, "GENRES"]) == ["a", "b"]
    assert data.user_metadata["TIER"].tolist() == ["gold", "free"]


def test_user_item_matrix_and_histories():
    data = InteractionData.from_frames(*frames())
    assert data.user_item.toarray().tolist() == [[2, 1, 0, 0], [1, 0, 1, 0]]
    indptr, rows = data.histories
    u1 = data.items[rows[indptr[0] : indptr[1]]]
    assert data.item_ids[u1].tolist() == ["i1", "i2", "i1"]  # oldest first


def test_subset_keeps_the_index_space():
    data = InteractionData.from_frames(*frames())
    part = data.subset(data.users == 1)
    assert part.n_interactions == 2 and part.n_items == data.n_items and part.n_users == data.n_users
    assert part.timestamps.tolist() == [200, 300]


def test_numeric_ids_become_strings_and_datetimes_epoch_seconds():
    frame = pd.DataFrame(
        {
            "USER_ID": [7, 8],
            "ITEM_ID": [1, 2],
            "TIMESTAMP": pd.to_datetime(["2023-11-14 22:13:20", "2024-01-01 00:00:00"]),
        }
    )
    data = InteractionData.from_frames(frame)
    assert list(data.user_ids) == ["7", "8"] and data.timestamps[0] == 1_700_000_000
    assert data.event_type_names == () and (data.event_types == -1).all()


@pytest.mark.parametrize("column", ["USER_ID", "ITEM_ID", "TIMESTAMP"])
def test_missing_required_column_is_named(column):
    with pytest.raises(ValueError, match=column):
        InteractionData.from_frames(frames()[0].drop(columns=column))


def test_empty_id_is_named():
    frame = frames()[0]
    frame.loc[2, "ITEM_ID"] = None
    with pytest.raises(ValueError, match="ITEM_ID"):
        InteractionData.from_frames(frame)


def test_from_snapshot_of_the_example_group(tmp_path):
    from pipelines.example_data import write_examples
    from pipelines.preparation.steps import import_data
    from pipelines.settings import load_group

    settings = write_examples(tmp_path / "examples")["interactions_demo"]
    manifest = import_data(load_group(settings), "2030-01-01")
    data = InteractionData.from_snapshot(manifest["snapshot"])
    assert data.n_interactions == manifest["datasets"]["INTERACTIONS"]["rows"]
    assert data.n_items == 420 and data.n_users == 600  # the catalog includes new items without events
    assert set(data.event_type_names) == {"click", "purchase"}
    assert list(data.item_metadata["ITEM_ID"]) == list(data.item_ids)
    assert isinstance(data.item_metadata["GENRES"].iloc[0][0], str)  # multi-valued genres are lists
    assert (np.diff(data.timestamps) >= 0).all()
