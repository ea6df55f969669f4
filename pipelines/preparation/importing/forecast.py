"""Forecast import: align to the forecast frequency, aggregate, and fill missing values.

What Amazon Forecast does on import and training, done once into a snapshot:

- every timestamp moves to the start of its period (frequency plus alignment boundary);
- rows of one series in one period are combined by the attribute's aggregation (sum unless
  set otherwise: avg, first, min, max);
- each series runs from its first row (no frontfill) to the dataset's last period, and a
  related series on to the end of the forecast horizon;
- missing values are filled by position: middlefill inside a series, backfill after its last
  value, futurefill (related only) past the target's end; ``mean``, ``median``, ``min`` and
  ``max`` look at the 64 most recent values before the gap.

The ``filled_by`` column says which rows were made up, so training can tell them apart and an
incremental import can set them aside.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines import domains as d
from pipelines.frequency import Boundary, Frequency
from pipelines.preparation.importing import calendar
from pipelines.preparation.importing.reader import STRING
from pipelines.settings import ForecastGroup, RelatedDataset, TargetDataset

FILL_WINDOW = 64
_AGG = {"sum": "sum", "avg": "mean", "first": "first", "min": "min", "max": "max"}


def series_codes(frame: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """An integer per row for its series (numbered in order of appearance), and each series' keys.

    Grouping by these integers instead of the key strings is what keeps millions of rows fast.
    """
    codes = np.zeros(len(frame), dtype="int64")
    for key in keys:
        key_codes, uniques = pd.factorize(frame[key])
        codes = pd.factorize(codes * len(uniques) + key_codes)[0]
    first_rows = pd.Series(codes).drop_duplicates().index.to_numpy()
    return codes, frame[keys].iloc[first_rows].reset_index(drop=True)


def key_columns(series_keys: pd.DataFrame, series: np.ndarray) -> dict[str, pd.Categorical]:
    """Key columns for rows of the given series, as categoricals (dictionary-encoded in Parquet)."""
    out = {}
    for key in series_keys.columns:
        codes, uniques = pd.factorize(series_keys[key])
        out[key] = pd.Categorical.from_codes(codes[series], categories=pd.Index(uniques, dtype=STRING))
    return out


def align_and_aggregate(
    frame: pd.DataFrame, keys: list[str], fields: list[str], freq: Frequency, boundary: Boundary, how
) -> tuple[pd.DataFrame, int]:
    """One row per series and period; returns it and how many input rows were combined."""
    codes, series_keys = series_codes(frame, keys)
    work = pd.DataFrame({"_series": codes, "timestamp": calendar.align(freq, frame["timestamp"], boundary).to_numpy()})
    for name in fields:
        work[name] = frame[name].to_numpy(dtype="float64", na_value=np.nan)
    if any(how(name) == "first" for name in fields):
        # "first" means earliest in time; other aggregations do not care about row order.
        work = work.iloc[np.argsort(frame["timestamp"].to_numpy(), kind="stable")]
    grouped = work.groupby(["_series", "timestamp"], sort=True)
    parts = {}
    for name in fields:
        method = _AGG[how(name)]
        column = grouped[name]
        parts[name] = column.sum(min_count=1) if method == "sum" else getattr(column, method)()
    out = pd.DataFrame(parts).reset_index() if parts else grouped.size().reset_index()[["_series", "timestamp"]]
    series = out.pop("_series").to_numpy()
    out = pd.concat([pd.DataFrame(key_columns(series_keys, series)), out], axis=1)
    return out, len(frame) - len(out)


def fill_grid(
    frame: pd.DataFrame,
    keys: list[str],
    fields: list[str],
    periods: pd.DatetimeIndex,
    end_pos: int,
    methods: dict[str, tuple[str | None, float | None]],
    present_field: str | None,
) -> tuple[pd.DataFrame, dict]:
    """Put each series on the full period grid from its first row and fill the gaps.

    ``end_pos`` is the index in ``periods`` of the target's last period: cells after it are
    futurefill. ``methods`` maps middlefill/backfill/futurefill to (method, value). A series'
    last observation is its last row with a value in ``present_field`` (any row if None).
    """
    codes, series_keys = series_codes(frame, keys)
    pos = periods.searchsorted(frame["timestamp"].to_numpy())
    n_series = int(codes.max()) + 1 if len(codes) else 0
    start = np.full(n_series, np.iinfo(np.int64).max)
    np.minimum.at(start, codes, pos)
    length = len(periods) - start
    offsets = np.concatenate(([0], np.cumsum(length)[:-1]))
    total = int(length.sum())
    cell_code = np.repeat(np.arange(n_series), length)
    cell_pos = np.arange(total) - np.repeat(offsets, length) + np.repeat(start, length)
    slot = offsets[codes] + pos - start[codes]
    observed = np.zeros(total, dtype=bool)
    observed[slot] = True if present_field is None else frame[present_field].notna().to_numpy()
    last = np.full(n_series, -1)
    np.maximum.at(last, cell_code[observed], cell_pos[observed])
    kind = np.full(total, None, dtype=object)
    kind[cell_pos <= np.repeat(last, length)] = "middlefill"
    kind[cell_pos > np.repeat(last, length)] = "backfill"
    kind[cell_pos > end_pos] = "futurefill"
    out = pd.DataFrame(key_columns(series_keys, cell_code))
    out["timestamp"] = periods[cell_pos]
    stats = {"cells": total, "filled": {}}
    was_missing = ~observed
    for name in fields:
        values = np.full(total, np.nan)
        values[slot] = frame[name].to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(values)
        was_missing |= missing
        for which, (method, constant) in methods.items():
            cells = missing & (kind == which)
            if method is None or not cells.any():
                continue
            values[cells] = _fill_values(method, constant, values, cell_code, cells)
            counts = stats["filled"].setdefault(which, {})
            counts[name] = counts.get(name, 0) + int(cells.sum())
        out[name] = values
    out["filled_by"] = pd.array(np.where(was_missing, kind, None), dtype=pd.StringDtype("pyarrow"))
    return out, stats


def _fill_values(method: str, constant, values: np.ndarray, codes: np.ndarray, cells: np.ndarray) -> np.ndarray:
    if method == "zero":
        return np.zeros(cells.sum())
    if method == "nan":
        return np.full(cells.sum(), np.nan)
    if method == "value":
        return np.full(cells.sum(), float(constant))
    # mean/median/min/max of the 64 most recent values before each missing cell.
    have = ~np.isnan(values)
    known = pd.Series(values[have])
    rolled = known.groupby(codes[have]).rolling(FILL_WINDOW, min_periods=1).agg(method)
    latest = np.full(len(values), np.nan)
    latest[have] = rolled.reset_index(level=0, drop=True).sort_index().to_numpy()
    # A missing cell takes the statistic as of the last value before it in its own series.
    carried = pd.Series(latest).groupby(codes).ffill().to_numpy()
    return carried[cells]


def build_target(group: ForecastGroup, frame: pd.DataFrame, base: pd.DataFrame | None):
    ds: TargetDataset = group.datasets.TARGET_TIME_SERIES
    keys, target = group.series_keys, group.domain_info.target
    aligned, combined = align_and_aggregate(frame, keys, [target], group.freq, group.boundary, ds.aggregation_for)
    aligned = _merge_incremental(aligned, base, keys, [target])
    periods = calendar.periods(group.freq, aligned["timestamp"].min(), aligned["timestamp"].max(), group.boundary)
    fill = ds.filling
    methods = {
        "middlefill": (fill.middlefill, fill.middlefill_value),
        "backfill": (fill.backfill, fill.backfill_value),
    }
    out, stats = fill_grid(aligned, keys, [target], periods, len(periods) - 1, methods, target)
    stats["rows_combined"] = combined
    return out, stats, periods


def build_related(group: ForecastGroup, frame: pd.DataFrame, target_periods: pd.DatetimeIndex, base):
    ds: RelatedDataset = group.datasets.RELATED_TIME_SERIES
    keys = [k for k in group.series_keys if k in ds.field_names]
    features = [f for f in ds.field_names if f not in {*keys, "timestamp"}]
    numeric = [f for f in features if ds.field(f).type in ("float", "integer")]
    aligned, combined = align_and_aggregate(frame, keys, numeric, group.freq, group.boundary, ds.aggregation_for)
    aligned = _merge_incremental(aligned, base, keys, numeric)
    horizon_end = calendar.shift(group.freq, target_periods[-1], group.horizon, group.boundary)
    start = min(aligned["timestamp"].min(), target_periods[0])
    periods = calendar.periods(group.freq, start, horizon_end, group.boundary)
    end_pos = int(periods.searchsorted(target_periods[-1]))
    fill = ds.filling
    methods = {
        "middlefill": (fill.middlefill, fill.middlefill_value),
        "backfill": (fill.backfill, fill.backfill_value),
        "futurefill": (fill.futurefill, fill.futurefill_value),
    }
    aligned = aligned[aligned["timestamp"] <= horizon_end]
    out, stats = fill_grid(aligned, keys, numeric, periods, end_pos, methods, None)
    last = out.dropna(subset=numeric, how="all").groupby(keys, observed=True)["timestamp"].max()
    stats["series_short_of_horizon"] = int((last < horizon_end).sum())
    stats["rows_combined"] = combined
    return out, stats


def _merge_incremental(new: pd.DataFrame, base: pd.DataFrame | None, keys, fields) -> pd.DataFrame:
    """INCREMENTAL import: the previous snapshot's observed rows, replaced where new rows overlap."""
    if base is None or base.empty:
        return new
    kept = base[base["filled_by"].isna()][[*keys, "timestamp", *fields]]
    merged = pd.concat([kept, new], ignore_index=True)
    merged = merged.drop_duplicates([*keys, "timestamp"], keep="last")
    return merged.sort_values([*keys, "timestamp"], kind="stable").reset_index(drop=True)


def describe(frame: pd.DataFrame, keys: list[str]) -> dict:
    return {
        "rows": len(frame),
        "series": int(frame.groupby(keys, observed=True).ngroups) if len(frame) else 0,
        "start": str(frame["timestamp"].min()) if len(frame) else None,
        "end": str(frame["timestamp"].max()) if len(frame) else None,
    }


def build_forecast_snapshot(group: ForecastGroup, checked: dict, previous: dict) -> tuple[dict, dict]:
    """Frames to write (by dataset type) and their manifest entries."""
    frames, manifest = {}, {}
    target, stats, periods = build_target(
        group, checked[d.TARGET_TIME_SERIES].frame, previous.get(d.TARGET_TIME_SERIES)
    )
    frames[d.TARGET_TIME_SERIES] = target
    manifest[d.TARGET_TIME_SERIES] = {**describe(target, group.series_keys), **stats}
    if d.RELATED_TIME_SERIES in checked:
        related, stats = build_related(
            group, checked[d.RELATED_TIME_SERIES].frame, periods, previous.get(d.RELATED_TIME_SERIES)
        )
        frames[d.RELATED_TIME_SERIES] = related
        keys = [k for k in group.series_keys if k in related]
        manifest[d.RELATED_TIME_SERIES] = {**describe(related, keys), **stats}
    if d.ITEM_METADATA in checked:
        meta = checked[d.ITEM_METADATA].frame
        ident = group.domain_info.identifier
        frames[d.ITEM_METADATA] = meta
        known = set(target[ident].astype(str))
        cold = sorted(set(meta[ident].astype(str)) - known)
        manifest[d.ITEM_METADATA] = {
            "rows": len(meta),
            "items_without_history": len(cold),
            "cold_start_items": cold[:50],
        }
    return frames, manifest
