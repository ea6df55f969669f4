"""The Forecast DAG's training steps: hpo_train, backtest, forecast, publish.

Amazon Forecast's workflow after the import: train predictors (each candidate algorithm, tuned
by Optuna when the run asks for trials) and score them by backtest; pick the best on the group's
optimization metric; forecast every item with the chosen quantiles; publish the forecast export,
the backtest export, metrics and plots. Each function takes the group and the run's as_of,
reads what the step before wrote under the run folder, and returns a small manifest.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import pandas as pd

from pipelines import storage
from pipelines.settings import ForecastGroup
from pipelines.training import runs as wf

log = logging.getLogger(__name__)
KIND = "forecast"
DATES = "%Y-%m-%d %H:%M:%S"  # how the CSV exports write timestamps


def candidates(training) -> list[str]:
    """The run's candidates: its algorithms."""
    return list(training.algorithms)


def load_data(group: ForecastGroup, as_of: pd.Timestamp):
    from pipelines.forecast.data import ForecastData

    return ForecastData.from_snapshot(wf.snapshot(group, as_of), group)


def algorithm(config: dict, training) -> object:
    """The unfitted algorithm a configuration names, with the run's workers and seed.

    The AutoPredictor also takes the run's metric, forecast types and backtest windows, and gives
    its candidates the group's ``algorithm_params`` for them.
    """
    from pipelines.forecast.base import get_algorithm

    params = dict(config["params"])
    if config["name"] == "AutoPredictor":
        given = training.algorithm_params
        params = {
            "metric": training.optimization_metric,
            "forecast_types": training.forecast_types,
            "windows": training.backtest_windows,
            "offset": training.backtest_offset,
            "candidate_params": {n: p for n, p in given.items() if n != "AutoPredictor"},
            **params,
        }
    return get_algorithm(config["name"], **params, n_jobs=training.workers, seed=training.seed)


def tuning_data(data, training):
    """What HPO may see: the data before the oldest scoring window, so no candidate is scored on
    the periods it was tuned on; None when that leaves too little history for tuning windows."""
    from pipelines.forecast.backtest import window_starts

    first = window_starts(data.end, data.horizon, training.backtest_windows, training.backtest_offset)[0]
    earlier = data.until(first)
    try:
        window_starts(earlier.end, data.horizon, training.backtest_windows, training.backtest_offset)
    except ValueError:
        return None
    return earlier


def series_count(group: ForecastGroup, as_of: pd.Timestamp) -> int:
    """The target series the run's snapshot holds (its manifest's count): what shards are cut from."""
    manifest = json.loads((wf.snapshot(group, as_of) / "manifest.json").read_text())
    return int(manifest["datasets"]["TARGET_TIME_SERIES"]["series"])


def partition(group: ForecastGroup, as_of=None, names: list[str] | None = None, overrides=None) -> list[str]:
    """The mapped hpo_train entries: the candidates, a local one cut into shards of series when the
    group asks (``training.series_per_shard``; see sharding), a tuned one into ``training.hpo_workers``
    trial workers of one shared Optuna study."""
    from pipelines.forecast import sharding, tuning

    as_of = storage.resolve_as_of(as_of)
    group, training = wf.options(group, overrides)
    series = series_count(group, as_of)

    def tuned(name: str) -> bool:
        return bool(training.hpo_trials) and tuning.algorithm_key(name) in tuning.SEARCH_SPACES

    entries = sharding.partition(list(names or []), series, training.series_per_shard, tuned)
    return wf.trial_entries(entries, lambda e: sharding.parse(e)[1] is None and tuned(e), training.hpo_workers)


def hpo_train(group: ForecastGroup, as_of=None, name: str = "", overrides: dict | None = None,
              tuned: dict | None = None) -> dict:  # fmt: skip
    """Tune (when trials are asked for) and backtest one candidate; or backtest one shard of its series
    (an entry ``name#k/n``), or run one trial worker's share of its shared study (``name~w/k``).

    ``tuned`` (the backtest step's, for a candidate its trial workers tuned): the study's best
    params and trial count, backtested without tuning again. A failure is recorded, not raised.
    """
    from pipelines.forecast import sharding
    from pipelines.forecast.backtest import backtest

    as_of = storage.resolve_as_of(as_of)
    group, training = wf.options(group, overrides)
    name, shard, shards = sharding.parse(entry := name)
    name, worker, workers = wf.parse_trials(name)
    folder = wf.run_dir(group, as_of) / "candidates" / wf.config_key({"name": name})
    data = load_data(group, as_of)
    began = time.perf_counter()
    try:
        if shard is not None:
            config = {"name": name, "params": dict(training.algorithm_params.get(name, {}))}
            done = sharding.run_shard(data, algorithm(config, training), training, shard, shards, folder)
            return {"name": entry, "config": config, "folder": str(folder), **done}
        if worker is not None:
            study = wf.shared_study(KIND, group, as_of, name, training, worker, workers)
            _, trials, until = search_params(name, data, training, **study)
            return {"name": entry, "trials": trials, "tuned_until": until}
    except Exception as exc:
        raise wf.failed_candidate(entry, exc) from exc
    with wf.mlflow_run(group, as_of, "hpo_train", f"hpo_train {name}"):
        import mlflow

        try:
            params, trials, tuned_on = search_params(name, data, training, tuned=tuned)
            config = {"name": name, "params": params}
            result = backtest(algorithm(config, training), data, training.backtest_windows, training.backtest_offset,
                              training.forecast_types)  # fmt: skip
        except Exception as exc:  # one candidate's failure leaves the others in the race
            raise wf.failed_candidate(name, exc) from exc
        with storage.atomic_dir(folder) as tmp:
            write_backtest(result, tmp)
            storage.write_json(tmp / "summary.json", {"config": config, "summary": result.summary})
        mlflow.log_params({"algorithm": name, **{f"hp.{k}": v for k, v in params.items()}})
        wf.log_metrics("", result.summary)
        for row in result.windows.to_dict("records"):
            wf.log_metrics("window.", row, step=int(row["backtest_window"]))
    seconds = round(time.perf_counter() - began, 3)
    return candidate_record(name, config, result, training, folder, seconds, trials, tuned_on)


def search_params(name: str, data, training, tuned: dict | None = None, **study) -> tuple[dict, int | None, str | None]:
    """(hyperparameters, trials, last period tuned on) of a candidate: the group's, tuned by Optuna
    over the history before the scoring windows when the run asks for trials (``study``: the
    options of a shared study's worker); ``tuned``: a shared study's result, taken as it is."""
    from pipelines.forecast import tuning

    params = dict(training.algorithm_params.get(name, {}))
    if tuned is not None:
        return {**params, **tuned["params"]}, tuned["trials"], tuned.get("tuned_until")
    if not (training.hpo_trials and tuning.algorithm_key(name) in tuning.SEARCH_SPACES):
        return params, None, None
    history = tuning_data(data, training)
    if history is None:
        log.warning("%s: too little history before the scoring windows to tune on; defaults trained", name)
        return params, None, None
    result = tuning.tune(name, history, **{**wf.study_options(training), **study},
                         fixed={**params, "n_jobs": training.workers, "seed": training.seed},
                         windows=training.backtest_windows, offset=training.backtest_offset,
                         forecast_types=training.forecast_types)  # fmt: skip
    return {**params, **result.best_params}, len(result.trials), str(history.last_period)


def candidate_record(name: str, config: dict, result, training, folder: Path, seconds: float, trials=None,
                     tuned_on=None) -> dict:  # fmt: skip
    """A candidate's leaderboard entry for the backtest step."""
    return {
        "name": name,
        "config": config,
        "score": result.summary[training.optimization_metric],
        "trials": trials,
        "tuned_until": tuned_on,
        "path": str(folder),
        "seconds": seconds,
        "metrics": {k: v for k, v in result.summary.items() if isinstance(v, float)},
    }


BACKTEST_FILES = ("windows", "items", "export", "velocity")  # a candidate's backtest, by file stem


def write_backtest(result, folder: Path) -> None:
    """A backtest's files: metrics per window and per item, Forecast's export, accuracy by velocity."""
    storage.write_parquet(result.windows, folder / "windows.parquet")
    storage.write_parquet(result.items, folder / "items.parquet")
    storage.write_parquet(result.export, folder / "export.parquet")
    storage.write_parquet(result.velocity, folder / "velocity.parquet")


def backtest(group: ForecastGroup, as_of=None, candidates: list[dict] | None = None, overrides=None) -> dict:
    """Merge each sharded candidate's shards, pick the best candidate and score the champion's
    configuration on the same windows."""
    from pipelines.forecast import sharding
    from pipelines.forecast.backtest import backtest as run_backtest

    as_of = storage.resolve_as_of(as_of)
    group, training = wf.options(group, overrides)

    def score_champion(config: dict) -> dict:
        result = run_backtest(algorithm(config, training), load_data(group, as_of), training.backtest_windows,
                              training.backtest_offset, training.forecast_types)  # fmt: skip
        path = wf.run_dir(group, as_of) / "candidates" / wf.config_key(config)
        with storage.atomic_dir(path) as tmp:
            write_backtest(result, tmp)
        return {"score": result.summary[training.optimization_metric], "path": str(path)}

    found = sharding.merged_candidates(list(candidates or []))
    if any("shards" in c and not c.get("error") for c in found):
        data = load_data(group, as_of)
        found = [sharding.score_shards(group, as_of, data, c, training) if "shards" in c and not c.get("error")
                 else c for c in found]  # fmt: skip

    def train(name: str, workers: list[dict]) -> dict:  # with the best of the trial workers' shared study
        best = wf.study_best(KIND, group, as_of, name, training)
        return hpo_train(group, as_of, name, overrides, tuned={**best, "tuned_until": workers[0].get("tuned_until")})

    found = wf.fold_trials(found, train)
    return wf.compare(KIND, group, as_of, found, overrides, score_champion)


def final_fits(selection: dict, training) -> dict[str, dict]:
    """The configurations the run fits on all the data, by role: the winner, and the champion when it stays."""
    roles = {"challenger": selection["winner"]["config"]}
    if not wf.decide(selection, "new", training.promotion_margin).promoted:
        roles["champion"] = selection["champion"]["config"]
    return roles


def plan_fit(group: ForecastGroup, as_of=None, selection: dict | None = None, overrides=None) -> list[str]:
    """The final fit's mapped fit_shard entries (``role#k/n``) when the group shards; none otherwise."""
    from pipelines.forecast import sharding

    as_of = storage.resolve_as_of(as_of)
    group, training = wf.options(group, overrides)
    return sharding.fit_entries(final_fits(selection, training), series_count(group, as_of), training.series_per_shard)


def fit_shard(group: ForecastGroup, as_of=None, selection: dict | None = None, entry: str = "", overrides=None):
    """Fit one shard of the series of one final model (``role#k/n``)."""
    from pipelines.forecast import sharding

    as_of = storage.resolve_as_of(as_of)
    group, training = wf.options(group, overrides)
    role, shard, of = sharding.parse(entry)
    config = final_fits(selection, training)[role]
    folder = sharding.fit_folder(wf.run_dir(group, as_of), role)
    data = load_data(group, as_of)
    return sharding.fit_shard(data, algorithm(config, training), shard, of, folder, training.forecast_types)


def fitted(group, as_of, data, role: str, config: dict, training):
    """(the role's model fitted on all the data, its forecast frame or None): assembled from its shards'
    parts and forecasts where the run sharded it."""
    from pipelines.forecast import sharding

    model = algorithm(config, training)
    entries = sharding.fit_entries({role: config}, series_count(group, as_of), training.series_per_shard)
    if not entries:
        return model.fit(data), None
    folder = sharding.fit_folder(wf.run_dir(group, as_of), role)
    return sharding.assembled(data, model, len(entries), folder, training.forecast_types)


def forecast(group: ForecastGroup, as_of=None, selection: dict | None = None, overrides=None) -> dict:
    """Fit the winner on all the data, forecast every item (cold-start ones too), register it; refit the
    champion if it stays."""
    from pipelines.forecast import calibration, monitoring, plots, what_if
    from pipelines.forecast.cold_start import with_cold_start

    as_of = storage.resolve_as_of(as_of)
    group, training = wf.options(group, overrides)
    data = load_data(group, as_of)
    folder = wf.run_dir(group, as_of)
    outputs = {"challenger": (selection["winner"]["config"], Path(selection["winner"]["path"]))}
    if not wf.decide(selection, "new", training.promotion_margin).promoted:
        champion = selection["champion"]
        outputs["champion"] = (champion["config"], Path(champion["path"]))
    watched = monitoring.report(group, as_of, data, folder / "monitoring")
    if watched is not None:
        log.info("monitoring: %s", watched["reason"])
    models = {}
    served = "challenger" if "champion" not in outputs else "champion"
    for role, (config, backtest_dir) in outputs.items():
        model, predicted = fitted(group, as_of, data, role, config, training)
        frame = with_cold_start(model, data, training.forecast_types, predicted)
        found = {}
        if training.calibrate_intervals and config["name"] != "AutoPredictor":  # it calibrates its candidates
            levels = sorted(t for t in training.forecast_types if t != "mean")
            found = calibration.backtest_factors(pd.read_parquet(backtest_dir / "export.parquet"), data.target, levels)
            frame = calibration.calibrate_frame(frame, levels, found)
        baseline = export_frame(frame)
        scenarios = {s.name: export_frame(scenario_forecast(model, data, s, training, found)) for s in group.what_if}
        models[role] = model
        with storage.atomic_dir(folder / role) as tmp:
            storage.write_parquet(baseline, tmp / "forecast.parquet")
            storage.write_json(tmp / "calibration.json", {str(level): factor for level, factor in found.items()})
            for name, changed in scenarios.items():
                (tmp / "what_if" / name).mkdir(parents=True)
                storage.write_parquet(changed, tmp / "what_if" / name / "forecast.parquet")
                table = what_if.comparison(baseline, changed, data.series_keys)
                storage.write_parquet(table, tmp / "what_if" / name / "comparison.parquet")
                plots.plot_what_if(baseline, changed, data.series_keys, tmp / "what_if" / name / "comparison.png", name)
            if group.explainability and role == served:
                write_impact_scores(model, data, group.explainability, tmp / "explainability")
            for name in BACKTEST_FILES:
                shutil.copy(backtest_dir / f"{name}.parquet", tmp / f"backtest_{name}.parquet")
            backtest_export = pd.read_parquet(tmp / "backtest_export.parquet")
            predicted = frame  # keys, timestamp and the forecast types, as the plots read them
            if training.plots:
                items = pd.read_parquet(tmp / "backtest_items.parquet")
                plots.plot_forecasts(data, predicted, tmp / "plots", limit=training.plots, backtest=backtest_export)
                plots.plot_summary(data, predicted, tmp / "plots", metrics=items, backtest=backtest_export)
    params = {
        "algorithm": selection["winner"]["name"],
        "horizon": group.horizon,
        "frequency": group.frequency,
        "forecast_types": ",".join(map(str, training.forecast_types)),
        "backtest_windows": training.backtest_windows,
    }
    example = data.keys.head(2).astype(str)
    if watched is not None:
        params["monitoring.scored_forecast"] = watched["scored_forecast"]
    version = wf.register_winner(group, as_of, selection, params, models["challenger"], example, folder / "challenger",
                                 extra_metrics={f"monitoring.{k}": v for k, v in (watched or {}).items()})  # fmt: skip
    return {"version": version, "outputs": sorted(outputs), "items": int(data.n_series), "monitoring": watched}


def check_accuracy(group: ForecastGroup, as_of=None) -> dict:
    """The monitor DAG's check: the last published forecast against the actuals imported for ``as_of``.

    Writes ``monitor/<as_of>/`` (accuracy by step, drift, history, summary) beside the group's
    runs and returns the summary; ``degraded`` says whether the group should retrain, ``reason``
    why. With nothing published before ``as_of`` there is nothing to score: not degraded.
    """
    from pipelines.forecast import monitoring

    as_of = storage.resolve_as_of(as_of)
    folder = Path(group.storage_root) / "monitor" / storage.as_of_key(as_of)
    summary = monitoring.report(group, as_of, load_data(group, as_of), folder)
    if summary is None:
        return {"as_of": storage.as_of_key(as_of), "degraded": False, "reason": "no forecast published before"}
    return summary


def write_impact_scores(model, data, items, folder: Path) -> None:
    """Forecast's explainability export: impact scores per item, per item and time point, and overall."""
    from pipelines.forecast import explainability, plots

    by_item, by_time, overall = explainability.impact_scores(model, data)
    if isinstance(items, list):  # a list of items: only theirs (the overall scores cover every series)
        key = data.series_keys[0]
        by_item, by_time = (frame[frame[key].astype(str).isin(items)] for frame in (by_item, by_time))
    folder.mkdir(parents=True)
    for name, frame in (
        ("impact_scores", by_item),
        ("impact_scores_by_time", by_time),
        ("impact_scores_global", overall),
    ):
        storage.write_parquet(frame.reset_index(drop=True), folder / f"{name}.parquet")
    plots.plot_impact_scores(overall, folder / "impact_scores.png")


def scenario_forecast(model, data, scenario, training, found: dict) -> pd.DataFrame:
    """A what-if scenario's forecast by the fitted model, calibrated as its baseline is."""
    from pipelines.forecast import calibration, what_if

    frame = what_if.forecast(model, data, scenario, training.forecast_types)
    levels = sorted(t for t in training.forecast_types if t != "mean")
    return calibration.calibrate_frame(frame, levels, found)


def publish(
    group: ForecastGroup, as_of=None, selection: dict | None = None, forecasted: dict | None = None, overrides=None
) -> dict:
    """Publish the served forecast (CSV and Parquet), backtest export, metrics and plots; then gate."""
    return wf.finish(KIND, group, as_of, selection, forecasted["version"], write_published, overrides)


def write_published(run: Path, served: str, target: Path) -> None:
    """Fill the published folder from the run's ``served`` outputs (and the run's monitoring)."""
    source = run / served
    frame = pd.read_parquet(source / "forecast.parquet")
    storage.write_parquet(frame, target / "forecast.parquet")
    frame.to_csv(target / "forecast.csv", index=False, date_format=DATES)
    export = pd.read_parquet(source / "backtest_export.parquet")
    items = pd.read_parquet(source / "backtest_items.parquet")
    storage.write_parquet(export, target / "backtest_export.parquet")
    export.to_csv(target / "backtest_forecasts.csv", index=False)
    items.to_csv(target / "backtest_accuracy_metrics.csv", index=False)
    pd.read_parquet(source / "backtest_windows.parquet").to_csv(target / "backtest_windows.csv", index=False)
    velocity = pd.read_parquet(source / "backtest_velocity.parquet")
    velocity.to_csv(target / "backtest_accuracy_by_velocity.csv", index=False)  # high, medium, low movers
    shutil.copy(source / "calibration.json", target / "calibration.json")
    for part in [*sorted((source / "what_if").glob("*")), source / "explainability", run / "monitoring"]:
        if not part.is_dir():
            continue
        out = target / part.relative_to(source if part.parent != run else run)
        out.mkdir(parents=True)
        for file in sorted(part.glob("*.parquet")):
            table = pd.read_parquet(file)
            storage.write_parquet(table, out / file.name)
            table.to_csv(out / f"{file.stem}.csv", index=False, date_format=DATES)
        for file in [*sorted(part.glob("*.json")), *sorted(part.glob("*.png"))]:
            shutil.copy(file, out / file.name)
    if (source / "plots").is_dir():
        shutil.copytree(source / "plots", target / "plots")


def export_frame(predicted: pd.DataFrame) -> pd.DataFrame:
    """Forecast's export layout: the item keys, ``date``, then one column per forecast type."""
    frame = predicted.rename(columns={"timestamp": "date"})
    keys = [c for c in frame.columns if c != "date" and not (c == "mean" or (c[0] == "p" and c[1:].isdigit()))]
    values = [c for c in frame.columns if c not in keys and c != "date"]
    return frame[[*keys, "date", *values]].reset_index(drop=True)


predict = forecast  # the step every workflow module names alike (the DAG's forecast task)
