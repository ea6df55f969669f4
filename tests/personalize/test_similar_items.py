"""similar-items: SIMS' co-occurrence blended with metadata similarity, so items without events have neighbours."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.personalize import InteractionData, get_recipe
from pipelines.personalize.transformer_features import ItemFeatures
from tests.personalize.conftest import T0
from tests.personalize.sequence_data import PAIRS, paired, paired_items

NEW = {"b_new": {"KIND": "closer", "DESCRIPTION": "the closing act of a story never told"}}


@pytest.fixture(scope="module")
def data() -> InteractionData:
    return InteractionData.from_frames(paired(), items=paired_items(NEW))


def related(model, item: str, n: int = PAIRS) -> list[str]:
    return [other for other, _ in model.related_items(item, n=n)]


def test_co_occurrence_leads_where_items_have_events(data):
    model = get_recipe("similar-items").fit(data)
    for k in range(PAIRS):
        assert related(model, f"a_{k}", 1) == [f"b_{k}"]  # the same users, every time


def test_an_item_without_events_has_neighbours_by_its_fields_and_is_theirs(data):
    model = get_recipe("similar-items").fit(data)
    sims = get_recipe("sims").fit(data)
    assert sum(item.startswith("b_") for item in related(model, "b_new")) == PAIRS
    assert all(score == 0 for _, score in sims.related_items("b_new", n=PAIRS))  # SIMS: popular fill, no evidence
    assert any("b_new" in related(model, f"b_{k}", 20) for k in range(PAIRS))


def test_items_arriving_later_with_metadata_get_neighbours_at_once(data):
    model = get_recipe("similar-items").fit(data)
    model.add_items(["a_late"], [{"KIND": "opener", "DESCRIPTION": "the opening act of story 42"}])
    assert sum(item.startswith("a_") for item in related(model, "a_late")) == PAIRS
    assert "a_late" in related(model, "a_0", 20)
    model.update("someone", [("a_late", T0 + 50 * 86_400)])
    assert {item for item, _ in model.recommend("someone", n=PAIRS)} == {f"a_{k}" for k in range(PAIRS)}


def test_without_metadata_it_is_sims(data):
    plain = InteractionData.from_frames(paired())
    model, sims = get_recipe("similar-items").fit(plain), get_recipe("sims").fit(plain)
    assert related(model, "a_2", 10) == related(sims, "a_2", 10)
    assert get_recipe("similar-items", metadata_weight=0.0).fit(data).recommend("u001", 10) == sims.fit(data).recommend(
        "u001", 10
    )


def test_item_features_read_categories_words_and_numbers():
    frame = pd.DataFrame(
        {
            "ITEM_ID": ["x", "y", "z", "w"],
            "GENRE": ["Drama|Comedy", "Drama", "Horror", "Horror"],
            "DESCRIPTION": ["a quiet family drama", "a loud family comedy", "a dark night story", "a dark house tale"],
            "YEAR": [1990, 1991, 2010, 2011],
        }
    )
    features = ItemFeatures.fit(frame, numeric="bins")
    assert features.kinds == {"GENRE": "categorical", "DESCRIPTION": "textual", "YEAR": "numeric"}
    assert {"GENRE=Drama", "GENRE=Horror", "DESCRIPTION~family", "DESCRIPTION~dark"} <= set(features.vocabulary)
    assert "DESCRIPTION~a" not in features.vocabulary  # in every row: says nothing
    row = features.matrix([{"GENRE": "Drama", "DESCRIPTION": "a family saga", "YEAR": 1990}]).toarray()[0]
    assert row[features.vocabulary["GENRE=Drama"]] == 1.0 and row[features.vocabulary["DESCRIPTION~family"]] == 1 / 3
