"""DeepFM: learns tastes from ids and histories, scores cold items and users from metadata and context, serves fast."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from pipelines.personalize import RECIPES, InteractionData, get_recipe
from pipelines.personalize.deepfm import DeepFM
from pipelines.personalize.evaluation import evaluate_leave_last_out
from pipelines.personalize.popularity import PopularityCount
from pipelines.personalize.tuning import SEARCH_SPACES, IntRange
from tests.personalize.conftest import DAY, T0, two_groups

# Small, fast settings that learn the two groups in about a second.
FAST = {
    "embedding_dimension": 16,
    "hidden_dimension": 32,
    "epochs": 30,
    "learning_rate": 0.01,
    "batch_size": 128,
}
LATER = T0 + 60 * DAY
NEW_ITEMS = {"new_a": "genre_a", "new_b": "genre_b"}
NEWCOMERS = {"fresh_a": "segment_a", "fresh_b": "segment_b"}


@pytest.fixture(scope="module")
def model(groups_data) -> DeepFM:
    return DeepFM(**FAST).fit(groups_data)


@pytest.fixture(scope="module")
def described() -> InteractionData:
    """The two groups with a genre per group's items, a segment per group's users, and a device per group's events."""
    frame = two_groups()
    frame["DEVICE"] = np.where(frame["USER_ID"].str.startswith("a"), "phone", "web")
    items = pd.DataFrame(
        {
            "ITEM_ID": [f"{g}_i{i:02d}" for g in "ab" for i in range(30)] + list(NEW_ITEMS),
            "GENRE": [f"genre_{g}|tone{i % 3}" for g in "ab" for i in range(30)] + list(NEW_ITEMS.values()),
            "YEAR": [1990.0 + i for _ in "ab" for i in range(30)] + [2020.0, 2020.0],
        }
    )
    users = pd.DataFrame({"USER_ID": frame["USER_ID"].unique()})
    users["SEGMENT"] = "segment_" + users["USER_ID"].str[0]
    users = pd.concat([users, pd.DataFrame({"USER_ID": list(NEWCOMERS), "SEGMENT": list(NEWCOMERS.values())})])
    return InteractionData.from_frames(frame, items=items, users=users)


@pytest.fixture(scope="module")
def cold_model(described) -> DeepFM:
    return DeepFM(**{**FAST, "id_dropout": 0.3}).fit(described)


def groups(recommendations: list[tuple[str, float]]) -> list[str]:
    return [item_id[0] for item_id, _ in recommendations]


def test_registered_with_validated_hyperparameters_and_a_search_space():
    assert RECIPES["deepfm"] is DeepFM
    recipe = get_recipe("arn:aws:personalize:::recipe/aws-deepfm", hidden_layers="3", hidden_dimension="64")
    assert recipe.get_params()["hidden_layers"] == 3 and recipe.get_params()["hidden_dimension"] == 64
    for bad in ({"hidden_layers": 0}, {"hidden_dimension": 4}, {"logq": 1.5}, {"dropout": 1.0}, {"candidate_count": 0}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))}="):
            get_recipe("deepfm", **bad)
    space = SEARCH_SPACES["deepfm"]
    assert isinstance(space["hidden_layers"], IntRange) and isinstance(space["hidden_dimension"], IntRange)
    for name, dimension in space.items():  # every corner of the search space is a valid recipe
        for value in (dimension.low, dimension.high):
            get_recipe("deepfm", **{name: value})


def test_learns_the_groups_and_beats_popularity_for_the_smaller_one(model, groups_data):
    a_users = [u for u in groups_data.user_ids if u.startswith("a")]
    assert np.mean([g == "a" for u in a_users for g in groups(model.recommend(u, n=5))]) > 0.95
    assert np.mean([g == "b" for g in groups(model.recommend("b_u000", n=5))]) == 1
    a_only = groups_data.subset(np.isin(groups_data.users, [groups_data.user_index[u] for u in a_users]))
    ours = evaluate_leave_last_out(model.clone(), groups_data)
    baseline = evaluate_leave_last_out(PopularityCount(), groups_data)
    assert ours["metrics"]["recall_at_10"] > baseline["metrics"]["recall_at_10"] + 0.1
    # Popularity gives group a the other group's items; DeepFM gives them their own.
    ours_a = evaluate_leave_last_out(model.clone(), a_only)["metrics"]["recall_at_10"]
    assert ours_a > 0.3 and all(g == "b" for g in groups(PopularityCount().fit(groups_data).recommend("a_u000", n=10)))


def test_scores_are_probabilities_and_unknown_users_get_popular_items(model, groups_data):
    recommendations = model.recommend("a_u001", n=10)
    scores = [score for _, score in recommendations]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    popular = PopularityCount().fit(groups_data).recommend("nobody", n=5)
    assert model.recommend("nobody", n=5) == [(item_id, 0.0) for item_id, _ in popular]


def test_rank_puts_unknown_items_last_and_orders_the_rest_by_taste(model):
    ranked = model.rank("a_u002", ["ghost", "b_i00", "a_i03", "phantom", "b_i01", "a_i03"])
    assert [i for i, _ in ranked[-2:]] == ["ghost", "phantom"] and [s for _, s in ranked[-2:]] == [0.0, 0.0]
    assert {i for i, _ in ranked[:1]} == {"a_i03"} and len(ranked) == 5
    with pytest.raises(ValueError, match="at most 500"):
        model.rank("a_u002", [f"x{k}" for k in range(501)])


def test_new_events_move_the_next_recommendations_and_new_items_become_known(model):
    live = copy.deepcopy(model)
    assert live.recommend("visitor", n=5) == model.recommend("nobody", n=5)  # nothing known yet: popular items
    live.update("visitor", [(f"a_i{k:02d}", LATER + k) for k in range(4)])
    assert np.mean([g == "a" for g in groups(live.recommend("visitor", n=5))]) > 0.8
    live.update("a_u003", [("brand-new", LATER)])
    ranked = dict(live.rank("b_u004", ["brand-new", "ghost"]))
    assert ranked["brand-new"] > 0 and ranked["ghost"] == 0
    assert "brand-new" not in dict(live.recommend("a_u003", n=60))


def test_a_metadata_only_item_is_scored_from_its_metadata(cold_model, described):
    a_users = [u for u in described.user_ids if u.startswith("a_")]
    b_users = [u for u in described.user_ids if u.startswith("b_")]
    first = {u: cold_model.rank(u, list(NEW_ITEMS))[0][0] for u in a_users + b_users}
    assert np.mean([first[u] == "new_a" for u in a_users]) > 0.8
    assert np.mean([first[u] == "new_b" for u in b_users]) > 0.8
    new_a, new_b = (described.item_index[i] for i in NEW_ITEMS)
    assert not np.allclose(cold_model.item_sum_[new_a], cold_model.item_sum_[new_b])  # not both the unknown item


def test_cold_users_are_scored_from_their_metadata_and_context(cold_model):
    for user, group in (("fresh_a", "a"), ("fresh_b", "b")):
        recommendations = cold_model.recommend(user, n=5)  # metadata only, no events; the device unknown
        assert all(score > 0 for _, score in recommendations)
        assert np.mean([g == group for g in groups(recommendations)]) >= 0.6  # popularity would give fresh_a none
    for device, group in (("phone", "a"), ("web", "b")):
        recommendations = cold_model.recommend("stranger", n=5, context={"DEVICE": device})
        assert all(score > 0 for _, score in recommendations)
        assert np.mean([g == group for g in groups(recommendations)]) > 0.8
    assert all(score == 0 for _, score in cold_model.recommend("stranger", n=5, context={"DEVICE": "fridge"}))


def test_models_pickle_and_keep_serving(cold_model):
    copied = pickle.loads(pickle.dumps(cold_model))
    assert copied.recommend("a_u005", n=10) == cold_model.recommend("a_u005", n=10)
    assert copied.rank("fresh_b", list(NEW_ITEMS)) == cold_model.rank("fresh_b", list(NEW_ITEMS))
    copied.update("a_u005", [("b_i00", LATER), ("b_i01", LATER + 1)])
    assert copied.recommend("a_u005", n=10) != cold_model.recommend("a_u005", n=10)


def test_same_seed_same_model_and_another_seed_another(groups_data):
    settings = {**FAST, "epochs": 3}
    first = DeepFM(**settings, seed=7).fit(groups_data)
    again = first.clone().fit(groups_data)
    np.testing.assert_array_equal(again.item_deep_, first.item_deep_)
    assert again.recommend("a_u000", n=20) == first.recommend("a_u000", n=20)
    other = DeepFM(**settings, seed=8).fit(groups_data)
    assert not np.array_equal(other.item_deep_, first.item_deep_)


def test_a_ten_thousand_item_catalog_is_served_in_milliseconds(groups_data):
    catalog = pd.DataFrame({"ITEM_ID": [f"extra{k:05d}" for k in range(10_000)]})
    data = InteractionData.from_frames(two_groups(), items=catalog)
    model = DeepFM(**{**FAST, "epochs": 10}).fit(data)
    assert len(model.item_const_) == data.n_items > 10_000
    users = list(data.user_ids[:40])
    model.recommend(users[0])
    with threadpool_limits(1, "blas"):  # one request, one core, as a server with a worker per core runs
        start = time.perf_counter()
        for user in users:
            model.recommend(user, n=25)
        seconds = (time.perf_counter() - start) / len(users)
    assert seconds < 0.01  # about a millisecond here; generous for busy machines
    everything = copy.deepcopy(model)
    everything.candidate_count = data.n_items  # scores the whole catalog
    for user in users[:10]:  # candidates from the FM part hold the best items of the whole catalog
        assert model.recommend(user, n=5) == everything.recommend(user, n=5)
    seen = set(data.to_frame().query("USER_ID == 'a_u000'")["ITEM_ID"])
    assert seen & {i for i, _ in model.recommend("a_u000", n=25, exclude_seen=False)}


def test_importing_the_recipes_does_not_load_torch():
    code = "import sys, pipelines.personalize; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
