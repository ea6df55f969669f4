"""The Forecast DAG's training steps called directly: the champion keeps serving when a worse model comes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.example_data import write_examples
from pipelines.forecast import workflow
from pipelines.forecast.cold_start import with_cold_start
from pipelines.preparation import steps
from pipelines.settings import load_group
from pipelines.training import publish, registry
from pipelines.training import pyfunc as models
from pipelines.training import runs as wf


def run(group, as_of: str, algorithms: list[str]) -> dict:
    overrides = {"algorithms": algorithms}
    steps.import_data(group, as_of)
    candidates = [workflow.hpo_train(group, as_of, name, overrides) for name in algorithms]
    selection = workflow.backtest(group, as_of, candidates, overrides)
    forecasted = workflow.forecast(group, as_of, selection, overrides)
    return workflow.publish(group, as_of, selection, forecasted, overrides)


@pytest.fixture
def retail(tmp_path):
    group = load_group(write_examples(tmp_path / "examples")["retail_demo"])
    # Uncalibrated, so that the served forecast is exactly the refitted model's (calibration: test_calibration.py).
    training = group.training.model_copy(update={"plots": 2, "calibrate_intervals": False})
    return group.model_copy(update={"training": training})


def test_a_worse_challenger_leaves_the_champions_configuration_serving_refitted_on_new_data(retail):
    first = run(retail, "2024-06-01", ["Theta"])
    assert first["promoted"] and first["served_version"] == "1"

    second = run(retail, "2024-06-15", ["SeasonalNaive"])  # worse than Theta on the same window
    assert not second["promoted"] and second["served"] == "champion" and second["served_version"] == "1"
    name = models.registered_name("forecast", retail.name)
    found = registry.client().get_registered_model(name).aliases
    assert {alias: str(version) for alias, version in found.items()} == {"champion": "1", "challenger": "2"}

    served = pd.read_parquet(Path(second["path"]) / "forecast.parquet")
    assert served["date"].min() > pd.Timestamp("2024-06-14")  # forecast from the new data
    data = workflow.load_data(retail, pd.Timestamp("2024-06-15"))
    theta = workflow.algorithm({"name": "Theta", "params": {}}, retail.training).fit(data)
    expected = workflow.export_frame(with_cold_start(theta, data, retail.training.forecast_types))
    pd.testing.assert_frame_equal(served, expected)
    assert publish.latest(retail.storage_root, "forecast")["as_of"] == "2024-06-15T00:00:00"


def test_a_failing_candidate_is_recorded_and_the_others_still_compete(retail, monkeypatch):
    as_of = "2024-06-01"
    steps.import_data(retail, as_of)
    real = workflow.algorithm

    def broken(config, training):
        if config["name"] == "NPTS":
            raise FloatingPointError("diverged")
        return real(config, training)

    monkeypatch.setattr(workflow, "algorithm", broken)
    with pytest.raises(wf.CandidateFailed, match="candidate NPTS failed: FloatingPointError: diverged") as raised:
        workflow.hpo_train(retail, as_of, "NPTS", {})
    failed = raised.value.record
    assert failed["score"] is None and failed["error"] == "FloatingPointError: diverged"
    ok = workflow.hpo_train(retail, as_of, "SeasonalNaive", {})
    selection = workflow.backtest(retail, as_of, [failed, ok], {})
    assert selection["winner"]["name"] == "SeasonalNaive"
    assert [c["name"] for c in selection["leaderboard"]] == ["SeasonalNaive", "NPTS"]
    with pytest.raises(RuntimeError, match="no candidate trained: NPTS: FloatingPointError"):
        workflow.backtest(retail, as_of, [failed], {})


def test_hpo_tunes_on_windows_before_the_scoring_windows_with_the_runs_seed(retail, monkeypatch):
    from pipelines.forecast import tuning
    from pipelines.forecast.backtest import window_starts

    as_of = "2024-06-01"
    steps.import_data(retail, as_of)
    seen = []
    real = tuning.tune

    def spy(name, data, **kwargs):
        seen.append((data.end, kwargs["seed"], kwargs["fixed"]))
        return real(name, data, **kwargs)

    monkeypatch.setattr(tuning, "tune", spy)
    overrides = {"hpo_trials": 2, "backtest_windows": 2}
    first = workflow.hpo_train(retail, as_of, "Theta", overrides)
    data = workflow.load_data(retail, pd.Timestamp(as_of))
    scoring = window_starts(data.end, data.horizon, 2)
    ((end, seed, fixed),) = seen
    assert end == scoring[0]  # tuning saw nothing of the scoring windows
    assert first["tuned_until"] == str(data.periods[scoring[0] - 1])
    assert seed == retail.training.seed and fixed["seed"] == retail.training.seed and fixed["n_jobs"] == 1
    again = workflow.hpo_train(retail, as_of, "Theta", overrides)
    assert again["config"] == first["config"] and again["score"] == first["score"]  # same seed, same trials


def test_algorithm_params_reach_the_candidate_and_its_configuration(retail):
    as_of = "2024-06-01"
    steps.import_data(retail, as_of)
    overrides = {"algorithm_params": {"Theta": {"theta": 3.0, "deseasonalize": False}}}
    result = workflow.hpo_train(retail, as_of, "Theta", overrides)
    assert result["config"] == {"name": "Theta", "params": {"theta": 3.0, "deseasonalize": False}}
    model = workflow.algorithm(result["config"], wf.options(retail, overrides)[1])
    assert model.theta == 3.0 and model.deseasonalize is False
    with pytest.raises(Exception, match=r"Theta.theta: Input should be greater than or equal to 1"):
        wf.options(retail, {"algorithm_params": {"Theta": {"theta": 0.5}}})


def test_the_autopredictor_chooses_on_the_groups_backtest_windows_unless_its_params_say_otherwise():
    from pipelines.settings import ForecastTraining

    def windows(**settings):
        training = ForecastTraining(algorithms=["AutoPredictor"], **settings)
        params = training.algorithm_params.get("AutoPredictor", {})
        return workflow.algorithm({"name": "AutoPredictor", "params": params}, training).windows

    assert windows() == 1 and windows(backtest_windows=3) == 3  # Forecast's: the evaluation's windows
    assert windows(algorithm_params={"AutoPredictor": {"windows": None}}) is None  # as the history allows
    assert windows(backtest_windows=3, algorithm_params={"AutoPredictor": {"windows": 2}}) == 2
    with pytest.raises(ValueError, match=r"AutoPredictor\.windows"):
        ForecastTraining(algorithm_params={"AutoPredictor": {"windows": 6}})
