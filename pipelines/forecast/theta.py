"""Theta: the M3 competition's winner, as R's ``forecast::thetaf`` computes it, and its optimised family.

The standard theta method (Assimakopoulos and Nikolopoulos, 2000) is simple exponential
smoothing plus half the slope of a straight line through the data (Hyndman and Billah, 2003).
Seasonal series are first divided by classical multiplicative seasonal indices, but only when
the autocorrelation at the seasonal lag is significant at 90% (the M3 test), and the forecast is
multiplied back. Intervals are the SES model's, as in ``thetaf``.

``model`` chooses among the state-space theta models of Fiorucci et al. (2016), "Models for
optimising the theta method and their relationship to state space models": ``STM`` (the standard
method above, ``theta`` fixed), ``OTM`` (theta estimated with the smoothing weight and the start
level), ``DSTM`` and ``DOTM`` (their dynamic forms: the trend line's intercept and slope are
updated with each observation instead of fitted once to all of it, so the drift follows a
changed trend), or ``auto``: all four fitted, the one with the lowest in-sample one-step squared
error kept (as StatsForecast's AutoTheta chooses). The same seasonal test and decomposition come
first, and intervals are SES-shaped around each model's forecast.

Written out here rather than taken from statsmodels' ``ThetaModel`` so that fitting leaves a few
numbers per series (level, alpha, slope, variance, seasonal indices), and one fit costs a bounded
one-dimensional search: the initial level has a closed form for each alpha. The optimised models
keep their fitted states (level, running mean, intercept, slope) the same way.
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


THETA_MODELS = ("STM", "OTM", "DSTM", "DOTM")


def trend_lines(y: np.ndarray, dynamic: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Running mean, intercept A and slope B of the trend line after each observation (t = 1..n).

    Static models fit one line to all of ``y`` (every A and B the same); dynamic ones update it
    with each observation (Fiorucci et al. 2016, eq. 12). Neither depends on the smoothing weight
    or theta, so they are computed once per series.
    """
    n = len(y)
    t = np.arange(1, n + 1, dtype="float64")
    means = np.cumsum(y) / t
    if not dynamic:
        slope = 6 * (2 * np.mean(t * y) - (1 + n) * means[-1]) / (n**2 - 1) if n > 1 else 0.0
        return means, np.full(n, means[-1] - (n + 1) * slope / 2), np.full(n, slope)
    slopes = np.zeros(n)
    for i in range(1, n):  # i = t - 1
        slopes[i] = ((i - 1) * slopes[i - 1] + 6 * (y[i] - means[i - 1]) / (i + 1)) / (i + 2)
    return means, means - slopes * (t + 1) / 2, slopes


MAX_THETA = 100.0


def _theta_design(y, intercepts, slopes, alpha):
    """For one smoothing weight: the one-step forecasts mu_2..mu_n are ``base + level0 * start + c * drift``
    with c = 1 - 1/theta (Fiorucci et al. 2016, eq. 10-11), so the best start level and c are least
    squares; returns (base, start, drift, levels with a start level of 0, the start level's weight)."""
    from scipy.signal import lfilter

    n = len(y)
    levels = lfilter([alpha], [1.0, alpha - 1.0], y)  # the level after each observation, from a start of 0
    weight = (1 - alpha) ** np.arange(1, n + 1)  # how the start level carries into each of them
    t = np.arange(2, n + 1, dtype="float64")  # the forecast for time t uses the state after t - 1
    drift = intercepts[:-1] * (1 - alpha) ** (t - 1) + slopes[:-1] * (1 - (1 - alpha) ** t) / alpha
    return levels[:-1], weight[:-1], drift, levels, weight


def _best_start(target, start, drift, c: float | None):
    """Least-squares start level (and c when None), c kept to theta's range [1, MAX_THETA]."""
    if c is None:
        solution, *_ = np.linalg.lstsq(np.column_stack([start, drift]), target, rcond=None)
        level0, c = solution
        if 0 <= c <= 1 - 1 / MAX_THETA:
            return float(level0), float(c)
        c = float(np.clip(c, 0, 1 - 1 / MAX_THETA))
    denominator = float(np.dot(start, start))
    level0 = float(np.dot(target - c * drift, start) / denominator) if denominator > 0 else 0.0
    return level0, c


def fit_theta_model(y: np.ndarray, model: str, theta: float = 2.0, lines: tuple | None = None) -> dict:
    """Smoothing weight, start level (and theta for OTM/DOTM) minimising the one-step squared errors.

    For each smoothing weight the rest is a least-squares solution, so only the weight is searched.
    ``lines`` are the model's ``trend_lines`` when the caller has them already.
    """
    from scipy.optimize import minimize_scalar

    dynamic, optimised = model.startswith("D"), model.endswith("OTM")
    means, intercepts, slopes = lines if lines is not None else trend_lines(y, dynamic)
    fixed = None if optimised else 1 - 1 / theta

    def solve(alpha):
        base, start, drift, levels, weight = _theta_design(y, intercepts, slopes, alpha)
        level0, c = _best_start(y[1:] - base, start, drift, fixed)
        errors = y[1:] - base - level0 * start - c * drift
        return errors, c, levels + level0 * weight

    with np.errstate(all="ignore"):
        best = minimize_scalar(lambda a: float(np.sum(solve(a)[0] ** 2)), bounds=(0.1, 0.99), method="bounded")
        alpha = float(best.x)
        errors, c, levels = solve(alpha)
    return {"model": model, "alpha": alpha, "theta": 1 / (1 - c), "mse": float(np.mean(errors**2)),
            "sigma2": float(np.sum(errors**2) / max(len(y) - 2, 1)), "level": float(levels[-1]),
            "mean": float(means[-1]), "intercept": float(intercepts[-1]), "slope": float(slopes[-1]),
            "n": len(y)}  # fmt: skip


def theta_model_forecast(state: dict, h: int) -> np.ndarray:
    """The model's h-step forecast: its recursion run on with each forecast standing in for the value."""
    alpha, theta, n = state["alpha"], state["theta"], state["n"]
    level, mean, intercept, slope = state["level"], state["mean"], state["intercept"], state["slope"]
    out = np.empty(h)
    for k in range(h):
        t = n + k + 1
        mu = level + (1 - 1 / theta) * (intercept * (1 - alpha) ** (t - 1) + slope * (1 - (1 - alpha) ** t) / alpha)
        out[k] = mu
        level = alpha * mu + (1 - alpha) * level
        previous, mean = mean, ((t - 1) * mean + mu) / t
        if state["model"].startswith("D"):
            slope = ((t - 2) * slope + 6 * (mu - previous) / t) / (t + 1)
            intercept = mean - slope * (t + 1) / 2
    return out


@register
class Theta(ForecastAlgorithm):
    """Theta with the M3 seasonality test and decomposition: by default (``model="auto"``) the best
    in-sample of the four theta models per series; ``model="STM"`` is ``thetaf`` (see the module)."""

    name = "Theta"
    worker_imports = ("scipy.optimize", "scipy.signal", "scipy.stats")

    def __init__(
        self,
        theta: float = 2.0,
        season_length: int | None = None,
        deseasonalize: bool = True,
        model: str = "auto",
        *,
        n_jobs=1,
        chunk_size=64,
        seed=0,
    ):
        super().__init__(n_jobs=n_jobs, chunk_size=chunk_size, seed=seed)
        if theta < 1:
            raise ValueError(f"theta {theta} must be at least 1")
        if model not in (*THETA_MODELS, "auto"):
            raise ValueError(f"theta model {model!r}: one of {', '.join(THETA_MODELS)} or auto")
        self.theta = theta
        self.season_length = season_length
        self.deseasonalize = deseasonalize
        self.model = model

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
        if self.model != "STM":
            models = THETA_MODELS if self.model == "auto" else (self.model,)
            lines = {dynamic: trend_lines(y, dynamic) for dynamic in {name.startswith("D") for name in models}}
            fits = [fit_theta_model(y, name, self.theta, lines[name.startswith("D")]) for name in models]
            best = min((f for f in fits if np.isfinite(f["mse"])), key=lambda f: f["mse"], default=None)
            if best is not None:
                return {**best, "figure": figure, "multiplicative": multiplicative}
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
        if "model" in state:  # an optimised model: its own recursion
            point = theta_model_forecast(state, h)
        else:
            drift = (1 - 1 / self.theta) * state["slope"] * ((steps - 1) + (1 - (1 - alpha) ** n) / alpha)
            point = state["level"] + drift
        sd = np.sqrt(state["sigma2"] * (1 + alpha**2 * (steps - 1)))
        mean, quant = from_normal(point, sd, levels)
        figure = state["figure"]
        if figure is not None:
            season = figure[(n + steps - 1) % len(figure)]
            if state["multiplicative"]:
                mean, quant = mean * season, quant * season[:, None]
            else:
                mean, quant = mean + season, quant + season[:, None]
        return mean, quant
