"""The forecast explorer's data: a group's series, and one series with its history, backtests, the
P10/P50/P90 band, what-if scenarios, impact scores and accuracy.

Everything comes from what the serving API serves: the published export the runtime holds (its
forecast through ``serving.forecasts.query``, the same as QueryForecast) and the files published
beside it (backtests, metrics, what-if, explainability), plus the history from the group's
newest snapshot. Each file is read once per published folder (or snapshot) and kept while it
is the newest.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipelines.serving import forecasts as fq
from pipelines.serving.errors import ApiError
from pipelines.serving.runtime import Runtime

HISTORY_POINTS = 1000  # the newest points of history a chart gets


def export_for(runtime: Runtime, group: str) -> fq.ForecastExport:
    from pipelines.serving.routes.forecasts import export_of

    return export_of(runtime, group, "group")


def groups(runtime: Runtime) -> list[dict]:
    """Every forecast group the server serves, with what its published forecast holds."""
    answer = []
    for name, holder in sorted(runtime.forecasts.items()):
        export, group = holder.export, runtime.groups[name]
        row = {"name": name, "frequency": group.frequency, "horizon": group.horizon, "keys": group.series_keys,
               "asOf": None, "series": 0, "forecastTypes": [], "error": holder.error}  # fmt: skip
        if export is not None:
            row.update(asOf=export.as_of, series=len(export.keys), forecastTypes=export.forecast_types,
                       keys=export.key_columns, dimensions=_dimension_values(export))  # fmt: skip
        answer.append(row)
    return answer


def _dimension_values(export: fq.ForecastExport, limit: int = 200) -> dict[str, list[str]]:
    """The values of each forecast dimension (not item_id), for the search form's choices."""
    found: dict[str, list[str]] = {}
    for i, column in enumerate(export.key_columns[1:], start=1):
        found[column] = sorted({k[i] for k in export.keys} - {""})[:limit]  # "": cold-start items lack it
    return found


def search(export: fq.ForecastExport, text: str = "", dimensions: dict[str, str] | None = None,
           limit: int = 50) -> dict:  # fmt: skip
    """Series whose item_id (or any key) holds ``text`` (case-insensitive) and whose dimensions match."""
    wanted = {c: v for c, v in (dimensions or {}).items() if v}
    keys = export.matching(wanted) if wanted else export.keys
    needle = text.strip().lower()
    if needle:
        keys = [k for k in keys if any(needle in part.lower() for part in k)]
    return {"asOf": export.as_of, "keys": export.key_columns, "total": len(keys),
            "items": [dict(zip(export.key_columns, k, strict=True)) for k in keys[:limit]]}  # fmt: skip


def series_key(export: fq.ForecastExport, given: dict[str, str]) -> tuple[str, ...]:
    missing = [c for c in export.key_columns if not given.get(c)]
    if missing:
        raise ApiError(400, f"name the series by {export.key_columns}; missing {missing}", missing[0])
    key = tuple(str(given[c]) for c in export.key_columns)
    if key not in export.ranges:
        raise ApiError(404, f"no series {dict(zip(export.key_columns, key, strict=True))} in the forecast "
                       f"published as of {export.as_of}", export.key_columns[0])  # fmt: skip
    return key


def detail(runtime: Runtime, name: str, given: dict[str, str]) -> dict:
    """One series: history, forecast band, backtest windows, what-if, impact scores, metrics."""
    export = export_for(runtime, name)
    key = series_key(export, given)
    item = dict(zip(export.key_columns, key, strict=True))
    group = runtime.groups[name]
    published = Published.of(export.path)
    (served,) = fq.query(export, item)["forecast"]["series"]
    return {
        "group": name, "asOf": export.as_of, "item": item, "frequency": group.frequency,
        "target": group.domain_info.target,
        "history": history(group, key),
        "forecast": _points(served["predictions"]),
        "backtests": published.backtests(key, export.key_columns, group.domain_info.target),
        "whatIf": {scenario: _points(s) for scenario, s in published.what_if(item).items()},
        "impactScores": published.impact(key, export.key_columns),
        "metrics": published.metrics(key, export.key_columns),
        "leaderboard": published.json("leaderboard.json"),
        "decision": published.json("decision.json"),
    }  # fmt: skip


def _points(predictions: dict[str, list[dict]]) -> list[dict]:
    """QueryForecast's {type: [{timestamp, value}]} as rows {date, p10, p50, …}, one per date."""
    rows: dict[str, dict] = {}
    for kind, points in predictions.items():
        for p in points:
            rows.setdefault(p["timestamp"], {"date": p["timestamp"]})[kind] = p["value"]
    return list(rows.values())


def csv_rows(runtime: Runtime, name: str, given: dict[str, str]) -> tuple[str, str]:
    """(file name, CSV text) of one series' published forecast rows, as Forecast's export writes them."""
    import pandas as pd

    export = export_for(runtime, name)
    key = series_key(export, given)
    item = dict(zip(export.key_columns, key, strict=True))
    (served,) = fq.query(export, item)["forecast"]["series"]
    frame = pd.DataFrame(_points(served["predictions"]))
    for column, value in reversed(item.items()):
        frame.insert(0, column, value)
    safe = "_".join("".join(ch if ch.isalnum() or ch in "-." else "-" for ch in part) for part in key)
    return f"{name}_{safe}_{export.as_of.replace(':', '')}.csv", frame.to_csv(index=False)


def history(group, key: tuple[str, ...]) -> list[dict]:
    """The series' target values in the group's newest snapshot (the newest HISTORY_POINTS)."""
    import pandas as pd

    from pipelines import storage

    folder = storage.previous_snapshot(group.storage_root, pd.Timestamp.max)
    if folder is None:
        return []
    frame = _target_series(str(folder), tuple(group.series_keys), group.domain_info.target)
    rows = frame.get(key)
    if rows is None:
        return []
    dates, values = rows
    return [{"date": str(d), "value": None if np.isnan(v) else float(v)}
            for d, v in zip(dates[-HISTORY_POINTS:], values[-HISTORY_POINTS:].tolist(), strict=True)]  # fmt: skip


@functools.lru_cache(maxsize=4)
def _target_series(folder: str, keys: tuple[str, ...], target: str) -> dict[tuple[str, ...], tuple]:
    """{series key: (dates, values)} of a snapshot's TARGET_TIME_SERIES, read once per snapshot."""
    return _by_series(_read(Path(folder) / "TARGET_TIME_SERIES.parquet"), list(keys), "timestamp", [target])


def _read(path: Path):
    import pandas as pd

    if path.suffix == ".parquet" and not path.exists() and path.with_suffix(".csv").exists():
        path = path.with_suffix(".csv")
    if not path.exists():
        return None
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _by_series(frame, keys: list[str], date: str, columns: list[str]) -> dict[tuple[str, ...], tuple]:
    """{key: (dates as ISO strings, one array per column)}; an empty dict without the frame."""
    import pandas as pd

    if frame is None or frame.empty or any(c not in frame for c in [*keys, date]):
        return {}
    frame = frame.sort_values([*keys, date], kind="stable")
    stamps = pd.to_datetime(frame[date]).dt.strftime("%Y-%m-%dT%H:%M:%S").to_numpy()
    found = {}
    for key, index in frame.groupby([frame[k].astype(str) for k in keys], sort=False).indices.items():
        key = key if isinstance(key, tuple) else (key,)
        values = [frame[c].to_numpy(np.float64)[index] for c in columns]
        found[key] = (stamps[index], *values) if len(columns) > 1 else (stamps[index], values[0])
    return found


class Published:
    """The files published beside one export (its folder), read once each."""

    _cache: ClassVar[dict[str, Published]] = {}

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self._frames: dict[str, Any] = {}

    @classmethod
    def of(cls, folder: str) -> Published:
        found = cls._cache.get(folder)
        if found is None:
            cls._cache.clear()  # a new export is published: the old one's files are no longer asked for
            found = cls._cache[folder] = cls(folder)
        return found

    def frame(self, name: str):
        if name not in self._frames:
            self._frames[name] = _read(self.folder / name)
        return self._frames[name]

    def json(self, name: str) -> dict | None:
        path = self.folder / name
        return json.loads(path.read_text()) if path.is_file() else None

    def rows_of(self, name: str, key: tuple[str, ...], keys: list[str]) -> list[dict]:
        frame = self.frame(name)
        if frame is None or any(k not in frame for k in keys):
            return []
        mask = np.ones(len(frame), dtype=bool)
        for column, value in zip(keys, key, strict=True):
            mask &= frame[column].astype(str).to_numpy() == value
        return json.loads(frame[mask].to_json(orient="records", date_format="iso"))

    def backtests(self, key: tuple[str, ...], keys: list[str], target: str) -> list[dict]:
        """Each backtest window of the series: its dates with the actuals and the predicted band."""
        windows: dict[int, dict] = {}
        for row in self.rows_of("backtest_export.parquet", key, keys):
            window = windows.setdefault(int(row["backtest_window"]), {"window": int(row["backtest_window"]),
                                                                      "points": []})  # fmt: skip
            point = {"date": str(row["timestamp"])[:19], "actual": row.get(target)}
            point.update({c: v for c, v in row.items() if (c[:1] == "p" and c[1:].isdigit()) or c == "mean"})
            window["points"].append(point)
        return [windows[w] for w in sorted(windows)]

    def what_if(self, item: dict[str, str]) -> dict[str, dict]:
        """{scenario: QueryForecast predictions of the series} for each published what-if forecast."""
        found = {}
        for folder in sorted(p for p in (self.folder / "what_if").glob("*") if p.is_dir()):
            export = self._scenario(folder)
            if export is not None and export.matching(item):
                (served,) = fq.query(export, item)["forecast"]["series"]
                found[folder.name] = served["predictions"]
        return found

    def _scenario(self, folder: Path) -> fq.ForecastExport | None:
        name = f"what_if/{folder.name}"
        if name not in self._frames:
            frame = _read(folder / "forecast.parquet")
            self._frames[name] = None if frame is None else fq.ForecastExport.from_frame(frame, "", folder)
        return self._frames[name]

    def impact(self, key: tuple[str, ...], keys: list[str]) -> dict:
        """The series' impact score per attribute, and the group's (explainability/)."""
        item = self.rows_of("explainability/impact_scores.parquet", key, keys)
        overall = self.frame("explainability/impact_scores_global.parquet")
        return {"item": [{"attribute": r["attribute"], "impactScore": r["impact_score"]} for r in item],
                "group": [] if overall is None else [{"attribute": r.attribute, "impactScore": float(r.impact_score)}
                                                     for r in overall.itertuples()]}  # fmt: skip

    def metrics(self, key: tuple[str, ...], keys: list[str]) -> dict:
        """Accuracy per backtest window (the group's and the series'), and per velocity class."""
        windows, velocity = self.frame("backtest_windows.csv"), self.frame("backtest_accuracy_by_velocity.csv")

        def records(frame):
            return [] if frame is None else json.loads(frame.to_json(orient="records"))

        return {"windows": records(windows), "byVelocity": records(velocity),
                "item": self.rows_of("backtest_accuracy_metrics.csv", key, keys)}  # fmt: skip
