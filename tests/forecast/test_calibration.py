"""Calibrated intervals: published quantiles hold the share of actuals their levels promise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from pipelines.forecast import calibration
from pipelines.forecast.backtest import backtest
from pipelines.forecast.base import get_algorithm
from pipelines.forecast.data import ForecastData

LEVELS = [0.1, 0.5, 0.9]


def noisy_levels(seed: int, n: int = 300, history: int = 96, horizon: int = 12):
    """Series that jump between two levels at random (a regime the models' error models do not know):
    the history, and the horizon drawn from the same process with known quantiles."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(50, 150, n)

    def draw(size):
        jumps = rng.random((n, size)) < 0.5
        return level[:, None] + np.where(jumps, 15.0, -15.0) + rng.normal(0, 3, (n, size))

    return draw(history), draw(horizon)


def coverage(frame: pd.DataFrame, future: np.ndarray) -> dict[str, float]:
    y = future.reshape(-1)
    p10, p90 = frame["p10"].to_numpy(), frame["p90"].to_numpy()
    return {
        "p10": float((y < p10).mean()),
        "p90": float((y <= p90).mean()),
        "band": float(((y >= p10) & (y <= p90)).mean()),
    }


@pytest.mark.parametrize("name", ["Theta", "SeasonalNaive", "NPTS"])
def test_backtest_factors_bring_the_published_forecast_to_its_levels(name):
    history, future = noisy_levels(3)
    data = ForecastData.from_arrays(list(history), freq="1M", horizon=12, end="2024-12-01")
    model = get_algorithm(name)
    export = backtest(model, data, windows=2, quantiles=LEVELS).export
    found = calibration.backtest_factors(export, data.target, LEVELS)
    raw = model.clone().fit(data).predict(LEVELS)  # the published model: refitted on all the data
    before, after = coverage(raw, future), coverage(calibration.calibrate_frame(raw, LEVELS, found), future)
    assert abs(after["band"] - 0.8) <= 0.03, (name, before, after)
    assert abs(after["p10"] - 0.1) <= 0.03 and abs(after["p90"] - 0.9) <= 0.03, (name, after)


def test_factors_follow_known_quantiles_and_leave_good_intervals_alone():
    rng = np.random.default_rng(0)
    actual = rng.normal(0, 1, 5000)
    quant = np.column_stack([np.full(5000, norm.ppf(0.1) * s) for s in (0.5, 0, 0.5)])  # intervals half as wide
    quant[:, 2] = -quant[:, 0]
    found = calibration.factors(actual, quant, LEVELS)
    assert found[0.1] == pytest.approx(2.0, rel=0.1) and found[0.9] == pytest.approx(2.0, rel=0.1)
    right = np.column_stack([np.full(5000, norm.ppf(t)) for t in LEVELS])
    exact = calibration.factors(actual, right, LEVELS)
    assert exact[0.1] == pytest.approx(1.0, abs=0.08) and exact[0.9] == pytest.approx(1.0, abs=0.08)
    assert calibration.backtest_factors(pd.DataFrame({"y": [1.0], "p10": [0.0]}), "y", [0.1]) == {}  # no p50


def test_the_auto_predictors_published_blend_holds_its_levels():
    # The candidates' errors partly cancel in the blend: calibrating each one alone leaves the blend's
    # band too wide; the blend is calibrated on its own backtest forecast too.
    from pipelines.forecast.auto_predictor import AutoPredictor

    history, future = noisy_levels(5)
    data = ForecastData.from_arrays(list(history), freq="1M", horizon=12, end="2024-12-01")
    candidates = ["SeasonalNaive", "Theta", "NPTS"]
    model = AutoPredictor(candidates, forecast_types=LEVELS, windows=2, candidate_params={"Theta": {"model": "STM"}})
    model.fit(data)
    found = model.result_.calibration
    assert set(found) == {*candidates, "AutoPredictor"}
    after = coverage(model.predict(LEVELS), future)
    assert abs(after["band"] - 0.8) <= 0.03, (found, after)
    assert abs(after["p10"] - 0.1) <= 0.03 and abs(after["p90"] - 0.9) <= 0.03, after
    model.blend_calibration_ = {}  # as before: the candidates calibrated, the blend not
    assert coverage(model.predict(LEVELS), future)["band"] > after["band"]
