"""ETS: which models are tried, the fallbacks and guards, and the forecast distribution."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.forecast.data import ForecastData
from pipelines.forecast.ets import ETS, candidates, sane_band
from tests.forecast.conftest import generated_series


def fit(series, horizon=6, freq="1M", **params):
    data = ForecastData.from_arrays([np.asarray(series, dtype=float)], freq=freq, horizon=horizon, end="2024-12-01")
    return ETS(**params).fit(data)


def names(specs):
    return sorted(s.name for s in specs)


def test_positive_seasonal_data_tries_the_fifteen_models_of_r_ets():
    y = generated_series("seasonal", 120)
    tried = names(candidates(y, 12))
    assert len(tried) == 15
    assert "MAdM" in tried and "ANM" not in tried and "AAdM" not in tried  # additive error, multiplicative season: out


def test_non_positive_short_or_long_seasons_narrow_the_choice():
    y = generated_series("seasonal", 120)
    assert names(candidates(y - 100, 12)) == ["AAA", "AAN", "AAdA", "AAdN", "ANA", "ANN"]  # no multiplicative
    assert all(s.season == "N" for s in candidates(y[:20], 12))  # under two full seasons
    assert all(s.season == "N" for s in candidates(np.tile(y, 3), 52))  # weekly data: 52 > 24
    assert names(candidates(y[:5], 12)) == ["ANN", "MNN"]  # five points carry no trend
    assert candidates(y[:3], 12) == []
    assert names(candidates(y, 12, model="AAN", damped=False)) == ["AAN"]


def test_seasonal_series_gets_a_seasonal_model_and_follows_the_cycle():
    full = generated_series("seasonal", 132)
    model = fit(full[:120], horizon=12)
    assert model.states_[0]["spec"].season in ("A", "M")
    _, mean, _, _ = model.predict_arrays(["mean"])
    assert np.mean(np.abs(mean[0] - full[120:])) < 3.0  # noise sd is 2


def test_a_fixed_model_is_used_as_given():
    model = fit(generated_series("trending", 60), model="AAN", damped=False)
    assert model.states_[0]["spec"].name == "AAN"
    with pytest.raises(ValueError, match="three letters"):
        ETS(model="XYZ")


def test_linear_models_get_exact_normal_intervals():
    model = fit(generated_series("trending", 60), model="ANN")
    _, mean, quant, _ = model.predict_arrays([0.1, 0.5, 0.9, "mean"])
    np.testing.assert_allclose(quant[0, :, 1], mean[0])
    upper = quant[0, :, 2] - mean[0]
    np.testing.assert_allclose(quant[0, :, 0], mean[0] - upper)
    assert np.all(np.diff(upper) > 0)  # widens with the horizon


def test_multiplicative_models_are_simulated_reproducibly():
    y = generated_series("seasonal", 72)
    first = fit(y, model="MNM").predict([0.1, 0.9])
    again = fit(y, model="MNM").predict([0.1, 0.9])
    assert first.equals(again)
    assert (first["p90"] > first["p10"]).all()


def test_too_short_for_any_model_falls_back_to_a_random_walk():
    model = fit([5.0, 7.0, 6.0], horizon=3)
    assert model.states_[0]["spec"] is None
    _, mean, quant, _ = model.predict_arrays([0.1, 0.9, "mean"])
    np.testing.assert_array_equal(mean[0], [6.0, 6.0, 6.0])
    assert np.all(np.diff(quant[0, :, 1] - quant[0, :, 0]) > 0)


def test_forecasts_stay_within_three_ranges_of_the_history():
    low, high = sane_band(np.array([10.0, 20.0]))
    assert (low, high) == (-20.0, 50.0)
    low, high = sane_band(np.array([5.0, 5.0]))  # a flat series still gets room: a tenth of its level
    assert low == pytest.approx(3.5) and high == pytest.approx(6.5)
    y = np.r_[np.full(30, 100.0), np.linspace(100, 400, 10)]  # takes off at the end
    model = fit(y, horizon=48)
    band = model.states_[0]["band"]
    _, mean, quant, _ = model.predict_arrays([0.1, 0.9, "mean"])
    assert mean.max() <= band[1] and quant.max() <= band[1]
