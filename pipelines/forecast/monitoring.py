"""Predictor monitoring (Forecast's CreateMonitor): how the last published forecast did, and input drift.

Each run scores the forecast published for the newest earlier ``as_of`` against the actuals that
arrived since (observed values only, as the backtest scores them): wQL at each quantile, WAPE,
MAPE and MASE on the mean (or p50 when the mean was not published), overall and by horizon step.
It records input drift per attribute, the target and each related feature: the population
stability index (PSI, ten quantile bins of the training window) of the values that arrived since
against the window the previous model trained on, and the share of new series (no row in the
previous forecast) and of vanished ones (forecast, but no actual arrived). With
``monitoring.max_wape_increase`` the run says the predictor degraded when the live WAPE exceeds
the previous run's backtest WAPE by more than that share. The forecast step publishes all of it
under ``monitoring/`` with the history of every run so far, and logs it to the run's MLflow run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.forecast import metrics
from pipelines.forecast.data import ForecastData

PSI_BINS = 10


def live_accuracy(previous: pd.DataFrame, data: ForecastData) -> tuple[pd.DataFrame, dict]:
    """(metrics by horizon step, overall metrics) of a published forecast against ``data``'s actuals."""
    keys = data.series_keys
    frame = previous.dropna(subset=keys).copy()
    frame["step"] = frame.groupby(keys, observed=True).cumcount() + 1
    lookup = pd.MultiIndex.from_frame(data.keys[keys].astype(str))
    rows = lookup.get_indexer(pd.MultiIndex.from_frame(frame[keys].astype(str)))
    position = data.periods.get_indexer(pd.DatetimeIndex(frame["date"]))
    actual = np.full(len(frame), np.nan)
    known = (rows >= 0) & (position >= 0)
    for r in np.flatnonzero(known):
        values, seen = data.window(rows[r], position[r], position[r] + 1)
        actual[r] = values[0] if seen[0] else np.nan
    frame["actual"] = actual
    point = "mean" if "mean" in frame.columns else "p50"
    levels = sorted(int(c[1:]) / 100 for c in frame.columns if c[0] == "p" and c[1:].isdigit())

    def scores(part: pd.DataFrame) -> dict:
        y = part["actual"].to_numpy()
        out = {f"wQL[{t}]": metrics.weighted_quantile_loss(y, part[f"p{round(t * 100)}"].to_numpy(), t) for t in levels}
        if levels:
            out["AverageWeightedQuantileLoss"] = float(np.nanmean(list(out.values())))
        out.update(WAPE=metrics.wape(y, part[point]), MAPE=metrics.mape(y, part[point]))
        scales = [_scale(data, i, p) for i, p in zip(rows[part.index], position[part.index], strict=True)]
        error = np.abs(y - part[point].to_numpy())
        ratio = np.divide(error, scales, out=np.full(len(error), np.nan), where=np.asarray(scales) > 0)
        out["MASE"] = float(np.nanmean(ratio)) if np.isfinite(ratio).any() else float("nan")
        out["ActualCount"] = int(np.isfinite(y).sum())
        return out

    frame = frame.reset_index(drop=True)
    by_step = pd.DataFrame([{"step": s, **scores(part)} for s, part in frame.groupby("step", sort=True)])
    overall = scores(frame)
    forecast_series = frame.groupby(keys, observed=True)["actual"].apply(lambda v: np.isfinite(v).any())
    overall["VanishedSeries"] = float((~forecast_series).mean()) if len(forecast_series) else 0.0
    overall["NewSeries"] = float((~lookup.isin(pd.MultiIndex.from_frame(frame[keys].astype(str)))).mean())
    return by_step, overall


def _scale(data: ForecastData, row: int, position: int) -> float:
    """MASE's scale: the series' in-sample seasonal-naive error before the forecast period."""
    if row < 0 or position < 0:
        return float("nan")
    history, seen = data.window(row, 0, position)
    return metrics.seasonal_error(np.where(seen, history, np.nan), data.season_length)


def input_drift(data: ForecastData, previous_end: pd.Timestamp) -> pd.DataFrame:
    """PSI per attribute: the values after ``previous_end`` against those up to it."""
    cut = int(data.periods.searchsorted(pd.Timestamp(previous_end), side="right"))
    columns = {data.target: [], **{f: [] for f in (data.related.features if data.related is not None else [])}}
    before, after = {k: [] for k in columns}, {k: [] for k in columns}
    for i in range(data.n_series):
        values, seen = data.window(i, 0, len(data.periods))
        values = np.where(seen, values, np.nan)
        before[data.target].append(values[:cut])
        after[data.target].append(values[cut:])
        if data.related is not None:
            related = data.related_for(i)[: data.lengths[i]]
            start = data.starts[i]
            for j, name in enumerate(data.related.features):
                series = related[:, j]
                split = max(cut - start, 0)
                before[name].append(series[:split])
                after[name].append(series[split:])
    rows = []
    for name in columns:
        old, new = np.concatenate(before[name]), np.concatenate(after[name])
        rows.append({"attribute": name, "psi": psi(old, new), "values_before": int(np.isfinite(old).sum()),
                     "values_since": int(np.isfinite(new).sum())})  # fmt: skip
    return pd.DataFrame(rows)


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``actual`` against ``expected`` (quantile bins of ``expected``)."""
    expected, actual = expected[np.isfinite(expected)], actual[np.isfinite(actual)]
    if not len(expected) or not len(actual):
        return float("nan")
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    share = [np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1) / len(v)
             for v in (expected, actual)]  # fmt: skip
    e, a = (np.clip(s, 1e-4, None) for s in share)
    return float(np.sum((a - e) * np.log(a / e)))


def degraded(live_wape: float, backtest_wape: float | None, max_increase: float | None) -> tuple[bool, str]:
    """Whether the live WAPE passed the threshold, and the reason in words."""
    if max_increase is None or backtest_wape is None or not np.isfinite(live_wape) or not backtest_wape > 0:
        return False, "no threshold, or nothing to compare"
    limit = backtest_wape * (1 + max_increase)
    if live_wape > limit:
        return True, f"live WAPE {live_wape:.4f} is over {max_increase:.0%} above the backtest's {backtest_wape:.4f}"
    return False, f"live WAPE {live_wape:.4f} within {max_increase:.0%} of the backtest's {backtest_wape:.4f}"


def report(group, as_of: pd.Timestamp, data: ForecastData, folder) -> dict | None:
    """Score the forecast published for the newest earlier as_of, measure drift, write ``folder``;
    the summary (None when nothing was published before this as_of)."""
    from pathlib import Path

    from pipelines import storage
    from pipelines.training import publish

    earlier = publish.earlier_version(group.storage_root, "forecast", as_of)
    if earlier is None:
        return None
    previous = pd.read_parquet(earlier / "forecast.parquet")
    by_step, overall = live_accuracy(previous, data)
    drift = input_drift(data, pd.Timestamp(previous["date"].min()) - pd.Timedelta(1, "ns"))
    windows = earlier / "backtest_windows.csv"
    backtest_wape = float(pd.read_csv(windows)["WAPE"].mean()) if windows.is_file() else None
    limit = group.monitoring.max_wape_increase
    flagged, reason = degraded(overall["WAPE"], backtest_wape, limit)
    summary = {
        "as_of": storage.as_of_key(as_of),
        "scored_forecast": earlier.name,
        **{k: v for k, v in overall.items()},
        "backtest_WAPE": backtest_wape,
        "max_psi": float(drift["psi"].max()) if len(drift) else float("nan"),
        "degraded": flagged,
        "reason": reason,
    }
    history_file = earlier / "monitoring" / "history.parquet"
    history = pd.read_parquet(history_file) if history_file.is_file() else pd.DataFrame()
    history = pd.concat([history[history.get("as_of", pd.Series(dtype=str)) != summary["as_of"]],
                         pd.DataFrame([summary])], ignore_index=True)  # fmt: skip
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in (("accuracy_by_step", by_step), ("drift", drift), ("history", history)):
        storage.write_parquet(table, folder / f"{name}.parquet")
    storage.write_json(folder / "summary.json", summary)
    return summary
