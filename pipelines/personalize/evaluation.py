"""Offline evaluation, as Personalize computes a solution version's metrics, and one from the literature.

Personalize's protocol (``evaluate``): a seeded 90% of users train with all their events.
Each of the other 10% gives its oldest 90% of events to training as history (the input) and
keeps the newest 10% as ground truth; users with fewer than two events are skipped. The model
recommends 25 items per test user and the metrics are averaged over test users. Because our
recommendations leave out what the user already interacted with, ground-truth items already
in the user's input cannot be recommended and are dropped from the truth (``exclude_seen``);
a user left with no truth is skipped and counted.

The literature's protocol (``evaluate_leave_last_out``): every user's newest item is held out
and all items the user has not seen are ranked; Recall@10 and NDCG@10 compare with papers.

Both are deterministic: the seed fixes the split, and recipes break ties by popularity and index.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.personalize.base import Recipe
from pipelines.personalize.data import InteractionData

CUTOFFS = (5, 10, 25)
METRICS = (
    "coverage",
    "mean_reciprocal_rank_at_25",
    *(f"normalized_discounted_cumulative_gain_at_{k}" for k in CUTOFFS),
    *(f"precision_at_{k}" for k in CUTOFFS),
)


def precision_at_k(recommended: Sequence, relevant: Iterable, k: int) -> float:
    """Relevant items among the top k, divided by k (a shorter list is not forgiven)."""
    relevant = set(relevant)
    return len(set(recommended[:k]) & relevant) / k


def reciprocal_rank_at_k(recommended: Sequence, relevant: Iterable, k: int) -> float:
    """1 / the rank of the first relevant item in the top k; 0 when there is none."""
    relevant = set(relevant)
    return next((1.0 / rank for rank, item in enumerate(recommended[:k], 1) if item in relevant), 0.0)


def ndcg_at_k(recommended: Sequence, relevant: Iterable, k: int) -> float:
    """DCG of the top k with gains 1 / log2(1 + rank), over the DCG of min(k, |relevant|) hits at the top.

    A relevant item counts once, at its first position; no relevant items gives 0.
    """
    relevant = set(relevant)
    if not relevant:
        return 0.0
    seen: set = set()
    dcg = 0.0
    for rank, item in enumerate(recommended[:k], 1):
        if item in relevant and item not in seen:
            seen.add(item)
            dcg += 1.0 / math.log2(1 + rank)
    ideal = sum(1.0 / math.log2(1 + rank) for rank in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal


def coverage(recommendations: Iterable[Sequence], catalog_size: int) -> float:
    """Share of the catalog (items with interactions or metadata) that appears in any list."""
    recommended = set().union(*map(set, recommendations))
    return len(recommended) / catalog_size if catalog_size else 0.0


@dataclass
class Split:
    """Training interactions, and per test user (an index) the relevant items (indexes)."""

    train: InteractionData
    truth: dict[int, np.ndarray]
    skipped_users: int


def personalize_split(
    data: InteractionData, seed: int = 42, test_fraction: float = 0.1, exclude_seen: bool = True
) -> Split:
    """Personalize's split: test users' oldest 90% of events train, their newest 10% are the truth."""
    rng = np.random.default_rng(seed)
    active = np.flatnonzero(np.bincount(data.users, minlength=data.n_users) > 0)
    if len(active) == 0:
        raise ValueError("no interactions to evaluate on")
    n_test = max(1, round(test_fraction * len(active)))
    test_users = np.sort(rng.choice(active, size=n_test, replace=False))
    indptr, rows = data.histories
    held_out = np.zeros(data.n_interactions, dtype=bool)
    truth, skipped = {}, 0
    for u in test_users.tolist():
        events = rows[indptr[u] : indptr[u + 1]]
        if len(events) < 2:
            skipped += 1
            continue
        n_input = min(max(1, len(events) * 9 // 10), len(events) - 1)  # at least one event each side
        held_out[events[n_input:]] = True
        relevant = np.unique(data.items[events[n_input:]])
        if exclude_seen:
            relevant = np.setdiff1d(relevant, data.items[events[:n_input]])
        if len(relevant) == 0:
            skipped += 1
            continue
        truth[u] = relevant
    return Split(data.subset(~held_out), truth, skipped)


def leave_last_out_split(data: InteractionData) -> Split:
    """Each user's newest new item is the truth; all of the user's events on it leave training."""
    indptr, rows = data.histories
    held_out = np.zeros(data.n_interactions, dtype=bool)
    truth, skipped = {}, 0
    for u in range(data.n_users):
        events = rows[indptr[u] : indptr[u + 1]]
        items = data.items[events]
        distinct, first = np.unique(items, return_index=True)
        if len(distinct) < 2:
            skipped += int(len(events) > 0)
            continue
        last = distinct[np.argmax(first)]  # the item whose first event is newest
        held_out[events[items == last]] = True
        truth[u] = np.array([last])
    return Split(data.subset(~held_out), truth, skipped)


def evaluate(recipe: Recipe, data: InteractionData, seed: int = 42, exclude_seen: bool = True) -> dict:
    """Personalize's offline metrics for a fresh copy of ``recipe`` trained on ``data``'s split."""
    split = personalize_split(data, seed=seed, exclude_seen=exclude_seen)
    model, lists, seconds = _recommend_all(recipe, split, max(CUTOFFS), exclude_seen)
    rows = []
    for u, relevant in split.truth.items():
        recommended, relevant = lists[u], set(relevant.tolist())
        rows.append(
            [reciprocal_rank_at_k(recommended, relevant, 25)]
            + [ndcg_at_k(recommended, relevant, k) for k in CUTOFFS]
            + [precision_at_k(recommended, relevant, k) for k in CUTOFFS]
        )
    means = np.mean(rows, axis=0) if rows else np.zeros(len(METRICS) - 1)
    metrics = {
        "coverage": coverage(lists.values(), data.n_items),
        **dict(zip(METRICS[1:], means.tolist(), strict=True)),
    }
    return _report(recipe, split, model, metrics, seconds)


def evaluate_leave_last_out(recipe: Recipe, data: InteractionData, k: int = 10) -> dict:
    """Recall@k and NDCG@k with each user's newest item held out, ranked among all unseen items."""
    split = leave_last_out_split(data)
    model, lists, seconds = _recommend_all(recipe, split, k, True)
    hits = [lists[u].index(int(t[0])) + 1 if int(t[0]) in lists[u] else 0 for u, t in split.truth.items()]
    metrics = {
        f"recall_at_{k}": float(np.mean([rank > 0 for rank in hits])) if hits else 0.0,
        f"ndcg_at_{k}": float(np.mean([1 / math.log2(1 + rank) if rank else 0.0 for rank in hits])) if hits else 0.0,
    }
    return _report(recipe, split, model, metrics, seconds)


def _recommend_all(recipe: Recipe, split: Split, n: int, exclude_seen: bool):
    model = recipe.clone().fit(split.train)
    start = time.perf_counter()
    index = model.item_index_
    lists = {
        u: [index[item] for item, _ in model.recommend(split.train.user_ids[u], n=n, exclude_seen=exclude_seen)]
        for u in split.truth
    }
    return model, lists, time.perf_counter() - start


def _report(recipe: Recipe, split: Split, model: Recipe, metrics: dict, seconds: float) -> dict:
    users = len(split.truth)
    return {
        "recipe": recipe.name,
        "hyperparameters": recipe.get_params(),
        "metrics": {k: round(float(v), 6) for k, v in metrics.items()},
        "test_users": users,
        "skipped_users": split.skipped_users,
        "training_interactions": split.train.n_interactions,
        "fit_seconds": round(model.fit_seconds_, 3),
        "milliseconds_per_recommendation": round(1000 * seconds / max(users, 1), 3),
    }
