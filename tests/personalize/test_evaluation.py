"""Offline evaluation: Personalize's metrics and split, leave-last-out, and a MovieLens run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.personalize import InteractionData, get_recipe
from pipelines.personalize.evaluation import (
    METRICS,
    coverage,
    evaluate,
    evaluate_leave_last_out,
    leave_last_out_split,
    ndcg_at_k,
    personalize_split,
    precision_at_k,
    reciprocal_rank_at_k,
)


def test_personalize_documented_example():
    # Five recommendations, the user's two relevant items at positions 2 and 5.
    recommended, relevant = ["a", "rel1", "b", "c", "rel2"], {"rel1", "rel2"}
    assert ndcg_at_k(recommended, relevant, 5) == pytest.approx(0.6241, abs=5e-5)
    assert precision_at_k(recommended, relevant, 5) == pytest.approx(0.4)
    assert reciprocal_rank_at_k(recommended, relevant, 25) == pytest.approx(0.5)


def test_metric_edge_cases():
    assert ndcg_at_k(["a", "b"], set(), 5) == 0.0
    assert ndcg_at_k([], {"a"}, 5) == 0.0 and precision_at_k([], {"a"}, 5) == 0.0
    assert reciprocal_rank_at_k(["x", "y"], {"a"}, 25) == 0.0
    assert ndcg_at_k(["a", "b"], {"a", "b"}, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["a", "b", "x"], {"a", "b", "c", "d"}, 2) == pytest.approx(1.0)  # ideal over min(k, relevant)
    assert ndcg_at_k(["x", "a"], {"a"}, 1) == 0.0  # beyond k does not count
    assert ndcg_at_k(["a", "a"], {"a", "b"}, 2) == pytest.approx(1 / (1 + 1 / np.log2(3)))  # counted once
    assert precision_at_k(["a"], {"a"}, 5) == pytest.approx(0.2)  # a short list is not forgiven
    assert reciprocal_rank_at_k(["x"] * 25 + ["a"], {"a"}, 25) == 0.0
    assert coverage([["a", "b"], ["b", "c"]], 10) == pytest.approx(0.3) and coverage([], 0) == 0.0


def test_personalize_split(groups_data):
    split = personalize_split(groups_data, seed=3)
    assert len(split.truth) == 12 and split.skipped_users == 0  # 10% of 120 users
    indptr, rows = groups_data.histories
    for u, relevant in split.truth.items():
        events = rows[indptr[u] : indptr[u + 1]]
        newest = groups_data.items[events[10:]]  # 12 events: the oldest 10 are input
        assert sorted(relevant) == sorted(newest)
        kept = split.train.items[split.train.users == u]
        assert kept.tolist() == groups_data.items[events[:10]].tolist()
    assert split.train.n_interactions == groups_data.n_interactions - 2 * 12
    assert personalize_split(groups_data, seed=3).truth.keys() == split.truth.keys()
    assert personalize_split(groups_data, seed=4).truth.keys() != split.truth.keys()


def test_short_histories_are_skipped_and_seen_items_leave_the_truth():
    frame = pd.DataFrame(
        {
            "USER_ID": ["once"] + ["again"] * 3,
            "ITEM_ID": ["x", "a", "b", "a"],
            "TIMESTAMP": [1, 1, 2, 3],
        }
    )
    data = InteractionData.from_frames(frame)
    split = personalize_split(data, test_fraction=1.0)
    assert split.truth == {} and split.skipped_users == 2  # "again" only re-watched "a"
    kept = personalize_split(data, test_fraction=1.0, exclude_seen=False)
    assert {data.user_ids[u]: data.item_ids[t].tolist() for u, t in kept.truth.items()} == {"again": ["a"]}


def test_leave_last_out_holds_out_each_users_newest_item():
    frame = pd.DataFrame({"USER_ID": ["u"] * 4 + ["v"], "ITEM_ID": ["a", "b", "a", "c", "a"], "TIMESTAMP": range(5)})
    data = InteractionData.from_frames(frame)
    split = leave_last_out_split(data)
    assert {data.user_ids[u]: data.item_ids[t].tolist() for u, t in split.truth.items()} == {"u": ["c"]}
    assert split.skipped_users == 1 and split.train.n_interactions == 4


def test_evaluation_is_reproducible(groups_data):
    first = evaluate(get_recipe("sims"), groups_data, seed=7)
    second = evaluate(get_recipe("sims"), groups_data, seed=7)
    assert first["metrics"] == second["metrics"] and list(first["metrics"]) == list(METRICS)
    assert evaluate_leave_last_out(get_recipe("sims"), groups_data)["metrics"]["recall_at_10"] > 0


def test_movielens_sims_against_popularity(shared_data):
    folder = shared_data / "personalize/movielens_personalize_format"
    data = InteractionData.from_frames(pd.read_csv(folder / "interactions.csv"))
    results = {}
    for name in ("popularity-count", "sims", "trending-now"):
        recipe = get_recipe(name)
        results[name] = {"personalize": evaluate(recipe, data), "leave_last_out": evaluate_leave_last_out(recipe, data)}
    print(json.dumps(results, indent=1))  # pytest -s shows the numbers
    sims, popularity = results["sims"], results["popularity-count"]
    for metric in ("normalized_discounted_cumulative_gain_at_25", "precision_at_25", "coverage"):
        assert sims["personalize"]["metrics"][metric] > popularity["personalize"]["metrics"][metric], metric
    assert sims["leave_last_out"]["metrics"]["recall_at_10"] > popularity["leave_last_out"]["metrics"]["recall_at_10"]
    assert sims["personalize"]["test_users"] == 61  # 10% of 610 users
