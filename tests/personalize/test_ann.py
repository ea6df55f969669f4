"""The approximate index a large catalog is served through: what it finds, what it keeps fresh, and the
v2 recipe answering through it as it answers without it."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from pipelines.personalize import InteractionData, get_recipe
from pipelines.personalize.ann import ItemIndex
from tests.personalize.conftest import T0
from tests.personalize.sequence_data import FAST, paired, paired_items

NEW = {"b_new": {"KIND": "closer", "DESCRIPTION": "the closing act of a story never told", "CREATION_TIMESTAMP": T0}}


@pytest.fixture(scope="module")
def clustered() -> np.ndarray:
    """20,000 item vectors around 200 directions, as trained embeddings cluster."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(200, 16))
    return (centers[rng.integers(0, 200, 20_000)] + 0.3 * rng.normal(size=(20_000, 16))).astype(np.float32)


@pytest.fixture(scope="module")
def index(clustered) -> ItemIndex:
    return ItemIndex(clustered, nprobe=16)


def exact_top(vectors: np.ndarray, query: np.ndarray, k: int) -> set:
    return set(np.argsort(-(vectors @ query), kind="stable")[:k].tolist())


def test_candidates_hold_the_exact_top_items_and_the_normalizer_is_close(clustered, index):
    rng = np.random.default_rng(1)
    recall, errors = [], []
    for _ in range(50):
        query = clustered[rng.integers(len(clustered))] + 0.1 * rng.normal(size=16).astype(np.float32)
        found = index.candidates(query, 200)
        assert len(found) == 200 and len(np.unique(found)) == 200
        top = found[np.argsort(-(clustered[found] @ query))[:10]]  # exact re-ranking of the candidates
        recall.append(len(set(top.tolist()) & exact_top(clustered, query, 10)) / 10)
        logits = (clustered[found] @ query).astype(np.float64)
        estimate = index.log_normalizer(query, found, logits, len(clustered))
        full = (clustered @ query).astype(np.float64)
        errors.append(abs(estimate - (full.max() + np.log(np.exp(full - full.max()).sum()))))
    assert np.mean(recall) >= 0.95 and index.nlist < len(clustered) // 39
    for scale in (4.0, 8.0):  # sharp softmaxes: a cell's cloud must not outweigh the items found
        query = scale * clustered[7]
        found = index.candidates(query, 200)
        logits = (clustered[found] @ query).astype(np.float64)
        full = (clustered @ query).astype(np.float64)
        exact = full.max() + np.log(np.exp(full - full.max()).sum())
        assert abs(index.log_normalizer(query, found, logits, len(clustered)) - exact) < 0.15
    assert np.median(errors) < 0.15  # the softmax's scores within about 15 % where the index estimates them


def test_new_and_redescribed_items_are_always_candidates_and_the_index_pickles(clustered, index):
    fresh = copy.deepcopy(index)
    fresh.grow(3)  # items 20000..20002
    fresh.touch(np.array([5]))
    query = -clustered[5]  # far from item 5: the index alone would never return it
    found = fresh.candidates(query, 20)
    assert {5, 20_000, 20_001, 20_002} <= set(found.tolist())
    assert 5 not in index.candidates(query, 20).tolist()
    again = pickle.loads(pickle.dumps(fresh))
    np.testing.assert_array_equal(again.candidates(query, 20), found)
    assert again.index.nprobe == fresh.index.nprobe == 16


@pytest.fixture(scope="module")
def exact_and_indexed():
    data = InteractionData.from_frames(paired(duplicates=True), items=paired_items(NEW))
    exact = get_recipe("user-personalization-v2", **FAST).fit(data)
    assert exact.index_ is None  # 42 items: below ann_min_items
    indexed = copy.deepcopy(exact)
    indexed.ann_min_items, indexed.ann_candidates = 1, 10
    indexed.build_index()
    return exact, indexed


def test_the_v2_recipe_answers_through_the_index_as_without_it(exact_and_indexed):
    exact, indexed = exact_and_indexed
    assert indexed.index_ is not None and indexed.index_.nlist == 1  # one cell: the index is exact here
    for user in ("u000", "u001", "u017", "unknown-user"):  # exploration on: b_new is in scope
        got, want = indexed.recommend(user, n=5), exact.recommend(user, n=5)
        assert [i for i, _ in got] == [i for i, _ in want]
        # the same items; scores normalized over the items scored (500 at most), not the whole catalog
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=0.1)
    listed = ["a_0", "b_0", "f_00", "f_07"]
    ranked, want = indexed.rank("u000", listed), exact.rank("u000", listed)
    assert [i for i, _ in ranked] == [i for i, _ in want]
    # 10 candidates of 43 items: the other 33 enter the softmax's normalizer as their cell's normal cloud
    np.testing.assert_allclose([s for _, s in ranked], [s for _, s in want], rtol=0.1)
    restored = pickle.loads(pickle.dumps(indexed))
    assert restored.recommend("u000", n=5) == indexed.recommend("u000", n=5)


def test_a_new_item_from_put_events_is_recommendable_through_the_index(exact_and_indexed):
    _, indexed = exact_and_indexed
    live = copy.deepcopy(indexed)
    live.update("u000", [("brand-new", T0 + 400 * 86_400)])
    new = live.item_index_["brand-new"]
    assert new in live.index_.fresh
    state = live._serving_state(*live._history("u001"))
    assert new in live._exploitation_pool(state, 5).tolist()  # fresh items are candidates until the next training
    live.exploration_weight = 1.0  # only exploration: the one item created within the cut-off comes first
    assert live.recommend("u001", n=3)[0][0] == "brand-new"
