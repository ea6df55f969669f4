"""Theta: the seasonality test, classical decomposition, SES and the theta drift."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from pipelines.forecast.data import ForecastData
from pipelines.forecast.theta import (
    Theta,
    fit_theta_model,
    seasonal_indices,
    seasonality_test,
    simple_exponential_smoothing,
    trend_lines,
)
from tests.forecast.conftest import generated_series


def test_seasonality_test_finds_a_cycle_and_not_noise():
    assert seasonality_test(generated_series("seasonal", 60), 12)
    assert not seasonality_test(np.random.default_rng(0).normal(10, 1, 60), 12)
    assert not seasonality_test(generated_series("seasonal", 24), 12)  # needs more than two seasons
    assert not seasonality_test(np.full(60, 3.0), 12)


def test_classical_decomposition_recovers_the_seasonal_figure():
    pattern = np.array([0.8, 1.0, 1.2, 1.0])
    y = np.tile(pattern, 10) * np.linspace(100, 120, 40)
    np.testing.assert_allclose(seasonal_indices(y, 4, multiplicative=True), pattern, atol=0.01)
    additive = np.tile([-2.0, 0.0, 3.0, -1.0], 10) + 50
    np.testing.assert_allclose(seasonal_indices(additive, 4, multiplicative=False), [-2, 0, 3, -1], atol=1e-9)
    odd = np.tile([1.0, 2.0, 3.0], 8)
    np.testing.assert_allclose(seasonal_indices(odd, 3, multiplicative=False), [-1, 0, 1], atol=1e-9)


def test_simple_exponential_smoothing_matches_its_recursion():
    rng = np.random.default_rng(2)
    y = np.r_[np.full(25, 100.0), np.full(25, 130.0)] + rng.normal(0, 3, 50)  # a level shift under noise
    alpha, level, sse = simple_exponential_smoothing(y)
    assert 0.05 < alpha < 0.9

    def run(start):  # the SES recursion from a start level: (final level, sum of squared errors)
        level, total = start, 0.0
        for value in y:
            total += (value - level) ** 2
            level += alpha * (value - level)
        return level, total

    best = minimize_scalar(lambda start: run(start)[1])
    assert level == pytest.approx(run(best.x)[0], rel=1e-6)
    assert sse == pytest.approx(best.fun, rel=1e-6)
    assert sse < min(simple_sse(y, alpha * 0.8), simple_sse(y, alpha * 1.2))  # alpha is the minimum


def simple_sse(y, alpha):
    """The best squared error at a given alpha, searched over start levels."""

    def total(start):
        level, out = start, 0.0
        for value in y:
            out += (value - level) ** 2
            level += alpha * (value - level)
        return out

    return minimize_scalar(total).fun


def test_forecast_is_the_level_plus_half_the_slope():
    y = 5 + 2.0 * np.arange(40) + np.random.default_rng(3).normal(0, 0.01, 40)
    data = ForecastData.from_arrays([y], freq="1Y", horizon=4, end="2024-01-01")
    model = Theta(model="STM").fit(data)
    state = model.states_[0]
    assert state["figure"] is None and state["slope"] == pytest.approx(2.0, abs=0.01)
    _, mean, quant, _ = model.predict_arrays([0.1, 0.9, "mean"])
    # SES tracks the last value (alpha near 1); theta = 2 adds half the slope per step.
    np.testing.assert_allclose(np.diff(mean[0]), 1.0, atol=0.02)
    assert mean[0][0] == pytest.approx(y[-1] + 1.0, abs=0.1)
    assert np.all(quant[0, :, 0] < mean[0]) and np.all(mean[0] < quant[0, :, 1])


def test_seasonal_series_is_forecast_with_its_cycle():
    full = generated_series("seasonal", 132)
    data = ForecastData.from_arrays([full[:120]], freq="1M", horizon=12, end="2024-12-01")
    model = Theta().fit(data)
    assert model.states_[0]["figure"] is not None and model.states_[0]["multiplicative"]
    _, mean, _, _ = model.predict_arrays(["mean"])
    assert np.mean(np.abs(mean[0] - full[120:])) < 3.0
    flat = Theta(deseasonalize=False).fit(data).predict_arrays(["mean"])[1]
    assert np.ptp(flat[0]) < 1.0  # without the decomposition the cycle is gone


def test_constant_and_tiny_series_forecast_their_last_value():
    data = ForecastData.from_arrays([np.full(10, 4.0), np.array([1.0, 2.0])], freq="1M", horizon=2, end="2024-12-01")
    _, mean, quant, _ = Theta().fit(data).predict_arrays([0.1, "mean"])
    np.testing.assert_array_equal(mean, [[4.0, 4.0], [2.0, 2.0]])
    np.testing.assert_array_equal(quant[:, :, 0], mean)


def test_dynamic_trend_lines_are_the_least_squares_line_of_the_data_so_far():
    y = np.random.default_rng(0).normal(0, 1, 30).cumsum()
    means, intercepts, slopes = trend_lines(y, dynamic=True)
    for i in (1, 2, 7, 29):
        slope, intercept = np.polyfit(np.arange(1, i + 2), y[: i + 1], 1)
        assert slopes[i] == pytest.approx(slope) and intercepts[i] == pytest.approx(intercept)
        assert means[i] == pytest.approx(y[: i + 1].mean())
    _, static_intercepts, static_slopes = trend_lines(y, dynamic=False)  # one line through all of it
    np.testing.assert_allclose([static_slopes[0], static_intercepts[0]], np.polyfit(np.arange(1, 31), y, 1))
    assert np.ptp(static_slopes) == 0


def test_dynamic_optimised_theta_follows_a_changed_trend_better_than_the_standard_method():
    rng = np.random.default_rng(4)
    t = np.arange(60)
    y = 100 + np.where(t < 40, 0.5 * t, 20 + 3.0 * (t - 40)) + rng.normal(0, 0.5, 60)  # slope 0.5, then 3
    data = ForecastData.from_arrays([y], freq="1Y", horizon=6, end="2024-01-01")
    future = y[-1] + 3.0 * np.arange(1, 7)
    errors = {}
    for name in ("STM", "DOTM", "auto"):
        _, mean, _, _ = Theta(model=name).fit(data).predict_arrays(["mean"])
        errors[name] = np.abs(mean[0] - future).mean()
    assert errors["DOTM"] < 0.8 * errors["STM"], errors
    assert errors["auto"] <= errors["STM"], errors


def test_optimised_theta_estimates_theta_and_auto_keeps_the_lowest_in_sample_error():
    y = 50 + 2.0 * np.arange(40) + np.random.default_rng(5).normal(0, 1, 40)
    fits = {name: fit_theta_model(y, name) for name in ("STM", "OTM", "DSTM", "DOTM")}
    assert fits["STM"]["theta"] == 2.0 and 1.0 <= fits["OTM"]["theta"] <= 100.0
    assert fits["OTM"]["mse"] <= fits["STM"]["mse"] + 1e-9  # theta = 2 is one of OTM's choices
    data = ForecastData.from_arrays([y], freq="1Y", horizon=3, end="2024-01-01")
    chosen = Theta(model="auto").fit(data).states_[0]["model"]
    assert fits[chosen]["mse"] == pytest.approx(min(f["mse"] for f in fits.values()))
    with pytest.raises(ValueError, match="theta model 'XYZ'"):
        Theta(model="XYZ")
