"""Every algorithm on generated series: the right shape and dates, no crossing, better than trivial."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.forecast import metrics
from pipelines.forecast.base import get_algorithm
from tests.forecast.conftest import HORIZON, KINDS

NAMES = ("SeasonalNaive", "ETS", "Theta", "NPTS")
LEVELS = (0.1, 0.5, 0.9)


@pytest.fixture(scope="module", params=NAMES)
def forecast(request, generated):
    data, _ = generated
    return request.param, get_algorithm(request.param, n_jobs=2).fit(data).predict([*LEVELS, "mean"])


def test_one_row_per_series_and_future_month(forecast, generated):
    _, frame = forecast
    data, _ = generated
    assert len(frame) == len(KINDS) * HORIZON
    assert list(frame.columns) == ["item_id", "timestamp", "p10", "p50", "p90", "mean"]
    assert frame["item_id"].astype(str).tolist() == [
        i for i in data.keys["item_id"].astype(str) for _ in range(HORIZON)
    ]
    months = frame["timestamp"].dt.strftime("%Y-%m").unique().tolist()
    assert months == [f"2025-{m:02d}" for m in range(1, 13)]
    assert frame[["p10", "p50", "p90", "mean"]].notna().all().all()


def test_quantiles_do_not_cross_and_stay_non_negative(forecast):
    _, frame = forecast
    assert (frame["p10"] <= frame["p50"]).all() and (frame["p50"] <= frame["p90"]).all()
    assert (frame[["p10", "p50", "p90", "mean"]] >= 0).all().all()
    assert (frame["p90"] > frame["p10"]).mean() > 0.5  # an interval, not a point, for most rows


@pytest.mark.parametrize("kind", sorted(set(KINDS)))
def test_beats_the_flat_forecast_of_the_history_mean(forecast, generated, kind):
    """The trivial bound: every quantile at the history's mean. Scored by average wQL per kind."""
    name, frame = forecast
    data, future = generated
    rows = np.array([k == kind for k in KINDS])
    quantiles = {q: frame[f"p{round(q * 100)}"].to_numpy().reshape(len(KINDS), HORIZON)[rows] for q in LEVELS}
    score = metrics.average_weighted_quantile_loss(future[rows], quantiles)
    means = np.array([data.series(i).mean() for i in range(data.n_series)])[rows]
    flat = np.repeat(means[:, None], HORIZON, axis=1)
    bound = metrics.average_weighted_quantile_loss(future[rows], dict.fromkeys(LEVELS, flat))
    assert score < bound, f"{name} on {kind} series: average wQL {score:.3f} vs the flat forecast's {bound:.3f}"
