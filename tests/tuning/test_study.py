"""The one Optuna core both families search with, and the one rule for which way a metric points."""

from __future__ import annotations

import math

import pytest

from pipelines import domains
from pipelines.tuning import FloatRange, IntRange, higher_is_better, metric_direction, search


def test_every_metric_a_group_can_optimize_has_a_direction():
    for metric in domains.FORECAST_METRICS:
        assert metric_direction(metric) == "minimize", metric
    for metric in domains.PERSONALIZE_METRICS:
        assert metric_direction(metric) == "maximize" and higher_is_better(metric), metric
    assert metric_direction("recall_at_10") == "maximize" and metric_direction("weighted_quantile_loss") == "minimize"
    with pytest.raises(ValueError, match="gain or a loss"):
        metric_direction("mystery")


def test_a_search_scores_step_by_step_prunes_and_reports_the_best():
    built, scored = [], []

    def build(params):
        built.append(params)
        return params

    def step(offset):
        def score(candidate):
            scored.append(offset)
            return {"error": abs(candidate["x"] - 3) + offset + 0.01 * candidate["n"], "label": "not a number"}

        return score

    def run(hyperparameters):
        space = {"x": FloatRange(0.0, 10.0), "n": IntRange(1, 5)}
        steps = [step(0.0), step(1.0)]
        return search("toy", space, build, steps, "error", hyperparameters=hyperparameters, n_trials=30, seed=1)

    result = run(lambda best: {"fixed": True, **best})
    assert result.direction == "minimize" and len(result.trials) == 30 and len(built) == 30
    assert result.best_score == min(t["score"] for t in result.trials if t["state"] == "COMPLETE")
    assert abs(result.best_params["x"] - 3) < 1.0 and result.best_hyperparameters["fixed"] is True
    assert result.best_metrics == {"error": pytest.approx(result.best_score)}  # text values are left out
    assert any(t["state"] == "PRUNED" for t in result.trials) and len(scored) < 60
    again = run(dict)
    assert [t["params"] for t in again.trials] == [t["params"] for t in result.trials]  # seeded


def test_an_empty_space_scores_the_defaults_once_and_a_missing_metric_is_an_error():
    result = search("toy", {}, dict, [lambda c: {"coverage": 0.5}], "coverage", hyperparameters=dict, n_trials=9)
    assert len(result.trials) == 1 and result.direction == "maximize" and result.best_score == 0.5
    with pytest.raises(KeyError, match="gives no 'ndcg'"):
        search("toy", {}, dict, [lambda c: {"coverage": 0.5}], "ndcg", hyperparameters=dict, n_trials=1)
    with pytest.raises(ValueError, match="never ends"):
        search("toy", {}, dict, [], "coverage", hyperparameters=dict, n_trials=None)
    nan = search("toy", {}, dict, [lambda c: {"coverage": math.nan}], "coverage", hyperparameters=dict, n_trials=1)
    assert math.isnan(nan.best_metrics.get("coverage", math.nan))
