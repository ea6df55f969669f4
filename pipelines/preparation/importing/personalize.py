"""Personalize import: interactions, items and users into a training snapshot.

Interactions keep Personalize's meaning: ids are strings, TIMESTAMP is Unix epoch seconds
(ISO text is converted), exact duplicate events count once, and the group's training filter
(event types, event value threshold) is applied as a solution's eventType and
eventValueThreshold would. Multi-valued categorical metadata (``Action|Comedy``) becomes a
list column. Items and users stay in their own files, keyed by id; the manifest says how
many interacted items and users have metadata.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import domains as d
from pipelines.settings import DatasetSettings, PersonalizeGroup


def clean_interactions(group: PersonalizeGroup, frame: pd.DataFrame, base: pd.DataFrame | None):
    stats = {"rows_in": len(frame)}
    filt = group.training_filter
    if filt.event_types:
        if "EVENT_TYPE" not in frame:
            raise ValueError("training_filter.event_types needs an EVENT_TYPE field in INTERACTIONS")
        keep = frame["EVENT_TYPE"].isin(filt.event_types).to_numpy(bool)
        stats["rows_other_event_types"] = int((~keep).sum())
        frame = frame[keep]
    if filt.event_value_threshold is not None:
        if "EVENT_VALUE" not in frame:
            raise ValueError("training_filter.event_value_threshold needs an EVENT_VALUE field in INTERACTIONS")
        keep = (frame["EVENT_VALUE"] >= filt.event_value_threshold).fillna(False).to_numpy(bool)
        stats["rows_below_event_value_threshold"] = int((~keep).sum())
        frame = frame[keep]
    if base is not None and len(base):
        frame = pd.concat([base[frame.columns], frame], ignore_index=True)
    frame, dropped = drop_duplicate_events(frame)
    stats["duplicate_events_dropped"] = dropped
    stats.update(
        rows=len(frame),
        users=int(frame["USER_ID"].nunique()),
        items=int(frame["ITEM_ID"].nunique()),
        start=int(frame["TIMESTAMP"].min()) if len(frame) else None,
        end=int(frame["TIMESTAMP"].max()) if len(frame) else None,
    )
    if "EVENT_TYPE" in frame:
        stats["event_types"] = {str(k): int(v) for k, v in frame["EVENT_TYPE"].value_counts().items()}
    return frame, stats


def drop_duplicate_events(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The events in file order with exact duplicates kept once (the first).

    Two events can only be equal if their timestamps are, so only rows that share a timestamp
    with another row are compared: a share of the data instead of all of it, and no string
    column is reordered (that alone costs seconds on millions of rows).
    """
    ts = frame["TIMESTAMP"].to_numpy(dtype="int64", na_value=0)
    order = np.argsort(ts, kind="stable")
    same = ts[order][1:] == ts[order][:-1]
    tied = np.zeros(len(ts), dtype=bool)
    tied[order[1:][same]] = True
    tied[order[:-1][same]] = True
    if not tied.any():
        return frame, 0
    candidates = np.flatnonzero(tied)
    duplicated = np.zeros(len(ts), dtype=bool)
    duplicated[candidates[frame.iloc[candidates].duplicated(keep="first").to_numpy()]] = True
    if not duplicated.any():
        return frame, 0
    return frame[~duplicated].reset_index(drop=True), int(duplicated.sum())


def to_table(frame: pd.DataFrame, ds: DatasetSettings) -> pa.Table:
    """Arrow table with categorical text fields and IMPRESSION split on ``|`` into lists."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for attr in ds.fields:
        multi_valued = attr.categorical or attr.name == "IMPRESSION"  # IMPRESSION lists the items shown
        if multi_valued and attr.type == "string" and attr.name in table.column_names:
            column = table[attr.name]
            split = pc.split_pattern(column, d.MULTI_VALUE_SEPARATOR)
            table = table.set_column(table.column_names.index(attr.name), attr.name, split)
    return table.replace_schema_metadata(None)  # pandas' stored dtypes no longer hold for lists


def build_personalize_snapshot(group: PersonalizeGroup, checked: dict, previous: dict) -> tuple[dict, dict]:
    frames, manifest = {}, {}
    interactions, stats = clean_interactions(group, checked[d.INTERACTIONS].frame, previous.get(d.INTERACTIONS))
    frames[d.INTERACTIONS] = to_table(interactions, group.datasets.INTERACTIONS)
    manifest[d.INTERACTIONS] = stats
    for kind, key in ((d.ITEMS, "ITEM_ID"), (d.USERS, "USER_ID")):
        if kind not in checked:
            continue
        meta = checked[kind].frame
        frames[kind] = to_table(meta, group.dataset(kind))
        seen = interactions[key].unique()
        described = set(meta[key])
        covered = sum(1 for k in seen if k in described)
        manifest[kind] = {
            "rows": len(meta),
            f"interacted_{key.lower()}s_with_metadata": covered,
            f"interacted_{key.lower()}s_without_metadata": len(seen) - covered,
            f"{key.lower()}s_without_interactions": len(described) - covered,
        }
    return frames, manifest
