"""NPTS: sampling from the past with exponential or uniform kernels, seasonal or not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast.data import ForecastData
from pipelines.forecast.npts import NPTS, seasonal_feature
from pipelines.frequency import Frequency


def forecast(series, horizon=7, freq="1D", end="2024-06-30", levels=(0.1, 0.5, 0.9), **params):
    data = ForecastData.from_arrays([np.asarray(series, dtype=float)], freq=freq, horizon=horizon, end=end)
    _, mean, quant, _ = NPTS(**params).fit(data).predict_arrays([*levels, "mean"])
    return mean[0], quant[0]


def test_forecasts_are_past_values():
    rng = np.random.default_rng(0)
    y = rng.choice([0.0, 0.0, 0.0, 2.0, 5.0], 200)
    for params in ({}, {"use_seasonal_model": False}, {"kernel_type": "uniform"}):
        _, quant = forecast(y, levels=(0.01, 0.5, 0.99), **params)
        assert set(np.unique(quant)) <= {0.0, 2.0, 5.0}  # quantiles are drawn values, not interpolations
        assert quant.min() >= 0.0 and quant.max() <= 5.0


def test_seasonal_model_samples_the_same_weekday():
    week = np.array([1, 2, 3, 4, 5, 6, 7], dtype=float)
    y = np.tile(week, 20)  # 2024-06-30 is a Sunday: the last value (7) is a Sunday's
    mean, quant = forecast(y, horizon=7)
    np.testing.assert_array_equal(mean, week)
    np.testing.assert_array_equal(quant[:, 0], quant[:, 2])
    _, plain = forecast(y, horizon=7, use_seasonal_model=False)
    assert np.all(plain[:, 2] > plain[:, 0])  # without seasons any day may be drawn


def test_uniform_kernel_is_the_climatological_forecaster():
    rng = np.random.default_rng(1)
    y = rng.gamma(2.0, 3.0, 300)
    mean, quant = forecast(
        y, horizon=5, kernel_type="uniform", use_seasonal_model=False, num_samples=20000, levels=(0.1, 0.5, 0.9)
    )
    expected = np.quantile(y, [0.1, 0.5, 0.9])
    np.testing.assert_allclose(quant.mean(axis=0), expected, rtol=0.05)
    assert mean.mean() == pytest.approx(y.mean(), rel=0.03)


def test_exponential_kernel_prefers_recent_values():
    y = np.r_[np.zeros(50), np.full(50, 10.0)]
    mean_default, _ = forecast(y, use_seasonal_model=False, num_samples=4000)
    # Distance is scaled by the span (GluonTS): weight 1 means e times less likely at the far end.
    assert 5.0 < mean_default.mean() < 7.0
    mean_sharp, _ = forecast(y, use_seasonal_model=False, exp_kernel_weights=50.0, num_samples=4000)
    assert mean_sharp.mean() > 9.9


def test_context_length_limits_the_history():
    _, quant = forecast(np.r_[np.full(50, 100.0), np.ones(20)], context_length=20)
    np.testing.assert_array_equal(quant, np.ones_like(quant))


def test_gaps_are_never_drawn():
    y = np.r_[np.full(30, np.nan), np.full(30, 3.0)]
    mean, _ = forecast(y)
    np.testing.assert_array_equal(mean, np.full(7, 3.0))


def test_samples_are_seeded_per_series():
    y = np.random.default_rng(2).poisson(3, 100)
    first, again, other = (forecast(y, seed=s)[1] for s in (0, 0, 1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_seasonal_features_follow_forecasts_table():
    stamps = pd.DatetimeIndex(["2024-03-04 05:15", "2024-03-10 23:45"])  # a Monday, a Sunday
    np.testing.assert_allclose(seasonal_feature(Frequency.parse("15min"), stamps), [15 / 59 - 0.5, 45 / 59 - 0.5])
    np.testing.assert_allclose(seasonal_feature(Frequency.parse("1H"), stamps), [5 / 23 - 0.5, 0.5])
    np.testing.assert_allclose(seasonal_feature(Frequency.parse("1D"), stamps), [-0.5, 0.5])
    np.testing.assert_allclose(seasonal_feature(Frequency.parse("1W"), stamps), [3 / 30 - 0.5, 9 / 30 - 0.5])
    np.testing.assert_allclose(seasonal_feature(Frequency.parse("1M"), stamps), [2 / 11 - 0.5] * 2)
    assert seasonal_feature(Frequency.parse("1Y"), stamps) is None
