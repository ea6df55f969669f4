"""``airsight bench forecast`` on tiny generated data: the result file, the scores, the budget, bad input."""

from __future__ import annotations

import argparse
import importlib.util
import json
import time

import numpy as np
import pandas as pd
import pytest

from pipelines.benchmarking import forecast as bench

HORIZON = 6
CYCLE = np.array([10, 12, 15, 20, 30, 25, 18, 14, 12, 11, 10, 9], dtype=float)


def write_target(path, series: int = 4, length: int = 48, ends: list[str] | None = None):
    """Monthly series: a yearly cycle (times 1..series) one higher each year, with a store dimension."""
    rows = []
    for k in range(series):
        end = (ends or [])[k] if ends and k < len(ends) else "2024-12-01"
        stamps = pd.date_range(end=end, periods=length, freq="MS")
        t = np.arange(length) + 12 - length % 12  # position 0 is a January
        values = CYCLE[t % 12] * (k + 1) + t // 12
        rows.append(pd.DataFrame({"item_id": f"i{k}", "store": "s1", "timestamp": stamps, "target_value": values}))
    pd.concat(rows).to_csv(path, index=False)
    return path


def run(*argv) -> int:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench.run(parser.parse_args([str(a) for a in argv]))


def test_the_command_writes_one_entry_per_model_with_every_score(tmp_path):
    target = write_target(tmp_path / "target.csv")
    out = tmp_path / "result.json"
    common = ("--frequency", "1M", "--horizon", HORIZON, "--n-jobs", 1, "--out", out)
    assert run("--target", target, *common, "--models", "SeasonalNaive,Theta", "--backtest-windows", 2) == 0
    result = json.loads(out.read_text())
    assert [e["name"] for e in result["models"]] == ["SeasonalNaive", "Theta"]
    assert result["settings"]["series_total"] == 4 and result["settings"]["season_length"] == 12
    naive = result["models"][0]
    keys = ("smape", "mase", "average_wql", "wape", "coverage_80", "wall_seconds", "peak_memory_mb", "series_done")
    assert all(k in naive for k in keys)
    # Seasonal naive repeats last year, one too low everywhere; the in-sample seasonal error is 1 too.
    frame = pd.read_csv(target)
    tested = frame.groupby("item_id").tail(2 * HORIZON)["target_value"]
    assert naive["mase"] == pytest.approx(1.0) and naive["wape"] == pytest.approx(len(tested) / tested.sum())
    assert naive["average_wql"] == pytest.approx(naive["wape"])  # mean of 2 * tau * WAPE over 0.1, 0.5, 0.9
    # Its residuals never vary, so its interval is the point, which misses every actual by 1.
    assert naive["coverage_80"] == 0.0 and naive["series_done"] == 4
    assert naive["peak_memory_mb"] > 0 and naive["wall_seconds"] >= 0


def test_scores_match_hand_computed_values():
    y = np.array([[10.0, 0.0], [4.0, np.nan]])
    f = np.array([[8.0, 0.0], [5.0, 1.0]])
    q = np.stack([f - 1, f, f + 1], axis=2)  # P10, P50, P90
    result = bench.scores(y, f, q, np.array([0.5, 1.5]))
    # sMAPE: 200*2/18, 0 (both zero), 200*1/9 over three observed points.
    assert result["smape"] == pytest.approx((400 / 18 + 200 / 9) / 3)
    assert result["wape"] == pytest.approx(3 / 14)
    assert result["mase"] == pytest.approx(1.0)
    # Inside [P10, P90]: 10 vs [7, 9] no; 0 vs [-1, 1] yes; 4 vs [4, 6] yes.
    assert result["coverage_80"] == pytest.approx(2 / 3)
    # At or below P10 (7, -1, 4): only 4; at or below P90 (9, 1, 6): 0 and 4.
    assert result["below_p10"] == pytest.approx(1 / 3) and result["below_p90"] == pytest.approx(2 / 3)
    # wQL[tau] = 2 * sum(tau * under + (1 - tau) * over) / 14, P10 = 7, -1, 4 and P90 = 9, 1, 6.
    wql10 = 2 * 0.1 * (3 + 1 + 0) / 14
    wql90 = 2 * (0.9 * 1 + 0.1 * (1 + 2)) / 14
    assert result["average_wql"] == pytest.approx((wql10 + 3 / 14 + wql90) / 3)


def test_series_that_end_early_are_scored_on_their_own_last_periods(tmp_path):
    # As in M4: i1 ends in June 2024, i3 in March 2023 and has a trailing gap the file leaves empty.
    target = write_target(tmp_path / "target.csv", ends=["2024-12-01", "2024-06-01", "2024-12-01", "2023-03-01"])
    frame = pd.read_csv(target)
    gap = pd.DataFrame({"item_id": ["i3"], "store": ["s1"], "timestamp": ["2023-04-01"], "target_value": [np.nan]})
    pd.concat([frame, gap]).to_csv(target, index=False)
    out = tmp_path / "result.json"
    assert run("--target", target, "--frequency", "1M", "--horizon", HORIZON, "--n-jobs", 1, "--models",
               "SeasonalNaive", "--backtest-windows", 2, "--out", out) == 0  # fmt: skip
    result = json.loads(out.read_text())
    naive = result["models"][0]
    assert result["settings"]["series_redated"] == 2 and naive["series_done"] == 4
    # Each series' own last 12 values are scored: last year's value, one too low, as for series that end together.
    tested = frame.groupby("item_id").tail(2 * HORIZON)["target_value"]
    assert naive["mase"] == pytest.approx(1.0) and naive["wape"] == pytest.approx(len(tested) / tested.sum())


def test_a_spent_budget_starts_no_more_series_and_says_so(tmp_path):
    target = write_target(tmp_path / "target.csv")
    out = tmp_path / "result.json"
    assert run("--target", target, "--frequency", "1M", "--horizon", HORIZON, "--time-limit", 1e-9, "--n-jobs", 1,
               "--models", "Theta", "--out", out) == 0  # fmt: skip
    theta = json.loads(out.read_text())["models"][0]
    assert theta["series_done"] == 0 and theta["notes"]["stopped"] == "time limit reached"
    assert theta["smape"] is None


def _sleep_then_return(seconds: float, value):
    time.sleep(seconds)
    return value


def _fail():
    raise ValueError("bad chunk")


def _die_leaving_a_worker():
    import os
    import subprocess

    subprocess.Popen(["sleep", "60"])  # a worker that outlives its parent and holds the pipe open
    os._exit(9)


def _start_a_worker_and_return(path):
    import subprocess

    worker = subprocess.Popen(["sleep", "60"])
    path.write_text(str(worker.pid))
    return "done"


def test_within_answers_at_once_when_its_process_dies_and_leaves_no_worker_behind(tmp_path):
    import psutil

    began = time.perf_counter()
    with pytest.raises(RuntimeError, match="exit code 9"):
        bench.within(30, _die_leaving_a_worker)
    assert time.perf_counter() - began < 10  # not the 30 s deadline
    marker = tmp_path / "pid"
    assert bench.within(30, _start_a_worker_and_return, marker) == "done"
    worker = int(marker.read_text())
    for _ in range(50):  # stopped with the process group: gone, or a zombie where nothing reaps it
        try:
            if psutil.Process(worker).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the worker {worker} started within the call still runs")


def test_within_returns_the_result_stops_a_late_call_and_raises_its_errors():
    assert bench.within(30, _sleep_then_return, 0, {"a": np.arange(3)})["a"].tolist() == [0, 1, 2]
    began = time.perf_counter()
    with pytest.raises(TimeoutError):
        bench.within(0.5, _sleep_then_return, 60, None)
    assert time.perf_counter() - began < 10  # stopped at its deadline, not after the minute
    with pytest.raises(ValueError, match="bad chunk"):
        bench.within(30, _fail)
    with pytest.raises(TimeoutError):
        bench.within(0, _sleep_then_return, 0, None)


def test_bad_input_gets_a_clear_error(tmp_path):
    out = tmp_path / "result.json"
    broken = tmp_path / "broken.csv"
    pd.DataFrame({"item_id": ["a"], "timestamp": ["2024-01-01"], "demand": [1.0]}).to_csv(broken, index=False)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['target_value'\]"):
        run("--target", broken, "--frequency", "1M", "--horizon", HORIZON, "--out", out)
    early = write_target(tmp_path / "early.csv", ends=["2024-12-01", "2024-06-01"])
    related = tmp_path / "related.csv"
    pd.read_csv(early).assign(price=1.0).drop(columns="target_value").to_csv(related, index=False)
    with pytest.raises(ValueError, match=r"1 series end before .* --related values are tied to real dates"):
        run("--target", early, "--frequency", "1M", "--horizon", HORIZON, "--related", related, "--out", out)
    empty = write_target(tmp_path / "empty.csv")
    pd.read_csv(empty).assign(target_value=lambda f: f["target_value"].where(f["item_id"] != "i2")).to_csv(
        empty, index=False
    )
    with pytest.raises(ValueError, match=r"'item_id': 'i2'.* has no numeric target_value"):
        run("--target", empty, "--frequency", "1M", "--horizon", HORIZON, "--out", out)
    short = write_target(tmp_path / "short.csv", length=7)
    with pytest.raises(ValueError, match="fewer than 8 periods"):
        run("--target", short, "--frequency", "1M", "--horizon", HORIZON, "--out", out)
    with pytest.raises(ValueError, match="unknown"):
        run("--target", short, "--frequency", "1M", "--horizon", HORIZON, "--models", "Oracle", "--out", out)
    assert not out.exists()


HAVE_STATSFORECAST = importlib.util.find_spec("statsforecast") is not None


@pytest.mark.skipif(HAVE_STATSFORECAST, reason="StatsForecast is installed: the missing-peer error cannot show")
def test_peers_without_statsforecast_is_a_clear_error(tmp_path):
    target = write_target(tmp_path / "target.csv")
    with pytest.raises(RuntimeError, match="--peers needs StatsForecast"):
        run("--target", target, "--frequency", "1M", "--horizon", HORIZON, "--peers", "--out", tmp_path / "r.json")


@pytest.mark.skipif(not HAVE_STATSFORECAST, reason="StatsForecast is a bench peer only: run in .venv-bench")
def test_peers_run_beside_ours_and_the_ensemble_averages_three(tmp_path):
    target = write_target(tmp_path / "target.csv")
    out = tmp_path / "result.json"
    run("--target", target, "--frequency", "1M", "--horizon", HORIZON, "--peers", "--models", "SeasonalNaive",
        "--n-jobs", 1, "--out", out)  # fmt: skip
    entries = {e["name"]: e for e in json.loads(out.read_text())["models"]}
    assert set(entries) == {
        "SeasonalNaive",
        "statsforecast.AutoETS",
        "statsforecast.AutoARIMA",
        "statsforecast.AutoTheta",
        "statsforecast.SeasonalNaive",
        "statsforecast.Ensemble",
    }
    # Both seasonal naives repeat last year: the same point forecasts, the same scores.
    assert entries["statsforecast.SeasonalNaive"]["mase"] == pytest.approx(1.0)
    assert entries["statsforecast.SeasonalNaive"]["smape"] == pytest.approx(entries["SeasonalNaive"]["smape"])
    ensemble = entries["statsforecast.Ensemble"]
    members = [entries[f"statsforecast.{n}"] for n in ("AutoETS", "AutoARIMA", "AutoTheta")]
    assert ensemble["series_done"] == 4
    assert ensemble["wall_seconds"] == pytest.approx(sum(m["wall_seconds"] for m in members), abs=0.01)


@pytest.mark.skipif(not HAVE_STATSFORECAST, reason="StatsForecast is a bench peer only: run in .venv-bench")
def test_a_peer_past_its_budget_is_stopped_within_its_chunk(tmp_path, monkeypatch):
    """A peer whose one chunk outlasts the budget is stopped at the deadline, not when StatsForecast ends."""
    import statsforecast

    slow = statsforecast.StatsForecast.forecast

    def forecast(self, **kwargs):
        time.sleep(60)
        return slow(self, **kwargs)

    monkeypatch.setattr(statsforecast.StatsForecast, "forecast", forecast)
    target = write_target(tmp_path / "target.csv")
    out = tmp_path / "result.json"
    began = time.perf_counter()
    run("--target", target, "--frequency", "1M", "--horizon", HORIZON, "--peers", "--models", "SeasonalNaive",
        "--n-jobs", 1, "--time-limit", 1, "--out", out)  # fmt: skip
    assert time.perf_counter() - began < 30  # four peers of one second each, not four minutes
    entries = {e["name"]: e for e in json.loads(out.read_text())["models"]}
    for name in ("AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive"):
        peer = entries[f"statsforecast.{name}"]
        assert peer["series_done"] == 0 and "stopped" in peer["notes"]["stopped"]
