"""Work spread over Airflow's workers: a local algorithm's backtest mapped over shards of series.

A local algorithm (one model per series: SeasonalNaive, ETS, Theta, ARIMA, NPTS, Prophet) fits
every series on its own, so a group's series can be cut into shards of ``training.series_per_shard``
and each shard backtested by its own mapped ``hpo_train`` task, on whichever worker picks it up.
The DAG's ``partition`` task, after the import (when the series are known), turns the candidates
into the mapped entries: ``ETS#0/3``, ``ETS#1/3``, ``ETS#2/3`` for a sharded one, the name alone
for the rest. Each shard task writes its windows' forecasts (``shards/<k>.npz``); the ``backtest``
step merges a candidate's shards and scores them together, against the same actuals and with the
same velocity buckets as one fit of every series: the metrics, exports and leaderboard are the
same as an unsharded run's (each series draws its random numbers from a generator seeded by its
id, whichever shard fits it).

Not sharded: global models (DeepAR+, CNN-QR), which learn across series, the AutoPredictor, and a
candidate tuned in this run (its trials need every series); a failed shard fails its candidate.

The final fit is cut the same way: ``plan_fit`` names one ``fit_shard`` entry per shard of each
model the run fits on all the data (``challenger#k/n``, and ``champion#k/n`` when the champion's
configuration keeps serving), each fits its series and writes what it learned (``fitted/<role>/<k>.pkl``)
and its series' forecasts (``fitted/<role>/<k>.npz``), and ``forecast`` assembles one model from the
parts (``ForecastAlgorithm.from_parts``) and one forecast from theirs: the model registered and served
is one model over every series, and the forecast is the one it gives, as unsharded.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pipelines import storage
from pipelines.training import runs as wf

SEP = "#"


def parse(value: str) -> tuple[str, int | None, int | None]:
    """(candidate, shard, shards) of a mapped entry; (name, None, None) for an unsharded one."""
    return wf.parse_entry(value, SEP)


def shard_count(n_series: int, series_per_shard: int | None) -> int | None:
    """How many shards the series are cut into; None when the group does not shard (or one shard holds all)."""
    if not series_per_shard or n_series <= series_per_shard:
        return None
    return -(-n_series // series_per_shard)


def shard_series(n_series: int, shard: int, of: int) -> np.ndarray:
    """The series ids of shard ``shard`` of ``of``: contiguous, sizes differing by one at most."""
    return np.array_split(np.arange(n_series), of)[shard]


def shardable(name: str, tuned: bool) -> bool:
    """Whether a candidate's backtest may be cut by series: a local algorithm not tuned in this run."""
    from pipelines.forecast.auto_predictor import _is_global
    from pipelines.forecast.base import get_algorithm

    return not tuned and name != "AutoPredictor" and not _is_global(get_algorithm(name))


def partition(names: list[str], n_series: int, series_per_shard: int | None, tuned) -> list[str]:
    """The mapped hpo_train entries of the candidates ``names``; ``tuned(name)``: it runs trials."""
    of = shard_count(n_series, series_per_shard)
    return list(names) if of is None else wf.fan_out(names, SEP, of, lambda n: shardable(n, tuned(n)))


def fit_entries(roles: dict[str, dict], n_series: int, series_per_shard: int | None) -> list[str]:
    """The final fit's mapped entries: ``role#k/n`` for each role (challenger, champion) whose
    configuration is a local algorithm, when the group shards; none otherwise."""
    of = shard_count(n_series, series_per_shard)
    if of is None:
        return []
    local = [role for role, config in roles.items() if shardable(config["name"], False)]
    return wf.fan_out(local, SEP, of, lambda role: True)


def fit_folder(run: Path, role: str) -> Path:
    return run / "fitted" / role


def fit_shard(data, model, shard: int, of: int, folder: Path, forecast_types) -> dict:
    """Fit one shard of the series and forecast them: what it learned goes to ``folder/<shard>.pkl``,
    its forecasts (``forecast_types``) to ``folder/<shard>.npz``, so the ``forecast`` step only
    gathers them (the per-series work of the final forecast runs on the workers too)."""
    import pickle

    began = time.perf_counter()
    ids = shard_series(data.n_series, shard, of)
    fitted = model.fit(data, series=ids)
    ids, mean, quant, _ = fitted.predict_arrays(forecast_types)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{shard}.tmp.npz"
    np.savez(partial, ids=ids, mean=mean, quant=quant)
    partial.replace(folder / f"{shard}.npz")
    partial = folder / f"{shard}.tmp"
    partial.write_bytes(pickle.dumps(fitted.fitted_part(), protocol=pickle.HIGHEST_PROTOCOL))
    partial.replace(folder / f"{shard}.pkl")  # written last: a shard with its .pkl has its forecasts too
    return {"series": len(ids), "seconds": round(time.perf_counter() - began, 3)}


def assembled(data, model, of: int, folder: Path, forecast_types):
    """(the model fitted on every series, its forecast frame), from the ``of`` parts and forecasts
    its shards wrote (all must be there): the same model and frame one fit of every series gives."""
    import pickle

    from pipelines.forecast.base import forecast_frame

    paths = [folder / f"{k}.pkl" for k in range(of)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: shards {missing} of the final fit are missing; their fit_shard failed")
    fitted = model.from_parts(data, [pickle.loads(p.read_bytes()) for p in paths])
    parts = []
    for k in range(of):
        with np.load(folder / f"{k}.npz") as found:
            parts.append((found["ids"], found["mean"], found["quant"]))
    ids = np.concatenate([p[0] for p in parts])
    order = np.argsort(ids, kind="stable")
    mean, quant = (np.concatenate([p[i] for p in parts])[order] for i in (1, 2))
    return fitted, forecast_frame(data, ids[order], mean, quant, forecast_types)


def shard_folder(candidate_folder: Path) -> Path:
    return candidate_folder / "shards"


def run_shard(data, model, training, shard: int, of: int, folder: Path) -> dict:
    """Backtest one shard of the series; its windows' forecasts go to ``folder/shards/<shard>.npz``."""
    from pipelines.forecast.backtest import predict_windows

    began = time.perf_counter()
    ids = shard_series(data.n_series, shard, of)
    windows = predict_windows(model, data, training.backtest_windows, training.backtest_offset,
                              training.forecast_types, series=ids)  # fmt: skip
    target = shard_folder(folder) / f"{shard}.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for w in windows:
        arrays.update({f"{w.number}.ids": w.ids, f"{w.number}.mean": w.mean, f"{w.number}.quant": w.quant,
                       f"{w.number}.meta": np.array([w.start, w.seconds])})  # fmt: skip
    partial = target.with_suffix(".tmp.npz")
    np.savez(partial, **arrays)
    partial.replace(target)  # a retried shard never leaves half a file
    return {"series": len(ids), "seconds": round(time.perf_counter() - began, 3), "path": str(target)}


def read_shard(path: Path) -> list:
    from pipelines.forecast.backtest import WindowForecast

    with np.load(path) as found:
        numbers = sorted({int(k.split(".")[0]) for k in found.files})
        return [WindowForecast(n, int(found[f"{n}.meta"][0]), found[f"{n}.ids"], found[f"{n}.mean"],
                               found[f"{n}.quant"], float(found[f"{n}.meta"][1])) for n in numbers]  # fmt: skip


def merged_candidates(records: list[dict]) -> list[dict]:
    """The mapped hpo_train records (a shard's ``name`` is its entry) with each sharded candidate's
    shards folded into one record (``{"shards": [...]}``, or the first failed shard's error)."""
    out, by_name = [], {}
    for record in records:
        name, shard, of = parse(record["name"])
        if shard is None:
            out.append(record)
            continue
        if name not in by_name:
            by_name[name] = {"name": name, "shards": [None] * of}
            out.append(by_name[name])
        folded = by_name[name]
        if record.get("error") and "error" not in folded:
            folded.update(error=f"shard {shard + 1} of {of}: {record['error']}", score=None)
        folded["shards"][shard] = record
    return out


def score_shards(group, as_of, data, record: dict, training) -> dict:
    """A sharded candidate's leaderboard record: its shards' forecasts merged and scored as one backtest,
    written and logged as an unsharded candidate's are."""
    from pipelines.forecast.backtest import WindowForecast, score
    from pipelines.forecast.workflow import candidate_record, write_backtest

    shards = record["shards"]
    config = shards[0]["config"]
    parts = [read_shard(Path(s["path"])) for s in shards]
    windows = [WindowForecast.merged([p[k] for p in parts]) for k in range(len(parts[0]))]
    result = score(data, windows, training.forecast_types, training.backtest_offset)
    folder = Path(shards[0]["folder"])
    with storage.atomic_dir(folder) as tmp:
        write_backtest(result, tmp)
        cuts = [{k: s[k] for k in ("series", "seconds")} for s in shards]
        storage.write_json(tmp / "summary.json", {"config": config, "summary": result.summary, "shards": cuts})
    seconds = round(sum(s["seconds"] for s in shards), 3)
    with wf.mlflow_run(group, as_of, "hpo_train", f"hpo_train {record['name']} ({len(shards)} shards)"):
        import mlflow

        mlflow.log_params({"algorithm": record["name"], "shards": len(shards),
                           **{f"hp.{k}": v for k, v in config["params"].items()}})  # fmt: skip
        wf.log_metrics("", result.summary)
        for row in result.windows.to_dict("records"):
            wf.log_metrics("window.", row, step=int(row["backtest_window"]))
    return {**candidate_record(record["name"], config, result, training, folder, seconds), "shards": len(shards)}
