"""SIMS: co-occurrence similarity, its hyperparameters, popularity fallback and live updates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.personalize import InteractionData, sims
from pipelines.personalize.evaluation import evaluate
from pipelines.personalize.popularity import PopularityCount
from pipelines.personalize.sims import Sims
from tests.personalize.conftest import T0, two_groups


def group_of(item_id: str) -> str:
    return item_id.split("_")[0]


def test_related_items_stay_in_the_group(groups_data):
    model = Sims().fit(groups_data)
    for item in ("a_i00", "a_i17", "b_i03"):
        related = model.related_items(item, n=10)
        assert len(related) == 10 and item not in [r for r, _ in related]
        assert {group_of(r) for r, _ in related} == {group_of(item)}
        assert all(score > 0 for _, score in related)


def test_users_get_items_of_their_group_where_popularity_gives_the_other(groups_data):
    model, baseline = Sims().fit(groups_data), PopularityCount().fit(groups_data)
    for user in ("a_u000", "a_u013", "b_u042"):
        assert {group_of(item) for item, _ in model.recommend(user, n=10)} == {group_of(user)}
    assert {group_of(item) for item, _ in baseline.recommend("a_u000", n=10)} == {"b"}


def test_sims_beats_popularity_on_personalize_evaluation(groups_data):
    ours = evaluate(Sims(), groups_data)["metrics"]
    baseline = evaluate(PopularityCount(), groups_data)["metrics"]
    for metric in ("normalized_discounted_cumulative_gain_at_10", "precision_at_10", "coverage"):
        assert ours[metric] > baseline[metric], metric


def test_a_new_event_changes_the_next_recommendations_at_once(groups_data):
    model = Sims().fit(groups_data)
    assert group_of(model.recommend("visitor", n=1)[0][0]) == "b"  # unknown user: popular items
    model.update("visitor", [("a_i04", T0 + 40 * 86400, "click")])
    after = model.recommend("visitor", n=10)
    assert {group_of(item) for item, _ in after} == {"a"} and "a_i04" not in dict(after)
    before = model.recommend("a_u000", n=25)
    model.update("a_u000", [("b_i07", T0 + 40 * 86400)])
    changed = model.recommend("a_u000", n=25)
    assert changed != before
    assert any(group_of(item) == "b" and score > 0 for item, score in changed)  # b_i07's neighbours


def test_unknown_and_isolated_items_fall_back_to_popularity():
    frame = two_groups(users_a=10, users_b=20)
    lonely = pd.DataFrame([{"USER_ID": "z", "ITEM_ID": "lonely", "TIMESTAMP": T0, "EVENT_TYPE": "click"}])
    data = InteractionData.from_frames(pd.concat([frame, lonely]))
    model, baseline = Sims().fit(data), PopularityCount().fit(data)
    popular = [item for item, _ in baseline.recommend("nobody", n=5)]
    assert [item for item, _ in model.related_items("never-seen", n=5)] == popular
    assert [item for item, _ in model.related_items("lonely", n=5)] == popular
    assert all(score == 0 for _, score in model.related_items("lonely", n=5))


def test_min_cointeraction_count_drops_rare_pairs():
    frame = pd.DataFrame(
        [(f"u{u}", item, T0 + u) for u in range(4) for item in ("x", "y")] + [("u9", "x", T0), ("u9", "z", T0)],
        columns=["USER_ID", "ITEM_ID", "TIMESTAMP"],
    )
    data = InteractionData.from_frames(frame)
    assert Sims(min_cointeraction_count=3).fit(data).related_items("x", n=2)[0] == (
        "y",
        pytest.approx(4 / np.sqrt(5 * 4)),
    )
    strict = Sims(min_cointeraction_count=5).fit(data).related_items("x", n=2)
    assert all(score == 0 for _, score in strict)  # no pair reaches 5: popularity fills in
    loose = Sims(min_cointeraction_count=1).fit(data).related_items("x", n=2)
    assert [item for item, _ in loose] == ["y", "z"]


def test_popularity_discount_factor_trades_popular_for_specific_neighbours():
    # "hit" is used by everyone; "niche" only by the 4 users of "anchor", all of them.
    rows = [(f"u{u}", "hit", T0) for u in range(40)]
    rows += [(f"u{u}", item, T0 + 1) for u in range(4) for item in ("anchor", "niche")]
    rows += [(f"u{u}", "anchor", T0 + 1) for u in range(4, 8)]
    data = InteractionData.from_frames(pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"]))
    assert Sims(popularity_discount_factor=0.0).fit(data).related_items("anchor", n=1)[0][0] == "hit"
    assert Sims(popularity_discount_factor=1.0).fit(data).related_items("anchor", n=1)[0][0] == "niche"


def test_history_length_percentiles_leave_robots_out():
    frame = two_groups(users_a=20, users_b=20)
    robot = pd.DataFrame({"USER_ID": "robot", "ITEM_ID": sorted(set(frame["ITEM_ID"])), "TIMESTAMP": T0})
    robots = pd.concat([robot.assign(USER_ID=f"robot{k}") for k in range(5)])
    data = InteractionData.from_frames(pd.concat([frame, robots]))
    trusting = Sims(max_user_history_length_percentile=1.0).fit(data)
    assert {group_of(item) for item, _ in trusting.related_items("a_i00", n=60)} == {"a", "b"}
    careful = Sims(max_user_history_length_percentile=0.85).fit(data)
    assert careful.training_users_ == 40
    assert {group_of(item) for item, score in careful.related_items("a_i00", n=60) if score > 0} == {"a"}


def test_blocked_computation_matches_the_dense_formula(groups_data, monkeypatch):
    monkeypatch.setattr(sims, "BLOCK_WORK", 2000)  # a few items per block
    matrix = groups_data.user_item.copy()
    matrix.data[:] = 1
    indptr, neighbors, scores = sims.similar_items(matrix, 0.5, 3, keep=1000)
    dense = (matrix.T @ matrix).toarray()
    users = np.diag(dense).copy()
    np.fill_diagonal(dense, 0)
    expected = np.where(dense >= 3, dense / np.sqrt(np.outer(users, users)), 0)
    got = np.zeros_like(expected)
    for i in range(groups_data.n_items):
        got[i, neighbors[indptr[i] : indptr[i + 1]]] = scores[indptr[i] : indptr[i + 1]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    _, few, _ = sims.similar_items(matrix, 0.5, 3, keep=4)
    assert len(few) == 4 * groups_data.n_items


def test_only_the_best_neighbours_are_kept(groups_data):
    full, small = Sims().fit(groups_data), Sims(max_similar_items=5).fit(groups_data)
    assert small.related_items("a_i00", n=5) == full.related_items("a_i00", n=5)
    assert len(small.neighbors_) == 5 * groups_data.n_items
