"""User-Personalization: exploration of new and rarely shown items on top of HRNN-Coldstart."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from pipelines.personalize import InteractionData, get_recipe
from pipelines.personalize.hrnn_metadata import HrnnColdstart
from pipelines.personalize.user_personalization import (
    UserPersonalization,
    creation_times,
    ignored_impressions,
    impressions,
)
from tests.personalize import chain_data
from tests.personalize.chain_data import chain_items, chains
from tests.personalize.conftest import DAY

FAST = {**chain_data.FAST, "epochs": 6}  # exploration needs a trained model, not a good one
FRAME = chains()
NEWEST = int(FRAME["TIMESTAMP"].max())
FRESH = {f"fresh{k}": {"GENRE": "fresh", "CREATION_TIMESTAMP": NEWEST - 2 * DAY} for k in range(3)}
USERS = ["g0_u000", "g1_u001", "g2_u002", "g0_u003", "g1_u004"]


@pytest.fixture(scope="module")
def fresh_data() -> InteractionData:
    return InteractionData.from_frames(FRAME, items=chain_items(FRESH))


@pytest.fixture(scope="module")
def exploring(fresh_data) -> UserPersonalization:
    return UserPersonalization(exploration_weight=0.3, **FAST).fit(fresh_data)


def fresh_in_top(model, n: int = 5) -> list[int]:
    return [sum(item.startswith("fresh") for item, _ in model.recommend(user, n=n)) for user in USERS]


def test_personalize_defaults_and_ranges():
    assert UserPersonalization().exploration_weight == 0.3 and UserPersonalization().exploration_item_age_cut_off == 30
    with pytest.raises(ValueError, match=r"exploration_weight=1\.5"):
        get_recipe("user-personalization", exploration_weight=1.5)
    with pytest.raises(ValueError, match="exploration_item_age_cut_off=0"):
        get_recipe("user-personalization", exploration_item_age_cut_off=0)


def test_without_exploration_new_items_stay_out_and_the_list_is_coldstarts(fresh_data, exploring):
    exploiting = UserPersonalization(exploration_weight=0.0, **FAST).fit(fresh_data)
    assert fresh_in_top(exploiting) == [0] * len(USERS)
    coldstart = HrnnColdstart(**FAST).fit(fresh_data)
    for user in USERS:
        assert [i for i, _ in exploiting.recommend(user, n=10)] == [i for i, _ in coldstart.recommend(user, n=10)]


def test_exploration_surfaces_new_items(exploring):
    assert all(count >= 1 for count in fresh_in_top(exploring))
    assert exploring.recommend("g0_u000") == exploring.recommend("g0_u000")  # reproducible request
    scores = [score for _, score in exploring.recommend("g0_u000", n=10)]
    assert scores == sorted(scores, reverse=True) and all(score > 0 for score in scores)


def test_full_exploration_ranks_by_the_bonus_and_spreads_new_items(exploring):
    explorer = copy.deepcopy(exploring)
    explorer.exploration_weight = 1.0  # a serving-time blend, as a campaign's itemExplorationConfig overrides it
    tops = [[item for item, _ in explorer.recommend(user, n=3)] for user in USERS]
    assert all(set(top) == set(FRESH) for top in tops)
    assert len({tuple(top) for top in tops}) > 1  # users do not all see the same order


def test_items_older_than_the_cut_off_are_not_explored(fresh_data):
    strict = UserPersonalization(exploration_weight=0.3, exploration_item_age_cut_off=1.0, **FAST).fit(fresh_data)
    assert fresh_in_top(strict) == [0] * len(USERS)


def test_items_first_seen_in_update_are_new_and_explored(exploring):
    live = copy.deepcopy(exploring)
    live.exploration_weight, live.exploration_item_age_cut_off = 1.0, 1.0  # only brand-new items are in scope
    live.update("g0_u000", [("just-launched", NEWEST + 60)])
    assert live.recommend("g1_u001", n=1)[0][0] == "just-launched"
    live.update("g0_u003", [("just-launched", NEWEST + 120)])
    assert live.exposures_[live.item_index_["just-launched"]] == 2  # every event is an exposure


def test_exposures_count_impressions_where_given():
    frame = pd.DataFrame(
        {
            "USER_ID": ["u1", "u2", "u3"],
            "ITEM_ID": ["a", "b", "a"],
            "TIMESTAMP": [10, 20, 30],
            "IMPRESSION": ["a|b|c", ["a", "c"], None],
        }
    )
    items = pd.DataFrame({"ITEM_ID": ["a", "b", "c", "d"], "CREATION_TIMESTAMP": [5, np.nan, np.nan, np.nan]})
    data = InteractionData.from_frames(frame, items=items)
    assert impressions(data).tolist() == [2, 1, 2, 0]
    assert creation_times(data).tolist() == [5, 20, np.inf, np.inf]  # metadata, else the first event, else new


def test_training_impressions_let_pass_count_per_user_until_the_user_interacts():
    frame = pd.DataFrame(
        {
            "USER_ID": ["u1", "u2", "u1", "u1"],
            "ITEM_ID": ["a", "b", "b", "a"],
            "TIMESTAMP": [10, 20, 30, 40],
            "IMPRESSION": ["a|b|c", ["a", "c", "zz"], None, "a|c"],  # zz: not in the catalog
        }
    )
    data = InteractionData.from_frames(frame, items=pd.DataFrame({"ITEM_ID": ["a", "b", "c"]}))
    code = data.item_index
    # u1 let b and c pass at 10, then took b at 30 (its count clears) and let c pass again at 40
    assert ignored_impressions(data) == {"u1": {code["c"]: 2}, "u2": {code["a"]: 1, code["c"]: 1}}
    assert ignored_impressions(InteractionData.from_frames(frame.drop(columns="IMPRESSION"))) == {}


def test_live_impressions_take_exploration_from_an_item_and_demote_it_for_the_user(exploring):
    live = copy.deepcopy(exploring)
    live.exploration_weight, live.exploration_item_age_cut_off = 1.0, 30.0
    fresh = live.item_index_["fresh0"]
    user, other = "g0_u000", "g1_u001"
    before = dict(live.recommend(user, n=len(FRESH)))
    other_before = dict(live.recommend(other, n=len(FRESH)))
    live.observe_impressions(user, [(["fresh0", "fresh1", "unknown"], "fresh1"), (["fresh0"], None)])
    assert live.exposures_[fresh] == exploring.exposures_[fresh] + 2  # fresh1 was counted by its event
    assert live.ignored_[user] == {fresh: 2}  # shown twice, taken never; unknown items left out
    after, other_after = dict(live.recommend(user, n=len(FRESH))), dict(live.recommend(other, n=len(FRESH)))
    assert after["fresh0"] < before["fresh0"] and other_after["fresh0"] < other_before["fresh0"]  # fewer to explore
    ratio = (after["fresh0"] / after["fresh2"]) / (before["fresh0"] / before["fresh2"])
    other_ratio = (other_after["fresh0"] / other_after["fresh2"]) / (other_before["fresh0"] / other_before["fresh2"])
    assert ratio == pytest.approx(other_ratio / np.sqrt(3))  # and for the user who let it pass twice, /sqrt(1 + 2)
    live.observe_impressions(user, [([], "fresh0")])  # the user takes it: the user's count clears
    assert user not in live.ignored_
