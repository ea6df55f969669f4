"""Forecast queries (Forecast's QueryForecast) from a group's latest published export.

The export folder holds ``forecast.parquet`` in Forecast's export layout: the item key columns
(item_id and any forecast dimensions, as strings), ``date``, then one float column per
forecast type (p10, p50, p90, mean, …). It is read once into arrays sorted by key and date,
with each series' row range in a dict, so a query costs a dict lookup and a slice. The poll
thread follows ``latest.json`` and swaps a newly published export in with one assignment.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("airsight.serving")
KEY_LAYOUT = "item_id"


class QueryError(ValueError):
    """A query that cannot be answered: the field and why."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field, self.message = field_name, message


@dataclass
class ForecastExport:
    as_of: str
    path: str
    key_columns: list[str]
    forecast_types: list[str]
    keys: list[tuple[str, ...]]  # one per series, sorted
    ranges: dict[tuple[str, ...], tuple[int, int]]
    dates: np.ndarray  # datetime64[s]
    values: dict[str, np.ndarray]
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def read(cls, pointer: dict) -> ForecastExport:
        import pandas as pd

        folder = Path(pointer["path"])
        parquet, csv = folder / "forecast.parquet", folder / "forecast.csv"
        frame = pd.read_parquet(parquet) if parquet.exists() else pd.read_csv(csv)
        return cls.from_frame(frame, str(pointer.get("as_of", "")), folder)

    @classmethod
    def from_frame(cls, frame, as_of: str, folder: Path) -> ForecastExport:
        """An export from a frame in Forecast's export layout (keys, date, a column per forecast type)."""
        import pandas as pd

        if "date" not in frame or KEY_LAYOUT not in frame:
            raise ValueError(f"{folder}: a forecast export needs item_id and date columns, has {list(frame.columns)}")
        date_at = list(frame.columns).index("date")
        keys = [c for c in frame.columns[:date_at]]
        types = [c for c in frame.columns[date_at + 1 :] if pd.api.types.is_numeric_dtype(frame[c])]
        if not types:
            raise ValueError(f"{folder}: no forecast type columns (p10, p50, …) after date")
        frame = frame.copy()
        # a cold-start item has no value for a dimension its metadata lacks: "" (as the CSV export writes it)
        frame[keys] = frame[keys].astype(object).where(frame[keys].notna(), "").astype(str)
        frame = frame.sort_values([*keys, "date"], kind="stable").reset_index(drop=True)
        codes = frame.groupby(keys, sort=False, observed=True).ngroup().to_numpy()
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        ends = np.r_[starts[1:], len(frame)]
        key_rows = frame[keys].iloc[starts].itertuples(index=False, name=None)
        series_keys = [tuple(k) for k in key_rows]
        dates = pd.to_datetime(frame["date"], utc=True).dt.tz_localize(None).to_numpy().astype("datetime64[s]")
        return cls(
            as_of=as_of,
            path=str(folder),
            key_columns=keys,
            forecast_types=types,
            keys=series_keys,
            ranges={k: (int(s), int(e)) for k, s, e in zip(series_keys, starts, ends, strict=True)},
            dates=dates,
            values={t: frame[t].to_numpy(np.float64) for t in types},
        )

    def matching(self, filters: dict[str, str]) -> list[tuple[str, ...]]:
        unknown = sorted(set(filters) - set(self.key_columns))
        if unknown:
            raise QueryError("filters", f"unknown key(s) {unknown}; this forecast's keys are {self.key_columns}")
        if set(filters) == set(self.key_columns):
            key = tuple(str(filters[c]) for c in self.key_columns)
            return [key] if key in self.ranges else []
        positions = [(self.key_columns.index(c), str(v)) for c, v in filters.items()]
        return [k for k in self.keys if all(k[i] == v for i, v in positions)]


class ForecastHolder:
    """The latest published forecast of one group, followed through its latest.json pointer."""

    def __init__(self, group: str, storage_root: str):
        self.group, self.root = group, storage_root
        self.pointer_file = Path(storage_root) / "published" / "forecast" / "latest.json"
        self.export: ForecastExport | None = None
        self.error: str | None = None
        self._seen: tuple | None = None

    def poll(self) -> bool:
        """Load the export latest.json points to if the pointer changed; True if a new one now serves."""
        try:
            stat = os.stat(self.pointer_file)
        except FileNotFoundError:
            return False
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if signature == self._seen:
            return False
        try:
            pointer = json.loads(self.pointer_file.read_text())
            if self.export is not None and pointer.get("path") == self.export.path:
                self._seen = signature
                return False
            export = ForecastExport.read(pointer)
        except Exception as exc:
            self.error = f"{self.pointer_file}: {type(exc).__name__}: {exc}"
            self._seen = signature
            log.error("forecast export failed to load", extra={"group": self.group, "error": self.error})
            return False
        self.export, self.error, self._seen = export, None, signature
        log.info("forecast export swapped in", extra={"group": self.group, "as_of": export.as_of})
        return True

    def health(self) -> dict:
        export = self.export
        return {
            "status": "ok" if export and not self.error else "degraded" if export else "unavailable",
            "as_of": export.as_of if export else None,
            "series": len(export.keys) if export else 0,
            "error": self.error,
        }


def encode_token(as_of: str, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([as_of, offset]).encode()).decode()


def decode_token(token: str | None, as_of: str) -> int:
    if not token:
        return 0
    try:
        token_as_of, offset = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = int(offset)
    except Exception as exc:
        raise QueryError("nextToken", "not a token this API returned") from exc
    if token_as_of != as_of:
        raise QueryError("nextToken", f"belongs to the export of {token_as_of}; {as_of} is now published: start again")
    if offset < 0:
        raise QueryError("nextToken", "not a token this API returned")
    return offset


def _bound(value: str | None, name: str) -> np.datetime64 | None:
    if value is None:
        return None
    import pandas as pd

    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise QueryError(name, f"{value!r} is not a date or timestamp") from exc
    if stamp is pd.NaT:
        raise QueryError(name, f"{value!r} is not a date or timestamp")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.datetime64(stamp.to_datetime64(), "s")


def query(
    export: ForecastExport,
    filters: dict[str, str],
    start: str | None = None,
    end: str | None = None,
    types: list[str] | None = None,
    max_results: int = 100,
    next_token: str | None = None,
) -> dict[str, Any]:
    """The forecast of the series matching ``filters`` between ``start`` and ``end``, a page at a time."""
    types = list(dict.fromkeys(types or export.forecast_types))
    unknown = [t for t in types if t not in export.values]
    if unknown:
        raise QueryError("forecastTypes", f"{unknown} not in this forecast; it has {export.forecast_types}")
    lo, hi = _bound(start, "startDate"), _bound(end, "endDate")
    if lo is not None and hi is not None and lo > hi:
        raise QueryError("endDate", f"{end} is before startDate {start}")
    keys = export.matching(filters)
    offset = decode_token(next_token, export.as_of)
    page = keys[offset : offset + max_results]
    series = []
    for key in page:
        s, e = export.ranges[key]
        dates = export.dates[s:e]
        keep = np.ones(len(dates), dtype=bool)
        if lo is not None:
            keep &= dates >= lo
        if hi is not None:
            keep &= dates <= hi
        stamps = [str(d) for d in dates[keep]]
        predictions = {}
        for t in types:
            values = export.values[t][s:e][keep]
            predictions[t] = [
                {"timestamp": stamp, "value": None if np.isnan(v) else float(v)}
                for stamp, v in zip(stamps, values.tolist(), strict=True)
            ]
        series.append({"item": dict(zip(export.key_columns, key, strict=True)), "predictions": predictions})
    more = offset + max_results < len(keys)
    return {
        "forecast": {"asOf": export.as_of, "series": series},
        "nextToken": encode_token(export.as_of, offset + max_results) if more else None,
    }


def list_items(export: ForecastExport, max_results: int = 100, next_token: str | None = None) -> dict[str, Any]:
    offset = decode_token(next_token, export.as_of)
    page = export.keys[offset : offset + max_results]
    more = offset + max_results < len(export.keys)
    return {
        "asOf": export.as_of,
        "keys": export.key_columns,
        "items": [dict(zip(export.key_columns, k, strict=True)) for k in page],
        "nextToken": encode_token(export.as_of, offset + max_results) if more else None,
    }
