"""Prophet: seasonalities by frequency, holidays, regressors, reproducible quantiles."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast.base import get_algorithm
from pipelines.forecast.data import ForecastData
from pipelines.forecast.holidays import holiday_dates
from pipelines.forecast.prophet_model import Prophet, seasonalities
from pipelines.frequency import Frequency
from tests.forecast.conftest import generated_series


def test_seasonalities_follow_the_frequency_and_the_history():
    def switched(freq, days=3 * 365, **given):
        return {
            k.split("_")[0]: v
            for k, v in seasonalities(Frequency.parse(freq), pd.Timedelta(days=days), **given).items()
        }

    assert switched("1H") == {"yearly": 10, "weekly": 3, "daily": 4}
    assert switched("1H", days=20) == {"yearly": False, "weekly": 3, "daily": 4}  # under two years
    assert switched("1D") == {"yearly": 10, "weekly": 3, "daily": False}
    assert switched("2W") == {"yearly": 10, "weekly": False, "daily": False}
    assert switched("1M") == {"yearly": 5, "weekly": False, "daily": False}  # 12 months carry 5 harmonics
    assert switched("3M") == {"yearly": 1, "weekly": False, "daily": False}
    assert switched("1Y") == {"yearly": False, "weekly": False, "daily": False}
    assert switched("1M", yearly=8, daily=True) == {"yearly": 8, "weekly": False, "daily": True}  # given values win


def daily_sales(end: str, days: int, holiday_lift: float = 0.0, seed: int = 0) -> np.ndarray:
    """Daily sales with a weekly cycle, and ``holiday_lift`` more on US holidays."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range(end=end, periods=days, freq="D")
    lift = stamps.isin(holiday_dates("US", stamps[0], stamps[-1])["date"]) * holiday_lift
    return 100 + 10 * (stamps.day_of_week >= 5) + lift + rng.normal(0, 2, days)


def test_holidays_of_the_country_lift_the_forecast_on_the_holiday():
    data = ForecastData.from_arrays(
        [daily_sales("2023-12-10", 3 * 365, holiday_lift=40)], freq="1D", horizon=45, end="2023-12-10"
    )
    mean = Prophet(country="US", num_samples=200).fit(data).predict(["mean"]).set_index("timestamp")["mean"]
    mondays = mean[mean.index.day_of_week == 0]  # Christmas, New Year's Day and Martin Luther King Day are Mondays
    holidays = mondays.index.isin(pd.to_datetime(["2023-12-25", "2024-01-01", "2024-01-15"]))
    assert mondays[holidays].min() - mondays[~holidays].max() > 25, mondays
    plain = Prophet(num_samples=200).fit(data).predict(["mean"]).set_index("timestamp")["mean"]
    plain_mondays = plain[plain.index.day_of_week == 0]
    assert plain_mondays[holidays].min() - plain_mondays[~holidays].max() < 10


def test_weekly_data_gets_a_holiday_period_regressor():
    model = Prophet(country="US", num_samples=50)
    data = ForecastData.from_arrays([generated_series("seasonal", 120)], freq="1W", horizon=4, end="2024-12-02")
    model.fit(data)
    chunk, states = next(model._chunks(64, model.states_))
    future = Prophet._future(chunk, 0, states[0]["first"], states[0]["n"])  # what the forecast reads
    assert list(future.columns) == ["ds", "r0"]  # the holiday indicator
    assert future["r0"].tolist() == [0.0, 0.0, 1.0, 1.0]  # weeks from 9, 16, 23 and 30 Dec


def price_data(future_price: list[float]):
    """Demand that falls by 4 per unit of price; the price is known for the horizon."""
    rng = np.random.default_rng(4)
    n, h = 150, len(future_price)
    periods = pd.date_range("2024-01-01", periods=n + h, freq="D")
    price = np.r_[rng.uniform(5, 15, n), future_price]
    demand = 100 - 4 * price + rng.normal(0, 1, n + h)
    target = pd.DataFrame({"item_id": "a", "timestamp": periods[:n], "demand": demand[:n]})
    related = pd.DataFrame({"item_id": "a", "timestamp": periods, "price": price})
    return ForecastData.from_frame(
        target, keys=["item_id"], target_column="demand", freq="1D", horizon=h, related=related
    )


def test_related_features_are_regressors_that_change_the_forecast():
    cheap = Prophet(num_samples=100).fit(price_data([5.0] * 7)).predict(["mean"])["mean"]
    dear = Prophet(num_samples=100).fit(price_data([15.0] * 7)).predict(["mean"])["mean"]
    np.testing.assert_allclose(cheap - dear, 40, atol=5)
    ignored = Prophet(num_samples=100, use_related=False).fit(price_data([5.0] * 7)).predict(["mean"])["mean"]
    assert np.abs(ignored - 60).max() < 10  # the history's mean demand, whatever the price


def test_forecasts_repeat_with_a_seed_and_quantiles_do_not_cross(caplog):
    data = ForecastData.from_arrays(
        [generated_series("trending", 60, 1), generated_series("seasonal", 60, 2)],
        freq="1M",
        horizon=12,
        end="2024-12-01",
    )
    with caplog.at_level(logging.INFO):
        first = Prophet(num_samples=300).fit(data).predict([0.1, 0.5, 0.9, "mean"])
    assert not [
        r for r in caplog.records if r.levelno < logging.WARNING and r.name.startswith(("cmdstanpy", "prophet"))
    ]
    again = get_algorithm("Prophet", num_samples=300).fit(data).predict([0.1, 0.5, 0.9, "mean"])
    pd.testing.assert_frame_equal(first, again)
    other = Prophet(num_samples=300, seed=1).fit(data).predict([0.1, 0.5, 0.9, "mean"])
    assert not np.allclose(first["p90"], other["p90"])
    assert (first["p10"] <= first["p50"]).all() and (first["p50"] <= first["p90"]).all()
    assert (first["p90"] > first["p10"]).all()


def test_a_single_observation_is_repeated_and_bad_arguments_are_refused():
    data = ForecastData.from_arrays([[np.nan, np.nan, 5.0]], freq="1D", horizon=3, end="2024-01-03")
    frame = Prophet().fit(data).predict([0.1, 0.9, "mean"])
    assert (frame[["p10", "p90", "mean"]] == 5.0).all().all()
    with pytest.raises(ValueError, match="seasonality_mode"):
        Prophet(seasonality_mode="both")
    with pytest.raises(ValueError, match="country"):
        Prophet(country="XX").fit(data)


def test_worker_processes_give_the_same_forecast_as_one_process():
    series = [generated_series(kind, 60, seed) for seed, kind in enumerate(["trending", "seasonal"] * 2)]
    data = ForecastData.from_arrays(series, freq="1M", horizon=6, end="2024-12-01")
    serial = Prophet(num_samples=100).fit(data).predict()
    parallel = Prophet(num_samples=100, n_jobs=2, chunk_size=1).fit(data).predict()
    pd.testing.assert_frame_equal(serial, parallel)
