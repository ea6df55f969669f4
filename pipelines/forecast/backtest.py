"""Backtests: how a predictor would have done on the recent past, as Amazon Forecast measures it.

Forecast splits the data at ``BackTestWindowOffset`` periods before its end, trains on what comes
before, forecasts the horizon and scores it against what really happened. With several windows
(``NumberOfBacktestWindows``, 1 to 5) the splits step back by the offset each time: window k's
forecast starts ``k * offset`` periods before the end. The offset is at least the horizon (so the
forecast is scored on known values) and less than half the dataset's length.

The point metrics (WAPE, RMSE, MAPE, MASE) score the mean forecast, Forecast's rule since 2020,
whether or not ``mean`` is one of the forecast types: every algorithm forecasts the mean, and the
backtest export always holds it. wQL scores the quantiles asked for.

Only observed values are scored: a value that filling made up on import (``filled_by`` set) is
left out of every metric, since it says nothing about what was sold. The predictor's metrics are
the windows' averages, as Forecast's ``Summary`` evaluation is.

Items are also grouped by velocity, as a predictor's metrics are read by fast, medium and slow
movers: an item's velocity in a window is its mean observed demand over that window's training
data, and the items of a window are split at the terciles of those means (by default) into
``high``, ``medium`` and ``low``; each bucket gets the window metrics over its items alone.
(Forecast's documentation names no cut-points; terciles split the items into equal thirds, and
``velocity_quantiles`` changes them.) Items whose training data holds no observed value have no
velocity and are in no bucket.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipelines.forecast import metrics
from pipelines.forecast.base import DEFAULT_QUANTILES, ForecastAlgorithm, column_name, forecast_types
from pipelines.forecast.data import ForecastData

MAX_WINDOWS = 5
VELOCITY_BUCKETS = ("high", "medium", "low")
DEFAULT_VELOCITY_QUANTILES = (1 / 3, 2 / 3)


@dataclass
class BacktestResult:
    summary: dict  # the predictor's metrics: each metric averaged over the windows
    windows: pd.DataFrame  # one row per window: its span, item count and metrics
    items: pd.DataFrame  # one row per item and window: the item's metrics
    export: pd.DataFrame  # Forecast's backtest export: keys, timestamp, actual, forecasts, window
    timings: dict = field(default_factory=dict)
    # One row per window and velocity bucket: its span, item count, demand range and metrics.
    velocity: pd.DataFrame = field(default_factory=pd.DataFrame)
    # One row per item and window: the item's mean training demand and its bucket.
    item_velocity: pd.DataFrame = field(default_factory=pd.DataFrame)

    def velocity_summary(self) -> pd.DataFrame:
        """One row per velocity bucket (high, medium, low): each metric averaged over the windows,
        as ``summary`` averages the windows, and the mean item count per window."""
        if self.velocity.empty:
            return pd.DataFrame(columns=["velocity", "ItemCount"])
        skip = {"backtest_window", "TestWindowStart", "TestWindowEnd", "velocity"}
        numeric = [c for c in self.velocity.columns if c not in skip]
        grouped = self.velocity.groupby("velocity", sort=False)[numeric].mean()
        order = [b for b in VELOCITY_BUCKETS if b in grouped.index]
        return grouped.loc[order].reset_index()


def velocity_buckets(mean_demand, quantiles: Sequence[float] = DEFAULT_VELOCITY_QUANTILES) -> np.ndarray:
    """Each item's velocity bucket from its mean demand: ``low`` up to the first quantile of the items'
    means, ``high`` above the second, ``medium`` between; None where the mean is NaN (no history).

    Ties stay together: items with the same mean demand always share a bucket.
    """
    low_q, high_q = quantiles
    if not 0 < low_q < high_q < 1:
        raise ValueError(f"velocity quantiles {tuple(quantiles)} must satisfy 0 < low < high < 1")
    demand = np.asarray(mean_demand, dtype="float64")
    known = ~np.isnan(demand)
    labels = np.full(demand.shape, None, dtype=object)
    if not known.any():
        return labels
    low_cut, high_cut = np.quantile(demand[known], [low_q, high_q])
    labels[known] = np.where(demand[known] > high_cut, "high", np.where(demand[known] <= low_cut, "low", "medium"))
    return labels


def window_starts(n_periods: int, horizon: int, windows: int = 1, offset: int | None = None) -> list[int]:
    """Grid positions where each window's forecast starts, oldest first."""
    offset = horizon if offset is None else offset
    if not 1 <= windows <= MAX_WINDOWS:
        raise ValueError(f"NumberOfBacktestWindows {windows}: Forecast takes 1 to {MAX_WINDOWS}")
    if offset < horizon:
        raise ValueError(f"BackTestWindowOffset {offset} is shorter than the forecast horizon {horizon}")
    if offset >= n_periods / 2:
        raise ValueError(f"BackTestWindowOffset {offset} must be less than half the dataset's {n_periods} periods")
    if windows * offset >= n_periods:
        raise ValueError(f"{windows} windows of offset {offset} leave no training data in {n_periods} periods")
    return [n_periods - k * offset for k in range(windows, 0, -1)]


@dataclass
class WindowForecast:
    """One backtest window's forecasts: the series (ids into the data) and their mean and quantiles."""

    number: int
    start: int  # the grid position the window's forecast starts at
    ids: np.ndarray
    mean: np.ndarray  # (n, h)
    quant: np.ndarray  # (n, h, levels), ascending levels
    seconds: float = 0.0

    @classmethod
    def merged(cls, parts: Sequence[WindowForecast]) -> WindowForecast:
        """The window's forecasts of every shard together, in series order (what one fit of all gives)."""
        ids = np.concatenate([p.ids for p in parts])
        order = np.argsort(ids, kind="stable")
        return cls(parts[0].number, parts[0].start, ids[order], np.concatenate([p.mean for p in parts])[order],
                   np.concatenate([p.quant for p in parts])[order], max(p.seconds for p in parts))  # fmt: skip


def predict_windows(
    algorithm: ForecastAlgorithm,
    data: ForecastData,
    windows: int = 1,
    offset: int | None = None,
    quantiles: Sequence[float | str] = DEFAULT_QUANTILES,
    series: np.ndarray | None = None,
    refit: bool = True,
) -> list[WindowForecast]:
    """Fit a fresh copy of ``algorithm`` per window (on ``series`` alone, if given) and forecast it.

    ``refit=False``: a model that forecasts from a later history without being refitted
    (``rolls_forward``: the global networks) is fitted once, before the oldest window, and each
    window is forecast from its own history with that model (rolling origin without refitting: one
    training instead of one per window); other models are still fitted per window. The network
    forecasts the series it was trained on: a series whose history starts after the oldest window's
    training end is not in its later windows (the AutoPredictor does not let a network serve such
    series anyway).
    """
    types = forecast_types(quantiles)
    found, fitted = [], None
    for number, start in enumerate(window_starts(data.end, data.horizon, windows, offset), 1):
        began = time.perf_counter()
        if fitted is not None:
            model = fitted.with_data(data.until(start))
        else:
            model = algorithm.clone()
            model = model.fit(data.until(start)) if series is None else model.fit(data.until(start), series)
            if not refit and model.rolls_forward:
                fitted = model
        ids, mean, quant, _ = model.predict_arrays(types)
        found.append(WindowForecast(number, start, ids, mean, quant, round(time.perf_counter() - began, 3)))
    return found


def backtest(
    algorithm: ForecastAlgorithm,
    data: ForecastData,
    windows: int = 1,
    offset: int | None = None,
    quantiles: Sequence[float | str] = DEFAULT_QUANTILES,
    velocity_quantiles: Sequence[float] = DEFAULT_VELOCITY_QUANTILES,
    refit: bool = True,
) -> BacktestResult:
    """Fit a fresh copy of ``algorithm`` per window (once, where ``refit`` is False and the model
    rolls forward; see ``predict_windows``) and score its forecasts against the actuals."""
    velocity_buckets([], velocity_quantiles)  # bad cut-points fail before any model is fitted
    predicted = predict_windows(algorithm, data, windows, offset, quantiles, refit=refit)
    return score(data, predicted, quantiles, offset, velocity_quantiles)


def score(
    data: ForecastData,
    predicted: Sequence[WindowForecast],
    quantiles: Sequence[float | str] = DEFAULT_QUANTILES,
    offset: int | None = None,
    velocity_quantiles: Sequence[float] = DEFAULT_VELOCITY_QUANTILES,
) -> BacktestResult:
    """The backtest's metrics, per window, item and velocity bucket, and Forecast's export, from the
    windows' forecasts (of one fit, or of every shard merged) against the actuals in ``data``."""
    types = forecast_types(quantiles)
    parts = {"windows": [], "items": [], "export": [], "velocity": [], "item_velocity": []}
    for w in predicted:
        for name, rows in _score_window(data, w.number, w.start, w.ids, w.mean, w.quant, types,
                                        velocity_quantiles).items():  # fmt: skip
            parts[name].extend(rows)
    windows_frame = pd.DataFrame(parts["windows"])
    skip = ("backtest_window", "TestWindowStart", "TestWindowEnd", "ItemCount")
    metric_names = [c for c in windows_frame.columns if c not in skip]
    summary = {name: float(windows_frame[name].mean()) for name in metric_names}
    summary.update(
        ForecastType="mean",
        NumberOfBacktestWindows=len(predicted),
        BackTestWindowOffset=data.horizon if offset is None else offset,
    )
    return BacktestResult(
        summary=summary,
        windows=windows_frame,
        items=pd.concat(parts["items"], ignore_index=True),
        export=pd.concat(parts["export"], ignore_index=True),
        timings={w.number: w.seconds for w in predicted},
        velocity=pd.DataFrame(parts["velocity"]),
        item_velocity=pd.concat(parts["item_velocity"], ignore_index=True),
    )


def _score_window(data, number, start, ids, mean, quant, types, velocity_quantiles) -> dict[str, list]:
    """One window's rows: its metrics, each velocity bucket's, each item's, and the export."""
    h = data.horizon
    train = data.until(start)
    levels = sorted(t for t in types if t != "mean")
    exported = types if "mean" in types else [*types, "mean"]  # the point metrics' forecast, always
    actual = np.full((len(ids), h), np.nan)
    for row, i in enumerate(ids):
        values, seen = data.window(i, start, start + h)
        actual[row] = np.where(seen, values, np.nan)
    scales = np.array([_scale(train, i) for i in ids])
    by_level = {tau: quant[:, :, j] for j, tau in enumerate(levels)}
    scored = ~np.isnan(actual).all(axis=1)
    span = data.periods[start : start + h]
    where = {"backtest_window": number, "TestWindowStart": span[0], "TestWindowEnd": span[-1]}

    def metrics_of(members: np.ndarray) -> dict:
        return metrics.summary_metrics(actual[members], mean[members], _rows(by_level, members), scales[members])

    out = {"windows": [{**where, "ItemCount": int(scored.sum()), **metrics_of(scored)}], "velocity": []}
    demand = np.array([_mean_demand(train, i) for i in ids])
    buckets = velocity_buckets(demand, velocity_quantiles)
    for bucket in VELOCITY_BUCKETS:
        members = scored & (buckets == bucket)
        if members.any():
            span_of = {"MinMeanDemand": float(demand[members].min()), "MaxMeanDemand": float(demand[members].max())}
            count = {"velocity": bucket, "ItemCount": int(members.sum())}
            out["velocity"].append({**where, **count, **span_of, **metrics_of(members)})
    keys = data.keys.iloc[ids].reset_index(drop=True)
    out["item_velocity"] = [keys.assign(backtest_window=number, mean_demand=demand, velocity=buckets)]
    per_item = metrics.item_metrics(actual, mean, by_level, scales)
    out["items"] = [keys.assign(backtest_window=number, **per_item)[scored].reset_index(drop=True)]
    export = data.keys.iloc[np.repeat(ids, h)].reset_index(drop=True)
    export["timestamp"] = np.tile(span.to_numpy(), len(ids))
    export[data.target] = actual.reshape(-1)
    for t in exported:
        export[column_name(t)] = (mean if t == "mean" else quant[:, :, levels.index(t)]).reshape(-1)
    export["backtest_window"] = number
    export["backtestwindow_start_time"] = span[0]
    export["backtestwindow_end_time"] = span[-1]
    out["export"] = [export]
    return out


def _mean_demand(train: ForecastData, i: int) -> float:
    """An item's velocity: its mean observed demand over the training data (NaN when none was observed)."""
    values = train.series(i)[train.observed_mask(i)]
    return float(values.mean()) if values.size else float("nan")


def _scale(train: ForecastData, i: int) -> float:
    """MASE's scale for one item: its in-sample seasonal-naive error over observed values."""
    values = np.where(train.observed_mask(i), train.series(i), np.nan)
    return metrics.seasonal_error(values, train.season_length)


def _rows(by_level: dict, keep: np.ndarray) -> dict:
    return {tau: q[keep] for tau, q in by_level.items()}
