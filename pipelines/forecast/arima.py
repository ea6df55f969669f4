"""ARIMA: orders chosen per series as R's ``forecast::auto.arima`` chooses them (Hyndman & Khandakar 2008).

For each series:

1. Seasonal differencing D when the seasonal strength of an STL decomposition exceeds 0.64 (R's
   default ``seas`` test), for seasons of at most ``max_season_length`` periods and histories of
   more than two seasons.
2. Differencing d by repeated KPSS tests at 5% (R's ``ndiffs``), on the seasonally differenced data.
3. A stepwise search from R's starting models, (2,d,2)(1,D,1), (0,d,0)(0,D,0), (1,d,0)(1,D,0) and
   (0,d,1)(0,D,1), moving p, q, P or Q by one (or two of them at once) and switching the constant
   (a mean when d + D = 0, a drift when d + D = 1, nothing otherwise) while AICc improves, in at
   most ``max_models`` fits. Models with AR or MA roots within 1.01 of the unit circle are refused.

With ``method="CSS-ML"`` (the default, R's ``approximation=TRUE``) candidates are scored by
conditional sum of squares: residuals come from one recursive filter over the differenced
series and their exact derivatives from a few more, so a fit takes milliseconds; only the
winner is refitted by exact maximum likelihood (statsmodels' SARIMAX, started from its CSS
estimates). When that fit fails or lands on a unit root, the next two best are tried, and then
the winner keeps its CSS fit (walking further down the list forecast worse on M3). ``"ML"``
scores every candidate by exact likelihood; ``"CSS"`` never leaves CSS. On the first 100 M3
monthly series CSS-ML scored mean MASE 0.733 in about 17 s on two cores, ML 0.742 in 172 s.
A winner whose state space holds more than ``exact_state_limit`` values (hourly data's seasonal
models, max(p + 24 P, q + 24 Q + 1) > 30) keeps its CSS fit: its exact fit took about 3.4 s a
series, ten times the whole search, for the same forecasts; every monthly model is refitted.

The likelihood is fitted to the differenced series (the exact likelihood R maximises too), which
keeps the state space small: a seasonal model's state holds p + P*m values, not d + D*m more.
The forecast of the differenced series is integrated back, and its variance comes from the psi
weights of the whole model, differencing included; the quantiles are normal.

Related time series enter as regressors (regression with ARIMA errors, as R's ``xreg``),
differenced with the target. Seasons longer than ``max_season_length`` (weekly data's 52,
minutes' 60), where seasonal ARIMA's state and fitting time explode, get ``fourier_terms`` pairs
of sine and cosine regressors instead (dynamic harmonic regression), when the series is seasonal.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np

from pipelines.forecast.base import ForecastAlgorithm, fill_gaps, from_normal, register
from pipelines.forecast.hyperparameters import ARIMAParams
from pipelines.forecast.regressors import WithRegressors, usable_regressors

KPSS_CRITICAL = {0.1: 0.347, 0.05: 0.463, 0.025: 0.574, 0.01: 0.739}  # level-stationarity ("mu") table
SEASONAL_STRENGTH = 0.64  # above it, R's nsdiffs takes a seasonal difference
MIN_ROOT = 1.01  # AR and MA roots must lie at least this far out (R's auto.arima)
ML_TRIES = 3  # best CSS models tried by exact likelihood before giving up on it
# (dp, dq, dP, dQ) in the order auto.arima tries them around the current model.
MOVES = (
    (0, 0, -1, 0), (0, 0, 0, -1), (0, 0, 1, 0), (0, 0, 0, 1),
    (0, 0, -1, -1), (0, 0, -1, 1), (0, 0, 1, -1), (0, 0, 1, 1),
    (-1, 0, 0, 0), (0, -1, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0),
    (-1, -1, 0, 0), (-1, 1, 0, 0), (1, -1, 0, 0), (1, 1, 0, 0),
)  # fmt: skip


@dataclass(frozen=True)
class Order:
    p: int
    d: int
    q: int
    P: int = 0
    D: int = 0
    Q: int = 0
    m: int = 1
    constant: bool = False

    @property
    def n_arma(self) -> int:
        return self.p + self.q + self.P + self.Q

    @property
    def state_size(self) -> int:
        """The ARMA part's state-space dimension: what an exact likelihood evaluation costs (cubed)."""
        return max(self.p + self.P * self.m, self.q + self.Q * self.m + 1)

    def __str__(self) -> str:
        text = f"ARIMA({self.p},{self.d},{self.q})"
        if self.P or self.D or self.Q:
            text += f"({self.P},{self.D},{self.Q})[{self.m}]"
        if self.constant:
            text += " with drift" if self.d + self.D == 1 else " with mean"
        return text


# -- choosing the differences ----------------------------------------------------------------


def is_constant(x: np.ndarray) -> bool:
    return len(x) == 0 or bool(np.ptp(x) <= 1e-12 * max(1.0, float(np.max(np.abs(x)))))


def kpss_statistic(x: np.ndarray) -> float:
    """KPSS level-stationarity statistic with Bartlett weights over trunc(3 sqrt(n) / 13) lags (as ndiffs)."""
    n = len(x)
    e = x - x.mean()
    lags = int(3 * np.sqrt(n) / 13)
    variance = np.dot(e, e) / n
    for k in range(1, lags + 1):
        variance += 2 * (1 - k / (lags + 1)) * np.dot(e[k:], e[:-k]) / n
    if variance <= 0:
        return 0.0
    return float(np.sum(np.cumsum(e) ** 2) / n**2 / variance)


def ndiffs(x: np.ndarray, alpha: float = 0.05, max_d: int = 2) -> int:
    """How many first differences make ``x`` level-stationary by KPSS at ``alpha``."""
    critical = KPSS_CRITICAL[alpha]
    d = 0
    while d < max_d and len(x) > 3 and not is_constant(x) and kpss_statistic(x) > critical:
        d += 1
        x = np.diff(x)
    return d


def seasonal_strength(x: np.ndarray, m: int) -> float:
    """1 - Var(remainder) / Var(season + remainder) of an STL decomposition (Wang, Smith & Hyndman 2006)."""
    from statsmodels.tsa.seasonal import STL

    if m < 2 or len(x) <= 2 * m or is_constant(x):
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = STL(x, period=m, seasonal=11).fit()  # s.window 11, as R's mstl for the first season
    remainder, season = np.asarray(fit.resid), np.asarray(fit.seasonal)
    total = np.var(remainder + season)
    return float(np.clip(1 - np.var(remainder) / total, 0.0, 1.0)) if total > 0 else 0.0


def nsdiffs(x: np.ndarray, m: int, max_D: int = 1) -> int:
    """How many seasonal differences ``x`` needs (0 or 1 by default): one while the season is strong."""
    count = 0
    while count < max_D and len(x) > 2 * m and seasonal_strength(x, m) > SEASONAL_STRENGTH:
        count += 1
        x = x[m:] - x[:-m]
    return count


def difference(x: np.ndarray, d: int, D: int, m: int) -> np.ndarray:
    """Seasonal then ordinary differences of ``x`` (along the first axis)."""
    for _ in range(D):
        x = x[m:] - x[:-m]
    for _ in range(d):
        x = x[1:] - x[:-1]
    return x


def integrate(history: np.ndarray, future: np.ndarray, d: int, D: int, m: int) -> np.ndarray:
    """Undo ``difference``: the future of ``history`` whose differences are ``future``."""
    stages = [history]
    for k in range(D + d):
        lag = m if k < D else 1
        stages.append(stages[-1][lag:] - stages[-1][:-lag])
    for k in range(D + d, 0, -1):
        lag = m if k <= D else 1
        past = stages[k - 1]
        out = np.concatenate([past, np.empty(len(future))])
        for t in range(len(future)):
            out[len(past) + t] = future[t] + out[len(past) + t - lag]
        future = out[len(past) :]
    return future


# -- the ARMA polynomials --------------------------------------------------------------------


def _spread(poly: np.ndarray, lag: int) -> np.ndarray:
    out = np.zeros((len(poly) - 1) * lag + 1)
    out[::lag] = poly
    return out


def factors(coefs: np.ndarray, order: Order) -> list[tuple[np.ndarray, int]]:
    """The four lag polynomials (1 - phi B..., 1 + theta B..., 1 - Phi B^m..., 1 + Theta B^m...) with their lags."""
    p, q, P = order.p, order.q, order.P
    return [
        (np.r_[1.0, -coefs[:p]], 1),
        (np.r_[1.0, coefs[p : p + q]], 1),
        (np.r_[1.0, -coefs[p + q : p + q + P]], order.m),
        (np.r_[1.0, coefs[p + q + P : order.n_arma]], order.m),
    ]


def polynomials(coefs: np.ndarray, order: Order) -> tuple[np.ndarray, np.ndarray]:
    """The expanded AR and MA polynomials in B: ar(B) u_t = ma(B) e_t."""
    ar, ma, s_ar, s_ma = factors(coefs, order)
    return np.convolve(ar[0], _spread(*s_ar)), np.convolve(ma[0], _spread(*s_ma))


def roots_ok(coefs: np.ndarray, order: Order, min_root: float = MIN_ROOT) -> bool:
    """Every AR and MA root lies outside the circle of radius ``min_root`` (stationary and invertible, with room)."""
    for poly, lag in factors(coefs, order):
        if len(poly) > 1 and np.any(poly[1:] != 0):
            roots = np.roots(poly[::-1])
            if not np.all(np.isfinite(roots)) or np.min(np.abs(roots)) ** (1 / lag) < min_root:
                return False
    return True


def psi_weights(coefs: np.ndarray, order: Order, h: int) -> np.ndarray:
    """The MA(infinity) weights of the whole model, differences included: forecast variance = sigma2 * cumsum(psi^2)."""
    ar, ma = polynomials(coefs, order)
    for _ in range(order.D):
        ar = np.convolve(ar, _spread(np.array([1.0, -1.0]), order.m))
    for _ in range(order.d):
        ar = np.convolve(ar, [1.0, -1.0])
    from scipy.signal import lfilter

    impulse = np.zeros(h)
    impulse[0] = 1.0
    return lfilter(ma, ar, impulse)


# -- fitting one order -----------------------------------------------------------------------


@dataclass
class Fit:
    order: Order
    coefs: np.ndarray  # ARMA coefficients (phi, theta, Phi, Theta), then the regression's (constant first)
    sigma2: float
    ic: float
    method: str  # CSS or ML
    result: object = None  # statsmodels' results, for an ML fit (dropped from what a model keeps)
    ml_params: np.ndarray | None = None  # an ML fit's parameters in statsmodels' order, to filter again

    def lean(self) -> Fit:
        """This fit without statsmodels' results: SARIMAX's results hold the filter's and smoother's
        arrays (about 16 MB for a daily series of two years with a weekly season), so a model keeps
        the parameters and filters again when it forecasts from other regressors."""
        return replace(self, result=None)


def criterion(neg2_loglik: float, n: int, k: int, which: str) -> float:
    """AIC, AICc or BIC from -2 log-likelihood, observations n and parameters k (the variance included)."""
    aic = neg2_loglik + 2 * k
    if which == "aic":
        return aic
    if which == "bic":
        return aic + k * (np.log(n) - 2)
    return aic + 2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else np.inf


def fit_css(w: np.ndarray, Z: np.ndarray, order: Order, ic: str = "aicc", min_root: float = MIN_ROOT) -> Fit | None:
    """Conditional sum of squares: residuals by one recursive filter, minimised by Levenberg-Marquardt.

    ``w`` is the differenced series, ``Z`` its regressors (a column of ones for the constant first).
    The first p + P*m residuals are left out, as R's CSS conditions on them.
    """
    from scipy.optimize import least_squares

    k = order.n_arma
    ncond = order.p + order.P * order.m
    n_params = k + Z.shape[1] + 1
    if len(w) - ncond <= n_params + 1:
        return None
    beta = np.linalg.lstsq(Z, w, rcond=None)[0] if Z.shape[1] else np.empty(0)
    big = 1e10 * (1.0 + float(np.std(w)))
    theta = np.r_[np.zeros(k), beta]
    if k:
        css = _CssResiduals(w, Z, order, ncond, big)
        with np.errstate(all="ignore"):
            try:
                theta = least_squares(css.residuals, theta, jac=css.jacobian, method="lm", max_nfev=50 * len(theta)).x
            except (ValueError, np.linalg.LinAlgError):
                return None
    e = _CssResiduals(w, Z, order, ncond, big).residuals(theta)
    sigma2 = float(np.dot(e, e) / len(e))
    finite = np.isfinite(sigma2) and np.all(np.isfinite(theta)) and np.max(np.abs(e)) < big
    if not finite or not roots_ok(theta, order, min_root):
        return None
    sigma2 = max(sigma2, 1e-300)
    score = criterion(len(w) * np.log(sigma2), len(w), n_params, ic)
    return Fit(order, theta, sigma2, score, "CSS")


class _CssResiduals:
    """The CSS residuals e = ar(B) / ma(B) (w - Z beta) and their exact derivatives, by recursive filters.

    An analytic Jacobian costs a few filters where a numerical one costs one per parameter, and
    makes the search several times faster: d e / d phi_i = -B^i ar_s / ma u, d e / d theta_i =
    -B^i ma_s / ma e, likewise for the seasonal factors with B^(j m), and d e / d beta = -ar / ma Z.
    """

    def __init__(self, w, Z, order: Order, ncond: int, big: float):
        self.w, self.Z, self.order, self.ncond, self.big = w, Z, order, ncond, big
        self._at, self._parts = None, None

    def _filter(self, theta: np.ndarray):
        if self._at is not None and np.array_equal(theta, self._at):
            return self._parts
        from scipy.signal import lfilter

        (ar_n, _), (ma_n, _), s_ar, s_ma = factors(theta, self.order)
        ar_s, ma_s = _spread(*s_ar), _spread(*s_ma)
        ar, ma = np.convolve(ar_n, ar_s), np.convolve(ma_n, ma_s)
        u = self.w - self.Z @ theta[self.order.n_arma :]
        e = lfilter(ar, ma, u)
        self._at, self._parts = theta.copy(), (ar_n, ma_n, ar_s, ma_s, ar, ma, u, e)
        return self._parts

    def _clean(self, x: np.ndarray) -> np.ndarray:
        if np.all(np.isfinite(x)) and np.max(np.abs(x), initial=0.0) < self.big:
            return x
        return np.clip(np.nan_to_num(x, nan=self.big, posinf=self.big, neginf=-self.big), -self.big, self.big)

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        return self._clean(self._filter(theta)[-1][self.ncond :])

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        from scipy.signal import lfilter

        ar_n, ma_n, ar_s, ma_s, ar, ma, u, e = self._filter(theta)
        o, n = self.order, len(u)
        columns = []
        for count, lag, numerator, source in (
            (o.p, 1, ar_s, u),
            (o.q, 1, ma_s, e),
            (o.P, o.m, ar_n, u),
            (o.Q, o.m, ma_n, e),
        ):
            if count:
                base = lfilter(numerator, ma, source)
                for i in range(1, count + 1):
                    columns.append(-np.r_[np.zeros(min(i * lag, n)), base[: max(n - i * lag, 0)]])
        if self.Z.shape[1]:
            columns.extend(-lfilter(ar, ma, self.Z, axis=0).T)
        return self._clean(np.column_stack(columns)[self.ncond :])


def fit_ml(
    w: np.ndarray, Z: np.ndarray, order: Order, ic: str = "aicc", start: Fit | None = None, min_root: float = MIN_ROOT
) -> Fit | None:
    """Exact Gaussian likelihood of the differenced series by statsmodels' SARIMAX (regression with SARMA errors)."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    k, r = order.n_arma, Z.shape[1]
    seasonal = (order.P, 0, order.Q, order.m) if order.P or order.Q else (0, 0, 0, 0)
    start_params = None
    if start is not None:  # SARIMAX orders them: regression, AR, MA, seasonal AR, seasonal MA, variance
        start_params = np.r_[start.coefs[k:], start.coefs[:k], start.sigma2]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            model = SARIMAX(w, exog=Z if r else None, order=(order.p, 0, order.q), seasonal_order=seasonal)
            result = model.fit(start_params=start_params, disp=False, maxiter=100)
        except Exception:  # statsmodels raises many kinds on degenerate data; the caller falls back
            return None
    params = np.asarray(result.params, dtype="float64")
    if not (np.isfinite(result.llf) and np.all(np.isfinite(params))) or params[-1] <= 0:
        return None
    coefs = np.r_[params[r : r + k], params[:r]]
    if not roots_ok(coefs, order, min_root):
        return None
    score = criterion(-2 * result.llf, len(w), k + r + 1, ic)
    return Fit(order, coefs, float(params[-1]), score, "ML", result, params)


def sarimax_filtered(w: np.ndarray, Z: np.ndarray, order: Order, params: np.ndarray):
    """statsmodels' results of the SARIMAX model ``fit_ml`` fitted, from its parameters: a Kalman filter
    pass (no estimation), which forecasts exactly as the fitted results do."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    seasonal = (order.P, 0, order.Q, order.m) if order.P or order.Q else (0, 0, 0, 0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        model = SARIMAX(w, exog=Z if Z.shape[1] else None, order=(order.p, 0, order.q), seasonal_order=seasonal)
        return model.filter(params)


# -- the stepwise search ---------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    p: int
    q: int
    P: int
    Q: int
    order: int  # p + q + P + Q


def stepwise(fit, limits: Limits, start: tuple[int, int, int, int], constant: bool, max_models: int) -> list[Fit]:
    """auto.arima's stepwise search; ``fit(p, q, P, Q, constant)`` returns a Fit or None. All fits, best first.

    ``constant`` says whether the search starts with the constant, and so whether it is allowed:
    each pass that improves nothing tries the current orders with it switched.
    """
    toggle = constant
    tried: dict[tuple, Fit | None] = {}

    def score(key: tuple) -> float:
        if key not in tried:
            tried[key] = fit(*key) if len(tried) < max_models else None
        found = tried[key]
        return found.ic if found is not None else np.inf

    def allowed(p, q, P, Q) -> bool:
        inside = 0 <= p <= limits.p and 0 <= q <= limits.q and 0 <= P <= limits.P and 0 <= Q <= limits.Q
        return inside and p + q + P + Q <= limits.order

    current = start
    best = score((*start, constant))
    seeds = [(0, 0, 0, 0, constant)]
    if limits.p > 0 or limits.P > 0:
        seeds.append((int(limits.p > 0), 0, int(limits.P > 0), 0, constant))
    if limits.q > 0 or limits.Q > 0:
        seeds.append((0, int(limits.q > 0), 0, int(limits.Q > 0), constant))
    if constant:
        seeds.append((0, 0, 0, 0, False))
    for key in seeds:
        if key not in tried and score(key) < best:
            best, current, constant = score(key), key[:4], key[4]
    improved = True
    while improved and len(tried) < max_models:
        improved = False
        p, q, P, Q = current
        for dp, dq, dP, dQ in MOVES:
            candidate = (p + dp, q + dq, P + dP, Q + dQ)
            key = (*candidate, constant)
            if allowed(*candidate) and key not in tried and score(key) < best:
                best, current, improved = score(key), candidate, True
                break
        switched = (*current, not constant)
        if not improved and toggle and switched not in tried and score(switched) < best:
            best, constant, improved = score(switched), not constant, True
    return sorted((f for f in tried.values() if f is not None), key=lambda f: f.ic)


# -- the algorithm ---------------------------------------------------------------------------


class ARIMALimits(ARIMAParams):
    """The settings' hyperparameters and two that settings files leave alone: ``exact_state_limit``
    (the largest state for the exact likelihood) and ``allow_constant``."""

    exact_state_limit: int = 30
    allow_constant: bool = True


@register
class ARIMA(WithRegressors, ForecastAlgorithm):
    """Automatic seasonal ARIMA per series, related features as regressors; normal quantiles.

    ``order``/``seasonal_order`` fix the model instead of searching ((p, d, q) and (P, D, Q); the
    constant is then included where d + D <= 1).
    """

    name = "ARIMA"
    worker_imports = (
        "statsmodels.tsa.statespace.sarimax",
        "statsmodels.tsa.seasonal",
        "scipy.optimize",
        "scipy.signal",
        "scipy.stats",
    )

    hyperparameter_model = ARIMALimits

    def with_data(self, data):
        """The fitted model forecasting with ``data``'s future regressors (a what-if scenario): each
        series keeps its order, coefficients and variance, estimated on the history, and only the
        regression part of its forecast follows the new future values (the bands keep their width).
        Nothing is searched or estimated again: a scenario costs a forecast, not a fit."""
        other = super().with_data(data)
        other.states_ = [state for part in other._map("_reforecast_chunk", other.states_) for state in part]
        return other

    def _reforecast_chunk(self, chunk, states):
        return [state if state is None or "fit" not in state else self._reforecast_one(y, state, chunk, j)
                for j, (y, state) in enumerate(zip(chunk.series, states, strict=True))]  # fmt: skip

    def _reforecast_one(self, raw: np.ndarray, state: dict, chunk, j: int) -> dict:
        first = int(np.argmax(~np.isnan(raw)))
        y = fill_gaps(raw)
        d, D, m = state["d"], state["D"], state["m"]
        X = self._regressors(y, chunk, j, first, m, fourier=state["fourier"])
        w = difference(y, d, D, m)
        Xd = difference(X, d, D, m)
        Xw, Xf = Xd[: len(w)][:, state["varies"]], Xd[len(w) :][:, state["varies"]]
        w_future = self._forecast_differences(w, Xw, Xf, state["fit"], chunk.horizon)
        return {**state, "mean": integrate(y, w_future, d, D, state["fit"].order.m)}

    # -- per series ------------------------------------------------------------------------

    def _fit_chunk(self, chunk, states):
        return [None if np.isnan(y).all() else self._fit_one(y, chunk, j) for j, y in enumerate(chunk.series)]

    def _forecast_series(self, y, state, chunk, j, levels, rng):
        return from_normal(state["mean"], state["sd"], levels)

    def _fit_one(self, raw: np.ndarray, chunk, j: int) -> dict:
        first = int(np.argmax(~np.isnan(raw)))
        y = fill_gaps(raw)
        n, h = len(y), chunk.horizon
        if n < 4 or is_constant(y):
            return _naive(y, h)
        m = self.season_length or chunk.season_length
        if self.order is None:
            seasonal = self.seasonal and 1 < m <= self.max_season_length
        else:
            seasonal = self.seasonal_order is not None and m > 1
        X = self._regressors(y, chunk, j, first, m, fourier=not seasonal)
        # R's auto.arima picks the differences on the regression's residuals when there are regressors.
        design = np.column_stack([np.ones(n), X[:n]])
        xx = y - design @ np.linalg.lstsq(design, y, rcond=None)[0] if X.shape[1] else y
        if self.order is not None:
            d, D = self.order[1], (self.seasonal_order[1] if seasonal else 0)
        else:
            D = nsdiffs(xx, m, self.max_D) if seasonal and n > 2 * m else 0
            d = ndiffs(difference(xx, 0, D, m), max_d=self.max_d)
        if D and n - D * m - d < 4:
            D = 0
        w = difference(y, d, D, m)
        if len(w) < 3:
            return _naive(y, h)
        Xd = difference(X, d, D, m)  # history rows then the horizon's
        Xw, Xf = Xd[: len(w)], Xd[len(w) :]
        varies = np.flatnonzero(np.ptp(Xw, axis=0) > 0)
        Xw, Xf = Xw[:, varies], Xf[:, varies]
        constant_ok = self.allow_constant and d + D <= 1
        if is_constant(w) and not Xw.shape[1]:  # nothing random left: the differences go on as they were
            mean = integrate(y, np.full(h, w[-1]), d, D, m)
            return {"order": Order(0, d, 0, 0, D, 0, m, d + D <= 1), "mean": mean, "sd": np.zeros(h), "method": "exact"}
        fits = self._search(w, Xw, d, D, m if seasonal else 1, n, constant_ok)
        best = self._final(w, Xw, fits)
        if best is None:
            return _naive(y, h)
        w_future = self._forecast_differences(w, Xw, Xf, best, h)
        mean = integrate(y, w_future, d, D, best.order.m)
        sd = np.sqrt(best.sigma2 * np.cumsum(psi_weights(best.coefs, best.order, h) ** 2))
        state = {"order": best.order, "coefs": best.coefs, "sigma2": best.sigma2, "method": best.method}
        if not Xw.shape[1]:  # no regressor: other future values cannot move the forecast (with_data keeps it)
            return {**state, "mean": mean, "sd": sd}
        # with_data forecasts again from the fit (statsmodels' results: up to a megabyte a series, so
        # kept only where there are regressors for a what-if to change)
        design = {"fit": best.lean(), "d": d, "D": D, "m": m, "fourier": not seasonal, "varies": varies}
        return {**state, **design, "mean": mean, "sd": sd}

    def _regressors(self, y: np.ndarray, chunk, j: int, first: int, m: int, fourier: bool) -> np.ndarray:
        """Related features (if any, and if used) and Fourier terms for a long season: (n + h, k)."""
        n, h = len(y), chunk.horizon
        columns = []
        if getattr(chunk, "regressors", None):  # related features (unless use_related is False)
            x, _ = usable_regressors(chunk.regressors[j], first, n)
            columns.append(x)
        long_season = fourier and self.seasonal and m > self.max_season_length and self.fourier_terms > 0 and n > 2 * m
        if long_season and seasonal_strength(y, m) > SEASONAL_STRENGTH:
            t = chunk.starts[j] + first + np.arange(n + h)  # grid positions: the phase is the calendar's
            k = np.arange(1, min(self.fourier_terms, m // 2) + 1)
            angle = 2 * np.pi * np.outer(t, k) / m
            columns.append(np.column_stack([np.sin(angle), np.cos(angle)]))
        return np.column_stack(columns) if columns else np.empty((n + h, 0))

    def _search(self, w, Xw, d, D, m, n, constant_ok) -> list[Fit]:
        ic, ml, limit = self.information_criterion, self.method == "ML", self._min_root

        def fit(p, q, P, Q, constant):
            Z = np.column_stack([np.ones(len(w)), Xw]) if constant else Xw
            order = Order(p, d, q, P, D, Q, m, constant)
            css = fit_css(w, Z, order, ic, limit)
            return fit_ml(w, Z, order, ic, css, limit) if ml else css

        if self.order is not None:  # as given; a CSS fit that fails may still fit by likelihood
            P, _, Q = self.seasonal_order or (0, 0, 0)
            key = (self.order[0], self.order[2], P if m > 1 else 0, Q if m > 1 else 0, constant_ok)
            found = fit(*key)
            if found is None and self.method != "CSS":
                Z = np.column_stack([np.ones(len(w)), Xw]) if constant_ok else Xw
                found = fit_ml(w, Z, Order(key[0], d, key[1], key[2], D, key[3], m, constant_ok), ic, None, limit)
            return [found] if found is not None else []
        max_P = min(self.max_P, n // 3 // m) if m > 1 else 0
        max_Q = min(self.max_Q, n // 3 // m) if m > 1 else 0
        limits = Limits(
            p=min(self.max_p, n // 3, m - 1 if max_P > 0 else self.max_p),
            q=min(self.max_q, n // 3, m - 1 if max_Q > 0 else self.max_q),
            P=max_P,
            Q=max_Q,
            order=self.max_order,
        )
        start = (2, 2, 1, 1) if n >= 10 else (1, 1, 0, 0)
        start = (min(start[0], limits.p), min(start[1], limits.q), min(start[2], limits.P), min(start[3], limits.Q))
        return stepwise(fit, limits, start, constant_ok, self.max_models)

    @property
    def _min_root(self) -> float:
        """A searched model keeps clear of the unit circle; a model given is only kept inside it."""
        return MIN_ROOT if self.order is None else 1.0

    def _final(self, w, Xw, fits: list[Fit]) -> Fit | None:
        """The model to forecast with: the best fit, refitted by exact likelihood under CSS-ML."""
        if not fits or self.method != "CSS-ML" or fits[0].order.state_size > self.exact_state_limit:
            return fits[0] if fits else None
        for candidate in [f for f in fits if f.order.state_size <= self.exact_state_limit][:ML_TRIES]:
            Z = np.column_stack([np.ones(len(w)), Xw]) if candidate.order.constant else Xw
            refit = fit_ml(w, Z, candidate.order, self.information_criterion, candidate, self._min_root)
            if refit is not None:
                return refit
        return fits[0]

    def _forecast_differences(self, w, Xw, Xf, best: Fit, h: int) -> np.ndarray:
        """The mean forecast of the differenced series."""
        Zf = np.column_stack([np.ones(h), Xf]) if best.order.constant else Xf
        Z = np.column_stack([np.ones(len(w)), Xw]) if best.order.constant else Xw
        if best.method == "ML" and (best.result is not None or best.ml_params is not None):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    result = best.result
                    if result is None:
                        result = sarimax_filtered(w, Z, best.order, best.ml_params)
                    out = np.asarray(result.forecast(h, exog=Zf if Zf.shape[1] else None), dtype="float64")
                    if np.all(np.isfinite(out)):
                        return out
                except Exception:  # fall through to the CSS-style recursion with the same coefficients
                    pass
        return arma_forecast(w, Z, Zf, best.coefs, best.order, h)


def arma_forecast(w: np.ndarray, Z: np.ndarray, Zf: np.ndarray, coefs: np.ndarray, order: Order, h: int) -> np.ndarray:
    """Regression plus ARMA errors carried forward by their recursion, future shocks zero (the CSS forecast)."""
    from scipy.signal import lfilter

    k = order.n_arma
    beta = coefs[k:]
    ar, ma = polynomials(coefs, order)
    u = w - Z @ beta
    e = lfilter(ar, ma, u)
    e[: order.p + order.P * order.m] = 0.0
    pad = max(len(ar), len(ma))
    u_all = np.r_[np.zeros(pad), u, np.zeros(h)]
    e_all = np.r_[np.zeros(pad), e, np.zeros(h)]
    for t in range(pad + len(u), pad + len(u) + h):
        u_all[t] = -np.dot(ar[1:], u_all[t - 1 : t - len(ar) : -1]) + np.dot(ma[1:], e_all[t - 1 : t - len(ma) : -1])
    return u_all[pad + len(u) :] + Zf @ beta


def _naive(y: np.ndarray, h: int) -> dict:
    """Too short or flat for ARIMA: the last value, spread growing with sqrt(step) like a random walk's."""
    sd = float(np.std(np.diff(y), ddof=1)) if len(y) > 2 else 0.0
    return {"order": None, "mean": np.full(h, y[-1]), "sd": sd * np.sqrt(np.arange(1, h + 1)), "method": "naive"}
