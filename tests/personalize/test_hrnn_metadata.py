"""HRNN-Metadata and HRNN-Coldstart: metadata as bags of tokens, and new items scored like their twins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipelines.personalize import InteractionData
from pipelines.personalize.hrnn_metadata import HrnnColdstart, HrnnMetadata, ridge_predict
from pipelines.personalize.metadata import metadata_bags
from tests.personalize.chain_data import FAST, GROUPS, chain_items, chain_users, chains, group_of, item
from tests.personalize.conftest import DAY, T0

NEW = {f"new_g{g}": {"GENRE": f"genre{g}", "TAGS": f"tag{g}", "RANK": 4.5} for g in range(GROUPS)}


@pytest.fixture(scope="module")
def described() -> InteractionData:
    return InteractionData.from_frames(chains(), items=chain_items(NEW), users=chain_users())


@pytest.fixture(scope="module")
def coldstart(described) -> HrnnColdstart:
    return HrnnColdstart(**FAST).fit(described)


def test_metadata_becomes_bags_of_tokens():
    frame = pd.DataFrame(
        {
            "ITEM_ID": ["a", "b", "c", "d"],
            "GENRES": [["Action", "Comedy"], ["Action"], [], None],  # lists, as the import writes them
            "TAGS": ["x|y", "x", "y", np.nan],  # raw CSV text
            "PRICE": [1.0, 3.0, np.nan, 2.0],
            "DESCRIPTION": ["one", "two", "three", "four"],  # every value once: no shared signal
            "CREATION_TIMESTAMP": [1, 2, 3, 4],
            "EMPTY": [np.nan] * 4,
        }
    )
    bags, tokens = metadata_bags(frame)
    assert tokens == ["GENRES=Action", "PRICE", "TAGS=x", "TAGS=y"]  # Comedy and the descriptions occur once
    dense = bags.toarray()
    assert dense[0].tolist() == pytest.approx([0.5, -1.224745, 0.5, 0.5], abs=1e-5)  # a bag spreads weight 1
    assert dense[1].tolist() == pytest.approx([1.0, 1.224745, 1.0, 0.0], abs=1e-5)
    assert dense[3].tolist() == [0, 0, 0, 0]
    assert metadata_bags(None) == (None, []) and metadata_bags(frame[["ITEM_ID", "DESCRIPTION"]]) == (None, [])


def test_ridge_map_predicts_the_shrunk_mean_of_twins():
    features = sp.csr_matrix(np.repeat([[1, 0], [0, 1], [1, 0], [0, 1], [0, 0]], [10, 10, 1, 1, 1], axis=0))
    targets = np.concatenate([np.linspace(1, 3, 10), np.linspace(10, 12, 10), [0, 0, 0]])[:, None]
    trained = np.arange(23) < 20
    predicted = ridge_predict(features, targets, trained)[~trained, 0]
    assert predicted[0] == pytest.approx(2.0, abs=0.5) and predicted[1] == pytest.approx(11.0, abs=0.5)
    assert predicted[2] == pytest.approx(6.5)  # no known token: the mean target


def test_hrnn_metadata_reads_item_and_user_metadata_and_still_learns_order(described):
    model = HrnnMetadata(**FAST).fit(described)
    assert model.item_inputs_.shape[1] > model.hidden_dimension and model.user_features_ is not None
    model.update("visitor", [(item(2, 3), T0 + 60 * DAY), (item(2, 4), T0 + 60 * DAY + 60)])
    assert item(2, 5) in [i for i, _ in model.recommend("visitor", n=3)]
    scores = dict(model.rank("g0_u000", list(NEW)))
    assert np.ptp(list(scores.values())) <= 1e-6 * max(scores.values())  # no cold-start map: all the mean item


def test_coldstart_scores_a_metadata_only_item_like_its_twins(coldstart, described):
    mean_item = coldstart.cold_item_[1]
    for name in NEW:  # mapped from metadata, not the mean item hrnn-metadata would give them
        assert not np.allclose(coldstart.output_[described.item_index[name]], mean_item)
    users = list(described.user_ids[:90])
    twins = {g: [item(c, s) for c in range(g * 2, g * 2 + 2) for s in range(10)] for g in range(GROUPS)}
    profiles = {}
    for name in [*NEW, *(f"twins{g}" for g in range(GROUPS))]:
        profiles[name] = []
    for user in users:
        scores = dict(coldstart.rank(user, list(NEW) + [i for g in twins.values() for i in g]))
        for g in range(GROUPS):
            profiles[f"new_g{g}"].append(np.log(scores[f"new_g{g}"]))
            profiles[f"twins{g}"].append(np.mean(np.log([scores[i] for i in twins[g]])))
    for g in range(GROUPS):
        correlations = [np.corrcoef(profiles[f"new_g{g}"], profiles[f"twins{k}"])[0, 1] for k in range(GROUPS)]
        assert int(np.argmax(correlations)) == g and correlations[g] > 0.5, correlations


def test_coldstart_recommends_a_new_item_to_its_group(coldstart, described):
    wins = []
    for user in described.user_ids[:60]:
        ranked = [i for i, _ in coldstart.rank(user, list(NEW))]
        wins.append(ranked[0] == f"new_g{group_of(user)}")
    assert np.mean(wins) > 0.6  # a third by chance
