"""The training data of a forecast: every series' target values in one contiguous array.

A snapshot holds millions of rows; the algorithms want one numpy array per series. Instead of a
dict of Series, ``ForecastData`` keeps all values in one float64 array with an offset per series,
so that handing a chunk of series to a worker process is a few slices, and a backtest's view of
the past (``until``) is the same arrays with an earlier end: nothing is copied.

Every series sits on the dataset's regular grid of periods, from its first observation to the
dataset's end (the snapshot builder guarantees this). Related series run ``horizon`` periods past
that end, so their future values line up with the forecast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines import domains as d
from pipelines.frequency import Boundary, Frequency
from pipelines.preparation.importing import calendar
from pipelines.preparation.importing.forecast import series_codes

# Season length by frequency unit, for seasonal naive, ETS, Theta and MASE: the cycle that
# dominates data at that resolution (the day for hours, the week for days, the year above).
_CYCLE = {"min": 60, "H": 24, "D": 7, "W": 52, "M": 12, "Y": 1}


def season_length(freq: Frequency) -> int:
    """Periods per season: 24 hourly, 7 daily, 52 weekly, 12 monthly, 1 yearly (divided by the multiple)."""
    cycle = _CYCLE[freq.unit]
    if freq.unit == "Y" or cycle % freq.n:
        return 1
    return cycle // freq.n


@dataclass(frozen=True, eq=False)
class RelatedData:
    """Related features on the target's period grid extended by the horizon (future values known).

    ``index`` maps each target series to its related series (-1 when it has none): related keys
    may be coarser than the target's, e.g. a price per item shared by every store.
    """

    features: list[str]
    values: np.ndarray  # (cells, features) float64
    offsets: np.ndarray  # (related series + 1,) int64
    starts: np.ndarray  # position of each related series' first period on the grid
    index: np.ndarray  # (target series,) int64


@dataclass(frozen=True, eq=False)
class ForecastData:
    """Target series on one period grid, plus what an algorithm may use beside them."""

    keys: pd.DataFrame  # one row per series: the series keys
    values: np.ndarray  # all series' values back to back, float64 (NaN only where filling left a gap)
    observed: np.ndarray  # bool, same shape: False where the value was filled in on import
    starts: np.ndarray  # position in ``periods`` of each series' first period
    periods: pd.DatetimeIndex  # the dataset's period starts, first to last
    freq: Frequency
    horizon: int
    boundary: Boundary = dataclasses.field(default_factory=Boundary)
    target: str = "target_value"
    related: RelatedData | None = None
    item_metadata: pd.DataFrame | None = None
    non_negative: bool = False  # the target counts something: forecasts are clipped at zero
    end: int = -1  # how many periods of the grid are visible (-1: all); a backtest sees fewer
    offsets: np.ndarray = dataclasses.field(init=False, repr=False)  # where each series starts in ``values``

    def __post_init__(self):
        if self.end < 0:
            object.__setattr__(self, "end", len(self.periods))
        lengths = len(self.periods) - self.starts
        object.__setattr__(self, "offsets", np.concatenate(([0], np.cumsum(lengths))).astype("int64"))

    # -- shape -----------------------------------------------------------------------------

    @property
    def n_series(self) -> int:
        return len(self.starts)

    @property
    def series_keys(self) -> list[str]:
        return list(self.keys.columns)

    @property
    def season_length(self) -> int:
        return season_length(self.freq)

    @property
    def lengths(self) -> np.ndarray:
        """Visible periods per series (0 for a series that starts after the visible end)."""
        return np.maximum(self.end - self.starts, 0)

    def series(self, i: int) -> np.ndarray:
        """Series ``i``'s visible values (a view, not a copy)."""
        begin = self.offsets[i]
        return self.values[begin : begin + max(self.end - self.starts[i], 0)]

    def observed_mask(self, i: int) -> np.ndarray:
        begin = self.offsets[i]
        return self.observed[begin : begin + max(self.end - self.starts[i], 0)]

    def window(self, i: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Values and observed flags of series ``i`` at grid positions [start, stop), NaN/False outside it.

        Reads past the visible end: a backtest takes its actuals from here.
        """
        out = np.full(stop - start, np.nan)
        seen = np.zeros(stop - start, dtype=bool)
        first = max(start, self.starts[i])
        last = min(stop, len(self.periods))
        if last > first:
            src = self.offsets[i] + first - self.starts[i]
            out[first - start : last - start] = self.values[src : src + last - first]
            seen[first - start : last - start] = self.observed[src : src + last - first]
        return out, seen

    # -- time ------------------------------------------------------------------------------

    @property
    def last_period(self) -> pd.Timestamp:
        return self.periods[self.end - 1]

    def future_periods(self, steps: int | None = None) -> pd.DatetimeIndex:
        """The period starts of the forecast horizon: the ``steps`` periods after the visible end."""
        steps = steps or self.horizon
        first = calendar.shift(self.freq, self.last_period, 1, self.boundary)
        last = calendar.shift(self.freq, self.last_period, steps, self.boundary)
        return calendar.periods(self.freq, first, last, self.boundary)

    def until(self, end: int) -> ForecastData:
        """The same data as seen at grid position ``end`` (exclusive): what a backtest window trains on."""
        if not 0 < end <= len(self.periods):
            raise ValueError(f"end {end} is outside the grid of {len(self.periods)} periods")
        return dataclasses.replace(self, end=end)

    # -- related features ------------------------------------------------------------------

    def related_for(self, i: int) -> np.ndarray:
        """Series ``i``'s related features from its first period to the horizon's end, NaN where unknown.

        Rows line up with ``series(i)`` followed by the ``horizon`` future periods.
        """
        rel = self.related
        if rel is None:
            return np.empty((self.lengths[i] + self.horizon, 0))
        start, stop = self.starts[i], self.end + self.horizon
        out = np.full((max(stop - start, 0), len(rel.features)), np.nan)
        r = rel.index[i]
        if r >= 0:
            r_len = rel.offsets[r + 1] - rel.offsets[r]
            first, last = max(start, rel.starts[r]), min(stop, rel.starts[r] + r_len)
            if last > first:
                src = rel.offsets[r] + first - rel.starts[r]
                out[first - start : last - start] = rel.values[src : src + last - first]
        return out

    # -- building --------------------------------------------------------------------------

    @classmethod
    def from_frame(
        cls,
        target: pd.DataFrame,
        *,
        keys: list[str],
        target_column: str,
        freq: Frequency | str,
        horizon: int,
        boundary: Boundary | None = None,
        related: pd.DataFrame | None = None,
        item_metadata: pd.DataFrame | None = None,
        non_negative: bool = False,
    ) -> ForecastData:
        """Build from a snapshot-shaped frame: the keys, ``timestamp``, the target and ``filled_by``.

        Rows may come in any order; periods a series lacks inside its span become NaN (unobserved).
        """
        freq = Frequency.parse(freq) if isinstance(freq, str) else freq
        boundary = boundary or Boundary()
        if target.empty:
            raise ValueError("the target time series is empty")
        stamps = calendar.align(freq, target["timestamp"], boundary).to_numpy("datetime64[ns]")
        periods = calendar.periods(freq, stamps.min(), stamps.max(), boundary)
        codes, series_keys = series_codes(target, keys)
        pos = periods.searchsorted(stamps)
        starts = np.full(len(series_keys), len(periods), dtype="int64")
        np.minimum.at(starts, codes, pos)
        lengths = len(periods) - starts
        offsets = np.concatenate(([0], np.cumsum(lengths)))
        slot = offsets[codes] + pos - starts[codes]
        if len(np.unique(slot)) != len(slot):
            raise ValueError("the target has more than one row for a series and period")
        values = np.full(int(lengths.sum()), np.nan)
        values[slot] = target[target_column].to_numpy(dtype="float64", na_value=np.nan)
        observed = np.zeros(len(values), dtype=bool)
        filled = target["filled_by"].isna().to_numpy() if "filled_by" in target else True
        observed[slot] = filled & ~np.isnan(values[slot])
        data = cls(
            keys=series_keys,
            values=values,
            observed=observed,
            starts=starts,
            periods=periods,
            freq=freq,
            horizon=horizon,
            boundary=boundary,
            target=target_column,
            item_metadata=item_metadata,
            non_negative=non_negative,
        )
        if related is not None:
            object.__setattr__(data, "related", _align_related(data, related, keys))
        return data

    @classmethod
    def from_arrays(
        cls,
        series: list[np.ndarray],
        *,
        freq: Frequency | str,
        horizon: int,
        end: str | pd.Timestamp,
        ids: list[str] | None = None,
        key: str = "item_id",
        non_negative: bool = False,
    ) -> ForecastData:
        """Series given as arrays that all end in the period holding ``end`` (benchmarks, tests)."""
        freq = Frequency.parse(freq) if isinstance(freq, str) else freq
        longest = max(len(s) for s in series)
        first = calendar.shift(freq, end, 1 - longest)
        periods = calendar.periods(freq, first, end)
        starts = np.array([longest - len(s) for s in series], dtype="int64")
        values = np.concatenate([np.asarray(s, dtype="float64") for s in series])
        ids = ids or [f"series_{i}" for i in range(len(series))]
        return cls(
            keys=pd.DataFrame({key: pd.Categorical(ids)}),
            values=values,
            observed=~np.isnan(values),
            starts=starts,
            periods=periods,
            freq=freq,
            horizon=horizon,
            non_negative=non_negative,
        )

    @classmethod
    def from_snapshot(cls, folder: str | Path, group) -> ForecastData:
        """Load what ``import_data`` wrote for a forecast dataset group, with its holidays as a feature."""
        folder = Path(folder)
        target = pd.read_parquet(folder / f"{d.TARGET_TIME_SERIES}.parquet")
        related_path = folder / f"{d.RELATED_TIME_SERIES}.parquet"
        meta_path = folder / f"{d.ITEM_METADATA}.parquet"
        data = cls.from_frame(
            target,
            keys=group.series_keys,
            target_column=group.domain_info.target,
            freq=group.freq,
            horizon=group.horizon,
            boundary=group.boundary,
            related=pd.read_parquet(related_path) if related_path.is_file() else None,
            item_metadata=pd.read_parquet(meta_path) if meta_path.is_file() else None,
            non_negative=group.domain_info.non_negative,
        )
        if getattr(group, "holidays_country", None):  # Forecast's holidays supplementary feature
            from pipelines.forecast.holidays import with_holidays

            data = with_holidays(data, group.holidays_country)
        return data


def _align_related(data: ForecastData, related: pd.DataFrame, keys: list[str]) -> RelatedData:
    """Put related rows on the target's grid extended by the horizon and map target series onto them."""
    rel_keys = [k for k in keys if k in related.columns]
    features = [
        c
        for c in related.columns
        if c not in {*rel_keys, "timestamp", "filled_by"} and pd.api.types.is_numeric_dtype(related[c])
    ]
    last = calendar.shift(data.freq, data.periods[-1], data.horizon, data.boundary)
    grid = calendar.periods(data.freq, data.periods[0], last, data.boundary)
    stamps = calendar.align(data.freq, related["timestamp"], data.boundary).to_numpy("datetime64[ns]")
    inside = (stamps >= grid[0].to_datetime64()) & (stamps <= grid[-1].to_datetime64())
    related, stamps = related[inside], stamps[inside]
    codes, rel_series = series_codes(related, rel_keys)
    pos = grid.searchsorted(stamps)
    starts = np.full(len(rel_series), len(grid), dtype="int64")
    np.minimum.at(starts, codes, pos)
    lengths = len(grid) - starts
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype("int64")
    values = np.full((int(lengths.sum()), len(features)), np.nan)
    values[offsets[codes] + pos - starts[codes]] = related[features].to_numpy(dtype="float64", na_value=np.nan)
    if rel_keys:
        lookup = pd.MultiIndex.from_frame(rel_series[rel_keys].astype(str))
        index = lookup.get_indexer(pd.MultiIndex.from_frame(data.keys[rel_keys].astype(str)))
    else:  # one related series for every target series
        index = np.zeros(data.n_series, dtype="int64")
    return RelatedData(features, values, offsets, starts, np.asarray(index, dtype="int64"))
