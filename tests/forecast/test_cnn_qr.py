"""CNN-QR: direct multi-horizon quantiles from one CNN over all series; related data modes; cold start.

Networks are small and train for a few hundred batches, so that the file runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast import metrics
from pipelines.forecast.backtest import backtest
from pipelines.forecast.base import get_algorithm
from pipelines.forecast.cnn_qr import CNNQR, TRAINING_LEVELS, interpolate_levels, quantile_mean
from tests.forecast.conftest import HORIZON, KINDS, big_and_small_stores
from tests.forecast.test_deepar import promotions

SMALL = {"batch_size": 32, "num_batches_per_epoch": 20, "channels": 16}


def test_quantiles_and_mean_are_read_off_the_learned_grid():
    grid = np.broadcast_to(TRAINING_LEVELS * 10, (2, 3, len(TRAINING_LEVELS)))  # a uniform(0, 10) quantile function
    np.testing.assert_allclose(interpolate_levels(grid, np.array([0.1, 0.25, 0.5])), [[[1.0, 2.5, 5.0]] * 3] * 2)
    np.testing.assert_allclose(quantile_mean(grid), 5.0, atol=0.01)


def test_forecasts_every_series_without_crossing_and_beats_the_flat_forecast(generated):
    data, future = generated
    model = CNNQR(epochs=30, **SMALL).fit(data)
    frame = model.predict([0.1, 0.5, 0.9, "mean"])
    assert list(frame.columns) == ["item_id", "timestamp", "p10", "p50", "p90", "mean"]
    assert len(frame) == len(KINDS) * HORIZON and frame[["p10", "p50", "p90", "mean"]].notna().all().all()
    assert (frame["p10"] <= frame["p50"]).all() and (frame["p50"] <= frame["p90"]).all()
    assert model.training_loss_[-1] < model.training_loss_[0]
    quantiles = {q: frame[f"p{round(q * 100)}"].to_numpy().reshape(len(KINDS), HORIZON) for q in (0.1, 0.5, 0.9)}
    means = np.array([data.series(i).mean() for i in range(data.n_series)])
    flat = dict.fromkeys(quantiles, np.repeat(means[:, None], HORIZON, 1))
    score = metrics.average_weighted_quantile_loss(future, quantiles)
    assert score < metrics.average_weighted_quantile_loss(future, flat)


def test_a_forward_looking_promotion_moves_the_forecast_and_the_modes_say_where_it_is_read():
    params = {**SMALL, "epochs": 25, "context_length": 14}
    lift = {}
    for mode in ("ALL", "FORWARD_LOOKING", "HISTORICAL", "NONE"):
        on = CNNQR(**params, use_related_data=mode).fit(promotions(1.0)).predict(["mean"])["mean"].mean()
        off = CNNQR(**params, use_related_data=mode).fit(promotions(0.0)).predict(["mean"])["mean"].mean()
        lift[mode] = on - off
    assert 15 < lift["ALL"] < 45 and 15 < lift["FORWARD_LOOKING"] < 45, lift  # the data's lift is 30
    assert abs(lift["HISTORICAL"]) < 10 and abs(lift["NONE"]) < 10, lift  # the future promotion is not read


def test_cold_start_items_are_forecast_from_their_metadata():
    data = big_and_small_stores()
    model = CNNQR(epochs=20, **SMALL).fit(data)
    frame = model.predict(["mean", 0.5])
    assert frame["item_id"].astype(str).tolist()[-12:] == ["new_big"] * 6 + ["new_small"] * 6
    cold = frame.set_index(frame["item_id"].astype(str))
    big, small = cold.loc["new_big", "mean"].mean(), cold.loc["new_small", "mean"].mean()
    assert 80 < big < 400 and 2 < small < 40, (big, small)
    bare = CNNQR(epochs=2, use_item_metadata="NONE", **SMALL).fit(data)
    assert not len(bare.cold_start_)  # without metadata there is nothing to forecast new items from


def test_same_seed_same_forecast_registry_backtest_and_bad_settings(generated):
    data, _ = generated
    first = CNNQR(epochs=2, seed=3, **SMALL).fit(data).predict()
    again = CNNQR(epochs=2, seed=3, **SMALL).fit(data).predict()
    pd.testing.assert_frame_equal(first, again)
    assert isinstance(get_algorithm("CNN-QR", epochs=1), CNNQR)
    result = backtest(CNNQR(epochs=2, **SMALL), data, windows=2, offset=HORIZON)
    assert result.windows["ItemCount"].tolist() == [len(KINDS)] * 2
    with pytest.raises(ValueError, match="use_related_data"):
        CNNQR(use_related_data="SOME")
    with pytest.raises(ValueError, match="epochs"):
        CNNQR(epochs=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        CNNQR().predict()
