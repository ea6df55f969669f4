"""ARIMA: the difference tests, the order search, the forecast distribution, regressors and fallbacks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast.arima import ARIMA, Order, integrate, ndiffs, nsdiffs, psi_weights
from pipelines.forecast.base import get_algorithm
from pipelines.forecast.data import ForecastData
from tests.forecast.conftest import generated_series


def arma(phi: float, theta: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.normal(size=n + 100)
    y = np.zeros(n + 100)
    for t in range(1, n + 100):
        y[t] = phi * y[t - 1] + e[t] + theta * e[t - 1]
    return y[100:]


def fit(series, horizon=12, freq="1M", **params):
    series = [np.asarray(s, dtype=float) for s in series]
    data = ForecastData.from_arrays(series, freq=freq, horizon=horizon, end="2024-12-01")
    return ARIMA(**params).fit(data)


def test_kpss_and_seasonal_strength_choose_the_differences():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=200)
    assert ndiffs(noise) == 0
    assert ndiffs(np.cumsum(noise)) == 1
    assert ndiffs(np.cumsum(np.cumsum(noise))) == 2
    assert nsdiffs(generated_series("seasonal", 120), 12) == 1
    assert nsdiffs(noise, 12) == 0
    assert nsdiffs(generated_series("seasonal", 20), 12) == 0  # under two seasons: no test


def test_integrate_undoes_ordinary_and_seasonal_differences():
    y = np.cumsum(np.arange(40.0) % 4 + 1.0)
    future = np.cumsum(np.arange(40.0, 48.0) % 4 + 1.0) + y[-1]
    for d, D in ((1, 0), (0, 1), (1, 1), (2, 0)):
        full = np.r_[y, future]
        for _ in range(D):
            full = full[4:] - full[:-4]
        for _ in range(d):
            full = np.diff(full)
        np.testing.assert_allclose(integrate(y, full[-8:], d, D, 4), future)


@pytest.mark.parametrize(("phi", "theta", "expected"), [(0.7, 0.0, (1, 0, 0)), (0.0, 0.7, (0, 0, 1))])
def test_recovers_a_known_ar1_or_ma1_order(phi, theta, expected):
    model = fit([10 + arma(phi, theta, 400, seed=3)], freq="1D", seasonal=False)
    order = model.states_[0]["order"]
    assert (order.p, order.d, order.q) == expected
    assert order.constant and str(order).endswith("with mean")
    coefs = model.states_[0]["coefs"]
    assert coefs[0] == pytest.approx(0.7, abs=0.1)
    assert coefs[1] == pytest.approx(10, abs=0.5)  # the mean


def test_beats_seasonal_naive_on_trended_seasonal_series():
    t = np.arange(132)
    series = [30 + 0.4 * t + 8 * np.sin(2 * np.pi * t / 12 + k) + arma(0.5, 0, 132, k) for k in range(4)]
    history = [s[:120] for s in series]
    future = np.array([s[120:] for s in series])
    data = ForecastData.from_arrays(history, freq="1M", horizon=12, end="2024-12-01")
    _, arima, _, _ = ARIMA().fit(data).predict_arrays(["mean"])
    _, naive, _, _ = get_algorithm("SeasonalNaive").fit(data).predict_arrays(["mean"])
    arima_error, naive_error = np.abs(arima - future).mean(), np.abs(naive - future).mean()
    assert arima_error < 0.7 * naive_error, f"ARIMA MAE {arima_error:.2f} vs seasonal naive {naive_error:.2f}"


def test_intervals_widen_with_the_horizon_and_quantiles_do_not_cross():
    rng = np.random.default_rng(1)
    model = fit([np.cumsum(rng.normal(size=150)), generated_series("seasonal", 120)], horizon=18)
    frame = model.predict([0.05, 0.1, 0.5, 0.9, 0.95, "mean"])
    assert (frame[["p5", "p10", "p50", "p90", "p95"]].diff(axis=1).iloc[:, 1:] >= 0).all().all()
    np.testing.assert_allclose(frame["p50"], frame["mean"])  # normal: the median is the mean
    for _, rows in frame.groupby("item_id", observed=True):
        width = (rows["p90"] - rows["p10"]).to_numpy()
        assert np.all(np.diff(width) >= -1e-9) and width[-1] > width[0]


def test_forecast_sd_matches_the_state_space_model_with_differences():
    """The psi-weight variance of the integrated model agrees with SARIMAX's own forecast of the levels."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    y = 50 + np.cumsum(arma(0.5, 0.3, 200, seed=4))
    model = fit([y], freq="1D", horizon=10, order=(1, 1, 1), allow_constant=False)
    state = model.states_[0]
    assert state["order"] == Order(1, 1, 1, 0, 0, 0, 1, False)
    phi, theta = state["coefs"]
    levels = SARIMAX(y, order=(1, 1, 1)).filter(np.r_[phi, theta, state["sigma2"]]).get_forecast(10)
    np.testing.assert_allclose(state["sd"], np.sqrt(levels.var_pred_mean), rtol=0.02)
    np.testing.assert_allclose(state["mean"], levels.predicted_mean, rtol=1e-3)
    psi = psi_weights(np.array([phi, theta]), state["order"], 3)
    assert psi[0] == 1.0 and psi[1] == pytest.approx(1 + phi + theta)


def related_data(items: int = 1, horizon: int = 14):
    """Daily sales lifted by 15 on promotion days; the promotion flag is known for the horizon too."""
    rng = np.random.default_rng(3)
    n = 200
    periods = pd.date_range("2024-01-01", periods=n + horizon, freq="D")
    targets, related = [], []
    for k in range(items):
        promo = (rng.random(n + horizon) < 0.2).astype(float)
        promo[n:] = [1, 0] * (horizon // 2)
        sales = 40 + 15 * promo + arma(0.4, 0, n + horizon, seed=6 + k)
        targets.append(pd.DataFrame({"item_id": f"i{k}", "timestamp": periods[:n], "demand": sales[:n]}))
        related.append(pd.DataFrame({"item_id": f"i{k}", "timestamp": periods, "promo": promo}))
    data = ForecastData.from_frame(
        pd.concat(targets), keys=["item_id"], target_column="demand", freq="1D", horizon=horizon,
        related=pd.concat(related),
    )  # fmt: skip
    return data, promo[n:]


def test_related_features_enter_as_regressors_known_into_the_future():
    data, future_promo = related_data()
    _, mean, _, _ = ARIMA().fit(data).predict_arrays(["mean"])
    lift = mean[0][future_promo == 1].mean() - mean[0][future_promo == 0].mean()
    assert lift == pytest.approx(15, abs=2.5)
    _, ignored, _, _ = ARIMA(use_related=False).fit(data).predict_arrays(["mean"])
    assert abs(ignored[0][future_promo == 1].mean() - ignored[0][future_promo == 0].mean()) < 3


def test_long_seasons_get_fourier_terms_instead_of_seasonal_orders():
    t = np.arange(52 * 4 + 26)
    y = 100 + 20 * np.sin(2 * np.pi * t / 52) + np.random.default_rng(2).normal(0, 2, len(t))
    model = fit([y[:-26]], freq="1W", horizon=26)
    assert model.states_[0]["order"].P == model.states_[0]["order"].Q == 0
    _, mean, _, _ = model.predict_arrays(["mean"])
    assert np.abs(mean[0] - y[-26:]).mean() < 5  # follows the yearly cycle (amplitude 20)


def test_fallbacks_for_flat_short_exact_and_gappy_series():
    line = np.arange(1.0, 31.0)
    gappy = generated_series("trending", 60)
    gappy[[5, 6, 30]] = np.nan
    model = fit([np.full(30, 7.0), [5.0, 7.0, 6.0], line, gappy], horizon=4)
    flat, short, exact, gaps = model.states_
    assert flat["order"] is None and short["order"] is None and exact["method"] == "exact"
    assert gaps["order"] is not None
    _, mean, quant, _ = model.predict_arrays([0.1, 0.9, "mean"])
    np.testing.assert_allclose(mean[0], 7.0)
    np.testing.assert_allclose(quant[0, :, 0], quant[0, :, 1])  # a flat series: no spread
    np.testing.assert_allclose(mean[1], 6.0)
    np.testing.assert_allclose(mean[2], [31, 32, 33, 34])  # a straight line goes on exactly
    assert np.all(np.isfinite(mean[3]))


def test_fixed_orders_methods_and_the_registry():
    y = 20 + np.cumsum(1 + arma(0, 0.4, 80, seed=1))
    for method in ("CSS", "ML", "CSS-ML"):
        model = fit([y], order=(0, 1, 1), method=method)
        assert model.states_[0]["order"] == Order(0, 1, 1, 0, 0, 0, 1, True)
        assert model.states_[0]["method"] == method.split("-")[-1]
    with pytest.raises(ValueError, match="method"):
        ARIMA(method="exact")
    assert isinstance(get_algorithm("arn:aws:forecast:::algorithm/ARIMA", max_p=3), ARIMA)


def test_worker_processes_give_the_same_forecast_as_one_process():
    data, _ = related_data(items=3)
    series = [generated_series(kind, 72, seed) for seed, kind in enumerate(["seasonal", "trending"] * 2)]
    monthly = ForecastData.from_arrays(series, freq="1M", horizon=6, end="2024-12-01")
    for dataset in (data, monthly):
        serial = ARIMA().fit(dataset).predict()
        parallel = ARIMA(n_jobs=2, chunk_size=1).fit(dataset).predict()
        pd.testing.assert_frame_equal(serial, parallel)
