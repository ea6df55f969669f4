"""Seasonal naive: next season repeats the last one. The baseline every other algorithm must beat."""

from __future__ import annotations

import numpy as np

from pipelines.forecast.base import ForecastAlgorithm, fill_gaps, register


@register
class SeasonalNaive(ForecastAlgorithm):
    """Forecast each period with the value one season earlier.

    The spread comes from the series' own seasonal-naive residuals ``y[t] - y[t - m]``: the first
    season ahead takes their empirical quantiles; ``c`` seasons ahead adds ``c`` residuals drawn
    with replacement (a seasonal random walk), so the spread widens as it does in R's ``snaive``.
    Residuals are centred, so the point forecast stays the last season's value (no drift).
    A series shorter than one season falls back to the naive forecast (m = 1).
    """

    name = "SeasonalNaive"
    fits_per_series = False

    def __init__(self, season_length: int | None = None, num_samples: int = 1000, *, n_jobs=1, chunk_size=64, seed=0):
        super().__init__(n_jobs=n_jobs, chunk_size=chunk_size, seed=seed)
        self.season_length = season_length
        self.num_samples = num_samples

    def _forecast_series(self, y, state, chunk, j, levels, rng):
        y = fill_gaps(y)
        h, n = chunk.horizon, len(y)
        m = self.season_length or chunk.season_length
        if n <= m:
            m = 1
        steps = np.arange(h)
        point = y[n - m + steps % m]
        cycles = steps // m + 1
        residuals = y[m:] - y[:-m]
        if residuals.size == 0:
            return point, np.repeat(point[:, None], len(levels), axis=1)
        residuals = residuals - residuals.mean()
        quant = np.empty((h, len(levels)))
        for c in np.unique(cycles):
            rows = cycles == c
            if c == 1:
                spread = np.quantile(residuals, levels)
            else:
                draws = rng.choice(residuals, size=(self.num_samples, c)).sum(axis=1)
                spread = np.quantile(draws, levels)
            quant[rows] = point[rows, None] + spread[None, :]
        return point, quant
