"""HPO of recipes: search spaces by recipe name, reproducibility, budgets, pruning, shared studies."""

from __future__ import annotations

import json
import time

import optuna
import pytest

from pipelines.personalize import get_recipe
from pipelines.personalize.evaluation import evaluate
from pipelines.personalize.tuning import (
    SEARCH_SPACES,
    Choice,
    FloatRange,
    IntRange,
    register_search_space,
    tune,
)

NDCG = "normalized_discounted_cumulative_gain_at_25"


def test_search_spaces_stay_in_the_documented_ranges(groups_data):
    sims = SEARCH_SPACES["sims"]
    assert sims["popularity_discount_factor"] == FloatRange(0.0, 1.0)
    assert sims["min_cointeraction_count"] == IntRange(0, 10)
    assert {"min_user_history_length_percentile", "max_user_history_length_percentile"} <= set(sims)
    assert SEARCH_SPACES["trending-now"] == {"lookback_window": Choice(("30min", "1h", "3h", "1D"))}
    result = tune("aws-sims", groups_data, n_trials=12, seed=0)
    for trial in result.trials:
        params = trial["params"]
        assert 0 <= params["popularity_discount_factor"] <= 1 and 0 <= params["min_cointeraction_count"] <= 10
        assert params["min_user_history_length_percentile"] <= params["max_user_history_length_percentile"]
    assert len(result.trials) == 12 and result.recipe == "sims" and result.direction == "maximize"
    assert result.best_score == max(t["score"] for t in result.trials)
    best = get_recipe("sims", **result.best_hyperparameters)  # what a solution version trains with
    assert evaluate(best, groups_data)["metrics"][NDCG] == pytest.approx(result.best_score)
    assert result.best_metrics[NDCG] == result.best_score and set(result.best_params) == set(sims)
    json.dumps(result.to_dict())  # goes into a manifest as it is


def test_same_seed_same_result_different_seed_different_trials(groups_data):
    first = tune("sims", groups_data, n_trials=8, seed=3)
    second = tune("sims", groups_data, n_trials=8, seed=3)
    assert (first.best_params, first.best_score) == (second.best_params, second.best_score)
    assert [(t["params"], t["score"]) for t in first.trials] == [(t["params"], t["score"]) for t in second.trials]
    other = tune("sims", groups_data, n_trials=8, seed=4)
    assert [t["params"] for t in other.trials] != [t["params"] for t in first.trials]


def test_a_custom_evaluator_and_a_loss_metric(groups_data):
    def distance_to_half(recipe, data, seed):  # a loss: smallest when the discount is 0.5
        return {"distance_loss": abs(recipe.popularity_discount_factor - 0.5)}

    result = tune("sims", groups_data, metric="distance_loss", n_trials=15, seed=0, evaluator=distance_to_half)
    assert result.direction == "minimize" and result.best_score == min(t["score"] for t in result.trials)
    assert result.best_score < 0.1
    with pytest.raises(KeyError, match="gives no 'precision_at_7'"):
        tune("sims", groups_data, metric="precision_at_7", n_trials=1)


def test_registered_space_is_the_hook_for_other_recipes(groups_data):
    saved = dict(SEARCH_SPACES)
    try:
        register_search_space("aws-trending-now", {"min_interactions": IntRange(1, 3)})
        result = tune("trending-now", groups_data, n_trials=4, seed=0, fixed={"lookback_window": "7D"})
        assert {tuple(t["params"]) for t in result.trials} == {("min_interactions",)}
        assert result.best_hyperparameters["lookback_window"] == "7D"
    finally:
        SEARCH_SPACES.clear()
        SEARCH_SPACES.update(saved)
    with pytest.raises(ValueError, match=r"no hyperparameters \['depth'\]"):
        tune("sims", groups_data, search_space={"depth": IntRange(1, 3)}, n_trials=1)
    with pytest.raises(ValueError, match="unknown recipe"):
        tune("no-such-recipe", groups_data, n_trials=1)
    only_defaults = tune("popularity-count", groups_data, n_trials=10)  # nothing to search: one trial
    assert len(only_defaults.trials) == 1 and only_defaults.best_params == {}


def test_time_budget_and_pruning(groups_data):
    start = time.perf_counter()
    timed = tune("sims", groups_data, n_trials=None, timeout=0.3, seed=0)
    assert len(timed.trials) >= 1 and time.perf_counter() - start < 5
    with pytest.raises(ValueError, match="never ends"):
        tune("sims", groups_data, n_trials=None, timeout=None)
    pruned = tune(
        "sims",
        groups_data,
        n_trials=8,
        seed=0,
        evaluation_seeds=(1, 2, 3),
        pruner=optuna.pruners.ThresholdPruner(lower=0.55),  # stop trials whose first split scores below 0.55
    )
    states = {t["state"] for t in pruned.trials}
    assert states == {"COMPLETE", "PRUNED"}
    for trial in pruned.trials:
        assert trial["state"] == "COMPLETE" or trial["score"] < 0.55
    assert pruned.best_score == max(t["score"] for t in pruned.trials if t["state"] == "COMPLETE")


def test_storage_url_shares_one_study_between_workers(groups_data, tmp_path):
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    first = tune("sims", groups_data, n_trials=2, seed=0, storage=url, study_name="group-sims")
    second = tune("sims", groups_data, n_trials=2, seed=1, storage=url, study_name="group-sims")  # another worker
    assert len(first.trials) == 2 and len(second.trials) == 4 and second.study_name == "group-sims"
    assert second.best_score >= first.best_score
