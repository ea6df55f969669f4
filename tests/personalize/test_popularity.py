"""Popularity-Count: unique users per item, the same list for everyone."""

from __future__ import annotations

import pandas as pd

from pipelines.personalize import InteractionData
from pipelines.personalize.popularity import PopularityCount


def test_popularity_counts_unique_users_not_events():
    frame = pd.DataFrame(
        {
            "USER_ID": ["bot"] * 50 + ["u1", "u2", "u3", "u1"],
            "ITEM_ID": ["spam"] * 50 + ["liked", "liked", "liked", "other"],
            "TIMESTAMP": range(54),
        }
    )
    model = PopularityCount().fit(InteractionData.from_frames(frame))
    assert model.recommend("newcomer", n=3) == [("liked", 3.0), ("spam", 1.0), ("other", 1.0)]


def test_same_list_for_every_user_less_what_they_saw(groups_data):
    model = PopularityCount().fit(groups_data)
    full = [item for item, _ in model.recommend("newcomer", n=60)]
    for user in ("a_u001", "b_u010"):
        recs = [item for item, _ in model.recommend(user, n=10)]
        assert recs == [item for item in full if item in set(recs)]  # the global order, with gaps
        scores = [score for _, score in model.recommend(user, n=10)]
        assert scores == sorted(scores, reverse=True)
