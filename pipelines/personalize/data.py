"""Interactions as integer arrays: the one input every recipe trains on.

A snapshot keeps ids as strings and events in file order. Recipes want neither: they index
arrays by integer user and item, and most of them care about the order of events in time.
``InteractionData`` maps ids to dense indexes once, sorts events by time once (stable, so
events with the same timestamp keep their file order) and hands out the views recipes ask
for: per-user histories, a user-item matrix, item and user metadata aligned with the indexes.

The catalog is every item that has interactions or a row in ITEMS: an item with metadata and
no events yet is a real, recommendable item (a new one), as in Personalize's coverage metric.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

CORE_COLUMNS = ("USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE")


@dataclass(eq=False)
class InteractionData:
    """Users, items and time-ordered events of one dataset group, by integer index.

    ``users``, ``items``, ``timestamps``, ``event_types`` and ``event_values`` are parallel
    arrays, one entry per interaction, sorted by time. ``event_types`` are codes into
    ``event_type_names`` (-1 where the event has none); ``event_values`` are NaN where absent.
    ``context`` holds the remaining interaction columns (IMPRESSION, DEVICE, …) in the same
    order; ``item_metadata`` and ``user_metadata`` have one row per index, in index order.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    event_types: np.ndarray
    event_type_names: tuple[str, ...] = ()
    event_values: np.ndarray | None = None
    context: pd.DataFrame | None = None
    item_metadata: pd.DataFrame | None = None
    user_metadata: pd.DataFrame | None = None

    @classmethod
    def from_snapshot(cls, folder: str | Path) -> InteractionData:
        """Load a snapshot folder written by ``import_data`` (its manifest's ``snapshot``)."""
        folder = Path(folder)
        optional = {kind: folder / f"{kind}.parquet" for kind in ("ITEMS", "USERS")}
        return cls.from_frames(
            pd.read_parquet(folder / "INTERACTIONS.parquet"),
            items=pd.read_parquet(optional["ITEMS"]) if optional["ITEMS"].exists() else None,
            users=pd.read_parquet(optional["USERS"]) if optional["USERS"].exists() else None,
        )

    @classmethod
    def from_frames(
        cls, interactions: pd.DataFrame, items: pd.DataFrame | None = None, users: pd.DataFrame | None = None
    ) -> InteractionData:
        """Build from frames in the snapshot's layout; ids of any type are taken as strings."""
        missing = [c for c in CORE_COLUMNS[:3] if c not in interactions]
        if missing:
            raise ValueError(f"INTERACTIONS lacks the required columns {missing}")
        empty = [c for c in CORE_COLUMNS[:3] if interactions[c].isna().any()]
        if empty:
            raise ValueError(f"INTERACTIONS has empty values in {empty}")
        timestamps = _epoch_seconds(interactions["TIMESTAMP"])
        order = np.argsort(timestamps, kind="stable")
        frame = interactions.iloc[order].reset_index(drop=True)
        user_ids, user_codes = _index(frame["USER_ID"], None if users is None else users.get("USER_ID"))
        item_ids, item_codes = _index(frame["ITEM_ID"], None if items is None else items.get("ITEM_ID"))
        if "EVENT_TYPE" in frame:
            codes, names = pd.factorize(frame["EVENT_TYPE"])
            event_types, event_type_names = codes.astype(np.int16), tuple(str(n) for n in names)
        else:
            event_types, event_type_names = np.full(len(frame), -1, np.int16), ()
        values = frame["EVENT_VALUE"] if "EVENT_VALUE" in frame else pd.Series(np.nan, index=frame.index)
        extra = [c for c in frame.columns if c not in CORE_COLUMNS]
        return cls(
            user_ids=user_ids,
            item_ids=item_ids,
            users=user_codes,
            items=item_codes,
            timestamps=timestamps[order],
            event_types=event_types,
            event_type_names=event_type_names,
            event_values=pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan),
            context=frame[extra] if extra else None,
            item_metadata=_aligned("ITEM_ID", item_ids, items),
            user_metadata=_aligned("USER_ID", user_ids, users),
        )

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.users)

    @cached_property
    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.user_ids)}

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.item_ids)}

    @cached_property
    def user_item(self) -> sp.csr_matrix:
        """Users x items, the number of events of each pair (summed over event types)."""
        ones = np.ones(self.n_interactions, dtype=np.float32)
        matrix = sp.csr_matrix((ones, (self.users, self.items)), shape=(self.n_users, self.n_items))
        matrix.sum_duplicates()
        return matrix

    @cached_property
    def histories(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr, rows)``: rows[indptr[u]:indptr[u + 1]] are user u's events, oldest first."""
        rows = np.argsort(self.users, kind="stable")  # events are in time order, so each user's stay so
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.users, minlength=self.n_users), out=indptr[1:])
        return indptr, rows

    def subset(self, rows: np.ndarray) -> InteractionData:
        """The same users, items and metadata with only the interactions at ``rows`` (a mask or sorted indexes)."""
        rows = np.asarray(rows)
        if rows.dtype != bool:
            rows = np.sort(rows)  # keeps time order
        context = None if self.context is None else self.context.iloc[rows].reset_index(drop=True)
        return replace(
            self,
            users=self.users[rows],
            items=self.items[rows],
            timestamps=self.timestamps[rows],
            event_types=self.event_types[rows],
            event_values=None if self.event_values is None else self.event_values[rows],
            context=context,
        )

    def to_frame(self) -> pd.DataFrame:
        """The interactions with string ids again, in time order (for inspection and tests)."""
        names = np.array([*self.event_type_names, None], dtype=object)
        return pd.DataFrame(
            {
                "USER_ID": self.user_ids[self.users],
                "ITEM_ID": self.item_ids[self.items],
                "TIMESTAMP": self.timestamps,
                "EVENT_TYPE": names[self.event_types],
                "EVENT_VALUE": self.event_values,
            }
        )


def _epoch_seconds(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(column):
        if getattr(column.dt, "tz", None) is not None:
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
        return column.dt.as_unit("s").astype("int64").to_numpy()
    return pd.to_numeric(column).to_numpy().astype(np.int64)


def _index(ids: pd.Series, described: pd.Series | None) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes in order of first interaction; ids known only from metadata come after."""
    codes, uniques = pd.factorize(ids.astype(str))
    names = np.asarray(uniques, dtype=object)
    if described is not None:
        extra = pd.unique(described.dropna().astype(str))
        extra = extra[~pd.Index(extra).isin(names)]
        names = np.concatenate([names, np.asarray(extra, dtype=object)])
    return names, codes.astype(np.int32)


def _aligned(key: str, ids: np.ndarray, frame: pd.DataFrame | None) -> pd.DataFrame | None:
    if frame is None:
        return None
    frame = frame.assign(**{key: frame[key].astype(str)}).drop_duplicates(key, keep="last")
    return frame.set_index(key).reindex(pd.Index(ids, name=key)).reset_index()
