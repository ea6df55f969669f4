"""DeepAR+: learns from all series at once, every likelihood, seeds, related series, cold start.

Networks are tiny and train for a few hundred batches, so that the file runs in seconds on two
CPU cores; the M3 benchmark in the final report uses the defaults.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast import metrics
from pipelines.forecast.backtest import backtest, predict_windows, window_starts
from pipelines.forecast.base import get_algorithm
from pipelines.forecast.data import ForecastData
from pipelines.forecast.deepar import DeepARPlus
from pipelines.forecast.deepar_features import lags_for, time_features
from pipelines.frequency import Frequency
from tests.forecast.conftest import HORIZON, KINDS, big_and_small_stores

TINY = {"num_cells": 16, "num_layers": 1, "batch_size": 32, "num_batches_per_epoch": 20, "num_samples": 50}
LEVELS = (0.1, 0.5, 0.9)


@pytest.fixture(scope="module")
def fitted(generated):
    data, _ = generated
    model = DeepARPlus(epochs=15, **TINY).fit(data)
    return model, model.predict([*LEVELS, "mean"])


def test_one_row_per_series_and_future_month_without_crossing(fitted):
    model, frame = fitted
    assert list(frame.columns) == ["item_id", "timestamp", "p10", "p50", "p90", "mean"]
    assert len(frame) == len(KINDS) * HORIZON and frame["timestamp"].dt.strftime("%Y-%m").iloc[0] == "2025-01"
    assert frame[["p10", "p50", "p90", "mean"]].notna().all().all()
    assert (frame["p10"] <= frame["p50"]).all() and (frame["p50"] <= frame["p90"]).all()
    assert (frame[["p10", "p50", "p90", "mean"]] >= 0).all().all()  # a non-negative target is clipped
    assert (frame["p90"] > frame["p10"]).mean() > 0.9
    assert model.training_loss_[0][-1] < model.training_loss_[0][0]


@pytest.mark.parametrize("kind", sorted(set(KINDS)))
def test_beats_the_flat_forecast_of_the_history_mean(fitted, generated, kind):
    """One network for all kinds of series learns each one's pattern: the trivial bound of test_algorithms."""
    _, frame = fitted
    data, future = generated
    rows = np.array([k == kind for k in KINDS])
    quantiles = {q: frame[f"p{round(q * 100)}"].to_numpy().reshape(len(KINDS), HORIZON)[rows] for q in LEVELS}
    score = metrics.average_weighted_quantile_loss(future[rows], quantiles)
    means = np.array([data.series(i).mean() for i in range(data.n_series)])[rows]
    bound = metrics.average_weighted_quantile_loss(
        future[rows], dict.fromkeys(LEVELS, np.repeat(means[:, None], 12, 1))
    )
    assert score < bound, f"DeepAR+ on {kind} series: average wQL {score:.3f} vs the flat forecast's {bound:.3f}"
    if kind == "seasonal":  # the yearly cycle itself, not just the level: well under half the flat error
        assert score < 0.5 * bound


@pytest.mark.parametrize("likelihood", ["gaussian", "negative-binomial"])
def test_other_likelihoods(generated, likelihood):
    data, _ = generated
    counts = ForecastData.from_arrays(
        [np.round(data.series(i)) for i in range(data.n_series)],
        freq="1M",
        horizon=HORIZON,
        end="2024-12-01",
        non_negative=True,
    )
    frame = DeepARPlus(likelihood=likelihood, epochs=3, **TINY).fit(counts).predict([0.1, 0.5, 0.9])
    assert frame[["p10", "p50", "p90"]].notna().all().all()
    assert (frame["p10"] <= frame["p50"]).all() and (frame["p50"] <= frame["p90"]).all()
    if likelihood == "negative-binomial":  # quantiles are drawn counts
        assert np.allclose(frame["p50"], np.round(frame["p50"])) and (frame["p10"] >= 0).all()


def test_same_seed_same_forecast_other_seed_another(generated):
    data, _ = generated
    first = DeepARPlus(epochs=2, seed=7, **TINY).fit(data).predict()
    again = DeepARPlus(epochs=2, seed=7, **TINY).fit(data).predict()
    other = DeepARPlus(epochs=2, seed=8, **TINY).fit(data).predict()
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["p50"], other["p50"])


def promotions(future_promotion: float) -> ForecastData:
    """Daily sales that jump by 30 on promotion days; the promotions of the next week are known."""
    rng = np.random.default_rng(1)
    days, horizon, items = 200, 7, ["a", "b", "c", "d"]
    stamps = pd.date_range("2024-01-01", periods=days + horizon, freq="D")
    target, related = [], []
    for item in items:
        promo = (rng.random(days + horizon) < 0.3).astype(float)
        promo[days:] = future_promotion
        sales = 20 + 30 * promo + rng.normal(0, 2, days + horizon)
        target.append(pd.DataFrame({"item_id": item, "timestamp": stamps[:days], "demand": sales[:days]}))
        related.append(pd.DataFrame({"item_id": item, "timestamp": stamps, "promotion": promo}))
    return ForecastData.from_frame(
        pd.concat(target),
        keys=["item_id"],
        target_column="demand",
        freq="1D",
        horizon=horizon,
        related=pd.concat(related),
        non_negative=True,
    )


def test_related_series_known_in_the_future_move_the_forecast():
    params = {**TINY, "epochs": 15, "context_length": 14}
    with_promotion = DeepARPlus(**params).fit(promotions(1.0)).predict(["mean"])
    without = DeepARPlus(**params).fit(promotions(0.0)).predict(["mean"])
    lift = with_promotion["mean"].to_numpy() - without["mean"].to_numpy()
    assert 15 < lift.mean() < 45, f"a promotion lifts the forecast by {lift.mean():.1f}; the data's lift is 30"
    ignored = DeepARPlus(**params, use_related_data=False).fit(promotions(1.0)).predict(["mean"])
    assert abs(ignored["mean"].mean() - without["mean"].mean()) < abs(lift.mean())


def test_cold_start_items_are_forecast_from_their_metadata():
    """Big-store items sell about 200, small-store ones about 10; a new item of each kind has no history."""
    data = big_and_small_stores()
    model = DeepARPlus(epochs=10, **TINY).fit(data)
    frame = model.predict(["mean", 0.5])
    assert model.cold_start_["item_id"].tolist() == ["new_big", "new_small"]
    assert len(frame) == 10 * 6 and frame["item_id"].astype(str).tolist()[-12:] == ["new_big"] * 6 + ["new_small"] * 6
    cold = frame.set_index(frame["item_id"].astype(str))
    big, small = cold.loc["new_big", "mean"].mean(), cold.loc["new_small", "mean"].mean()
    assert 80 < big < 400 and 3 < small < 30, (big, small)
    assert model.predict_arrays()[0].tolist() == list(range(8))  # backtests score the series with history only


def test_backtest_and_registry(generated):
    data, _ = generated
    assert isinstance(get_algorithm("arn:aws:forecast:::algorithm/Deep_AR_Plus"), DeepARPlus)
    assert isinstance(get_algorithm("DeepAR+", epochs=1), DeepARPlus)
    result = backtest(DeepARPlus(epochs=2, **TINY), data, windows=2, offset=HORIZON)
    assert result.windows["ItemCount"].tolist() == [len(KINDS)] * 2 and np.isfinite(result.summary["WAPE"])
    with pytest.raises(ValueError, match="likelihood"):
        DeepARPlus(likelihood="poisson")
    with pytest.raises(ValueError, match="num_cells"):
        DeepARPlus(num_cells=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        DeepARPlus().predict()


def test_lags_and_time_features_follow_the_frequency():
    assert lags_for(Frequency.parse("1D"), 1000).tolist() == [1, 2, 3, 4, 5, 6, 7, 14, 21, 28, 364]
    assert lags_for(Frequency.parse("1D"), 100).tolist() == [1, 2, 3, 4, 5, 6, 7, 14, 21, 28]  # as available
    assert 12 in lags_for(Frequency.parse("1M"), 100) and 24 in lags_for(Frequency.parse("1H"), 500)
    stamps = pd.date_range("2024-01-01", periods=48, freq="h")
    features = time_features(Frequency.parse("1H"), stamps)
    assert features.shape == (48, 3) and features.min() >= -0.5 and features.max() <= 0.5
    assert features[0, 0] == -0.5 and features[23, 0] == 0.5  # hour of day
    assert time_features(Frequency.parse("1Y"), pd.date_range("2000", periods=3, freq="YS")).shape == (3, 0)


def test_a_backtest_without_refits_trains_once_and_forecasts_each_window_from_its_own_history(generated, monkeypatch):
    data, _ = generated
    trained_until = []
    fit = DeepARPlus.fit
    monkeypatch.setattr(DeepARPlus, "fit", lambda self, d: trained_until.append(d.end) or fit(self, d))
    starts = window_starts(data.end, HORIZON, 3, HORIZON)
    rolled = predict_windows(DeepARPlus(epochs=2, **TINY), data, 3, HORIZON, [*LEVELS, "mean"], refit=False)
    assert trained_until == [starts[0]]  # one training, before the oldest window
    once = DeepARPlus(epochs=2, **TINY).fit(data.until(starts[0]))
    for window, start in zip(rolled, starts, strict=True):
        assert window.start == start
        _, mean, quant, _ = once.with_data(data.until(start)).predict_arrays([*LEVELS, "mean"])
        np.testing.assert_allclose(window.mean, mean, rtol=1e-5)
        np.testing.assert_allclose(window.quant, quant, rtol=1e-5)
    assert not np.allclose(rolled[0].mean, rolled[2].mean)  # later windows read their later history
    trained_until.clear()
    predict_windows(DeepARPlus(epochs=1, **TINY), data, 3, HORIZON, LEVELS)
    assert trained_until == starts  # the default refits per window, as Forecast's backtests do
