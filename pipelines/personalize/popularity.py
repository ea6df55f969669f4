"""Popularity-Count: the most popular items, the same list for every user (the baseline).

Popularity is the number of unique users who interacted with an item, so one user's
repeated events count once; live events (``update``) count the same way, so an item first seen
while serving climbs the list as users interact with it. Every other recipe's evaluation is read against this one, as
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

    def update(self, user_id: str, events) -> None:
        """Take the events as the base does; an item the user had no event of before gains one user."""
        before = self._history(str(user_id))[0]
        super().update(user_id, events)
        after = self._history(str(user_id))[0]
        for item in np.setdiff1d(after, before).tolist():
            self._one_more_user(item)

    def _one_more_user(self, item: int) -> None:
        """Popularity of ``item`` + 1, and the item moved up the popular order (no re-sort of the catalog)."""
        order = self.popular_order_
        current = int(np.flatnonzero(order == item)[0])
        self.popularity_[item] += 1
        ahead = -self.popularity_[order[:current]]  # non-decreasing: the order is by popularity, then index
        low, high = (
            np.searchsorted(ahead, -self.popularity_[item], "left"),
            np.searchsorted(ahead, -self.popularity_[item], "right"),
        )
        target = low + int(np.searchsorted(order[low:high], item))
        order[target + 1 : current + 1] = order[target:current].copy()
        order[target] = item
