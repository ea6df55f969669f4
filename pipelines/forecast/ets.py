"""ETS: exponential smoothing state space models, chosen per series by AICc as R's ``ets`` does.

Each series tries error (additive, multiplicative) x trend (none, additive, damped) x season
(none, additive, multiplicative) with statsmodels' ``ETSModel`` and keeps the lowest AICc. The
guards are what make this safe on thousands of series nobody looks at:

- non-positive data rules out multiplicative error and season (their likelihood needs y > 0);
- additive error with multiplicative season is left out (R's ``restrict``: numerically unstable);
- a season needs two full cycles and at most 24 periods per cycle (as R's ``ets``);
- a model with too many parameters for the data is skipped; when nothing fits, the series falls
  back to a random walk;
- smoothing parameters stay inside the usual bounds (statsmodels' defaults: 0 < beta < alpha < 1,
  0.8 <= phi <= 0.98), and a fit that raises or returns non-finite values is dropped for the next
  best model;
- a model whose point forecast runs off (more than three historical ranges beyond the data) loses
  to the best sane one, and the quantiles are clipped to that band all the same.

Initial states come from statsmodels' heuristic (a decomposition of the first cycles) while
models are compared, which is about fifteen times faster than estimating them; the chosen model
is then refitted with estimated initial states, starting from the heuristic fit.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np

from pipelines.forecast.base import ForecastAlgorithm, fill_gaps, from_normal, register

RUNAWAY_RANGES = 3.0  # how many historical ranges a forecast may leave the data by
LINEAR = {"ANN", "AAN", "AAdN", "ANA", "AAA", "AAdA"}  # models with closed-form forecast variances


@dataclass(frozen=True)
class Spec:
    error: str  # A or M
    trend: str  # N or A
    damped: bool
    season: str  # N, A or M
    m: int

    @property
    def name(self) -> str:
        return f"{self.error}{self.trend}{'d' if self.damped else ''}{self.season}"

    def n_params(self) -> int:
        """Smoothing parameters, initial states and the variance, as R's ``ets`` counts them."""
        trend, season = self.trend != "N", self.season != "N"
        smoothing = 1 + trend + season + self.damped
        initial = 1 + trend + (self.m - 1 if season else 0)
        return smoothing + initial + 1


def candidates(y: np.ndarray, m: int, model: str = "ZZZ", damped: bool | None = None) -> list[Spec]:
    """The models worth fitting to ``y``: ``model`` is three letters, Z meaning "choose"."""
    error, trend, season = model.upper()
    positive = bool(np.all(y > 0))
    seasonal_ok = 1 < m <= 24 and len(y) >= max(2 * m, 10 + 2 * (m // 2))
    errors = [e for e in ("AM" if error == "Z" else error) if e == "A" or positive]
    trends = "NA" if trend == "Z" else trend
    seasons = [s for s in ("NAM" if season == "Z" else season) if s == "N" or (seasonal_ok and (s == "A" or positive))]
    out = []
    for e in errors:
        for t in trends:
            for dmp in ([False, True] if damped is None else [damped]) if t == "A" else [False]:
                for s in seasons:
                    if e == "A" and s == "M" and season == "Z":
                        continue
                    spec = Spec(e, t, dmp, s, m if s != "N" else 1)
                    if len(y) > spec.n_params() + 1:
                        out.append(spec)
    return out


def fit_spec(y: np.ndarray, spec: Spec, initialization: str = "heuristic", start_params=None):
    """Fit one model; None when it fails or comes out non-finite."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            result = _model(y, spec, initialization).fit(disp=False, maxiter=200, start_params=start_params)
        except Exception:  # statsmodels raises many kinds on degenerate data; the next model will do
            return None
    if not (np.isfinite(result.llf) and np.all(np.isfinite(result.params)) and result.scale > 0):
        return None
    return result


def aicc(result, spec: Spec) -> float:
    n, k = result.nobs, spec.n_params()
    if n - k - 1 <= 0:
        return np.inf
    return -2 * result.llf + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def sane_band(y: np.ndarray) -> tuple[float, float]:
    """Where a forecast may go: the data's range widened by RUNAWAY_RANGES ranges on each side."""
    low, high = float(np.min(y)), float(np.max(y))
    width = max(high - low, 0.1 * abs(float(np.mean(y))), 1e-9)
    return low - RUNAWAY_RANGES * width, high + RUNAWAY_RANGES * width


@register
class ETS(ForecastAlgorithm):
    """Automatic ETS per series (``model="ZZZ"``), or a fixed one such as ``model="AAN", damped=True``.

    ``model`` names error, trend and season with A, M or N, Z meaning "choose by AICc"; ``damped``
    None lets AICc choose between a damped and a straight trend. Linear models get their exact
    normal intervals, the others ``simulations`` simulated paths (seeded per series).
    """

    name = "ETS"
    worker_imports = ("statsmodels.tsa.exponential_smoothing.ets", "scipy.stats")

    def __init__(
        self,
        model: str = "ZZZ",
        damped: bool | None = None,
        season_length: int | None = None,
        estimate_initial_states: bool = True,
        simulations: int = 1000,
        *,
        n_jobs=1,
        chunk_size=64,
        seed=0,
    ):
        super().__init__(n_jobs=n_jobs, chunk_size=chunk_size, seed=seed)
        if len(model) != 3 or model[0] not in "ZAM" or model[1] not in "ZAN" or model[2] not in "ZANM":
            raise ValueError(f"ETS model {model!r}: three letters, error Z/A/M, trend Z/A/N, season Z/A/N/M")
        self.model = model
        self.damped = damped
        self.season_length = season_length
        self.estimate_initial_states = estimate_initial_states
        self.simulations = simulations

    def _fit_series(self, y, chunk):
        y = fill_gaps(y)
        m = self.season_length or chunk.season_length
        band = sane_band(y)
        horizon = chunk.horizon
        scored = []
        for spec in candidates(y, m, self.model, self.damped):
            init = "heuristic" if len(y) >= max(10, 2 * spec.m, 10 + 2 * (spec.m // 2)) else "estimated"
            result = fit_spec(y, spec, init)
            if result is None:
                continue
            point = np.asarray(result.forecast(horizon))
            runaway = not np.all(np.isfinite(point)) or point.min() < band[0] or point.max() > band[1]
            scored.append((runaway, aicc(result, spec), spec, init, result))
        if not scored:
            return {"spec": None, "band": band}
        runaway, _, spec, init, result = min(scored, key=lambda s: (s[0], s[1]))  # sane first, then AICc
        if self.estimate_initial_states and init == "heuristic":
            refit = fit_spec(y, spec, "estimated", start_params=_with_initial_states(result))
            if refit is not None and refit.llf >= result.llf:
                point = np.asarray(refit.forecast(horizon))
                stays_sane = runaway or (point.min() >= band[0] and point.max() <= band[1])
                if np.all(np.isfinite(point)) and stays_sane:
                    init, result = "estimated", refit
        return {"spec": spec, "init": init, "params": np.asarray(result.params), "band": band}

    def _forecast_series(self, y, state, chunk, j, levels, rng):
        y = fill_gaps(y)
        h = chunk.horizon
        spec = state["spec"]
        if spec is None:
            return _random_walk(y, h, levels)
        result = _smooth(y, spec, state["init"], state["params"])
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            mean = np.asarray(result.forecast(h), dtype="float64")
            sd = _exact_sd(result, h) if spec.name in LINEAR else None
            if sd is not None:
                _, quant = from_normal(mean, sd, levels)
            else:
                errors = rng.standard_normal((h, self.simulations)) * np.sqrt(result.scale)
                paths = np.asarray(result.simulate(h, anchor="end", repetitions=self.simulations, random_errors=errors))
                quant = np.nanquantile(paths, levels, axis=1).T
        low, high = state["band"]
        return np.clip(mean, low, high), np.clip(quant, low, high)


@functools.cache
def _lean_model_class():
    """statsmodels' ETSModel whose results skip the parameters' covariance matrix.

    ETSResults computes it on creation, by a complex-step numerical Hessian of the likelihood,
    after every fit and every ``smooth``: about a sixth of a fit's time and two thirds of a
    forecast's. Nothing here reads it (no standard errors are reported; forecast intervals come
    from the model's own variance formulas or simulation), so it is left as NaN.
    """
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel, ETSResults, ETSResultsWrapper

    class LeanResults(ETSResults):
        @property
        def cov_params_approx(self):
            return np.full((self.k_params, self.k_params), np.nan)

    class LeanETSModel(ETSModel):
        @property
        def _res_classes(self):
            return {"fit": (LeanResults, ETSResultsWrapper)}

    return LeanETSModel


def _model(y: np.ndarray, spec: Spec, initialization: str):
    return _lean_model_class()(
        y,
        error="add" if spec.error == "A" else "mul",
        trend="add" if spec.trend == "A" else None,
        damped_trend=spec.damped,
        seasonal={"A": "add", "M": "mul"}.get(spec.season),
        seasonal_periods=spec.m if spec.season != "N" else None,
        initialization_method=initialization,
    )


def _with_initial_states(result) -> np.ndarray:
    """A heuristic fit's parameters followed by its initial states: the start of an estimated fit."""
    model = result.model
    states = [model.initial_level]
    if model.has_trend:
        states.append(model.initial_trend)
    if model.has_seasonal:
        states.extend(np.atleast_1d(model.initial_seasonal))
    return np.r_[np.asarray(result.params), states]


def _smooth(y: np.ndarray, spec: Spec, init: str, params: np.ndarray):
    """The fitted model again, from its parameters: cheap, and keeps the fitted state small."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _model(y, spec, init).smooth(params)


def _exact_sd(result, h: int) -> np.ndarray | None:
    """Forecast standard deviations of a linear model (Hyndman et al. 2008, table 6.1).

    statsmodels' get_prediction computes them with this (private) method but fails on plain
    arrays in 0.15; None sends the caller to simulation if the method is ever gone.
    """
    try:
        return np.sqrt(result.mse * result._relative_forecast_variance(np.arange(1, h + 1)))
    except (AttributeError, NotImplementedError):
        return None


def _random_walk(y: np.ndarray, h: int, levels: np.ndarray):
    """The fallback for series too short for any ETS model: last value, spread growing with sqrt(step)."""
    steps = np.arange(1, h + 1)
    sd = np.std(np.diff(y), ddof=1) if len(y) > 2 else 0.0
    return from_normal(np.full(h, y[-1]), sd * np.sqrt(steps), levels)
