"""Calibrated intervals: each quantile's spread around the median stretched or shrunk to its level.

Model intervals are often too narrow (statistical models ignore parameter and model uncertainty)
or too wide. Split conformal calibration of the scale: on the backtest, for each level other
than the median, the factor on ``q - p50`` that makes the backtest quantile hold the share of
actuals its level promises (one factor per level over all items and steps, bounded to
``BOUNDS``); then the published forecast's quantiles are ``p50 + factor * (q - p50)``. The
AutoPredictor calibrates each candidate so; the forecast step calibrates every single
algorithm's published forecast from that algorithm's own backtest (``calibrate_frame``).
Levels without a factor of their own take the nearest calibrated one on their side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.forecast.base import column_name

MIN_POINTS = 20  # fewer usable backtest points than this: the level keeps its factor of 1
BOUNDS = (0.2, 5.0)


def factors(actual: np.ndarray, quant: np.ndarray, levels: list[float]) -> dict[float, float]:
    """Per level other than the median: the factor on (q - p50) that makes the backtest quantile hold
    its level's share of the actuals (1.0 when too few points tell)."""
    median = quant[..., levels.index(0.5)]
    out = {}
    for j, tau in enumerate(levels):
        if tau == 0.5:
            continue
        spread = quant[..., j] - median
        usable = np.isfinite(actual) & np.isfinite(spread) & (np.abs(spread) > 1e-12)
        usable &= (spread < 0) if tau < 0.5 else (spread > 0)
        if usable.sum() < MIN_POINTS:
            out[tau] = 1.0
            continue
        ratio = (actual[usable] - median[usable]) / spread[usable]
        # Below 0.5 the spread is negative: y <= p50 + s * spread  <=>  ratio >= s.
        factor = np.quantile(ratio, 1 - tau if tau < 0.5 else tau)
        out[tau] = float(np.clip(factor, *BOUNDS))
    return out


def apply(quant: np.ndarray, levels: list[float], factors: dict[float, float]) -> np.ndarray:
    """Quantiles (..., levels) with each level's spread around p50 scaled; levels without a factor of
    their own take the nearest calibrated level's on the same side of the median."""
    if 0.5 not in levels or not factors:
        return quant
    median = quant[..., levels.index(0.5) : levels.index(0.5) + 1]
    known = np.array(sorted(factors))
    scale = np.ones(len(levels))
    for j, tau in enumerate(levels):
        side = known[(known < 0.5) == (tau < 0.5)] if tau != 0.5 else known[:0]
        if side.size:
            scale[j] = factors[float(side[np.argmin(np.abs(side - tau))])]
    return np.sort(median + (quant - median) * scale, axis=-1)


def backtest_factors(export: pd.DataFrame, target: str, levels: list[float]) -> dict[float, float]:
    """Factors from a backtest export (actuals and a column per forecast type); {} without p50."""
    if 0.5 not in levels:
        return {}
    actual = export[target].to_numpy(dtype="float64")
    quant = np.column_stack([export[column_name(t)].to_numpy(dtype="float64") for t in levels])
    return factors(actual, quant, levels)


def calibrate_frame(frame: pd.DataFrame, levels: list[float], found: dict[float, float]) -> pd.DataFrame:
    """A forecast frame with its quantile columns calibrated by ``found`` (unchanged without p50)."""
    if 0.5 not in levels or not found:
        return frame
    columns = [column_name(t) for t in levels]
    out = frame.copy()
    out[columns] = apply(frame[columns].to_numpy(dtype="float64"), levels, found)
    return out
