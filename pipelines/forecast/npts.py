"""NPTS: Amazon Forecast's Non-Parametric Time Series forecaster (GluonTS's ``NPTSPredictor``).

Each future value is a past value picked at random: with the exponential kernel, the value at
time t is picked for time T with probability proportional to ``exp(-lambda * |T - t| / span)``
(``lambda`` is ``exp_kernel_weights``; ``span`` the context plus horizon, because GluonTS scales
the time index to [-0.5, 0.5] before the kernel sees it, so 1.0 makes the oldest value e times
less likely than the newest); with the uniform kernel every past value is as likely (the
climatological forecaster). Sampling runs step by step and a path's earlier samples join its
candidates, so paths keep their own level. The forecasts stay inside the observed values, which
is why NPTS suits intermittent, bursty series.

The seasonal variants add Forecast's seasonal feature (minute of hour, hour of day, day of week,
day of month for weekly data, month of year) scaled by ``feature_scale``, which in practice
restricts sampling to past values at the same season position, recent seasons weighted more.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.forecast.base import ForecastAlgorithm, from_samples, register
from pipelines.forecast.data import ForecastData
from pipelines.forecast.hyperparameters import NPTSLimits
from pipelines.preparation.importing import calendar

DEFAULT_CONTEXT = 1100  # GluonTS's cap on the history looked at when none is given


def seasonal_feature(freq, stamps: pd.DatetimeIndex) -> np.ndarray | None:
    """GluonTS's first time feature for the frequency, scaled to [-0.5, 0.5]; None for yearly data."""
    if freq.unit == "min":
        return stamps.minute.to_numpy() / 59.0 - 0.5
    if freq.unit == "H":
        return stamps.hour.to_numpy() / 23.0 - 0.5
    if freq.unit == "D":
        return stamps.dayofweek.to_numpy() / 6.0 - 0.5
    if freq.unit == "W":
        return (stamps.day.to_numpy() - 1) / 30.0 - 0.5
    if freq.unit == "M":
        return (stamps.month.to_numpy() - 1) / 11.0 - 0.5
    return None


@register
class NPTS(ForecastAlgorithm):
    """Non-parametric sampling from the past; ``use_seasonal_model`` picks the seasonal variants."""

    name = "NPTS"
    fits_per_series = False

    hyperparameter_model = NPTSLimits

    def _grid_features(self, data: ForecastData) -> np.ndarray | None:
        if not self.use_seasonal_model:
            return None
        last = calendar.shift(data.freq, data.periods[-1], data.horizon, data.boundary)
        grid = calendar.periods(data.freq, data.periods[0], last, data.boundary)
        return seasonal_feature(data.freq, grid)

    def _forecast_series(self, y, state, chunk, j, levels, rng):
        h, s = chunk.horizon, self.num_samples
        context = min(len(y), self.context_length or DEFAULT_CONTEXT)
        y = y[-context:]
        if np.isnan(y).all():  # GluonTS refuses such a series; an empty forecast says the same
            return np.full(h, np.nan), np.full((h, len(levels)), np.nan)
        span = context + h
        exponential = self.kernel_type == "exponential"
        # Features of each position (history then horizon): the scaled time index and the season.
        features = []
        if exponential:
            features.append(np.arange(span) / max(span - 1, 1) - 0.5)
        if chunk.grid_features is not None:
            first = chunk.end - context
            features.append(self.feature_scale * chunk.grid_features[first : chunk.end + h])
        features = np.array(features).reshape(len(features), span)
        missing = np.r_[np.isnan(y), np.zeros(h, dtype=bool)]
        paths = np.empty((s, span))
        paths[:, :context] = y
        for step in range(h):
            now = context + step
            distance = np.abs(features[:, :now] - features[:, now : now + 1]).sum(axis=0)
            if exponential:
                log_w = -self.exp_kernel_weights * distance
                weights = np.exp(log_w - log_w.max())
            else:
                weights = (distance == 0).astype("float64")
            weights[missing[:now]] = 0.0
            total = weights.sum()
            if total == 0:  # no candidate at this season: any observed value
                weights = (~missing[:now]).astype("float64")
                total = weights.sum()
            picks = rng.choice(now, size=s, p=weights / total)
            paths[:, now] = paths[np.arange(s), picks]
        return from_samples(paths[:, context:], levels)
