"""SeasonalNaive: last season repeated, spread from its own residuals, widening season by season."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.forecast.data import ForecastData
from pipelines.forecast.naive import SeasonalNaive


def forecast(series, horizon, levels=(0.1, 0.5, 0.9), **params):
    data = ForecastData.from_arrays([np.asarray(series, dtype=float)], freq="1D", horizon=horizon, end="2024-06-30")
    _, mean, quant, _ = SeasonalNaive(**params).fit(data).predict_arrays(list(levels))
    return mean[0], quant[0]


def test_repeats_the_last_week_for_daily_data():
    week = np.array([1, 2, 3, 4, 5, 6, 7], dtype=float)
    mean, quant = forecast(np.tile(week, 4), 10)
    np.testing.assert_array_equal(mean, np.r_[week, week[:3]])
    np.testing.assert_array_equal(quant[:, 1], mean)  # an exact pattern leaves no spread
    np.testing.assert_array_equal(quant[:, 0], quant[:, 2])


def test_first_season_takes_the_residual_quantiles():
    rng = np.random.default_rng(0)
    y = np.tile(np.arange(7.0), 20) + rng.normal(0, 1, 140)
    mean, quant = forecast(y, 7)
    residuals = y[7:] - y[:-7]
    residuals -= residuals.mean()
    np.testing.assert_allclose(quant[:, 0], mean + np.quantile(residuals, 0.1))
    np.testing.assert_allclose(quant[:, 2], mean + np.quantile(residuals, 0.9))


def test_spread_widens_with_each_season_ahead():
    rng = np.random.default_rng(1)
    y = np.tile(np.arange(7.0), 30) + rng.normal(0, 1, 210)
    _, quant = forecast(y, 21)
    width = quant[:, 2] - quant[:, 0]
    first, second, third = width[:7].mean(), width[7:14].mean(), width[14:].mean()
    assert first < second < third
    assert second / first == pytest.approx(np.sqrt(2), rel=0.2)  # a sum of two residuals


def test_shorter_than_a_season_falls_back_to_the_last_value():
    mean, _ = forecast([3.0, 5.0, 4.0], 4)
    np.testing.assert_array_equal(mean, [4.0] * 4)
    mean, _ = forecast([8.0], 2)
    np.testing.assert_array_equal(mean, [8.0, 8.0])


def test_season_length_can_be_set():
    mean, _ = forecast(np.tile([1.0, 9.0], 10), 4, season_length=2)
    np.testing.assert_array_equal(mean, [1.0, 9.0, 1.0, 9.0])
