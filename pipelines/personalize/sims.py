"""SIMS: item-to-item similarity from co-occurrence in users' histories (aws-sims).

Two items are similar when the same users interacted with both. With c(i, j) users in
common and n(i) users of each, the similarity is ``c(i, j) / (n(i) * n(j)) ** d`` where d is
``popularity_discount_factor``: 0 keeps raw co-occurrence (popular items everywhere), 0.5 is
the cosine, 1 favours items whose audience overlaps most relative to its size. Pairs with
fewer than ``min_cointeraction_count`` common users are noise and get no similarity.

Users whose history length falls outside the given percentiles are left out of training:
the shortest histories say more about popularity than taste, the longest are often robots.

Training keeps the ``max_similar_items`` best neighbours of each item in one CSR structure,
computed from sparse products in blocks of items, so memory is bounded by the block and time
follows the co-occurrences that exist, not the catalog squared.
Serving a user sums the neighbour lists of their most recent items, newer items weighing
more; that is why a new event changes the next recommendations at once. Items without
neighbours, and unknown items, get popular items, as Personalize's SIMS does.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipelines.personalize.base import EMPTY, Recipe
from pipelines.personalize.data import InteractionData

BLOCK_WORK = 1 << 22  # co-occurrence products per block of items: tens of MiB at most


class Sims(Recipe):
    """Personalize's SIMS hyperparameters, plus three of ours.

    ``max_similar_items`` bounds the model's size (500 is Personalize's largest numResults).
    ``recent_history_length`` and ``recency_decay`` shape recommendations for a user, which
    Personalize's SIMS does not serve: the last 10 distinct items, each weighing 0.8 of the
    next newer one, did best on MovieLens among the few settings tried.
    """

    name = "sims"
    recipe_type = "RELATED_ITEMS"

    def __init__(
        self,
        popularity_discount_factor: float = 0.5,
        min_cointeraction_count: int = 3,
        min_user_history_length_percentile: float = 0.005,
        max_user_history_length_percentile: float = 0.995,
        max_similar_items: int = 500,
        recent_history_length: int = 10,
        recency_decay: float = 0.8,
    ):
        self.popularity_discount_factor = popularity_discount_factor
        self.min_cointeraction_count = min_cointeraction_count
        self.min_user_history_length_percentile = min_user_history_length_percentile
        self.max_user_history_length_percentile = max_user_history_length_percentile
        self.max_similar_items = max_similar_items
        self.recent_history_length = recent_history_length
        self.recency_decay = recency_decay

    def validate(self) -> None:
        low, high = self.min_user_history_length_percentile, self.max_user_history_length_percentile
        rules = (
            ("popularity_discount_factor", 0 <= self.popularity_discount_factor <= 1),
            ("min_cointeraction_count", self.min_cointeraction_count >= 0),
            ("min_user_history_length_percentile", 0 <= low <= high),
            ("max_user_history_length_percentile", low <= high <= 1),
            ("max_similar_items", self.max_similar_items >= 1),
            ("recent_history_length", self.recent_history_length >= 1),
            ("recency_decay", 0 < self.recency_decay <= 1),
        )
        bad = ", ".join(f"{name}={getattr(self, name)!r}" for name, ok in rules if not ok)
        if bad:
            raise ValueError(f"sims: hyperparameters out of range: {bad}")

    def _fit(self, data: InteractionData) -> None:
        lengths = np.bincount(data.users, minlength=data.n_users)
        active = lengths > 0
        kept = active.copy()
        if active.any():
            low, high = np.quantile(
                lengths[active],
                [self.min_user_history_length_percentile, self.max_user_history_length_percentile],
            )
            kept &= (lengths >= low) & (lengths <= high)
        self.training_users_ = int(kept.sum())
        matrix = data.user_item[kept]
        matrix.data[:] = 1  # a user counts once per item, however many events
        self.indptr_, self.neighbors_, self.scores_ = similar_items(
            matrix,
            self.popularity_discount_factor,
            max(1, self.min_cointeraction_count),
            self.max_similar_items,
        )

    def _neighbors(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.indptr_[item], self.indptr_[item + 1]
        return self.neighbors_[start:end], self.scores_[start:end]

    def _related(self, item: int | None, n: int) -> tuple[np.ndarray, np.ndarray]:
        return (EMPTY, EMPTY) if item is None else self._neighbors(item)

    def _candidates(self, history: np.ndarray, times: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(history) == 0:
            return EMPTY, EMPTY
        newest_first = history[::-1]
        items, first = np.unique(newest_first, return_index=True)
        recent = items[np.argsort(first)][: self.recent_history_length]
        lists = [self._neighbors(i) for i in recent.tolist()]
        weights = self.recency_decay ** np.arange(len(recent))
        neighbors = np.concatenate([nb for nb, _ in lists])
        if len(neighbors) == 0:
            return EMPTY, EMPTY
        scores = np.concatenate([s * w for (_, s), w in zip(lists, weights, strict=True)])
        candidates, inverse = np.unique(neighbors, return_inverse=True)
        return candidates, np.bincount(inverse, weights=scores)

    def _score_items(self, history: np.ndarray, times: np.ndarray, items: np.ndarray) -> np.ndarray:
        return scores_at(*self._candidates(history, times, 0), items)

    def _grow(self, count: int) -> None:
        self.indptr_ = np.concatenate([self.indptr_, np.full(count, self.indptr_[-1])])


def scores_at(candidates: np.ndarray, scores: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The scores of ``items`` among sorted ``candidates`` (0 for those not among them)."""
    if len(candidates) == 0:
        return np.zeros(len(items))
    found = np.minimum(np.searchsorted(candidates, items), len(candidates) - 1)
    return np.where(candidates[found] == items, scores[found], 0.0)


def similar_items(
    matrix: sp.csr_matrix, discount: float, min_count: int, keep: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each item's ``keep`` most similar items as CSR arrays (indptr, neighbours, scores).

    ``matrix`` is binary users x items. A block of items' co-occurrence counts with every item
    come from one sparse product; blocks are cut so that the products they add up stay under
    ``BLOCK_WORK``, which bounds memory however large the catalog. Only rows with more than
    ``keep`` neighbours need a selection; neighbours are not in score order (serving sorts).
    """
    n_items = matrix.shape[1]
    by_item = matrix.T.tocsr().astype(np.float32)
    matrix = matrix.tocsr().astype(np.float32)
    users_per_item = np.diff(by_item.indptr).astype(np.float32)
    with np.errstate(divide="ignore"):
        weight = np.where(users_per_item > 0, users_per_item ** np.float32(-discount), 0).astype(np.float32)
    work = np.cumsum(by_item @ np.diff(matrix.indptr).astype(np.float64))  # products of items 0..i
    counts, neighbors, scores = [np.zeros(0, np.int64)], [EMPTY], [np.zeros(0, np.float32)]
    start = 0
    while start < n_items:
        done = work[start - 1] if start else 0.0
        stop = min(n_items, max(start + 1, int(np.searchsorted(work, done + BLOCK_WORK, side="right"))))
        together = by_item[start:stop] @ matrix
        rows = np.repeat(np.arange(start, stop), np.diff(together.indptr))
        cols, values = together.indices, together.data
        ok = (values >= min_count) & (cols != rows)  # an item is not its own neighbour
        rows, cols = rows[ok], cols[ok]
        values = values[ok] * weight[rows] * weight[cols]
        per_row = np.bincount(rows - start, minlength=stop - start)
        crowded = np.flatnonzero(per_row > keep)
        if len(crowded):
            bounds = np.concatenate([[0], np.cumsum(per_row)])
            chosen = np.ones(len(cols), dtype=bool)
            for r in crowded.tolist():
                first, last = bounds[r], bounds[r + 1]
                chosen[first + np.argpartition(-values[first:last], keep - 1)[keep:]] = False
            cols, values, per_row = cols[chosen], values[chosen], np.minimum(per_row, keep)
        counts.append(per_row)
        neighbors.append(cols)
        scores.append(values)
        start = stop
    indptr = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum(np.concatenate(counts), out=indptr[1:])
    return indptr, np.concatenate(neighbors).astype(np.int32), np.concatenate(scores).astype(np.float32)
