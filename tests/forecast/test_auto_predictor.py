"""AutoPredictor: per-item choice on the backtest, blends, every candidate's results kept, failures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.forecast.auto_predictor import AutoPredictor
from pipelines.forecast.base import get_algorithm
from pipelines.forecast.data import ForecastData

HORIZON = 12
# Theta without its seasonal decomposition cannot follow a yearly cycle; seasonal naive cannot follow a trend.
NO_SEASON = {"Theta": {"deseasonalize": False}}


@pytest.fixture(scope="module")
def cycles_and_trends() -> ForecastData:
    """Items 0-3 repeat a sharp yearly cycle; items 4-7 climb steadily with a little noise."""
    rng = np.random.default_rng(4)
    t = np.arange(96)
    cycle = np.array([5, 7, 9, 20, 40, 35, 12, 8, 6, 5, 30, 60], dtype=float)
    series = [cycle[t % 12] * (1 + k) + rng.normal(0, 0.2, len(t)) for k in range(4)]
    series += [100 + (3 + k) * t + rng.normal(0, 2, len(t)) for k in range(4)]
    ids = [f"cycle_{k}" for k in range(4)] + [f"trend_{k}" for k in range(4)]
    return ForecastData.from_arrays(series, freq="1M", horizon=HORIZON, end="2024-12-01", ids=ids)


def test_each_item_gets_the_candidate_that_backtests_best(cycles_and_trends):
    data = cycles_and_trends
    model = AutoPredictor(
        ["SeasonalNaive", "Theta"], metric="WAPE", windows=2, top_k=1, candidate_params=NO_SEASON, item_share=1.0
    )
    model.fit(data)
    result = model.result_
    choices = dict(zip(result.choices["item_id"].astype(str), result.choices["algorithms"], strict=True))
    assert choices == {**{f"cycle_{k}": "SeasonalNaive" for k in range(4)}, **{f"trend_{k}": "Theta" for k in range(4)}}
    # Every candidate's results stay for inspection: full backtests, per-item scores, summaries.
    assert set(result.backtests) == {"SeasonalNaive", "Theta"} and not result.errors
    assert result.backtests["Theta"].windows["ItemCount"].tolist() == [8, 8]
    assert list(result.item_scores.columns) == ["item_id", "SeasonalNaive", "Theta", "AutoPredictor"]
    scores = result.item_scores.set_index(result.item_scores["item_id"].astype(str))
    assert (scores.loc["cycle_0", "SeasonalNaive"] * 3 < scores.loc["cycle_0", "Theta"]) and (
        scores.loc["trend_0", "Theta"] * 3 < scores.loc["trend_0", "SeasonalNaive"]
    )
    summary = result.summary.set_index("algorithm")["WAPE"]
    assert summary["AutoPredictor"] < min(summary["SeasonalNaive"], summary["Theta"])
    json.dumps(result.to_dict())
    # The forecast of an item is its chosen candidate's, fitted on all the data.
    frame = model.predict([0.1, 0.5, 0.9, "mean"])
    naive = get_algorithm("SeasonalNaive").fit(data).predict([0.1, 0.5, 0.9, "mean"])
    theta = get_algorithm("Theta", deseasonalize=False).fit(data).predict([0.1, 0.5, 0.9, "mean"])
    cycles = frame["item_id"].astype(str).str.startswith("cycle").to_numpy()
    np.testing.assert_allclose(frame.loc[cycles, "p50"], naive.loc[cycles, "p50"])
    np.testing.assert_allclose(frame.loc[~cycles, "mean"], theta.loc[~cycles, "mean"])
    assert list(frame.columns) == ["item_id", "timestamp", "p10", "p50", "p90", "mean"]


@pytest.mark.parametrize("metric", ["WAPE", "AverageWeightedQuantileLoss"])
def test_items_are_still_chosen_one_by_one_without_p50_or_mean_among_the_forecast_types(cycles_and_trends, metric):
    """Forecast's point metrics score the mean, which every backtest carries whatever the types."""
    model = AutoPredictor(
        ["SeasonalNaive", "Theta"],
        metric=metric,
        forecast_types=[0.1, 0.9],
        windows=2,
        top_k=1,
        candidate_params=NO_SEASON,
        item_share=1.0,
    ).fit(cycles_and_trends)
    choices = dict(zip(model.result_.choices["item_id"].astype(str), model.result_.choices["algorithms"], strict=True))
    assert {choices[f"cycle_{k}"] for k in range(4)} == {"SeasonalNaive"}
    assert {choices[f"trend_{k}"] for k in range(4)} == {"Theta"}
    assert list(model.predict([0.1, 0.9]).columns[-2:]) == ["p10", "p90"]


def test_each_items_weights_are_partly_pooled_with_the_data_sets_blend(cycles_and_trends):
    model = AutoPredictor(["SeasonalNaive", "Theta"], metric="WAPE", windows=2, top_k=1, candidate_params=NO_SEASON)
    result = model.fit(cycles_and_trends).result_  # item_share 0.5 by default
    scores = result.item_scores[["SeasonalNaive", "Theta"]].to_numpy()
    pooled = int(np.argmin(scores.mean(axis=0)))  # the data set's best candidate, by mean item score
    own = np.argmin(scores, axis=1)
    weights = result.choices[["weight_SeasonalNaive", "weight_Theta"]].to_numpy()
    expected = 0.5 * np.eye(2)[own] + 0.5 * np.eye(2)[pooled]
    np.testing.assert_allclose(weights, expected)
    assert (own != pooled).any() and (own == pooled).any()  # both kinds of items are there
    with pytest.raises(ValueError, match="item_share"):
        AutoPredictor(item_share=1.5)


def test_blends_weigh_by_inverse_error_and_never_lose_to_their_best_member(generated):
    data, _ = generated
    model = AutoPredictor(["SeasonalNaive", "Theta", "NPTS"], top_k=3, selection="best", item_share=1.0).fit(data)
    result = model.result_
    weights = result.choices[[f"weight_{n}" for n in ("SeasonalNaive", "Theta", "NPTS")]].to_numpy()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert (result.choices["algorithms"].str.contains(r"\+")).any()  # some items take a blend
    members = result.item_scores[["SeasonalNaive", "Theta", "NPTS"]].to_numpy()
    assert (result.item_scores["AutoPredictor"].to_numpy() <= np.nanmin(members, axis=1) + 1e-12).all()
    frame = model.predict([0.1, 0.5, 0.9])
    assert (frame["p10"] <= frame["p50"]).all() and (frame["p50"] <= frame["p90"]).all()
    assert frame[["p10", "p50", "p90"]].notna().all().all() and len(frame) == data.n_series * data.horizon


def test_a_failing_candidate_is_recorded_and_the_others_compete(cycles_and_trends):
    data = cycles_and_trends
    model = AutoPredictor(
        ["DeepAR+", "SeasonalNaive"],
        metric="MASE",
        candidate_params={"DeepAR+": {"likelihood": "negative-binomial"}},
    )
    shifted = ForecastData.from_arrays(
        [data.series(i) - 50 for i in range(data.n_series)], freq="1M", horizon=HORIZON, end="2024-12-01"
    )  # negative values: no counts for the negative binomial
    result = model.fit(shifted).result_
    assert "negative values" in result.errors["DeepAR+"] and result.candidates == ["SeasonalNaive"]
    assert (result.choices["algorithms"] == "SeasonalNaive").all()
    with pytest.raises(ValueError, match="optimization metric"):
        AutoPredictor(metric="accuracy")
    with pytest.raises(ValueError, match="unknown algorithm"):
        AutoPredictor(["ETS", "Prophecy"])


def test_deepar_joins_the_candidates_and_brings_cold_start_items(cycles_and_trends):
    import dataclasses

    import pandas as pd

    data = cycles_and_trends
    meta = pd.DataFrame({"item_id": [*data.keys["item_id"].astype(str), "cycle_new"], "kind": ["c"] * 4 + ["t"] * 5})
    data = dataclasses.replace(data, item_metadata=meta)
    tiny = {"epochs": 2, "num_cells": 8, "num_layers": 1, "num_batches_per_epoch": 10, "num_samples": 20}
    model = AutoPredictor(["SeasonalNaive", "DeepAR+"], candidate_params={"DeepAR+": tiny}).fit(data)
    frame = model.predict()
    assert set(model.result_.backtests) == {"SeasonalNaive", "DeepAR+"}
    assert frame["item_id"].astype(str).tolist()[-HORIZON:] == ["cycle_new"] * HORIZON
    assert frame[["p10", "p50", "p90"]].notna().all().all()
