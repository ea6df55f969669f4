"""Accuracy metrics exactly as Amazon Forecast defines them, so that numbers compare with its console.

All functions take arrays of actuals ``y`` and forecasts of the same shape (items x periods, or
flat) and skip points where ``y`` is NaN: a backtest scores observed values only, never the ones
filling made up.

- wQL[tau] = 2 * sum(tau * max(y - q, 0) + (1 - tau) * max(q - y, 0)) / sum(|y|); where the
  actuals sum to 0 (nothing sold in the window), Forecast reports the unweighted loss, the numerator
- Average wQL: the mean of wQL over the quantiles forecast
- WAPE = sum(|y - yhat|) / sum(|y|)
- RMSE = sqrt(mean((y - yhat)^2))
- MAPE = mean(|y - yhat| / |y|) over the points where y != 0
- MASE = mean(|y - yhat|) / mean(|y[t] - y[t - m]|) over the item's history (m by frequency);
  over several items, the mean of the items' MASE (as GluonTS aggregates it)

``yhat`` is the mean forecast (Forecast's rule since 2020, whatever the forecast types).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _valid(y, forecast) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype="float64")
    forecast = np.broadcast_to(np.asarray(forecast, dtype="float64"), y.shape)
    keep = ~np.isnan(y)
    return y[keep], forecast[keep]


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else float("nan")


def quantile_loss(y, q, tau: float) -> float:
    """The pinball loss summed over points (the numerator of wQL, without the factor 2)."""
    y, q = _valid(y, q)
    return float(np.sum(tau * np.maximum(y - q, 0) + (1 - tau) * np.maximum(q - y, 0)))


def weighted_quantile_loss(y, q, tau: float) -> float:
    """wQL[tau]; the unweighted loss where the actuals sum to 0, NaN where there is nothing to score."""
    yv, _ = _valid(y, q)
    if not yv.size:
        return float("nan")
    loss, total = 2 * quantile_loss(y, q, tau), float(np.sum(np.abs(yv)))
    return loss / total if total > 0 else loss


def average_weighted_quantile_loss(y, quantiles: Mapping[float, np.ndarray]) -> float:
    return float(np.mean([weighted_quantile_loss(y, q, tau) for tau, q in quantiles.items()]))


def wape(y, yhat) -> float:
    y, yhat = _valid(y, yhat)
    return _ratio(np.sum(np.abs(y - yhat)), np.sum(np.abs(y)))


def rmse(y, yhat) -> float:
    y, yhat = _valid(y, yhat)
    return float(np.sqrt(np.mean((y - yhat) ** 2))) if y.size else float("nan")


def mape(y, yhat) -> float:
    y, yhat = _valid(y, yhat)
    nonzero = y != 0
    return float(np.mean(np.abs(y[nonzero] - yhat[nonzero]) / np.abs(y[nonzero]))) if nonzero.any() else float("nan")


def seasonal_error(history, season: int) -> float:
    """Mean absolute seasonal-naive error in sample: MASE's scale.

    A history no longer than one season is scaled by the naive (m = 1) error, as GluonTS does.
    """
    history = np.asarray(history, dtype="float64")
    m = season if season < len(history) else 1
    if len(history) <= m:
        return float("nan")
    diffs = np.abs(history[m:] - history[:-m])
    diffs = diffs[~np.isnan(diffs)]
    return float(diffs.mean()) if diffs.size else float("nan")


def mase(y, yhat, scale: float) -> float:
    """One item's MASE, given its ``seasonal_error``; NaN when the history never moved."""
    y, yhat = _valid(y, yhat)
    if not y.size or not scale > 0:
        return float("nan")
    return float(np.mean(np.abs(y - yhat)) / scale)


def item_metrics(y: np.ndarray, yhat: np.ndarray, quantiles: Mapping[float, np.ndarray], scales: np.ndarray) -> dict:
    """Each metric per item (row of ``y``): arrays of length items, NaN where an item has nothing to score.

    Vectorised over items, since an export may hold every item of a large dataset.
    """
    y = np.asarray(y, dtype="float64")
    seen = ~np.isnan(y)
    actual = np.where(seen, y, 0.0)
    count = seen.sum(axis=1)
    total = np.abs(actual).sum(axis=1)
    out: dict[str, np.ndarray] = {}
    for tau, q in quantiles.items():
        loss = tau * np.maximum(actual - q, 0) + (1 - tau) * np.maximum(q - actual, 0)
        summed = 2 * np.where(seen, loss, 0).sum(axis=1)
        out[f"wQL[{tau}]"] = np.where(count == 0, np.nan, np.where(total > 0, _divide(summed, total), summed))
    if quantiles:
        out["AverageWeightedQuantileLoss"] = np.mean([out[f"wQL[{tau}]"] for tau in quantiles], axis=0)
    error = np.where(seen, np.abs(actual - yhat), 0.0)
    out["WAPE"] = _divide(error.sum(axis=1), total)
    out["RMSE"] = np.sqrt(_divide((error**2).sum(axis=1), count))
    nonzero = seen & (actual != 0)
    relative = np.divide(error, np.abs(actual), out=np.zeros_like(error), where=nonzero)
    out["MAPE"] = _divide(relative.sum(axis=1), nonzero.sum(axis=1))
    out["MASE"] = _divide(_divide(error.sum(axis=1), count), np.asarray(scales, dtype="float64"))
    return out


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio, NaN where the denominator is not positive (nothing to scale by)."""
    numerator = np.asarray(numerator, dtype="float64")
    denominator = np.asarray(denominator, dtype="float64")
    good = denominator > 0
    return np.divide(numerator, denominator, out=np.full(numerator.shape, np.nan), where=good)


def summary_metrics(y: np.ndarray, yhat: np.ndarray, quantiles: Mapping[float, np.ndarray], scales: np.ndarray) -> dict:
    """The metrics over all items and periods together, as Forecast reports a backtest window."""
    out = {f"wQL[{tau}]": weighted_quantile_loss(y, q, tau) for tau, q in quantiles.items()}
    if quantiles:
        out["AverageWeightedQuantileLoss"] = average_weighted_quantile_loss(y, quantiles)
    out["WAPE"] = wape(y, yhat)
    out["RMSE"] = rmse(y, yhat)
    out["MAPE"] = mape(y, yhat)
    per_item = item_metrics(y, yhat, {}, scales)["MASE"]
    out["MASE"] = float(np.nanmean(per_item)) if np.isfinite(per_item).any() else float("nan")
    return out
