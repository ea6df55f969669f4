"""Trending-Now: growth between the last two windows, popularity fallback, live window moves."""

from __future__ import annotations

import pytest

from pipelines.personalize.popularity import PopularityCount
from pipelines.personalize.trending import TrendingNow, window_seconds
from tests.personalize.conftest import DAY


def test_the_item_whose_rate_jumps_comes_first(trending_data):
    model = TrendingNow(lookback_window="1D").fit(trending_data)
    item, score = model.recommend("newcomer", n=1)[0]
    assert item == "hot" and score == pytest.approx((12 - 1) / (1 + 1))
    assert PopularityCount().fit(trending_data).recommend("newcomer", n=1)[0][0] == "staple"
    assert model.rank("newcomer", ["staple", "hot"])[0][0] == "hot"


def test_falls_back_to_popularity_when_nothing_trends(trending_data):
    quiet = TrendingNow(min_interactions=100).fit(trending_data)
    assert quiet.recommend("u01", n=5) == [
        (item, 0.0) for item, _ in PopularityCount().fit(trending_data).recommend("u01", n=5)
    ]


def test_new_events_move_the_windows_without_retraining(trending_data):
    model = TrendingNow(lookback_window="1D").fit(trending_data)
    end = model.window_end_
    for user in range(10):  # a new item takes off in the open window
        model.update(f"fan{user}", [("fresh", end + 3600 + user)])
    assert model.recommend("newcomer", n=1)[0][0] == "hot"  # the open window does not count yet
    model.update("late", [("i3", end + DAY + 60)])  # the first event after it closes the window
    item, score = model.recommend("newcomer", n=1)[0]
    assert (item, score) == ("fresh", 10.0)
    assert model.window_end_ == end + DAY
    model.update("later", [("i3", end + 10 * DAY)])  # a long silence: nothing trends any more
    assert model.recommend("newcomer", n=1) == [("staple", 0.0)]


def test_window_lengths():
    assert window_seconds("30min") == 1800 and window_seconds("3h") == 3 * 3600 and window_seconds("1D") == DAY
    assert window_seconds(60) == 60 and window_seconds("3600") == 3600
    with pytest.raises(ValueError, match="lookback_window"):
        TrendingNow(lookback_window=0).validate()
