"""Forecast plots as PNG files: one per item, and a summary sheet of many items on one page.

Each item's plot shows the last periods of its history, the forecast's P10-P90 band (the lowest
and highest quantiles forecast) and its P50 (the mean when P50 was not forecast), and, when a
backtest export is given, what the backtest forecast said next to what really happened.

Matplotlib's object API draws on the Agg canvas: no pyplot state and no GUI backend, so it runs
in Airflow tasks and worker processes alike. File names come from the item's keys, made safe for
any file system and made unique by a hash of the keys, so the same item always lands on the same
path; each file is written under a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.forecast.data import ForecastData

BAND, LINE, ACTUAL, BACKTEST = "#9ecae1", "#08519c", "#252525", "#e6550d"
SUMMARY_NAME = "summary.png"


def item_labels(keys: pd.DataFrame) -> list[str]:
    """One readable label per row of series keys: the value alone for one key, ``key=value | ...`` for more."""
    columns = list(keys.columns)
    values = keys[columns].astype(str)
    if len(columns) == 1:
        return values[columns[0]].tolist()
    return [" | ".join(f"{c}={v}" for c, v in zip(columns, row, strict=True)) for row in values.itertuples(index=False)]


def safe_name(label: str) -> str:
    """A file name stem for any label: safe characters only, at most 60 of them, plus a hash that keeps labels apart."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._-")[:60] or "item"
    return f"{stem}-{hashlib.sha1(label.encode('utf-8')).hexdigest()[:8]}"


def plot_forecasts(
    data: ForecastData,
    forecast: pd.DataFrame,
    folder: str | Path,
    *,
    items: Sequence[str] | None = None,
    limit: int | None = None,
    history: int | None = None,
    backtest: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """One PNG per item under ``folder``: {label: path}, in the data's item order.

    ``forecast`` is ``predict()``'s frame (keys, ``timestamp``, quantile columns); ``items`` picks
    labels (``item_labels``), ``limit`` caps their number; ``history`` is how many past periods
    to show (three horizons or two seasons by default); ``backtest`` is a backtest export.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    view = _View(data, forecast, history, backtest)
    chosen = [label for label in view.labels if label in view.rows] if items is None else list(items)
    if limit is not None:
        chosen = chosen[:limit]
    out = {}
    for label in chosen:
        figure = _figure(9.0, 3.6)
        axes = figure.add_subplot()
        view.draw(axes, label)
        axes.legend(loc="upper left", fontsize=8, frameon=False)
        out[label] = _save(figure, folder / f"{safe_name(label)}.png")
    return out


def plot_summary(
    data: ForecastData,
    forecast: pd.DataFrame,
    path: str | Path,
    *,
    metrics: pd.DataFrame | None = None,
    metric: str = "WAPE",
    top: int = 6,
    bottom: int = 6,
    first: int = 12,
    columns: int = 3,
    history: int | None = None,
    backtest: pd.DataFrame | None = None,
) -> Path:
    """One PNG with a grid of small item plots; a folder as ``path`` gets ``summary.png`` in it.

    With ``metrics`` (per-item metrics with the series keys, such as a backtest's ``items``; the
    windows averaged) the sheet shows the ``top`` items with the highest ``metric`` and the
    ``bottom`` ones with the lowest, each titled with its value; without, the ``first`` items.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path / SUMMARY_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    view = _View(data, forecast, history, backtest)
    available = [label for label in view.labels if label in view.rows]
    scores: dict[str, float] = {}
    if metrics is not None:
        keys = data.series_keys
        if metric not in metrics.columns:
            raise ValueError(f"metric {metric!r} is not a column of the metrics: {list(metrics.columns)}")
        by_item = metrics.assign(_label=item_labels(metrics[keys])).groupby("_label", sort=False)[metric].mean()
        ranked = by_item[by_item.index.isin(available)].dropna().sort_values(ascending=False, kind="stable")
        chosen = list(dict.fromkeys([*ranked.index[:top], *ranked.index[::-1][:bottom][::-1]]))
        scores = ranked.to_dict()
    else:
        chosen = available[:first]
    rows = max(1, -(-len(chosen) // columns))
    figure = _figure(4.2 * columns, 2.6 * rows)
    for k, label in enumerate(chosen):
        axes = figure.add_subplot(rows, columns, k + 1)
        view.draw(axes, label, small=True)
        if label in scores:
            axes.set_title(_text(f"{label}  {metric} {scores[label]:.3g}"), fontsize=8)
    if not chosen:
        figure.text(0.5, 0.5, "no items to plot", ha="center", va="center")
    return _save(figure, path)


class _View:
    """What a plot of one item needs, looked up by label."""

    def __init__(self, data, forecast, history, backtest):
        self.data = data
        self.labels = item_labels(data.keys)
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.history = history or max(3 * data.horizon, 2 * data.season_length)
        keys = data.series_keys
        self.forecast = forecast.reset_index(drop=True)
        self.rows = pd.Series(np.arange(len(forecast))).groupby(item_labels(self.forecast[keys])).indices
        quantiles = sorted(
            (c for c in forecast.columns if re.fullmatch(r"p\d+", str(c))), key=lambda c: int(str(c)[1:])
        )
        self.low, self.high = (quantiles[0], quantiles[-1]) if len(quantiles) > 1 else (None, None)
        self.middle = "p50" if "p50" in forecast.columns else ("mean" if "mean" in forecast.columns else None)
        self.backtest, self.backtest_rows = None, {}
        if backtest is not None and len(backtest):
            self.backtest = backtest.reset_index(drop=True)
            groups = pd.Series(np.arange(len(backtest))).groupby(item_labels(self.backtest[keys]))
            self.backtest_rows = groups.indices

    def draw(self, axes, label: str, small: bool = False) -> None:
        data = self.data
        if label in self.index:
            i = self.index[label]
            values = data.series(i)[-self.history :]
            start = data.end - len(values)
            axes.plot(data.periods[start : data.end].to_numpy(), values, color=ACTUAL, lw=1.0, label="history")
        rows = self.rows.get(label)
        if rows is not None:
            part = self.forecast.iloc[rows].sort_values("timestamp")
            stamps = pd.to_datetime(part["timestamp"]).to_numpy()
            if self.low is not None:
                band = f"{self.low.upper()}-{self.high.upper()}"
                axes.fill_between(stamps, part[self.low], part[self.high], color=BAND, alpha=0.7, lw=0, label=band)
            if self.middle is not None:
                axes.plot(stamps, part[self.middle], color=LINE, lw=1.5, label=self.middle.upper())
        self._draw_backtest(axes, label)
        axes.set_title(_text(label), fontsize=8 if small else 10)
        axes.tick_params(labelsize=6 if small else 8)
        axes.grid(alpha=0.3, lw=0.5)

    def _draw_backtest(self, axes, label: str) -> None:
        rows = self.backtest_rows.get(label)
        if rows is None:
            return
        part = self.backtest.iloc[rows].sort_values("timestamp")
        stamps = pd.to_datetime(part["timestamp"]).to_numpy()
        target = self.data.target
        if target in part.columns:
            axes.plot(stamps, part[target], "o", color=ACTUAL, ms=2.5, label="backtest actual")
        column = self.middle if self.middle in part.columns else None
        if column is not None:
            windows = part["backtest_window"] if "backtest_window" in part.columns else pd.Series(0, index=part.index)
            for k, (_, window) in enumerate(part.groupby(windows.to_numpy(), sort=True)):
                axes.plot(
                    pd.to_datetime(window["timestamp"]).to_numpy(),
                    window[column],
                    "--",
                    color=BACKTEST,
                    lw=1.2,
                    label=f"backtest {column.upper()}" if k == 0 else None,
                )


def plot_what_if(baseline: pd.DataFrame, scenario: pd.DataFrame, keys: Sequence[str], path: str | Path,
                 title: str, top: int = 12) -> Path:  # fmt: skip
    """A what-if scenario against its baseline on one PNG: the total over every item per date (P50
    and the widest band of each) and the ``top`` items whose total P50 over the horizon moved most.

    Both frames are in the forecast export's layout (keys, ``date``, one column per forecast type).
    """
    point = "p50" if "p50" in baseline.columns else "mean"
    levels = sorted(c for c in baseline.columns if c[0] == "p" and c[1:].isdigit())
    figure = _figure(12.0, 4.2)
    over_time, by_item = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    for label, frame, color in (("baseline", baseline, LINE), ("scenario", scenario, BACKTEST)):
        totals = frame.groupby("date", sort=True)[list(dict.fromkeys([point, *levels]))].sum()
        dates = pd.DatetimeIndex(totals.index)
        if len(levels) >= 2:
            over_time.fill_between(dates, totals[levels[0]], totals[levels[-1]], color=color, alpha=0.15, lw=0)
        over_time.plot(dates, totals[point], color=color, lw=1.6, label=f"{label} {point.upper()}")
    over_time.set_title(_text(f"what-if {title}: total over all items"), fontsize=10)
    over_time.tick_params(axis="x", labelrotation=30, labelsize=8)
    over_time.legend(loc="upper left", fontsize=8, frameon=False)
    keys = list(keys)
    change = scenario.groupby(keys, observed=True)[point].sum() - baseline.groupby(keys, observed=True)[point].sum()
    change = change[change.abs() > 1e-9]  # the items the scenario moved
    moved = change.reindex(change.abs().sort_values(ascending=False).index[:top])[::-1]
    labels = item_labels(moved.index.to_frame(index=False)) if len(moved) else []
    by_item.barh(range(len(moved)), moved.to_numpy(), color=[BACKTEST if v >= 0 else LINE for v in moved])
    by_item.set_yticks(range(len(moved)), [_text(label) for label in labels], fontsize=7)
    by_item.axvline(0, color=ACTUAL, lw=0.8)
    by_item.set_title(f"change of total {point.upper()} over the horizon ({len(change)} items moved)", fontsize=10)
    return _save(figure, Path(path))


def plot_impact_scores(overall: pd.DataFrame, path: str | Path) -> Path:
    """Forecast's global impact scores as bars: each attribute's share of what moves the forecast."""
    ordered = overall.sort_values("impact_score", kind="stable")
    figure = _figure(7.0, 0.6 + 0.35 * max(len(ordered), 1))
    axes = figure.add_subplot()
    axes.barh(range(len(ordered)), ordered["impact_score"].to_numpy(dtype=float), color=LINE)
    axes.set_yticks(range(len(ordered)), [_text(str(a)) for a in ordered["attribute"]], fontsize=8)
    axes.set_xlabel("normalized impact score", fontsize=8)
    axes.set_title("impact scores (all items)", fontsize=10)
    return _save(figure, Path(path))


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _text(label: str) -> str:
    """A label as plain text: a dollar sign would start matplotlib's math mode."""
    return label.replace("$", r"\$")


def _save(figure, path: Path) -> Path:
    temporary = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing")  # an id in a script the font lacks
        figure.tight_layout()
        figure.savefig(temporary, format="png", metadata={"Software": None})
    os.replace(temporary, path)
    return path
