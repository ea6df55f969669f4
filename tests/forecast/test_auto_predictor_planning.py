"""AutoPredictor under a time limit, with neural candidates on short series, and with calibrated intervals."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipelines.forecast.auto_predictor import AutoPredictor, selection_windows, subset
from pipelines.forecast.base import get_algorithm, register
from pipelines.forecast.calibration import apply as _apply_calibration
from pipelines.forecast.calibration import factors as _calibration
from pipelines.forecast.data import ForecastData
from pipelines.forecast.deepar import DeepARPlus
from pipelines.forecast.global_model import training_deadline
from pipelines.forecast.naive import SeasonalNaive


@register
class SlowNaive(SeasonalNaive):
    """Seasonal naive that takes 80 ms a series: an expensive candidate the budget cannot hold."""

    name = "SlowNaiveForPlanningTests"

    def _forecast_series(self, y, state, chunk, j, levels, rng):
        time.sleep(0.08)
        return super()._forecast_series(y, state, chunk, j, levels, rng)


def noisy_cycles(n: int = 60, length: int = 72, seed: int = 3, short: int = 0) -> ForecastData:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    series = [50 + 10 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 2, length) for _ in range(n)]
    series = [s[-20:] if k < short else s for k, s in enumerate(series)]
    return ForecastData.from_arrays(series, freq="1M", horizon=6, end="2024-12-01")


def test_a_candidate_the_budget_cannot_hold_is_left_out_and_the_result_says_why():
    data = noisy_cycles()
    # SlowNaive: about 60 series x 80 ms = 4.8 s a fit, so 9.6 s for its backtest and final fit.
    cheap = {"Theta": {"model": "STM"}}  # thetaf: a few ms a series
    model = AutoPredictor(["SlowNaiveForPlanningTests", "SeasonalNaive", "Theta"], time_limit=4, candidate_params=cheap)
    model.fit(data)
    result = model.result_
    assert result.candidates == ["SeasonalNaive", "Theta"]  # cheapest first, listed in the order given
    assert "SlowNaiveForPlanningTests" in result.left_out and "time" in result.left_out["SlowNaiveForPlanningTests"]
    assert result.timings["estimate SlowNaiveForPlanningTests"] > 4
    assert result.timings["total"] < 4
    frame = model.predict()
    assert frame[["p10", "p50", "p90"]].notna().all().all() and len(frame) == 60 * 6
    with pytest.raises(ValueError, match="time_limit"):
        AutoPredictor(time_limit=0)


def test_a_neural_candidate_is_left_out_where_the_history_is_shorter_than_three_horizons():
    data = noisy_cycles(n=8, short=3)  # 3 series of 20 months: 14 before the backtest window < 3 x 6
    tiny = {"epochs": 1, "num_cells": 4, "num_layers": 1, "num_batches_per_epoch": 2, "num_samples": 10}
    model = AutoPredictor(["SeasonalNaive", "DeepAR+"], candidate_params={"DeepAR+": tiny}).fit(data)
    assert model.result_.excluded_items == {"DeepAR+": 3}
    weights = model.result_.choices["weight_DeepAR+"].to_numpy()
    assert (weights[:3] == 0).all()
    assert model.predict()[["p10", "p50", "p90"]].notna().all().all()
    short = noisy_cycles(n=4, short=4)
    model = AutoPredictor(["SeasonalNaive", "DeepAR+"], candidate_params={"DeepAR+": tiny}).fit(short)
    assert "no series is long enough" in model.result_.left_out["DeepAR+"]
    assert model.result_.candidates == ["SeasonalNaive"]


def test_calibration_stretches_too_narrow_intervals_to_their_level():
    # Actuals spread evenly over [-2.5, 2.5] around a median of 0: a tenth lie below -2, a tenth above 2.
    actual = np.linspace(-2.5, 2.5, 1001).reshape(1, 1, -1)
    quant = np.stack([np.full(actual.shape, -1.0), np.zeros(actual.shape), np.full(actual.shape, 1.0)], axis=-1)
    factors = _calibration(actual, quant, [0.1, 0.5, 0.9])
    assert factors == pytest.approx({0.1: 2.0, 0.9: 2.0}, abs=0.01)
    calibrated = _apply_calibration(quant, [0.1, 0.5, 0.9], factors)
    assert calibrated[0, 0, 0].tolist() == pytest.approx([-2.0, 0.0, 2.0], abs=0.01)
    # A level without a factor of its own takes the nearest calibrated one on its side of the median.
    five = _apply_calibration(np.array([[-3.0, -1.0, 0.0, 1.0]]), [0.05, 0.1, 0.5, 0.9], {0.1: 2.0, 0.9: 3.0})
    assert five.tolist() == [[-6.0, -2.0, 0.0, 3.0]]


def test_subset_keeps_each_series_values_and_place_on_the_grid():
    data = noisy_cycles(n=5, short=2)
    part = subset(data, np.array([1, 3]))
    assert part.n_series == 2 and part.end == data.end
    np.testing.assert_array_equal(part.series(0), data.series(1))
    np.testing.assert_array_equal(part.series(1), data.series(3))
    assert part.keys["item_id"].astype(str).tolist() == ["series_1", "series_3"]


def test_a_neural_candidate_gets_the_epochs_the_time_limit_holds_or_is_left_out(monkeypatch):
    data = noisy_cycles(n=6)
    tiny = {"epochs": 200, "num_cells": 4, "num_layers": 1, "num_batches_per_epoch": 1, "num_samples": 10}

    # The probe, made deterministic: 0.01 s an epoch and 0.1 s to forecast (200 epochs: 2.1 s a fit).
    def probe(self, model, data):
        return (0.01 * model.epochs + 0.1, 0.01) if hasattr(model, "epochs") else (0.01, None)

    monkeypatch.setattr(AutoPredictor, "_estimate", probe)
    model = AutoPredictor(["DeepAR+"], time_limit=3, candidate_params={"DeepAR+": tiny}).fit(data)
    result = model.result_
    # About 3 s / 1.15 left for a backtest and a final fit: (2.6 / 2 - 0.1) / 0.01 = 120 epochs, not 200.
    epochs = model.epochs_["DeepAR+"]
    assert 100 <= epochs < 130 and result.shortened == {"DeepAR+": f"epochs 200 -> {epochs}: what the time limit holds"}
    assert model.models_["DeepAR+"].epochs == epochs and result.candidates == ["DeepAR+"]
    assert "DeepAR+" in result.to_dict()["shortened"]
    # Fewer than 10 epochs fit: left out, and said so.
    cramped = AutoPredictor(["SeasonalNaive", "DeepAR+"], time_limit=0.2, candidate_params={"DeepAR+": tiny})
    cramped.fit(data)
    assert "DeepAR+" in cramped.result_.left_out and cramped.result_.shortened == {}


def long_hourly(length: int, n: int = 2, seed: int = 5) -> ForecastData:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    series = [20 + 5 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 1, length) for _ in range(n)]
    return ForecastData.from_arrays(series, freq="1H", horizon=24, end="2024-06-01 00:00")


def test_without_given_windows_the_choices_are_made_on_as_many_as_five_percent_of_the_history_holds():
    assert selection_windows(noisy_cycles()) == 1  # 72 months, horizon 6: one window is already 8 %
    assert selection_windows(long_hourly(2000)) == 4  # 5 % of 2,000 hours: four days
    assert selection_windows(long_hourly(6000)) == 5  # Forecast's most
    assert selection_windows(long_hourly(6000), offset=72) == 4  # windows step back by the offset
    data = long_hourly(6000)
    model = AutoPredictor(["SeasonalNaive", "NPTS"]).fit(data)
    assert model.result_.windows == 5 and model.result_.to_dict()["windows"] == 5
    for result in model.result_.backtests.values():
        assert result.windows["backtest_window"].tolist() == [1, 2, 3, 4, 5]
    assert AutoPredictor(["SeasonalNaive"], windows=2).fit(data).result_.windows == 2  # given: honoured
    with pytest.raises(ValueError, match="1 to 5"):
        AutoPredictor(windows=6)
    # CNN-QR joins the default candidates on histories that long, even without related series.
    assert "CNN-QR" in AutoPredictor().candidate_names(data)
    assert "CNN-QR" not in AutoPredictor().candidate_names(noisy_cycles())


def test_the_planner_counts_a_refit_per_window_for_local_models_and_one_training_for_networks(monkeypatch):
    data = long_hourly(2000)  # four windows
    tiny = {"epochs": 200, "num_cells": 4, "num_layers": 1, "num_batches_per_epoch": 1, "num_samples": 10}

    # 0.6 s a local fit (Theta), next to nothing for SeasonalNaive; 0.01 s an epoch and 0.1 s to forecast.
    def probe(self, model, data):
        if hasattr(model, "epochs"):
            return 0.01 * model.epochs + 0.1, 0.01
        return (0.6 if model.name == "Theta" else 0.001), None

    monkeypatch.setattr(AutoPredictor, "_estimate", probe)
    model = AutoPredictor(["SeasonalNaive", "Theta"], time_limit=3).fit(data)
    # Theta: four backtest fits and a final one, 5 x 0.6 x 1.15 = 3.45 s: more than the 3 s (one window: 1.4 s).
    assert model.result_.candidates == ["SeasonalNaive"] and "need about 3 s" in model.result_.left_out["Theta"]
    assert "Theta" in AutoPredictor(["SeasonalNaive", "Theta"], windows=1, time_limit=3).fit(data).result_.candidates
    # DeepAR+ trains once for the four windows: its epochs are cut as for one window.
    rolled = AutoPredictor(["DeepAR+"], time_limit=3, candidate_params={"DeepAR+": tiny}).fit(data)
    assert rolled.result_.windows == 4 and 100 <= rolled.epochs_["DeepAR+"] < 130


def test_two_neural_candidates_share_the_time_left_instead_of_the_first_taking_it_all(monkeypatch):
    data = noisy_cycles(n=6)
    tiny = {"epochs": 200, "num_cells": 4, "num_layers": 1, "num_batches_per_epoch": 1, "num_samples": 10}
    cnn = {"epochs": 200, "num_batches_per_epoch": 1}

    def probe(self, model, data):  # 0.05 s an epoch and 0.1 s to forecast, for both networks
        return (0.05 * model.epochs + 0.1, 0.05) if hasattr(model, "epochs") else (0.01, None)

    monkeypatch.setattr(AutoPredictor, "_estimate", probe)
    params = {"DeepAR+": tiny, "CNN-QR": cnn}
    model = AutoPredictor(["DeepAR+", "CNN-QR"], time_limit=30, candidate_params=params).fit(data)
    # 30 s / 1.15 for both: CNN-QR (first, as the cheaper) gets half, (13 / 2 - 0.1) / 0.05 = 128
    # epochs; DeepAR+ what is left (its tiny network trains in far less than the estimate).
    assert 115 <= model.epochs_["CNN-QR"] < 135 and model.epochs_.get("DeepAR+", 200) >= 128
    assert model.result_.candidates == ["DeepAR+", "CNN-QR"] and model.result_.left_out == {}
    # A share that holds fewer than 10 epochs leaves the network out, and the next one takes the time:
    # 2.5 s / 1.15 / 2 for CNN-QR is 8 epochs; DeepAR+ gets (2.17 / 2 - 0.1) / 0.05 = 19.
    cramped = AutoPredictor(["DeepAR+", "CNN-QR"], time_limit=2.5, candidate_params=params).fit(data)
    assert "CNN-QR" in cramped.result_.left_out and 12 <= cramped.epochs_["DeepAR+"] <= 20


def test_networks_stop_at_a_training_deadline_between_epochs():
    data = noisy_cycles(n=6)
    tiny = {"epochs": 4, "num_cells": 4, "num_layers": 1, "num_batches_per_epoch": 1, "num_samples": 10}
    free = get_algorithm("DeepAR+", num_averaged_models=2, **tiny).fit(data)
    assert free.epochs_trained_ == 4 and len(free.networks_) == 2 and not free.stopped_by_deadline_
    with training_deadline(time.perf_counter()):  # already passed: one epoch, one network
        cut = get_algorithm("DeepAR+", num_averaged_models=2, **tiny).fit(data)
        cnn = get_algorithm("CNN-QR", epochs=50, num_batches_per_epoch=1).fit(data)
        with training_deadline(time.perf_counter() + 3600):  # a later inner deadline: the outer holds
            inner = get_algorithm("CNN-QR", epochs=50, num_batches_per_epoch=1).fit(data)
    assert cut.epochs_trained_ == 1 and len(cut.networks_) == 1 and cut.stopped_by_deadline_
    assert cnn.epochs_trained_ == inner.epochs_trained_ == 1 and cnn.stopped_by_deadline_
    assert np.isfinite(cut.predict_arrays([0.1, 0.5, 0.9])[2]).all()


def test_the_time_limit_holds_when_the_networks_train_slower_than_the_planner_timed_them(monkeypatch):
    data = noisy_cycles(n=6)
    tiny = {"epochs": 200, "num_cells": 4, "num_layers": 1, "num_batches_per_epoch": 1, "num_samples": 10}

    def probe(self, model, data):  # timed at 0.01 s an epoch ...
        return (0.01 * model.epochs + 0.1, 0.01) if hasattr(model, "epochs") else (0.01, None)

    sampler = DeepARPlus._window_sampler

    def slow_sampler(self, design):  # ... each epoch then takes 0.05 s (a machine five times as busy)
        sample = sampler(self, design)
        return lambda size, rng: (time.sleep(0.05), sample(size, rng))[1]

    monkeypatch.setattr(AutoPredictor, "_estimate", probe)
    monkeypatch.setattr(DeepARPlus, "_window_sampler", slow_sampler)
    import torch  # noqa: F401  (paid once per process; the real planner's warm-up fit pays it)

    began = time.perf_counter()
    model = AutoPredictor(["SeasonalNaive", "DeepAR+"], time_limit=3, candidate_params={"DeepAR+": tiny}).fit(data)
    spent = time.perf_counter() - began
    # Planned: about 120 epochs a fit, 6 s a fit at the real pace (12 s with the final fit); the
    # deadlines cut both fits. The margin over the limit is for a loaded machine's overheads.
    assert model.epochs_["DeepAR+"] >= 60 and spent < 4
    assert model.models_["DeepAR+"].stopped_by_deadline_ and model.models_["DeepAR+"].epochs_trained_ < 60
    assert model.predict()[["p10", "p50", "p90"]].notna().all().all()
