"""The algorithm interface: forecast types, the output frame, parallel chunks, the registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast.base import (
    ALGORITHMS,
    ForecastAlgorithm,
    column_name,
    forecast_types,
    get_algorithm,
)
from pipelines.forecast.data import ForecastData


class Crossing(ForecastAlgorithm):
    """Returns quantiles in the wrong order and a negative level, to test what predict guarantees."""

    name = "Crossing"
    fits_per_series = False

    def _forecast_series(self, y, state, chunk, j, levels, rng):
        h = chunk.horizon
        mean = np.full(h, y[-1] - 100.0)
        return mean, np.tile(np.linspace(10, -10, len(levels)), (h, 1)) + y[-1]


@pytest.fixture
def two_series():
    return ForecastData.from_arrays(
        [np.arange(1.0, 25.0), np.arange(5.0)], freq="1M", horizon=3, end="2024-06-01", ids=["long", "short"]
    )


def test_forecast_types_accept_forecast_spellings_and_refuse_the_rest():
    assert forecast_types([0.1, "0.5", "p90", "MEAN"]) == [0.1, 0.5, 0.9, "mean"]
    assert forecast_types(["0.01", 0.99, "p5"]) == [0.01, 0.99, 0.05]
    for bad in ([0.0], [1.0], [0.125], ["median"], [], [0.5, "p50"]):
        with pytest.raises(ValueError):
            forecast_types(bad)
    assert [column_name(t) for t in (0.1, 0.5, 0.9, 0.05, 0.99, "mean")] == ["p10", "p50", "p90", "p5", "p99", "mean"]


def test_predict_frame_has_keys_future_periods_and_a_column_per_type(two_series):
    forecast = Crossing().fit(two_series).predict(["mean", 0.9, 0.1])
    assert list(forecast.columns) == ["item_id", "timestamp", "mean", "p90", "p10"]
    assert forecast["item_id"].tolist() == ["long"] * 3 + ["short"] * 3
    assert isinstance(forecast["item_id"].dtype, pd.CategoricalDtype)
    assert forecast["timestamp"].dt.strftime("%Y-%m").tolist() == ["2024-07", "2024-08", "2024-09"] * 2
    # The algorithm put p10 above p90: predict sorts them back.
    assert (forecast["p10"] <= forecast["p90"]).all()
    assert forecast["p10"].iloc[0] == pytest.approx(24.0 - 10) and forecast["p90"].iloc[0] == pytest.approx(34.0)


def test_default_quantiles_are_p10_p50_p90(two_series):
    assert list(Crossing().fit(two_series).predict().columns) == ["item_id", "timestamp", "p10", "p50", "p90"]


def test_non_negative_targets_are_clipped_at_zero():
    data = ForecastData.from_arrays([np.arange(5.0)], freq="1D", horizon=2, end="2024-01-10", non_negative=True)
    forecast = Crossing().fit(data).predict([0.1, "mean"])
    assert (forecast["mean"] == 0).all() and (forecast["p10"] >= 0).all()


def test_series_without_history_in_the_window_are_left_out(two_series):
    past = two_series.until(19)  # the short series starts at position 19
    forecast = Crossing().fit(past).predict()
    assert forecast["item_id"].unique().tolist() == ["long"]


def test_predict_before_fit_says_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        Crossing().predict()


def test_worker_processes_give_the_same_forecast_as_one_process():
    rng = np.random.default_rng(3)
    data = ForecastData.from_arrays(
        [rng.poisson(2, 60).astype(float) for _ in range(9)], freq="1D", horizon=7, end="2024-03-31"
    )
    serial = get_algorithm("NPTS", n_jobs=1).fit(data).predict()
    parallel = get_algorithm("NPTS", n_jobs=2, chunk_size=2).fit(data).predict()
    pd.testing.assert_frame_equal(serial, parallel)
    theta = get_algorithm("Theta", n_jobs=2, chunk_size=3).fit(data)
    assert len(theta.states_) == 9 and all(s is not None for s in theta.states_)


def test_registry_finds_algorithms_by_forecast_name():
    assert isinstance(get_algorithm("ETS"), ALGORITHMS["ETS"])
    assert type(get_algorithm("arn:aws:forecast:::algorithm/NPTS")).__name__ == "NPTS"
    assert type(get_algorithm("seasonalnaive")).__name__ == "SeasonalNaive"
    assert {"ETS", "NPTS", "Theta", "SeasonalNaive"} <= set(ALGORITHMS)
    with pytest.raises(ValueError, match="unknown algorithm"):
        get_algorithm("Prophet2000")


def test_hyperparameters_are_constructor_arguments():
    npts = get_algorithm("NPTS", kernel_type="uniform", num_samples=50, n_jobs=2)
    params = npts.get_params()
    assert params["kernel_type"] == "uniform" and params["num_samples"] == 50 and params["n_jobs"] == 2
    copy = npts.clone()
    assert copy is not npts and copy.get_params() == params
    assert "kernel_type='uniform'" in repr(npts)
    with pytest.raises(ValueError):
        get_algorithm("NPTS", kernel_type="gaussian")
