"""Accuracy on real data: the first 100 M3 monthly series, with the competition's horizon and test values.

ETS and Theta must beat seasonal naive on mean MASE, as they did in the M3 competition.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.forecast.base import get_algorithm
from pipelines.forecast.data import ForecastData
from pipelines.forecast.metrics import seasonal_error
from tests.forecast.conftest import m3_monthly

SERIES = 100


@pytest.fixture
def m3(shared_data):
    histories, futures, horizon, ids = m3_monthly(shared_data, SERIES)
    data = ForecastData.from_arrays(histories, freq="1M", horizon=horizon, end="1990-12-01", ids=ids)
    scales = np.array([seasonal_error(h, 12) for h in histories])
    return data, futures, scales


def mean_mase(name, m3) -> float:
    data, futures, scales = m3
    ids, mean, _, _ = get_algorithm(name, n_jobs=2).fit(data).predict_arrays(["mean"])
    assert len(ids) == SERIES and mean.shape == futures.shape
    return float(np.mean(np.abs(futures - mean).mean(axis=1) / scales))


def test_ets_and_theta_beat_seasonal_naive_on_m3_monthly(m3):
    baseline = mean_mase("SeasonalNaive", m3)
    ets, theta = mean_mase("ETS", m3), mean_mase("Theta", m3)
    assert 0.5 < baseline < 1.5
    assert ets < 0.9 * baseline, f"ETS {ets:.3f} vs seasonal naive {baseline:.3f}"
    assert theta < 0.9 * baseline, f"Theta {theta:.3f} vs seasonal naive {baseline:.3f}"
