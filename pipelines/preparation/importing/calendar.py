"""Calendar arithmetic on whole columns: align timestamps to periods, list and shift periods.

Pure pandas/numpy, kept apart from ``pipelines.frequency`` so that settings (and DAG files)
never import pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.frequency import Boundary, Frequency

_EPOCH_MONDAY = pd.Timestamp("1970-01-05")  # a Monday, so weekly buckets line up
_DAY_NS = 86400 * 10**9


def align(freq: Frequency, ts: pd.Series, boundary: Boundary | None = None) -> pd.Series:
    """The start of the period each timestamp falls in (vectorised)."""
    b = boundary or Boundary()
    values = pd.to_datetime(ts).astype("datetime64[ns]")
    if freq.unit in ("min", "H"):
        ns = values.astype("int64")
        step = freq.fixed_ns
        return pd.Series((ns - ns % step).astype("datetime64[ns]"), index=ts.index)
    shift = pd.Timedelta(hours=b.hour)
    t = values - shift
    if freq.unit == "D":
        ns = t.astype("int64")
        start = (ns - ns % freq.fixed_ns).astype("datetime64[ns]")
    elif freq.unit == "W":
        days = t.dt.floor("D")
        back = (days.dt.weekday - b.day_of_week) % 7
        start = days - pd.to_timedelta(back, unit="D")
        if freq.n > 1:
            anchor = _EPOCH_MONDAY + pd.Timedelta(days=b.day_of_week)
            weeks = (start - anchor) // pd.Timedelta(days=7)
            start = start - pd.to_timedelta((weeks % freq.n) * 7, unit="D")
    else:
        months = t.dt.year * 12 + t.dt.month - 1
        if freq.unit == "Y":
            months = months - (b.month - 1) - (t.dt.day < b.day_of_month).astype("int64")
            months = (months // 12) * 12 + (b.month - 1)
        else:
            months = months - (t.dt.day < b.day_of_month).astype("int64")
            months = months - months % freq.n
        start = month_starts(months, b.day_of_month)
    return pd.Series(np.asarray(start + shift, dtype="datetime64[ns]"), index=ts.index)


def periods(freq: Frequency, start, end, boundary: Boundary | None = None) -> pd.DatetimeIndex:
    """Every period start from the one holding ``start`` to the one holding ``end``."""
    first, last = align(freq, pd.Series([pd.Timestamp(start), pd.Timestamp(end)]), boundary)
    if freq.fixed_ns:
        count = (last.value - first.value) // freq.fixed_ns + 1
        return pd.DatetimeIndex(
            (first.value + freq.fixed_ns * np.arange(count, dtype="int64")).astype("datetime64[ns]")
        )
    b = boundary or Boundary()
    step = 12 if freq.unit == "Y" else freq.n
    months = np.arange(first.year * 12 + first.month - 1, last.year * 12 + last.month, step)
    return pd.DatetimeIndex(month_starts(pd.Series(months), b.day_of_month) + pd.Timedelta(hours=b.hour))


def shift(freq: Frequency, ts, steps: int, boundary: Boundary | None = None) -> pd.Timestamp:
    """The period start ``steps`` periods after the one holding ``ts``."""
    start = align(freq, pd.Series([pd.Timestamp(ts)]), boundary).iloc[0]
    if freq.fixed_ns:
        return start + pd.Timedelta(steps * freq.fixed_ns, "ns")
    return start + pd.DateOffset(months=(12 if freq.unit == "Y" else freq.n) * steps)


def month_starts(months: pd.Series, day_of_month: int = 1) -> pd.Series:
    """Timestamps for month indexes (year * 12 + month - 1) on a given day of the month."""
    months = pd.Series(months).astype("int64")
    frame = pd.DataFrame({"year": months // 12, "month": months % 12 + 1, "day": day_of_month})
    return pd.to_datetime(frame).astype("datetime64[ns]")


def finest_spacing(timestamps: pd.Series, series_codes: np.ndarray, min_gaps: int = 10) -> pd.Timedelta | None:
    """The shortest gap between two observations of one series: the data's resolution.

    None when fewer than ``min_gaps`` gaps are seen (too little data to say).
    """
    ts = timestamps.to_numpy("datetime64[ns]").astype("int64")
    order = np.lexsort((ts, series_codes))
    ts, codes = ts[order], series_codes[order]
    gaps = np.diff(ts)[np.diff(codes) == 0]
    gaps = gaps[gaps > 0]
    if gaps.size < min_gaps:
        return None
    return pd.Timedelta(int(gaps.min()), "ns")
