"""Impact scores: exact Shapley values of the mean forecast over the attributes, normalised as Forecast's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast import explainability
from pipelines.forecast.base import get_algorithm
from pipelines.forecast.data import ForecastData

CNN_QR = {"epochs": 25, "context_length": 14, "channels": 16, "num_batches_per_epoch": 20}


def promotions_and_noise() -> ForecastData:
    """Sales +30 on promotion days; a noise series moves nothing; promotions in the horizon on day 2-4."""
    rng = np.random.default_rng(4)
    days, horizon, items = 200, 7, ["a", "b", "c", "d"]
    stamps = pd.date_range("2024-01-01", periods=days + horizon, freq="D")
    target, related = [], []
    for item in items:
        promo = (rng.random(days + horizon) < 0.3).astype(float)
        promo[days:] = [0, 1, 1, 1, 0, 0, 0]
        noise = rng.normal(0, 1, days + horizon)
        sales = 20 + 30 * promo + rng.normal(0, 2, days + horizon)
        target.append(pd.DataFrame({"item_id": item, "timestamp": stamps[:days], "demand": sales[:days]}))
        related.append(pd.DataFrame({"item_id": item, "timestamp": stamps, "promotion": promo, "noise": noise}))
    data = ForecastData.from_frame(
        pd.concat(target), keys=["item_id"], target_column="demand", freq="1D", horizon=horizon,
        related=pd.concat(related), non_negative=True,
    )  # fmt: skip
    meta = pd.DataFrame({"item_id": items, "colour": ["red", "red", "blue", "blue"]})
    return dataclasses.replace(data, item_metadata=meta)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ARIMA", {}),
        ("CNN-QR", CNN_QR),
        ("AutoPredictor", {"candidates": ["SeasonalNaive", "CNN-QR"], "candidate_params": {"CNN-QR": CNN_QR}}),
    ],
)
def test_a_strong_related_series_outranks_noise_and_the_scores_add_up(name, params):
    data = promotions_and_noise()
    model = get_algorithm(name, **params).fit(data)
    by_item, by_time, overall = explainability.impact_scores(model, data)
    scores = by_item.pivot(index="item_id", columns="attribute", values="impact_score")
    assert (scores["promotion"].abs() > scores["noise"].abs()).all(), scores
    assert overall["attribute"].iloc[0] == "promotion" and overall["impact_score"].sum() == pytest.approx(1.0)
    assert np.allclose(scores.abs().sum(axis=1), 1.0) and (scores.abs() <= 1).all().all()
    timed = by_time[by_time["item_id"] == "a"].pivot(index="timestamp", columns="attribute", values="impact_score")
    on_promotion = timed["promotion"].to_numpy()[1:4]
    assert (on_promotion > 0.5).all()  # the promoted days are pushed up by the promotion
    # Efficiency: the Shapley values add up to the full forecast minus the all-reference one.
    attributes, _ = explainability.attributes(model, data)
    values = explainability._shapley(model, data, attributes)
    full = explainability._forecast_mean(model, data, attributes, frozenset(range(len(attributes))))
    none = explainability._forecast_mean(model, data, attributes, frozenset())
    np.testing.assert_allclose(sum(values.values()), full - none, atol=1e-6)
    if name == "ARIMA":  # it reads no metadata: a zero score, and why
        assert (scores["colour"] == 0).all()
        assert "does not use" in by_item.loc[by_item.attribute == "colour", "note"].iloc[0]
    else:  # CNN-QR reads it, and so does the AutoPredictor through CNN-QR
        assert "colour" in {a.name for a in attributes}
        assert not by_item.loc[by_item.attribute == "colour", "note"].str.len().any()


def test_models_without_regressors_score_zero_and_say_so():
    data = promotions_and_noise()
    by_item, _, overall = explainability.impact_scores(get_algorithm("Theta").fit(data), data)
    assert (by_item["impact_score"] == 0).all() and set(overall["attribute"]) == {"promotion", "noise", "colour"}
    assert by_item["note"].str.contains("does not use").all()
