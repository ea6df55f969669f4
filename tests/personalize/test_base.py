"""The recipe interface: registry, hyperparameters, exclusion, ranking, updates, pickling."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest

from pipelines.personalize import RECIPES, get_recipe
from pipelines.personalize.popularity import PopularityCount
from pipelines.personalize.sims import Sims


def test_registry_uses_personalize_recipe_names():
    assert {"popularity-count", "sims", "trending-now"} <= set(RECIPES)
    assert isinstance(get_recipe("aws-sims"), Sims)
    assert isinstance(get_recipe("arn:aws:personalize:::recipe/aws-popularity-count"), PopularityCount)
    with pytest.raises(ValueError, match="known recipes"):
        get_recipe("aws-hrnn-unknown")


def test_hyperparameters_are_constructor_arguments_and_may_be_strings():
    recipe = get_recipe("sims", popularity_discount_factor="0.25", min_cointeraction_count="2")
    assert recipe.get_params()["popularity_discount_factor"] == 0.25
    assert recipe.get_params()["min_cointeraction_count"] == 2
    assert recipe.clone().get_params() == recipe.get_params()
    assert "popularity_discount_factor=0.25" in repr(recipe)
    with pytest.raises(ValueError, match="no hyperparameters \\['alpha'\\]"):
        get_recipe("sims", alpha=1)
    with pytest.raises(ValueError, match=r"popularity_discount_factor=1\.5"):
        get_recipe("sims", popularity_discount_factor=1.5)


def test_untrained_model_says_so():
    with pytest.raises(RuntimeError, match="not trained"):
        PopularityCount().recommend("u")


def test_learned_state_ends_with_underscore(groups_data):
    model = PopularityCount().fit(groups_data)
    assert model.popularity_.shape == (groups_data.n_items,) and model.fit_seconds_ >= 0


def test_recommendations_leave_out_seen_and_excluded_items(groups_data):
    model = PopularityCount().fit(groups_data)
    user = "b_u000"
    seen = set(groups_data.to_frame().query("USER_ID == @user")["ITEM_ID"])
    recs = [item for item, _ in model.recommend(user, n=10)]
    assert len(recs) == 10 and not seen & set(recs)
    everything = [item for item, _ in model.recommend(user, n=10, exclude_seen=False)]
    assert seen & set(everything)
    assert everything[0] not in [item for item, _ in model.recommend(user, n=10, exclude=[everything[0]])]
    assert len(model.recommend(user, n=500)) == groups_data.n_items - len(seen)  # the catalog runs out
    with pytest.raises(ValueError, match="between 1 and 500"):
        model.recommend(user, n=501)


def test_unknown_user_gets_popular_items(groups_data):
    model = PopularityCount().fit(groups_data)
    assert model.recommend("nobody", n=5) == model.recommend("nobody-else", n=5)
    assert model.recommend("nobody", n=5)[0][0].startswith("b_")


@pytest.mark.parametrize("name", ["popularity-count", "sims", "trending-now"])
def test_rank_puts_unknown_items_last(groups_data, name):
    model = get_recipe(name).fit(groups_data)
    ranked = model.rank("a_u000", ["ghost", "a_i05", "b_i00", "ghost2", "a_i01", "a_i05"])
    assert [item for item, _ in ranked[-2:]] == ["ghost", "ghost2"]
    assert sorted(item for item, _ in ranked[:3]) == ["a_i01", "a_i05", "b_i00"]  # duplicates count once
    scores = [score for _, score in ranked[:3]]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(ValueError, match="at most 500"):
        model.rank("a_u000", [f"x{i}" for i in range(501)])


@pytest.mark.parametrize("name", ["popularity-count", "trending-now"])
def test_related_items_needs_a_related_items_recipe(groups_data, name):
    with pytest.raises(NotImplementedError, match=name):
        get_recipe(name).fit(groups_data).related_items("a_i00")


def test_update_makes_new_items_known_and_grows_the_history(groups_data):
    model = PopularityCount().fit(groups_data)
    top = model.recommend("a_u000", n=1)[0][0]
    model.update("a_u000", [(top, 1_800_000_000, "click"), {"itemId": "brand-new", "sentAt": "2027-01-15T10:00:00"}])
    assert model.recommend("a_u000", n=1)[0][0] != top  # now seen, so left out
    assert [item for item, _ in model.rank("a_u000", ["ghost", "brand-new"])] == ["brand-new", "ghost"]
    iso = int(pd.Timestamp("2027-01-15T10:00:00Z").timestamp())  # naive ISO text is UTC
    assert model.recent_events_["a_u000"][1] == [1_800_000_000, iso]
    with pytest.raises(ValueError, match="item id and a timestamp"):
        model.update("a_u000", [{"itemId": "x"}])


def test_models_pickle(groups_data):
    model = Sims().fit(groups_data)
    model.update("a_u000", [("b_i03", 1_800_000_000)])
    copy = pickle.loads(pickle.dumps(model))
    assert copy.recommend("a_u000") == model.recommend("a_u000")
    assert copy.related_items("a_i00") == model.related_items("a_i00")
