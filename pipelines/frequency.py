"""Forecast frequencies and time alignment boundaries.

Amazon Forecast accepts 1-59min, 1-23H, 1-6D, 1-4W, 1-11M and 1Y, and aligns finer data to
the start of each period: the top of the minute or hour, hour 0 of the day, the most recent
Monday, the first of the month, January 1. An auto predictor may move that boundary (the
hour of the day, the day of the week or month, the month of the year); so can we.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

UNITS = {"min": 59, "H": 23, "D": 6, "W": 4, "M": 11, "Y": 1}
WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
MONTHS = (
    "JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE",
    "JULY", "AUGUST", "SEPTEMBER", "OCTOBER", "NOVEMBER", "DECEMBER",
)  # fmt: skip
_FIXED_NS = {"min": 60 * 10**9, "H": 3600 * 10**9, "D": 86400 * 10**9, "W": 7 * 86400 * 10**9}
_NOMINAL_DAYS = {"M": (28, 31), "Y": (365, 366)}
_PATTERN = re.compile(r"^(\d*)(min|H|D|W|M|Y)$")
_EPOCH_MONDAY = pd.Timestamp("1970-01-05")  # a Monday, so weekly buckets line up


@dataclass(frozen=True)
class Boundary:
    """Forecast's TimeAlignmentBoundary: where each period starts."""

    month: int = 1  # 1-12, for yearly data
    day_of_month: int = 1  # 1-28, for monthly and yearly data
    day_of_week: int = 0  # 0 = Monday, for weekly data
    hour: int = 0  # 0-23, for daily and coarser data


@dataclass(frozen=True)
class Frequency:
    """A forecast frequency such as ``1D``, ``15min`` or ``3M``."""

    n: int
    unit: str

    @classmethod
    def parse(cls, text: str) -> Frequency:
        match = _PATTERN.match(str(text).strip())
        if not match:
            raise ValueError(
                f"frequency {text!r} is not one of Forecast's: 1-59min, 1-23H, 1-6D, 1-4W, 1-11M, 1Y"
            )
        n = int(match.group(1) or 1)
        unit = match.group(2)
        if not 1 <= n <= UNITS[unit]:
            raise ValueError(f"frequency {text!r}: {unit} takes a multiple from 1 to {UNITS[unit]}")
        return cls(n, unit)

    def __str__(self) -> str:
        return f"{self.n}{self.unit}"

    @property
    def pandas_alias(self) -> str:
        return {"min": "min", "H": "h", "D": "D", "W": "W", "M": "MS", "Y": "YS"}[self.unit]

    def nominal_range(self) -> tuple[pd.Timedelta, pd.Timedelta]:
        """The shortest and longest a period can last (months and years vary)."""
        if self.unit in _FIXED_NS:
            step = pd.Timedelta(self.n * _FIXED_NS[self.unit], "ns")
            return step, step
        low, high = _NOMINAL_DAYS[self.unit]
        return pd.Timedelta(days=low * self.n), pd.Timedelta(days=high * self.n)

    def align(self, ts: pd.Series, boundary: Boundary | None = None) -> pd.Series:
        """The start of the period each timestamp falls in (vectorised)."""
        b = boundary or Boundary()
        values = pd.to_datetime(ts).astype("datetime64[ns]")
        if self.unit in ("min", "H"):
            ns = values.astype("int64")
            step = self.n * _FIXED_NS[self.unit]
            return pd.Series((ns - ns % step).astype("datetime64[ns]"), index=ts.index)
        shift = pd.Timedelta(hours=b.hour)
        t = values - shift
        if self.unit == "D":
            ns = t.astype("int64")
            step = self.n * _FIXED_NS["D"]
            start = (ns - ns % step).astype("datetime64[ns]")
        elif self.unit == "W":
            days = t.dt.floor("D")
            back = (days.dt.weekday - b.day_of_week) % 7
            start = days - pd.to_timedelta(back, unit="D")
            if self.n > 1:
                anchor = _EPOCH_MONDAY + pd.Timedelta(days=b.day_of_week)
                weeks = (start - anchor) // pd.Timedelta(days=7)
                start = start - pd.to_timedelta((weeks % self.n) * 7, unit="D")
        else:
            months = t.dt.year * 12 + t.dt.month - 1
            day_of_month = b.day_of_month
            if self.unit == "Y":
                months = months - (b.month - 1)
                before = (t.dt.day < day_of_month).astype("int64")
                months = months - before
                years = months // 12
                months = years * 12 + (b.month - 1)
            else:
                months = months - (t.dt.day < day_of_month).astype("int64")
                months = months - months % self.n
            start = month_starts(months, day_of_month)
        return pd.Series(np.asarray(start + shift, dtype="datetime64[ns]"), index=ts.index)

    def periods(self, start: pd.Timestamp, end: pd.Timestamp, boundary: Boundary | None = None):
        """Every period start from the one holding ``start`` to the one holding ``end``."""
        first, last = self.align(pd.Series([start, end]), boundary)
        if self.unit in _FIXED_NS:
            step = self.n * _FIXED_NS[self.unit]
            count = (last.value - first.value) // step + 1
            return pd.DatetimeIndex((first.value + step * np.arange(count, dtype="int64")).astype("datetime64[ns]"))
        b = boundary or Boundary()
        step_months = 12 if self.unit == "Y" else self.n
        m0 = first.year * 12 + first.month - 1
        m1 = last.year * 12 + last.month - 1
        months = pd.Series(np.arange(m0, m1 + 1, step_months))
        starts = month_starts(months, b.day_of_month) + pd.Timedelta(hours=b.hour)
        return pd.DatetimeIndex(starts)

    def shift(self, ts: pd.Timestamp, steps: int, boundary: Boundary | None = None) -> pd.Timestamp:
        """The period start ``steps`` periods after the one holding ``ts``."""
        start = self.align(pd.Series([ts]), boundary).iloc[0]
        if self.unit in _FIXED_NS:
            return start + pd.Timedelta(steps * self.n * _FIXED_NS[self.unit], "ns")
        months = (12 if self.unit == "Y" else self.n) * steps
        return start + pd.DateOffset(months=months)


def month_starts(months: pd.Series, day_of_month: int = 1) -> pd.Series:
    """Timestamps for month indexes (year * 12 + month - 1) on a given day of the month."""
    months = pd.Series(months).astype("int64")
    frame = pd.DataFrame({"year": months // 12, "month": months % 12 + 1, "day": day_of_month})
    return pd.to_datetime(frame).astype("datetime64[ns]")


def infer_spacing(timestamps: pd.Series, series_codes: np.ndarray) -> pd.Timedelta | None:
    """The most common gap between consecutive observations of the same series."""
    order = np.lexsort((timestamps.to_numpy("datetime64[ns]").astype("int64"), series_codes))
    ts = timestamps.to_numpy("datetime64[ns]").astype("int64")[order]
    codes = series_codes[order]
    gaps = np.diff(ts)[np.diff(codes) == 0]
    gaps = gaps[gaps > 0]
    if gaps.size == 0:
        return None
    values, counts = np.unique(gaps, return_counts=True)
    return pd.Timedelta(int(values[np.argmax(counts)]), "ns")
