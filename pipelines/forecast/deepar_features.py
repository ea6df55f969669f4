"""What DeepAR+ reads: lags and time features by frequency, item metadata codes, and the panel of windows.

All numpy; the network (deepar_network.py) only ever sees the arrays built here. The panel
lays every series out in one flat array, each with ``pad`` empty periods before its first value
and ``horizon`` after its last, so that any training window (context, prediction range and the
lags before them) is one fancy-indexing gather, as ``ForecastData`` does for the series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.forecast.data import ForecastData
from pipelines.preparation.importing import calendar

# Lags for a multiple of 1 of each unit: the recent periods, then the cycles (hour, day, week,
# year) that data at that resolution shows. A multiple n divides them; lags longer than the
# longest history are dropped when the model is fitted.
LAGS = {
    "min": (*range(1, 11), 15, 30, 60, 120, 1440),
    "H": (*range(1, 8), 12, 24, 48, 72, 168),
    "D": (*range(1, 8), 14, 21, 28, 364),
    "W": (1, 2, 3, 4, 8, 12, 13, 26, 52),
    "M": (1, 2, 3, 4, 5, 6, 11, 12, 13, 24, 36),
    "Y": (1, 2, 3, 4, 5),
}


def lags_for(freq, longest: int) -> np.ndarray:
    """The target lags fed to the network for data of this frequency, in periods."""
    lags = sorted({max(1, round(lag / freq.n)) for lag in LAGS[freq.unit]})
    kept = [lag for lag in lags if lag <= max(longest, 1)]
    return np.array(kept or [1], dtype="int64")


def time_features(freq, stamps: pd.DatetimeIndex) -> np.ndarray:
    """GluonTS' time features for the frequency, each scaled to [-0.5, 0.5]: (periods, features)."""
    unit = freq.unit
    columns = []
    if unit == "min":
        columns.append(stamps.minute.to_numpy() / 59.0)
    if unit in ("min", "H"):
        columns.append(stamps.hour.to_numpy() / 23.0)
    if unit in ("min", "H", "D"):
        columns.append(stamps.dayofweek.to_numpy() / 6.0)
    if unit in ("H", "D"):
        columns.append((stamps.day.to_numpy() - 1) / 30.0)
    if unit == "D":
        columns.append((stamps.dayofyear.to_numpy() - 1) / 365.0)
    if unit == "W":
        columns.append((stamps.isocalendar().week.to_numpy(dtype="float64") - 1) / 52.0)
    if unit in ("W", "M"):
        columns.append((stamps.month.to_numpy() - 1) / 11.0)
    if not columns:  # yearly data: the age feature alone says where a period sits
        return np.zeros((len(stamps), 0), dtype="float32")
    return (np.column_stack(columns) - 0.5).astype("float32")


@dataclass
class Metadata:
    """Item metadata as codes: categorical fields (0 = unknown) and standardised numeric ones."""

    identifier: str
    items: pd.Index  # item ids (str) in the metadata's order
    fields: list[str]
    categories: list[pd.Index]
    codes: np.ndarray  # (items, fields) int64
    numeric: list[str]
    reals: np.ndarray  # (items, numeric fields) float32, 0 where missing

    @classmethod
    def encode(cls, meta: pd.DataFrame | None, series_keys: list[str]) -> Metadata | None:
        """None when there is no metadata or it shares no column with the series keys."""
        if meta is None or meta.empty:
            return None
        identifier = next((k for k in series_keys if k in meta.columns), None)
        if identifier is None:
            return None
        meta = meta.drop_duplicates(identifier, keep="last")
        rest = [c for c in meta.columns if c != identifier]
        types = pd.api.types
        numeric = [c for c in rest if types.is_numeric_dtype(meta[c]) and not types.is_bool_dtype(meta[c])]
        fields = [c for c in rest if c not in numeric]
        categories, codes = [], np.zeros((len(meta), len(fields)), dtype="int64")
        for j, name in enumerate(fields):
            column = meta[name].astype("string")
            index = pd.Index(sorted(column.dropna().unique()))
            categories.append(index)
            codes[:, j] = index.get_indexer(column.fillna("")) + 1  # -1 (missing) becomes 0 (unknown)
        reals = meta[numeric].to_numpy(dtype="float64", na_value=np.nan) if numeric else np.zeros((len(meta), 0))
        if numeric:
            mean, std = np.nanmean(reals, axis=0), np.nanstd(reals, axis=0)
            reals = np.nan_to_num((reals - mean) / np.where(std > 0, std, 1.0))
        return cls(
            identifier=identifier,
            items=pd.Index(meta[identifier].astype(str)),
            fields=fields,
            categories=categories,
            codes=codes,
            numeric=numeric,
            reals=reals.astype("float32"),
        )

    def lookup(self, item_ids: pd.Series | pd.Index) -> tuple[np.ndarray, np.ndarray]:
        """Codes and reals for the given item ids; zeros (unknown) for items the metadata lacks."""
        where = self.items.get_indexer(pd.Index(np.asarray(item_ids).astype(str)))
        known = where >= 0
        codes = np.zeros((len(where), len(self.fields)), dtype="int64")
        reals = np.zeros((len(where), len(self.numeric)), dtype="float32")
        codes[known], reals[known] = self.codes[where[known]], self.reals[where[known]]
        return codes, reals


def prior_log_scales(log_scales: np.ndarray, codes: np.ndarray, warm: np.ndarray) -> np.ndarray:
    """A guess of each row's log scale from its metadata alone: what a window without context uses.

    The mean, over the categorical fields, of the log scales of the warm rows that share the
    row's value of that field, the row itself left out (so that training sees what a cold-start
    item will get); rows with no such neighbour get the mean over all warm rows.
    """
    overall = float(log_scales[warm].mean()) if warm.any() else 0.0
    total, count = np.zeros(len(codes)), np.zeros(len(codes))
    for j in range(codes.shape[1]):
        column = codes[:, j]
        size = int(column.max()) + 1 if len(column) else 1
        sums = np.bincount(column[warm], log_scales[warm], minlength=size)
        counts = np.bincount(column[warm], minlength=size).astype("float64")
        own_sum, own_count = np.where(warm, log_scales, 0.0), warm.astype("float64")
        others = counts[column] - own_count
        usable = (column > 0) & (others > 0)
        total += np.where(usable, (sums[column] - own_sum) / np.maximum(others, 1), 0.0)
        count += usable
    return np.where(count > 0, total / np.maximum(count, 1), overall)


@dataclass
class Panel:
    """Rows (warm series, then cold-start items) on one flat array, with their covariates.

    Grid position ``g`` of row ``r`` is at ``base[r] + g - starts[r]`` in ``values`` and
    ``related``, for ``starts[r] - pad <= g < end + horizon``; ``time`` is indexed by ``g + pad``.
    """

    values: np.ndarray  # float64, NaN where unknown (padding, gaps, the future)
    related: np.ndarray  # (cells, related features) float32, standardised, 0 where unknown
    base: np.ndarray
    starts: np.ndarray
    time: np.ndarray  # (pad + end + horizon, time features) float32
    pad: int
    end: int
    horizon: int

    @classmethod
    def build(
        cls,
        data: ForecastData,
        ids: np.ndarray,
        cold: int,
        pad: int,
        related_stats: tuple[np.ndarray, np.ndarray] | None,
    ) -> Panel:
        h, end = data.horizon, data.end
        lengths = np.r_[data.lengths[ids], np.zeros(cold, dtype="int64")]
        starts = np.r_[data.starts[ids], np.full(cold, end, dtype="int64")]
        block = pad + lengths + h
        base = np.r_[0, np.cumsum(block)[:-1]].astype("int64") + pad
        values = np.full(int(block.sum()), np.nan)
        n_related = 0 if data.related is None else len(data.related.features)
        related = np.zeros((len(values), n_related), dtype="float32")
        for row, i in enumerate(ids):
            values[base[row] : base[row] + lengths[row]] = data.series(i)
            if n_related:
                mean, std = related_stats
                part = (data.related_for(i) - mean) / std
                related[base[row] : base[row] + lengths[row] + h] = np.nan_to_num(part)
        first = calendar.shift(data.freq, data.periods[0], -pad, data.boundary)
        last = calendar.shift(data.freq, data.last_period, h, data.boundary)
        time = time_features(data.freq, calendar.periods(data.freq, first, last, data.boundary))
        return cls(values, related, base, starts, time, pad, end, h)

    def covariates(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(rows, steps, covariates) at grid positions ``t`` (rows, steps): time features, age, related."""
        since = t - self.starts[rows][:, None]
        age = np.log10(2.0 + np.maximum(since, 0)).astype("float32")[..., None]
        related = self.related[self.base[rows][:, None] + since]
        return np.concatenate([self.time[t + self.pad], age, related], axis=-1)

    def at(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Target values of ``rows`` at grid positions ``t`` (rows, ...)."""
        shape = (-1,) + (1,) * (t.ndim - 1)
        return self.values[self.base[rows].reshape(shape) + t - self.starts[rows].reshape(shape)]


def related_stats(data: ForecastData, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Each related feature's mean and spread over the visible history, for standardising it."""
    if data.related is None or not data.related.features:
        return None
    k = len(data.related.features)
    total, squares, count = np.zeros(k), np.zeros(k), np.zeros(k)
    for i in ids:
        part = data.related_for(i)[: data.lengths[i]]
        seen = ~np.isnan(part)
        total += np.where(seen, part, 0).sum(axis=0)
        squares += np.where(seen, part**2, 0).sum(axis=0)
        count += seen.sum(axis=0)
    mean = total / np.maximum(count, 1)
    std = np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean**2, 0))
    return mean, np.where(std > 0, std, 1.0)
