"""Forecast frequencies and time alignment boundaries.

Amazon Forecast accepts 1-59min, 1-23H, 1-6D, 1-4W, 1-11M and 1Y, and aligns finer data to
the start of each period: the top of the minute or hour, hour 0 of the day, the most recent
Monday, the first of the month, January 1. An auto predictor may move that boundary (the
hour of the day, the day of the week or month, the month of the year); so can we.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

UNITS = {"min": 59, "H": 23, "D": 6, "W": 4, "M": 11, "Y": 1}
WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
MONTHS = (
    "JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE",
    "JULY", "AUGUST", "SEPTEMBER", "OCTOBER", "NOVEMBER", "DECEMBER",
)  # fmt: skip
FIXED_SECONDS = {"min": 60, "H": 3600, "D": 86400, "W": 7 * 86400}
_NOMINAL_DAYS = {"M": (28, 31), "Y": (365, 366)}
_PATTERN = re.compile(r"^(\d*)(min|H|D|W|M|Y)$")


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
            raise ValueError(f"frequency {text!r} is not one of Forecast's: 1-59min, 1-23H, 1-6D, 1-4W, 1-11M, 1Y")
        n = int(match.group(1) or 1)
        unit = match.group(2)
        if not 1 <= n <= UNITS[unit]:
            raise ValueError(f"frequency {text!r}: {unit} takes a multiple from 1 to {UNITS[unit]}")
        return cls(n, unit)

    def __str__(self) -> str:
        return f"{self.n}{self.unit}"

    @property
    def fixed_ns(self) -> int | None:
        """The length of a period in nanoseconds, or None for months and years."""
        return self.n * FIXED_SECONDS[self.unit] * 10**9 if self.unit in FIXED_SECONDS else None

    def nominal_range(self) -> tuple[timedelta, timedelta]:
        """The shortest and longest a period can last (months and years vary)."""
        if self.unit in FIXED_SECONDS:
            step = timedelta(seconds=self.n * FIXED_SECONDS[self.unit])
            return step, step
        low, high = _NOMINAL_DAYS[self.unit]
        return timedelta(days=low * self.n), timedelta(days=high * self.n)
