"""Popularity-Count: the most popular items, the same list for every user (the baseline).

Popularity is the number of unique users who interacted with an item, so one user's
repeated events count once. Every other recipe's evaluation is read against this one, as
Personalize advises; it is also what they fall back to where they have no evidence.
"""

from __future__ import annotations

import numpy as np

from pipelines.personalize.base import Recipe
from pipelines.personalize.data import InteractionData


class PopularityCount(Recipe):
    """Items by the number of unique users who interacted with them; score is that number."""

    name = "popularity-count"

    def _fit(self, data: InteractionData) -> None:
        pass  # the base class already counts unique users per item

    def _candidates(self, history: np.ndarray, times: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        top = self.popular_order_[:n]
        return top, self.popularity_[top]

    def _score_items(self, history: np.ndarray, times: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.popularity_[items]
