"""user-personalization-v2 and personalized-ranking-v2 on events with a known order (b_k always follows a_k)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pipelines.personalize import InteractionData, get_recipe
from pipelines.personalize.ranking import softmax
from pipelines.personalize.transformer_features import collapse_duplicates, event_type_bits, gap_buckets
from pipelines.personalize.user_personalization import item_exploration
from tests.personalize.conftest import T0
from tests.personalize.sequence_data import FAST, PAIRS, paired, paired_items

NEW = {"b_new": {"KIND": "closer", "DESCRIPTION": "the closing act of a story never told", "CREATION_TIMESTAMP": T0}}


@pytest.fixture(scope="module")
def data() -> InteractionData:
    return InteractionData.from_frames(paired(duplicates=True), items=paired_items(NEW))


@pytest.fixture(scope="module")
def model(data):
    return get_recipe("user-personalization-v2", exploration_weight=0.0, **FAST).fit(data)


def top(model, user: str, n: int = 3) -> list[str]:
    return [item for item, _ in model.recommend(user, n=n)]


def test_learns_that_b_follows_a_where_popularity_cannot(data, model):
    popular = get_recipe("popularity-count").fit(data)
    hits = 0
    for k in range(PAIRS):
        user = f"fresh_{k}"
        for recipe in (model, popular):
            recipe.update(user, [("f_03", T0 + 100 * 86_400), (f"a_{k}", T0 + 100 * 86_400 + 60)])
        hits += top(model, user, 1) == [f"b_{k}"]
        assert top(popular, user, 1) == ["f_00"]  # the same list for everyone: no pair right
    assert hits == PAIRS


def test_update_changes_the_next_recommendation(data, model):
    user = "u007"
    seen = {item for item, _ in model.recommend(user, n=50, exclude_seen=False)} - {
        item for item, _ in model.recommend(user, n=50)
    }
    first, second = [k for k in range(PAIRS) if f"b_{k}" not in seen][:2]
    later = T0 + 200 * 86_400
    model.update(user, [{"itemId": f"a_{first}", "sentAt": later, "eventType": "click"}])
    assert top(model, user, 1) == [f"b_{first}"]
    model.update(user, [(f"a_{second}", later + 60, "click")])
    assert top(model, user, 1) == [f"b_{second}"]


def test_serving_in_numpy_matches_the_trained_network(data, model):
    u = data.user_index["u003"]
    items, times, bits = model._user_events("u003")
    assert np.allclose(model.encode(items, times, bits), model.user_vectors_[u], atol=1e-4)


def test_new_item_with_metadata_scores_from_its_fields_and_is_explored(data):
    recipe = get_recipe("user-personalization-v2", exploration_weight=0.0, **FAST).fit(data)
    recipe.update("fresh", [("f_00", T0 + 100 * 86_400), ("a_2", T0 + 100 * 86_400 + 60)])
    ranked = [item for item, _ in recipe.rank("fresh", ["f_05", "f_10", "b_new", "f_20"])]
    assert ranked[0] == "b_new"  # a closer after an opener, though it has no events
    related = [item for item, _ in recipe.related_items("b_new", n=PAIRS)]
    assert sum(item.startswith("b_") for item in related) >= PAIRS - 1
    assert "b_new" not in top(recipe, "u010", 10)
    with item_exploration(weight=0.5, cut_off_days=365):  # created at T0, the newest event 100 days later
        assert "b_new" in top(recipe, "u010", 10)


def test_items_arriving_later_with_metadata_land_on_their_fields(model):
    model.add_items(["b_late"], [{"KIND": "closer", "DESCRIPTION": "the closing act of story 99"}])
    model.update("fresh_late", [("a_3", T0 + 300 * 86_400)])
    ranked = [item for item, _ in model.rank("fresh_late", ["f_01", "b_late", "f_02", "a_5"])]
    assert ranked[0] == "b_late"


def test_personalized_ranking_v2_orders_a_list_with_scores_over_the_list(data):
    ranking = get_recipe("personalized-ranking-v2", **FAST).fit(data)
    assert ranking.recipe_type == "PERSONALIZED_RANKING"
    ranking.update("someone", [("f_01", T0 + 100 * 86_400), ("a_5", T0 + 100 * 86_400 + 60)])
    ranked = ranking.rank("someone", ["f_00", "a_0", "b_5", "f_01", "unknown"])
    assert ranked[0][0] == "b_5" and ranked[-1] == ("unknown", 0.0)
    assert sum(score for _, score in ranked) == pytest.approx(1.0)


def test_training_is_seeded_and_the_model_pickles(data, model):
    again = get_recipe("user-personalization-v2", exploration_weight=0.0, **FAST).fit(data)
    assert np.array_equal(again.user_vectors_, model.user_vectors_)  # updates since leave these alone
    assert np.array_equal(again.item_vectors_[: data.n_items], model.item_vectors_[: data.n_items])
    twin = pickle.loads(pickle.dumps(again))
    assert twin.recommend("u001", 5) == again.recommend("u001", 5)


def test_early_stopping_keeps_the_best_epoch_on_a_validation_slice(data):
    recipe = get_recipe("user-personalization-v2", **{**FAST, "validation_fraction": 0.2, "epochs": 6, "patience": 1})
    report = recipe.fit(data).training_report_
    assert 1 <= report["best_epoch"] <= report["epochs"] <= 6
    assert report["full_softmax"] and report["validation_ndcg"] > 0


def test_sampled_softmax_beyond_the_full_softmax_limit_still_learns(data):
    recipe = get_recipe(
        "user-personalization-v2", exploration_weight=0.0, full_softmax_max_items=10, negative_samples=16, **FAST
    ).fit(data)
    assert not recipe.training_report_["full_softmax"]
    hits = 0
    for k in range(PAIRS):
        recipe.update(f"fresh_{k}", [("f_03", T0 + 100 * 86_400), (f"a_{k}", T0 + 100 * 86_400 + 60)])
        hits += top(recipe, f"fresh_{k}", 1) == [f"b_{k}"]
    assert hits >= PAIRS - 1


def test_same_second_duplicates_collapse_into_one_event_with_every_type():
    users = np.array([0, 0, 0, 0, 1])
    items = np.array([5, 6, 5, 7, 5])
    times = np.array([10, 10, 10, 20, 10])
    kept, masks = collapse_duplicates(users, items, times, event_type_bits(np.array([0, 0, 1, 1, -1])))
    assert kept.tolist() == [0, 1, 3, 4] and masks.tolist() == [3, 1, 2, 0]
    assert gap_buckets(np.array([0, 3]), np.array([10, 10, 20])).tolist() == [0, 1, 4]


def test_hyperparameters_are_checked_by_name():
    with pytest.raises(ValueError, match="heads"):
        get_recipe("user-personalization-v2", embedding_dimension=30, heads=4)
    with pytest.raises(ValueError, match="exploration_weight"):
        get_recipe("user-personalization-v2", exploration_weight=2.0)
    # Strings as Personalize passes them; "auto" chooses on the validation slice.
    assert get_recipe("user-personalization-v2", similar_items_weight="0.5").similar_items_weight == 0.5
    assert get_recipe("user-personalization-v2", similar_items_weight="auto").similar_items_weight is None
    with pytest.raises(ValueError, match="similar_items_weight"):
        get_recipe("user-personalization-v2", similar_items_weight="some")
    # A model pickled before the share existed reads as trained without one.
    old = get_recipe("personalized-ranking-v2")
    del old.__dict__["similar_items_weight"]
    assert old.get_params()["similar_items_weight"] == 0.0 and old.clone().similar_items_weight == 0.0


def test_trains_through_the_workflow_on_the_example_group(tmp_path):
    from pipelines.example_data import write_examples
    from pipelines.personalize import workflow
    from pipelines.preparation import steps
    from pipelines.settings import load_group

    group = load_group(write_examples(tmp_path / "examples")["interactions_demo"])
    steps.import_data(group, "2030-01-01")
    overrides = {"recipes": ["user-personalization-v2"]}
    result = workflow.hpo_train(group, "2030-01-01", "user-personalization-v2", overrides)
    popularity = workflow.hpo_train(group, "2030-01-01", "popularity-count", {"recipes": ["popularity-count"]})
    assert result["config"] == {"name": "user-personalization-v2", "params": {}}
    assert result["score"] > popularity["score"]


def test_the_v2_recipes_and_similar_items_have_search_spaces_over_their_hyperparameters():
    from pipelines.personalize import RECIPES
    from pipelines.personalize.tuning import SEARCH_SPACES

    for name in ("user-personalization-v2", "personalized-ranking-v2", "similar-items"):
        assert SEARCH_SPACES[name] and set(SEARCH_SPACES[name]) <= set(RECIPES[name].hyperparameter_defaults())
    assert SEARCH_SPACES["user-personalization-v2"]["max_sequence_length"].low == 50


def test_the_catalog_cross_entropy_matches_torch_in_value_and_gradient():
    """The chunked full softmax (logits computed again in backward) is torch's cross-entropy, over several chunks."""
    import torch
    from torch.nn import functional

    from pipelines.personalize.transformer_network import SOFTMAX_ROWS, CatalogCrossEntropy

    generator = torch.Generator().manual_seed(0)
    rows = 2 * SOFTMAX_ROWS + 37
    outputs = torch.randn(rows, 8, dtype=torch.float64, generator=generator, requires_grad=True)
    vectors = torch.randn(50, 8, dtype=torch.float64, generator=generator, requires_grad=True)
    targets = torch.randint(0, 50, (rows,), generator=generator)
    weights = torch.rand(rows, dtype=torch.float64, generator=generator)
    ours = CatalogCrossEntropy.apply(outputs, vectors, targets)
    theirs = functional.cross_entropy(outputs @ vectors.T, targets, reduction="none")
    assert torch.allclose(ours, theirs)
    grads = torch.autograd.grad((ours * weights).sum(), [outputs, vectors])
    expected = torch.autograd.grad((theirs * weights).sum(), [outputs, vectors])
    for got, want in zip(grads, expected, strict=True):
        assert torch.allclose(got, want)
    small = (outputs[:5].detach().requires_grad_(), vectors.detach().requires_grad_(), targets[:5])
    assert torch.autograd.gradcheck(CatalogCrossEntropy.apply, small)


def test_the_similar_items_share_is_chosen_on_the_validation_slice_without_its_held_out_events(data, monkeypatch):
    from pipelines.personalize import transformer
    from pipelines.personalize.similar_items import SimilarItems

    trained_on = []
    fit = SimilarItems.fit
    monkeypatch.setattr(SimilarItems, "fit", lambda self, d: (trained_on.append(d), fit(self, d))[1])
    recipe = get_recipe("user-personalization-v2", exploration_weight=0.0, **{**FAST, "validation_fraction": 0.2})
    report = recipe.fit(data).training_report_
    by_weight = report["validation_ndcg_by_similar_items_weight"]
    assert [float(w) for w in by_weight] == list(transformer.SIMILAR_ITEMS_WEIGHTS)
    best = max(by_weight.values())
    assert (
        report["similar_items_weight"]
        == recipe.similar_items_weight_
        == float(next(w for w, score in by_weight.items() if score == best))
    )
    # The choice's similar-items lacks exactly a suffix of each validation user's events (their held-out
    # newest tenth); the served one, if any, has every event.
    chooser = trained_on[0]
    assert 0 < chooser.n_interactions < data.n_interactions
    before, after = data.to_frame(), chooser.to_frame()
    for user, events in before.groupby("USER_ID", sort=False):
        kept = after[after["USER_ID"] == user]
        assert (
            events.head(len(kept))[["ITEM_ID", "TIMESTAMP"]].values.tolist()
            == kept[["ITEM_ID", "TIMESTAMP"]].values.tolist()
        )
    assert (recipe.similar_ is None) == (recipe.similar_items_weight_ == 0)
    if recipe.similar_ is not None:
        assert trained_on[1] is data
    # A catalog served through the index keeps the network alone unless a share is given.
    indexed = get_recipe("user-personalization-v2", ann_min_items=10, **{**FAST, "validation_fraction": 0.2})
    assert indexed.fit(data).similar_items_weight_ == 0.0 and indexed.similar_ is None


def test_a_given_similar_items_share_mixes_both_scores_and_zero_serves_the_network_alone(data, model):
    mixed = get_recipe("user-personalization-v2", exploration_weight=0.0, similar_items_weight=0.5, **FAST).fit(data)
    assert mixed.similar_items_weight_ == 0.5 and model.similar_items_weight_ == 0.0 and model.similar_ is None
    user, later = "mix_user", T0 + 100 * 86_400
    mixed.update(user, [("f_03", later), ("a_4", later + 60)])
    history, times = mixed._history(user)
    state = mixed._serving_state(history, times)
    network = softmax(mixed.item_vectors_ @ state.vector)
    items, similar = mixed.similar_._candidates(history, times, 0)
    expected = 0.5 * network
    expected[items] += 0.5 * similar / similar.sum()
    assert np.allclose(mixed._scores(state), expected) and mixed._scores(state).sum() == pytest.approx(1.0)
    assert mixed.item_index_["b_4"] in items.tolist()  # b_4 co-occurs with a_4: the similar part follows the event
    assert top(mixed, user, 1) == ["b_4"]
    ranking = get_recipe("personalized-ranking-v2", similar_items_weight=0.5, **FAST).fit(data)
    ranking.update(user, [("f_03", later), ("a_4", later + 60)])
    ranked = ranking.rank(user, ["f_00", "b_4", "f_01", "a_0"])
    assert ranked[0][0] == "b_4" and sum(score for _, score in ranked) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="similar_items_weight"):
        get_recipe("user-personalization-v2", similar_items_weight=1.0)
