"""Theta: the M3 competition's winner, as R's ``forecast::thetaf`` computes it.

The standard theta method (Assimakopoulos and Nikolopoulos, 2000) is simple exponential
smoothing plus half the slope of a straight line through the data (Hyndman and Billah, 2003).
Seasonal series are first divided by classical multiplicative seasonal indices, but only when
the autocorrelation at the seasonal lag is significant at 90% (the M3 test), and the forecast is
multiplied back. Intervals are the SES model's, as in ``thetaf``.

Written out here rather than taken from statsmodels' ``ThetaModel`` so that fitting leaves a few
numbers per series (level, alpha, slope, variance, seasonal indices), and one fit costs a bounded
one-dimensional search: the initial level has a closed form for each alpha.
"""

from __future__ import annotations

import numpy as np

from pipelines.forecast.base import ForecastAlgorithm, fill_gaps, from_normal, register

Z_90 = 1.6448536269514722  # the one-sided 95% normal quantile thetaf's test uses


def seasonality_test(y: np.ndarray, m: int) -> bool:
    """Is the lag-m autocorrelation significant at 90%? (Bartlett's standard error, as in M3.)"""
    n = len(y)
    if m <= 1 or n <= 2 * m or np.ptp(y) == 0:
        return False
    x = y - y.mean()
    denominator = np.dot(x, x)
    r = np.array([np.dot(x[k:], x[: n - k]) / denominator for k in range(1, m + 1)])
    stat = np.sqrt((1 + 2 * np.sum(r[:-1] ** 2)) / n)
    return bool(abs(r[-1]) / stat > Z_90)


def seasonal_indices(y: np.ndarray, m: int, multiplicative: bool) -> np.ndarray:
    """Classical decomposition's seasonal figure (R's ``decompose``), one value per position t % m."""
    weights = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
    trend = np.convolve(y, weights, mode="valid")
    offset = len(weights) // 2
    core = y[offset : offset + len(trend)]
    detrended = core / trend if multiplicative else core - trend
    position = (np.arange(len(trend)) + offset) % m
    figure = np.bincount(position, detrended, minlength=m) / np.maximum(np.bincount(position, minlength=m), 1)
    return figure / figure.mean() if multiplicative else figure - figure.mean()


def simple_exponential_smoothing(y: np.ndarray) -> tuple[float, float, float]:
    """(alpha, final level, sum of squared one-step errors) minimising the squared errors.

    For a given alpha the one-step errors are linear in the initial level, so the best initial
    level is a least-squares solution and only alpha needs a search.
    """
    from scipy.optimize import minimize_scalar
    from scipy.signal import lfilter

    n = len(y)
    t = np.arange(n)

    def errors(alpha: float) -> np.ndarray:
        from_zero = lfilter([0.0, alpha], [1.0, alpha - 1.0], y)  # one-step forecasts if the start level were 0
        decay = (1 - alpha) ** t
        level0 = np.dot(y - from_zero, decay) / np.dot(decay, decay)
        return y - from_zero - level0 * decay

    best = minimize_scalar(lambda a: np.sum(errors(a) ** 2), bounds=(1e-4, 0.9999), method="bounded")
    alpha = float(best.x)
    e = errors(alpha)
    # Final level: the forecast for t = n, i.e. the one-step forecast recursion run one step further.
    fitted_last = y[-1] - e[-1]
    return alpha, alpha * y[-1] + (1 - alpha) * fitted_last, float(np.sum(e**2))


@register
class Theta(ForecastAlgorithm):
    """The standard theta method (``theta=2``) with the M3 seasonality test and decomposition."""

    name = "Theta"
    worker_imports = ("scipy.optimize", "scipy.signal", "scipy.stats")

    def __init__(
        self,
        theta: float = 2.0,
        season_length: int | None = None,
        deseasonalize: bool = True,
        *,
        n_jobs=1,
        chunk_size=64,
        seed=0,
    ):
        super().__init__(n_jobs=n_jobs, chunk_size=chunk_size, seed=seed)
        if theta < 1:
            raise ValueError(f"theta {theta} must be at least 1")
        self.theta = theta
        self.season_length = season_length
        self.deseasonalize = deseasonalize

    def _fit_series(self, y, chunk):
        y = fill_gaps(y)
        n, m = len(y), self.season_length or chunk.season_length
        if n < 3 or np.ptp(y) == 0:
            return {"level": float(y[-1]), "alpha": 1.0, "slope": 0.0, "sigma2": 0.0, "n": n, "figure": None}
        figure, multiplicative = None, bool(np.all(y > 0))
        if self.deseasonalize and seasonality_test(y, m):
            figure = seasonal_indices(y, m, multiplicative)
            season = figure[np.arange(n) % m]
            y = y / season if multiplicative else y - season
        alpha, level, sse = simple_exponential_smoothing(y)
        slope = np.polyfit(np.arange(n), y, 1)[0]
        return {
            "level": level,
            "alpha": alpha,
            "slope": float(slope),
            "sigma2": sse / max(n - 2, 1),
            "n": n,
            "figure": figure,
            "multiplicative": multiplicative,
        }

    def _forecast_series(self, y, state, chunk, j, levels, rng):
        h, n, alpha = chunk.horizon, state["n"], state["alpha"]
        steps = np.arange(1, h + 1)
        drift = (1 - 1 / self.theta) * state["slope"] * ((steps - 1) + (1 - (1 - alpha) ** n) / alpha)
        sd = np.sqrt(state["sigma2"] * (1 + alpha**2 * (steps - 1)))
        mean, quant = from_normal(state["level"] + drift, sd, levels)
        figure = state["figure"]
        if figure is not None:
            season = figure[(n + steps - 1) % len(figure)]
            if state["multiplicative"]:
                mean, quant = mean * season, quant * season[:, None]
            else:
                mean, quant = mean + season, quant + season[:, None]
        return mean, quant
