"""Forecast's accuracy metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.forecast import metrics

Y = np.array([2.0, 0.0, 4.0])
Q = np.array([1.0, 1.0, 5.0])  # misses by -1, +1, +1


def test_weighted_quantile_loss_by_hand():
    # tau 0.1: 0.1 * 1 (under) + 0.9 * 1 + 0.9 * 1 (over) = 1.9; times 2, over sum|y| = 6.
    assert metrics.weighted_quantile_loss(Y, Q, 0.1) == pytest.approx(2 * 1.9 / 6)
    # tau 0.9: 0.9 + 0.1 + 0.1 = 1.1.
    assert metrics.weighted_quantile_loss(Y, Q, 0.9) == pytest.approx(2 * 1.1 / 6)
    # tau 0.5 is WAPE: every miss weighs a half, times 2.
    assert metrics.weighted_quantile_loss(Y, Q, 0.5) == pytest.approx(metrics.wape(Y, Q))


def test_average_weighted_quantile_loss_is_the_mean_over_quantiles():
    qs = {0.1: Q, 0.5: Q, 0.9: Q}
    expected = (2 * 1.9 / 6 + 3 / 6 + 2 * 1.1 / 6) / 3
    assert metrics.average_weighted_quantile_loss(Y, qs) == pytest.approx(expected)


def test_point_metrics_by_hand():
    assert metrics.wape(Y, Q) == pytest.approx(3 / 6)
    assert metrics.rmse(Y, Q) == pytest.approx(1.0)
    # MAPE skips y == 0: (1/2 + 1/4) / 2.
    assert metrics.mape(Y, Q) == pytest.approx(0.375)
    # History 1, 3, 2, 4 with season 1: naive errors 2, 1, 2 -> scale 5/3; mean error 1.
    scale = metrics.seasonal_error([1, 3, 2, 4], 1)
    assert scale == pytest.approx(5 / 3)
    assert metrics.mase(Y, Q, scale) == pytest.approx(0.6)


def test_seasonal_error_uses_the_season_and_falls_back_to_naive_when_short():
    history = np.array([1, 5, 2, 6, 3, 7], dtype=float)  # season 2: diffs 1, 1, 1, 1
    assert metrics.seasonal_error(history, 2) == pytest.approx(1.0)
    assert metrics.seasonal_error(history[:2], 2) == pytest.approx(4.0)  # too short for m = 2: naive
    assert np.isnan(metrics.seasonal_error([3.0], 1))


def test_unobserved_actuals_are_skipped():
    y = np.array([2.0, np.nan, 4.0, 0.0])
    q = np.array([1.0, 100.0, 5.0, 1.0])
    assert metrics.wape(y, q) == pytest.approx(metrics.wape(Y, Q))
    assert metrics.rmse(y, q) == pytest.approx(1.0)
    assert metrics.weighted_quantile_loss(y, q, 0.1) == pytest.approx(2 * 1.9 / 6)


def test_nothing_to_scale_by_gives_nan_not_an_error():
    zeros = np.zeros(3)
    assert np.isnan(metrics.wape(zeros, Q))
    assert metrics.weighted_quantile_loss(zeros, Q, 0.5) == pytest.approx(np.sum(Q))  # unweighted: Forecast's rule
    assert np.isnan(metrics.mape(zeros, Q))
    assert np.isnan(metrics.mase(Y, Q, 0.0))


def test_item_metrics_match_the_scalar_functions_row_by_row():
    y = np.array([[2.0, 0.0, 4.0], [1.0, np.nan, 3.0]])
    q = np.array([[1.0, 1.0, 5.0], [2.0, 2.0, 2.0]])
    scales = np.array([5 / 3, 2.0])
    per_item = metrics.item_metrics(y, q, {0.1: q, 0.9: q}, scales)
    for i in range(2):
        assert per_item["wQL[0.1]"][i] == pytest.approx(metrics.weighted_quantile_loss(y[i], q[i], 0.1))
        assert per_item["WAPE"][i] == pytest.approx(metrics.wape(y[i], q[i]))
        assert per_item["RMSE"][i] == pytest.approx(metrics.rmse(y[i], q[i]))
        assert per_item["MAPE"][i] == pytest.approx(metrics.mape(y[i], q[i]))
        assert per_item["MASE"][i] == pytest.approx(metrics.mase(y[i], q[i], scales[i]))
    assert per_item["AverageWeightedQuantileLoss"] == pytest.approx((per_item["wQL[0.1]"] + per_item["wQL[0.9]"]) / 2)


def test_summary_pools_points_but_averages_mase_over_items():
    y = np.array([[2.0, 0.0, 4.0], [10.0, 10.0, 10.0]])
    q = np.array([[1.0, 1.0, 5.0], [10.0, 10.0, 16.0]])
    scales = np.array([5 / 3, 6.0])
    summary = metrics.summary_metrics(y, q, {0.5: q}, scales)
    assert summary["WAPE"] == pytest.approx((3 + 6) / 36)
    assert summary["wQL[0.5]"] == pytest.approx(summary["WAPE"])
    assert summary["MASE"] == pytest.approx((0.6 + (6 / 3) / 6) / 2)
    assert summary["MAPE"] == pytest.approx((0.5 + 0.25 + 0 + 0 + 0.6) / 5)


def test_wql_falls_back_to_the_unweighted_loss_when_the_actuals_sum_to_zero():
    y = np.zeros((2, 3))
    q = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    # 2 * sum((1 - tau) * (q - y)) for tau = 0.9: 2 * 0.1 * 3
    assert metrics.weighted_quantile_loss(y, q, 0.9) == pytest.approx(0.6)
    assert metrics.summary_metrics(y, q, {0.9: q}, np.array([1.0, 1.0]))["wQL[0.9]"] == pytest.approx(0.6)
    per_item = metrics.item_metrics(y, q, {0.9: q}, np.array([1.0, 1.0]))["wQL[0.9]"]
    np.testing.assert_allclose(per_item, [0.6, 0.0])
    assert np.isnan(metrics.weighted_quantile_loss(np.full(3, np.nan), q[0], 0.9))  # nothing observed
