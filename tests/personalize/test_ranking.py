"""Personalized-Ranking: a given list reordered by the HRNN, unknown items last, at most 500 items."""

from __future__ import annotations

import pytest

from pipelines.personalize import InteractionData, get_recipe
from pipelines.personalize.ranking import PersonalizedRanking
from tests.personalize.chain_data import FAST, chain_items, chains, item
from tests.personalize.conftest import DAY, T0


@pytest.fixture(scope="module")
def ranker() -> PersonalizedRanking:
    return PersonalizedRanking(**FAST).fit(InteractionData.from_frames(chains(), items=chain_items()))


def test_is_registered_as_a_ranking_recipe(ranker):
    assert isinstance(get_recipe("aws-personalized-ranking"), PersonalizedRanking)
    assert ranker.recipe_type == "PERSONALIZED_RANKING" and ranker.item_inputs_.shape[1] > ranker.hidden_dimension


def test_the_next_item_of_the_chain_ranks_first_and_scores_sum_to_one_over_the_list(ranker):
    ranker.update("shopper", [(item(4, 1), T0 + 60 * DAY), (item(4, 2), T0 + 60 * DAY + 60)])
    candidates = [item(0, 5), item(2, 2), item(4, 3), item(5, 7), item(1, 1)]
    ranked = ranker.rank("shopper", candidates)
    assert ranked[0][0] == item(4, 3) and sorted(i for i, _ in ranked) == sorted(candidates)
    assert sum(score for _, score in ranked) == pytest.approx(1.0)
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True)


def test_unknown_items_go_last_in_input_order_and_duplicates_count_once(ranker):
    ranked = ranker.rank("g0_u000", ["ghost-b", item(0, 9), "ghost-a", item(3, 3), item(0, 9)])
    assert [i for i, _ in ranked[-2:]] == ["ghost-b", "ghost-a"] and [s for _, s in ranked[-2:]] == [0.0, 0.0]
    assert sorted(i for i, _ in ranked[:2]) == [item(0, 9), item(3, 3)]
    assert sum(score for _, score in ranked[:2]) == pytest.approx(1.0)


def test_at_most_500_items(ranker):
    five_hundred = [item(c, s) for c in range(6) for s in range(10)] + [f"other{k}" for k in range(440)]
    assert len(ranker.rank("g1_u001", five_hundred)) == 500
    with pytest.raises(ValueError, match="at most 500"):
        ranker.rank("g1_u001", [*five_hundred, "one-more"])


def test_unknown_user_gets_the_list_by_popularity(ranker):
    ranked = ranker.rank("stranger", [item(0, 9), item(0, 4)])
    assert [i for i, _ in ranked] == [item(0, 4), item(0, 9)] and all(score == 0 for _, score in ranked)
