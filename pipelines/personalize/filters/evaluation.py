"""How a filter's tree becomes boolean masks: over items for item filters, over users for user segments.

Metadata fields are turned into columns once per ``InteractionData`` (kept in a weak map, so
they go with the data): a text field as (row, value code) pairs, so that IN over any number
of values and multi-valued categorical fields is one ``np.isin``; a numeric field as floats,
timestamps in Unix seconds. Interactions conditions read the requesting user's own events: the
snapshot's and, when the request passes them (``Context.live``), the events PutEvents stored
since, with their event types, under the same per-type limit of most recent events.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.personalize.data import InteractionData
from pipelines.personalize.filters.parser import SCHEMA_KEY, Expression, Field, Junction, Literal, Node, conditions
from pipelines.personalize.filters.schema import FieldSpec, Schema

ORDERING = ("<", "<=", ">", ">=")
_COLUMNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # data -> {(dataset, field, numeric): column}


@dataclass
class Context:
    """One request: the data, the requesting user and current item (indexes), and the filter's settings."""

    data: InteractionData
    schema: Schema
    interaction_limit: int | None
    user_index: int | None = None
    current_item: int | None = None
    users: bool = False  # a UserID filter: Interactions conditions select users, not the user's items
    live: Sequence[tuple[str, str, float]] | None = None  # the user's live (item_id, event_type, sent_at)


def evaluate(node: Node, context: Context) -> np.ndarray:
    if isinstance(node, Junction):
        parts = [evaluate(part, context) for part in node.parts]
        return np.logical_and.reduce(parts) if node.op == "AND" else np.logical_or.reduce(parts)
    if node.field.dataset == "Interactions":
        return _interacted(context, [str(v.value) for v in node.values])
    spec = field_spec(context.schema, node.field)
    numeric = (
        spec.numeric
        or node.op in ORDERING
        or any(isinstance(v, Literal) and isinstance(v.value, float) for v in node.values)
    )
    column = _column(context.data, SCHEMA_KEY[node.field.dataset], spec, numeric)
    values = []
    for value in node.values:
        if isinstance(value, Field):  # CurrentItem.FIELD: the values of the item the request is about
            other = _column(context.data, "ITEMS", field_spec(context.schema, value), numeric)
            values.extend(other.values_at(context.current_item))
        else:
            values.append(value.value)
    return column.match(node.op, values)


def _interacted(context: Context, event_types: list[str]) -> np.ndarray:
    data = context.data
    wanted = {t.lower() for t in event_types}
    codes = None if "*" in wanted else [i for i, name in enumerate(data.event_type_names) if name.lower() in wanted]
    if context.users:  # users with any such event
        chosen = data.users if codes is None else data.users[np.isin(data.event_types, codes)]
        mask = np.zeros(data.n_users, dtype=bool)
        mask[chosen] = True
        return mask
    mask = np.zeros(data.n_items, dtype=bool)
    u = context.user_index
    if u is not None and 0 <= u < data.n_users:
        indptr, rows = data.histories
        events = rows[indptr[u] : indptr[u + 1]]  # oldest first
    else:
        events = np.zeros(0, dtype=np.int64)
    if context.live:
        return _with_live(context, events, None if codes is None else wanted, mask)
    types = data.event_types[events]
    if codes is not None:
        keep = np.isin(types, codes)
        events, types = events[keep], types[keep]
    limit = context.interaction_limit
    if limit is not None and len(events) > limit:
        events = np.concatenate([events[types == t][-limit:] for t in np.unique(types)])
    mask[data.items[events]] = True
    return mask


def _with_live(context: Context, events: np.ndarray, wanted: set[str] | None, mask: np.ndarray) -> np.ndarray:
    """The user's snapshot ``events`` and live events together: types by name (ignoring case), newest kept.

    A live event of an item the snapshot's catalog lacks has no place in the mask and is left out.
    """
    data = context.data
    names = np.array([*(n.lower() for n in data.event_type_names), ""], dtype=object)  # code -1: no type
    items = data.items[events].tolist()
    types = names[data.event_types[events]].tolist()
    times = data.timestamps[events].astype(np.float64).tolist()
    for item_id, event_type, sent_at in context.live:
        k = data.item_index.get(item_id)
        if k is not None:
            items.append(k)
            types.append((event_type or "").lower())
            times.append(float(sent_at))
    chosen: dict[str, list[tuple[float, int]]] = {}
    for item, kind, when in zip(items, types, times, strict=True):
        if wanted is None or kind in wanted:
            chosen.setdefault(kind, []).append((when, item))
    limit = context.interaction_limit
    for per_type in chosen.values():
        if limit is not None and len(per_type) > limit:
            per_type.sort(key=lambda pair: pair[0])  # stable: snapshot events before live ones at a tie
            per_type = per_type[-limit:]
        mask[[item for _, item in per_type]] = True
    return mask


def field_spec(schema: Schema, ref: Field) -> FieldSpec:
    return schema[SCHEMA_KEY[ref.dataset]][ref.name]


def uses_current_item(expr: Expression) -> bool:
    return any(isinstance(v, Field) for c in conditions(expr.where) for v in c.values)


class _TextColumn:
    """A text field as (item, value code) pairs in CSR form, so IN is one ``np.isin`` over the values."""

    def __init__(self, per_row: list[list[str]]):
        counts = np.fromiter(map(len, per_row), dtype=np.int64, count=len(per_row))
        self.indptr = np.concatenate([[0], np.cumsum(counts)])
        self.rows = np.repeat(np.arange(len(per_row)), counts)
        flat = [v for values in per_row for v in values]
        codes, uniques = pd.factorize(pd.Series(flat, dtype=object))
        self.codes, self.vocabulary = codes, {str(v): k for k, v in enumerate(uniques)}
        self.names = [str(v) for v in uniques]

    def match(self, op: str, values: list) -> np.ndarray:
        wanted = [self.vocabulary[v] for v in map(str, values) if v in self.vocabulary]
        hit = np.zeros(len(self.indptr) - 1, dtype=bool)
        if wanted:
            hit[self.rows[np.isin(self.codes, wanted)]] = True
        return ~hit if op in ("NOT IN", "!=") else hit

    def values_at(self, row: int | None) -> list[str]:
        if row is None or not 0 <= row < len(self.indptr) - 1:
            return []
        return [self.names[c] for c in self.codes[self.indptr[row] : self.indptr[row + 1]]]


class _NumericColumn:
    """A numeric field as floats (NaN where missing; timestamps as Unix seconds)."""

    def __init__(self, values: np.ndarray):
        self.values = values

    def match(self, op: str, values: list) -> np.ndarray:
        if not values:  # e.g. CurrentItem has no value: nothing equals or compares, everything differs
            return np.full(len(self.values), op == "!=")
        x, v = self.values, float(values[0])
        result = {"=": x == v, "!=": ~(x == v), "<": x < v, "<=": x <= v, ">": x > v, ">=": x >= v}
        return result[op]

    def values_at(self, row: int | None) -> list[float]:
        if row is None or not 0 <= row < len(self.values) or np.isnan(self.values[row]):
            return []
        return [float(self.values[row])]


def _column(data: InteractionData, kind: str, spec: FieldSpec, numeric: bool) -> _TextColumn | _NumericColumn:
    """The field's values for every item (ITEMS) or user (USERS), built once per data."""
    per_data = _COLUMNS.setdefault(data, {})
    key = (kind, spec.name, numeric)
    if key not in per_data:
        frame = data.item_metadata if kind == "ITEMS" else data.user_metadata
        size = data.n_items if kind == "ITEMS" else data.n_users
        series = frame[spec.name] if frame is not None and spec.name in frame else pd.Series([None] * size)
        if numeric:
            per_data[key] = _NumericColumn(_numbers(series))
        else:
            split = spec.categorical or spec.type == "unknown"
            per_data[key] = _TextColumn([_texts(v, split) for v in series.tolist()])
    return per_data[key]


def _texts(value: Any, split: bool) -> list[str]:
    if isinstance(value, list | tuple | np.ndarray):
        return [t for v in value for t in _texts(v, False)]
    if isinstance(value, str):
        return value.split("|") if split else [value]
    if value is None or pd.isna(value):
        return []
    if isinstance(value, float) and value.is_integer():
        return [str(int(value))]
    return [str(value)]


def _numbers(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(series):
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        seconds = series.to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
        return np.where(series.isna().to_numpy(), np.nan, seconds)
    numbers = pd.to_numeric(
        series.map(lambda v: None if isinstance(v, list | tuple | np.ndarray) else v), errors="coerce"
    )
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)
