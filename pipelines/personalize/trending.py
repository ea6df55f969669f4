"""Trending-Now: the items whose interactions grow fastest between the last two windows.

Time is cut into windows of ``lookback_window`` (Personalize's trend discovery frequency:
30 minutes, 1 hour, 3 hours or 1 day) ending at the newest event. An item trends when the
newest window has at least ``min_interactions`` events for it and more than the window
before; its score is the growth ``(current - previous) / (previous + 1)``. The one added to
the denominator keeps an item that rose from nothing finite, and ranks 0 -> 6 above 10 -> 20.
Items that do not trend follow by popularity, as Personalize falls back to popular items.

Personalize finds trending items again at every window without retraining. Here ``update``
counts new events into the open window; when an event arrives after that window's end, the
window is complete, the two newest complete windows move on and the trends are recomputed.
Events of any user count, so one model can take a campaign's whole event stream.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipelines.personalize.base import Recipe
from pipelines.personalize.data import InteractionData


class TrendingNow(Recipe):
    name = "trending-now"

    def __init__(self, lookback_window: str | float = "1D", min_interactions: int = 3):
        self.lookback_window = lookback_window
        self.min_interactions = min_interactions

    def validate(self) -> None:
        if window_seconds(self.lookback_window) <= 0:
            raise ValueError(f"trending-now: lookback_window must be positive, got {self.lookback_window!r}")
        if self.min_interactions < 1:
            raise ValueError(f"trending-now: min_interactions must be at least 1, got {self.min_interactions!r}")

    def _fit(self, data: InteractionData) -> None:
        self.window_seconds_ = window = window_seconds(self.lookback_window)
        self.window_end_ = end = self.latest_timestamp_
        ts, n = data.timestamps, data.n_items
        current = (ts > end - window) & (ts <= end)
        previous = (ts > end - 2 * window) & (ts <= end - window)
        self.current_counts_ = np.bincount(data.items[current], minlength=n).astype(np.float64)
        self.previous_counts_ = np.bincount(data.items[previous], minlength=n).astype(np.float64)
        self.open_counts_ = np.zeros(n)
        self._find_trends()

    def _find_trends(self) -> None:
        current, previous = self.current_counts_, self.previous_counts_
        trending = (current >= self.min_interactions) & (current > previous)
        self.trend_scores_ = np.where(trending, (current - previous) / (previous + 1), 0.0)
        self.trending_items_ = np.flatnonzero(trending)

    def _candidates(self, history: np.ndarray, times: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.trending_items_, self.trend_scores_[self.trending_items_]

    def _score_items(self, history: np.ndarray, times: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.trend_scores_[items]

    def _grow(self, count: int) -> None:
        for name in ("current_counts_", "previous_counts_", "open_counts_", "trend_scores_"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(count)]))

    def _observe(self, items: np.ndarray, times: np.ndarray) -> None:
        window, changed = self.window_seconds_, False
        for k in np.argsort(times, kind="stable").tolist():
            item, ts = int(items[k]), int(times[k])
            if ts > self.window_end_ + window:  # the open window is complete: move on
                steps = math.ceil((ts - self.window_end_) / window) - 1
                for _ in range(min(steps, 3)):  # after three steps every window is empty anyway
                    self.previous_counts_, self.current_counts_ = self.current_counts_, self.open_counts_
                    self.open_counts_ = np.zeros_like(self.current_counts_)
                self.window_end_ += steps * window
                changed = True
            if ts > self.window_end_:
                self.open_counts_[item] += 1
            elif ts > self.window_end_ - window:  # late events still count where they belong
                self.current_counts_[item] += 1
                changed = True
            elif ts > self.window_end_ - 2 * window:
                self.previous_counts_[item] += 1
                changed = True
        if changed:
            self._find_trends()


def window_seconds(value: str | float | pd.Timedelta) -> float:
    """Seconds in a window given as seconds, a pandas Timedelta or text such as '30min', '3h', '1D'."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return pd.Timedelta(value).total_seconds()
    if isinstance(value, pd.Timedelta):
        return value.total_seconds()
    return float(value)
