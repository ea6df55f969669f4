"""Amazon Forecast's holidays supplementary feature: a country's public holidays from the ``holidays`` package.

Forecast takes a two-letter country code (``US``, ``DE``, ``IN``; ``UK`` is accepted for ``GB``)
and adds the country's holidays as a feature. Here that is two things:

- ``holiday_dates``: a frame of dates and names over a date range (Prophet's ``holidays`` frame
  for daily and finer data);
- ``holiday_indicator``: one number per period of any frequency, 1 where the period is a holiday
  period. An hour is one when its day is a holiday; a day, week, month or year is one when it
  holds a holiday (its midday lies in the period, so a day that starts at 06:00 is the holiday
  that falls on it, not the one before). ``count=True`` gives the number of holidays instead.

``data_holiday_indicator`` aligns the indicator with a ``ForecastData``'s grid and horizon, the
shape a model's regressors take; ``with_holidays`` adds it to the data as one more related
feature (``holiday_<country>``, known into the future like every related series), which is how a
group's ``holidays_country`` reaches every algorithm that takes regressors (ARIMA, Prophet,
DeepAR+, and the AutoPredictor's candidates among them), in backtests and in the final forecast.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pandas as pd

from pipelines.forecast.data import ForecastData, RelatedData
from pipelines.forecast.regressors import full_grid
from pipelines.frequency import Frequency

HOLIDAY_COLUMNS = ("date", "holiday")


def holiday_dates(country: str, start, end, subdivision: str | None = None) -> pd.DataFrame:
    """The country's holidays from ``start`` to ``end`` (dates, inclusive): columns ``date`` and ``holiday``.

    Observed days (a Sunday holiday moved to Monday) are included as the package gives them.
    Raises ValueError for a country code the package does not know.
    """
    first, last = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    if last < first:
        return pd.DataFrame({"date": pd.DatetimeIndex([], dtype="datetime64[ns]"), "holiday": pd.Series([], dtype=str)})
    table = _calendar(_country_code(country), subdivision, first.year, last.year)
    keep = (table["date"] >= first) & (table["date"] <= last)
    return table[keep].reset_index(drop=True)


@functools.lru_cache(maxsize=64)
def _calendar(country: str, subdivision: str | None, first_year: int, last_year: int) -> pd.DataFrame:
    import holidays

    try:
        days = holidays.country_holidays(country, subdiv=subdivision, years=range(first_year, last_year + 1))
    except NotImplementedError as error:  # the package's way of saying "unknown country or subdivision"
        raise ValueError(f"no holiday calendar for country {country!r} subdivision {subdivision!r}: {error}") from None
    dates = sorted(days.items())
    return pd.DataFrame(
        {
            "date": pd.DatetimeIndex([pd.Timestamp(d) for d, _ in dates], dtype="datetime64[ns]"),
            "holiday": [str(name) for _, name in dates],
        }
    )


def _country_code(country: str) -> str:
    code = str(country).strip().upper()
    if len(code) != 2 or not code.isalpha():
        raise ValueError(f"country {country!r}: give a two-letter country code such as US, DE or IN")
    return code


def period_ends(periods: pd.DatetimeIndex, freq: Frequency) -> pd.DatetimeIndex:
    """Where each period ends (the next one's start), for any grid of period starts."""
    periods = pd.DatetimeIndex(periods)
    if freq.fixed_ns:
        return periods + pd.Timedelta(freq.fixed_ns, "ns")
    return periods + pd.DateOffset(months=12 if freq.unit == "Y" else freq.n)


def holiday_indicator(
    country: str,
    periods: pd.DatetimeIndex,
    freq: Frequency | str,
    *,
    subdivision: str | None = None,
    count: bool = False,
) -> np.ndarray:
    """One float per period (sorted starts): 1.0 for a holiday period, else 0.0; or holidays per period."""
    freq = Frequency.parse(freq) if isinstance(freq, str) else freq
    periods = pd.DatetimeIndex(periods)
    out = np.zeros(len(periods))
    if not len(periods):
        return out
    ends = period_ends(periods, freq)
    table = holiday_dates(country, periods[0] - pd.Timedelta(days=1), ends[-1], subdivision)
    if freq.unit in ("min", "H"):  # the period lies inside one day: is that day a holiday?
        days = periods.normalize().to_numpy()
        dates = table["date"].to_numpy()
        out = np.isin(days, dates).astype("float64")
        return out
    middays = (table["date"] + pd.Timedelta(hours=12)).to_numpy()
    slot = periods.to_numpy().searchsorted(middays, side="right") - 1
    inside = (slot >= 0) & (middays < ends.to_numpy()[np.maximum(slot, 0)])
    np.add.at(out, slot[inside], 1.0)
    return out if count else (out > 0).astype("float64")


def data_holiday_indicator(
    data: ForecastData, country: str, *, subdivision: str | None = None, count: bool = False
) -> np.ndarray:
    """``holiday_indicator`` for every grid period of ``data`` and its horizon (``len(periods) + horizon``)."""
    return holiday_indicator(country, full_grid(data), data.freq, subdivision=subdivision, count=count)


def with_holidays(data: ForecastData, country: str, *, subdivision: str | None = None) -> ForecastData:
    """``data`` with the country's holiday indicator as a related feature of every series.

    Each related series gets the column on its own periods; target series without a related
    series share a new one that holds the indicator alone.
    """
    indicator = data_holiday_indicator(data, country, subdivision=subdivision)
    name = f"holiday_{_country_code(country)}"
    n = data.n_series
    rel = data.related
    if rel is None:
        related = RelatedData(
            [name],
            indicator[:, None],
            np.array([0, len(indicator)], dtype="int64"),
            np.array([0], dtype="int64"),
            np.zeros(n, dtype="int64"),
        )
        return dataclasses.replace(data, related=related)
    lengths = np.diff(rel.offsets)
    positions = np.concatenate([start + np.arange(length) for start, length in zip(rel.starts, lengths, strict=True)])
    values = np.hstack([rel.values, indicator[positions.astype("int64")][:, None]])
    offsets, starts, index = rel.offsets, rel.starts, rel.index.copy()
    if (index < 0).any():  # series without related data still get the holidays
        alone = np.full((len(indicator), values.shape[1]), np.nan)
        alone[:, -1] = indicator
        values = np.vstack([values, alone])
        offsets = np.append(offsets, offsets[-1] + len(indicator))
        starts = np.append(starts, 0)
        index[index < 0] = len(lengths)
    related = RelatedData([*rel.features, name], values, offsets, starts, index)
    return dataclasses.replace(data, related=related)
