"""HPO: DeepAR+'s search space, reproducibility, budgets, pruning per window, shared studies, the hook."""

from __future__ import annotations

import json
import time

import optuna
import pytest

from pipelines.forecast.backtest import backtest
from pipelines.forecast.base import get_algorithm
from pipelines.forecast.data import ForecastData
from pipelines.forecast.tuning import (
    SEARCH_SPACES,
    Choice,
    FloatRange,
    HorizonRange,
    IntRange,
    Likelihoods,
    register_search_space,
    tune,
)

TINY_DEEPAR = {"num_batches_per_epoch": 8, "batch_size": 16, "num_samples": 20, "num_layers": 1}
SMALL_SPACE = {
    "context_length": HorizonRange(0.5, 2),
    "epochs": IntRange(1, 3),
    "learning_rate": FloatRange(1e-3, 3e-2, log=True),
    "num_cells": IntRange(4, 12),
    "likelihood": Likelihoods(),
}


def test_deepar_space_follows_forecasts_ranges_and_the_data(generated):
    data, _ = generated
    space = SEARCH_SPACES["DeepAR+"]
    assert set(space) == {"context_length", "epochs", "learning_rate", "num_layers", "num_cells", "likelihood"}
    assert space["context_length"].resolve(data) == IntRange(12, 48)  # one to four horizons of 12
    assert space["likelihood"].resolve(data) == Choice(("student-t", "gaussian", "negative-binomial"))
    signed = ForecastData.from_arrays([data.series(0) - 100], freq="1M", horizon=12, end="2024-12-01")
    assert space["likelihood"].resolve(signed) == Choice(("student-t", "gaussian"))  # no counts, no NB


def test_same_seed_same_best_deepar_params(generated):
    data, _ = generated
    kwargs = {"n_trials": 3, "seed": 5, "search_space": SMALL_SPACE, "fixed": TINY_DEEPAR}
    first = tune("DeepAR+", data, **kwargs)
    second = tune("arn:aws:forecast:::algorithm/Deep_AR_Plus", data, **kwargs)
    assert first.algorithm == second.algorithm == "DeepAR+"
    assert (first.best_params, first.best_score) == (second.best_params, second.best_score)
    assert [(t["params"], t["score"]) for t in first.trials] == [(t["params"], t["score"]) for t in second.trials]
    assert first.best_score == min(t["score"] for t in first.trials)
    assert first.best_hyperparameters["num_layers"] == 1 and first.best_hyperparameters["epochs"] <= 3
    json.dumps(first.to_dict())  # goes into a manifest as it is
    # The best trial's score is the backtest of the estimator the predictor would train.
    again = backtest(first.best_algorithm(), data).summary["AverageWeightedQuantileLoss"]
    assert again == pytest.approx(first.best_score)


def test_other_algorithms_plug_in_by_name(generated):
    data, _ = generated
    result = tune("theta", data, metric="WAPE", n_trials=6, seed=0)
    assert result.algorithm == "Theta" and set(result.best_params) == {"model", "theta"}
    assert all(1 <= t["params"]["theta"] <= 4 for t in result.trials)
    assert {t["params"]["model"] for t in result.trials} <= {"auto", "STM", "OTM", "DSTM", "DOTM"}
    saved = dict(SEARCH_SPACES)
    try:
        register_search_space("NPTS", {"exp_kernel_weights": FloatRange(0.1, 5.0)})
        npts = tune("NPTS", data, n_trials=3, fixed={"num_samples": 20, "kernel_type": "uniform"})
        assert {tuple(t["params"]) for t in npts.trials} == {("exp_kernel_weights",)}
        assert npts.best_hyperparameters["kernel_type"] == "uniform"
    finally:
        SEARCH_SPACES.clear()
        SEARCH_SPACES.update(saved)
    with pytest.raises(ValueError, match=r"no hyperparameters \['depth'\]"):
        tune("Theta", data, search_space={"depth": IntRange(1, 3)}, n_trials=1)
    with pytest.raises(ValueError, match="unknown algorithm"):
        tune("Prophecy", data, n_trials=1)
    only_defaults = tune("SeasonalNaive", data, n_trials=10)  # nothing to search: one trial
    assert len(only_defaults.trials) == 1 and only_defaults.best_params == {}


def test_budgets_and_pruning_per_backtest_window(generated):
    data, _ = generated
    start = time.perf_counter()
    timed = tune("Theta", data, n_trials=None, timeout=0.5, seed=0)
    assert len(timed.trials) >= 1 and time.perf_counter() - start < 10
    with pytest.raises(ValueError, match="never ends"):
        tune("Theta", data, n_trials=None, timeout=None)
    threshold = get_algorithm("NPTS", num_samples=20)
    newest = backtest(threshold, data, windows=1)  # the window a trial is scored on first
    cut = newest.summary["AverageWeightedQuantileLoss"]
    pruned = tune(
        "NPTS",
        data,
        n_trials=6,
        seed=0,
        windows=3,
        fixed={"num_samples": 20},
        pruner=optuna.pruners.ThresholdPruner(upper=cut),  # stop trials whose newest window scores worse
    )
    states = [t["state"] for t in pruned.trials]
    assert set(states) == {"COMPLETE", "PRUNED"}, states
    for trial in pruned.trials:
        assert len(trial["metrics"]) and (trial["state"] == "COMPLETE" or trial["score"] > cut)
    full = backtest(get_algorithm("NPTS", num_samples=20, **pruned.best_params), data, windows=3)
    assert pruned.best_score == pytest.approx(full.summary["AverageWeightedQuantileLoss"])


def test_storage_url_shares_one_study_between_workers(generated, tmp_path):
    data, _ = generated
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    first = tune("Theta", data, n_trials=2, seed=0, storage=url, study_name="group-theta")
    second = tune("Theta", data, n_trials=2, seed=1, storage=url, study_name="group-theta")  # another worker
    assert len(first.trials) == 2 and len(second.trials) == 4 and second.study_name == "group-theta"
    assert second.best_score <= first.best_score
