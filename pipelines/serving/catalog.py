"""Items and users that arrive while serving (PutItems, PutUsers, items first seen in PutEvents).

``check_properties`` reads one record's ``properties`` as Personalize sends them (a JSON object,
usually inside a string; keys are the schema's field names or their camelCase forms, so
``numberOfRatings`` is ``NUMBER_OF_RATINGS``) and checks each against the group's ITEMS or
USERS schema: an unknown field or a value of the wrong type raises ``PropertiesError`` naming
the field. A categorical field takes text (several values joined by ``|``) or a list of texts;
numbers may come as numbers or as the text of one, as Personalize's string map sends them. A
record replaces the id's previous one, as Personalize's PutItems and PutUsers do: a field it
leaves out (or sends as null) has no value.

``grow`` makes the data filters read (``InteractionData``) hold the new ids and records: new
ids are appended to the catalog, a record replaces its row's fields, and the interactions stay
the same arrays. It returns a new object (filters cache their masks per data object), carrying
the indexes over instead of rebuilding them.

``export_records`` writes every stored record of a group's ITEMS or USERS, the newest of each
id, to a CSV in the dataset's schema columns, for the next import.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.serving.store import Store

KEYS = {"ITEMS": "ITEM_ID", "USERS": "USER_ID"}
ID_FIELDS = {"ITEMS": "itemId", "USERS": "userId"}
MULTI_VALUE_SEPARATOR = "|"


class PropertiesError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def camel_case(name: str) -> str:
    """A schema field's name as Personalize's properties keys spell it: NUMBER_OF_RATINGS -> numberOfRatings."""
    head, *rest = name.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


def check_properties(dataset: Any, dataset_type: str, raw: Any, where: str) -> dict[str, Any]:
    """``raw`` as {schema field: value} (see the module's docstring); ``where`` names it in errors."""
    import json

    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise PropertiesError(where, f"not a JSON object: {getattr(exc, 'msg', exc)}") from None
    if not isinstance(raw, dict):
        raise PropertiesError(where, "expected a JSON object of field names to values")
    key = KEYS[dataset_type]
    fields: dict[str, Any] = {}
    for attr in dataset.fields:
        if attr.name != key:
            fields[attr.name] = attr
            fields.setdefault(camel_case(attr.name), attr)
    checked: dict[str, Any] = {}
    for given, value in raw.items():
        field = f"{where}.{given}"
        attr = fields.get(given)
        if attr is None:
            if given in (key, camel_case(key)):
                raise PropertiesError(field, f"the id goes in {ID_FIELDS[dataset_type]}, not in properties")
            known = ", ".join(camel_case(f.name) for f in dataset.fields if f.name != key)
            raise PropertiesError(field, f"unknown field {given!r}: the {dataset_type} schema has {known}")
        if attr.name in checked:
            raise PropertiesError(field, f"{attr.name} is given twice")
        checked[attr.name] = _typed(attr, value, field)
    return {name: value for name, value in checked.items() if value is not None}


def _typed(attr: Any, value: Any, field: str) -> Any:
    if value is None:
        return None
    kind = attr.type
    if kind in ("string", "geolocation"):
        if attr.categorical and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return MULTI_VALUE_SEPARATOR.join(value)
        if not isinstance(value, str):
            raise PropertiesError(field, f"{attr.name} is text: expected a string, got {_json_type(value)}")
        return value
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise PropertiesError(field, f"{attr.name} is boolean: expected true or false, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PropertiesError(field, f"{attr.name} is {kind}: expected a number, got {_json_type(value)}")
    if kind == "timestamp" and isinstance(value, str) and not _is_number(value):
        try:
            stamp = pd.Timestamp(value)
        except ValueError:
            raise PropertiesError(field, f"{attr.name} is a timestamp: expected Unix seconds or ISO 8601") from None
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
        return int(stamp.timestamp())
    try:
        number = float(value)
    except ValueError:
        raise PropertiesError(field, f"{attr.name} is {kind}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise PropertiesError(field, f"{attr.name} is {kind}: expected a finite number, got {value!r}")
    if kind in ("integer", "timestamp"):
        if not number.is_integer():
            raise PropertiesError(field, f"{attr.name} is {kind}: expected a whole number, got {value!r}")
        return int(number)
    return number


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


# The data filters read.
def grow(data: Any, items: Mapping[str, dict | None], users: Mapping[str, dict | None]) -> Any:
    """``data`` with ``items`` and ``users`` (id -> record, or None for an id known only from an event)."""
    item_ids, item_index, item_meta = _extend(data.item_ids, data.item_index, data.item_metadata, "ITEM_ID", items)
    user_ids, user_index, user_meta = _extend(data.user_ids, data.user_index, data.user_metadata, "USER_ID", users)
    grown = replace(data, item_ids=item_ids, user_ids=user_ids, item_metadata=item_meta, user_metadata=user_meta)
    grown.__dict__["item_index"], grown.__dict__["user_index"] = item_index, user_index
    indptr, rows = data.histories  # new users have no snapshot events
    extra = len(user_ids) - len(data.user_ids)
    grown.__dict__["histories"] = (np.concatenate([indptr, np.full(extra, indptr[-1], indptr.dtype)]), rows)
    return grown


def _extend(ids: np.ndarray, index: dict, frame: pd.DataFrame | None, key: str, records: Mapping[str, dict | None]):
    new = [i for i in records if i not in index]
    if new:
        ids = np.concatenate([ids, np.asarray(new, dtype=object)])
        index = {**index, **{i: len(index) + k for k, i in enumerate(new)}}
    described = {i: r for i, r in records.items() if r is not None}
    if frame is None and not described:
        return ids, index, None
    frame = pd.DataFrame({key: ids[: len(ids) - len(new)]}) if frame is None else frame
    if new:
        frame = pd.concat([frame, pd.DataFrame({key: new})], ignore_index=True)
    elif described:
        frame = frame.copy()
    for record in described.values():
        for name in record:
            if name not in frame:
                frame[name] = pd.Series([None] * len(frame), dtype=object)
    for record_id, record in described.items():
        row = index[record_id]
        for name in frame.columns:
            if name != key:
                frame.at[row, name] = _cell(frame[name], record.get(name))
    return ids, index, frame


def _cell(column: pd.Series, value: Any) -> Any:
    """``value`` in the form of ``column`` (a timestamp column takes Unix seconds as a time)."""
    if value is None:
        return pd.NaT if pd.api.types.is_datetime64_any_dtype(column) else np.nan if _numeric(column) else None
    if pd.api.types.is_datetime64_any_dtype(column):
        stamp = pd.Timestamp(int(value), unit="s", tz="UTC")
        tz = getattr(column.dt, "tz", None)
        return stamp.tz_convert(tz) if tz is not None else stamp.tz_localize(None)
    return value


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


# Exports.
def default_path(storage_root: str, dataset_type: str) -> Path:
    return Path(storage_root) / "events" / f"{dataset_type}_records.csv"


def export_records(store: Store, group: Any, dataset_type: str, path: str | os.PathLike) -> dict:
    """Write ``group``'s stored ``dataset_type`` records, newest of each id, to ``path`` (atomically)."""
    dataset = group.dataset(dataset_type)
    if dataset is None:
        raise LookupError(f"dataset group {group.name!r} has no {dataset_type} dataset")
    latest: dict[str, dict] = {}
    last = 0
    for record in store.records_of_group(group.name, dataset_type=dataset_type):
        latest.pop(record.record_id, None)  # ordered by the newest record
        latest[record.record_id] = record.properties
        last = record.id
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = dataset.field_names
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        key = KEYS[dataset_type]
        for record_id, properties in latest.items():
            writer.writerow([record_id if c == key else _text(properties.get(c)) for c in columns])
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return {"path": str(path), "records": len(latest), "last_record_id": last}


def _text(value: Any) -> Any:
    return "" if value is None else str(value).lower() if isinstance(value, bool) else value
