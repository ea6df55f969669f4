"""Small generated interaction sets whose structure the recipes must find."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.personalize import InteractionData

T0 = 1_700_000_000
DAY = 86_400


def two_groups(users_a: int = 40, users_b: int = 80, items: int = 30, events: int = 12, seed: int = 0) -> pd.DataFrame:
    """Two user groups with disjoint tastes: group a uses only a_ items, group b only b_ items.

    Group b is twice as large, so its items are the most popular overall: popularity then
    recommends b items to a users, and only a recipe that reads histories gets a users right.
    """
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, items + 1) ** 0.8
    weights /= weights.sum()
    rows = []
    for group, count in (("a", users_a), ("b", users_b)):
        for u in range(count):
            chosen = rng.choice(items, size=events, replace=False, p=weights)
            times = np.sort(rng.integers(T0, T0 + 30 * DAY, events))
            rows += [
                (f"{group}_u{u:03d}", f"{group}_i{i:02d}", int(t), "click") for i, t in zip(chosen, times, strict=True)
            ]
    return pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"])


def trending_events(seed: int = 0) -> pd.DataFrame:
    """Ten days of steady traffic; item 'hot' goes from 1 event on day 8 to 12 on day 9 (the last)."""
    rng = np.random.default_rng(seed)
    rows = []

    def add(item: str, day: int, count: int) -> None:
        for t in rng.integers(T0 + day * DAY, T0 + (day + 1) * DAY - 1, count):
            rows.append((f"u{rng.integers(50):02d}", item, int(t), "click"))

    for day in range(10):
        add("staple", day, 20)
        for k in range(10):
            add(f"i{k}", day, 3)
    add("hot", 8, 1)
    add("hot", 9, 12)
    rows.append(("u00", "staple", T0 + 10 * DAY - 1, "click"))  # the newest event closes day 9
    return pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"])


@pytest.fixture(scope="session")
def groups_data() -> InteractionData:
    return InteractionData.from_frames(two_groups())


@pytest.fixture(scope="session")
def trending_data() -> InteractionData:
    return InteractionData.from_frames(trending_events())
