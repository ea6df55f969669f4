"""What the global neural models (DeepAR+, CNN-QR) share: the design, cold-start items, torch, prediction.

A global model learns one network from windows of every series. Both read the same design: the
panel of series (deepar_features.Panel) with their covariates, the item metadata as codes, and a
scale per window (``1 + mean |z|`` over its context, or a guess from the metadata where the
context is empty). Cold-start items (ITEM_METADATA items without target history) are rows after
the warm series: they have no context, no id, only their metadata. ``GlobalModel`` is a mixin
without hyperparameters of its own; each model keeps its constructor and its network.

Training runs in epochs, and inside ``training_deadline(at)`` it stops between two epochs once
``time.perf_counter()`` has passed ``at`` (after one epoch at least): the AutoPredictor's time limit
holds however the machine's speed changes after the planner timed a candidate. A model records the
epochs it trained (``epochs_trained_``) and whether the deadline cut them (``stopped_by_deadline_``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.forecast.base import DEFAULT_QUANTILES, column_name, forecast_types
from pipelines.forecast.data import ForecastData
from pipelines.forecast.deepar_features import Metadata, Panel, prior_log_scales, related_stats

ID_DROPOUT = 0.1  # share of training windows that do not see their series id (what a cold-start item gets)
_deadline: ContextVar[float | None] = ContextVar("training_deadline", default=None)


@contextlib.contextmanager
def training_deadline(at: float | None) -> Iterator[None]:
    """Networks trained inside stop between epochs once ``time.perf_counter()`` passes ``at`` (None: no
    deadline; an enclosing one stays in force where it is earlier)."""
    outer = _deadline.get()
    token = _deadline.set(at if outer is None else outer if at is None else min(at, outer))
    try:
        yield
    finally:
        _deadline.reset(token)


def out_of_time() -> bool:
    """Whether the deadline of the enclosing ``training_deadline`` has passed."""
    at = _deadline.get()
    return at is not None and time.perf_counter() >= at


@dataclass
class Design:
    """The fitted model's view of the data: the panel, static codes per row and scale statistics."""

    panel: Panel
    lags: np.ndarray
    context_length: int
    codes: np.ndarray  # (rows, metadata fields) int64
    reals: np.ndarray  # (rows, numeric metadata fields) float32
    prior: np.ndarray  # (rows,) log scale guessed from metadata, for windows without context
    log_scale: tuple[float, float]  # mean and spread of the warm series' log scales
    warm: int  # rows 0..warm-1 are series with history; the rest cold-start items

    def scales(self, rows: np.ndarray, past: np.ndarray) -> np.ndarray:
        """Each window's scale: 1 + mean |value| over its context ``past`` (rows, steps), else the prior."""
        seen = ~np.isnan(past)
        n = seen.sum(axis=1)
        mean_abs = np.where(seen, np.abs(np.nan_to_num(past)), 0).sum(axis=1) / np.maximum(n, 1)
        return np.where(n > 0, 1.0 + mean_abs, np.exp(self.prior[rows]))

    def window_inputs(self, rows: np.ndarray, ids: np.ndarray, scale: np.ndarray, target: np.ndarray) -> dict:
        """What every global network's batch holds besides its dynamic inputs: the static codes and
        reals, the scaled target with its observed weights, and the scale."""
        observed = ~np.isnan(target)
        return {
            "codes": np.column_stack([ids, self.codes[rows]]).astype("int64"),
            "reals": self.static_reals(rows, scale),
            "target": np.where(observed, target, 0.0).astype("float32"),
            "weight": observed.astype("float32"),
            "scale": scale.astype("float32"),
        }

    def static_reals(self, rows: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Numeric metadata and the standardised log scale, per window."""
        mean, spread = self.log_scale
        return np.column_stack([self.reals[rows], (np.log(scale) - mean) / spread]).astype("float32")


class GlobalModel:
    """Mixin for a ``ForecastAlgorithm`` with one network over all series; see the module's docstring.

    The model implements ``_forecast_rows(rows, levels) -> (mean, quantiles)`` and sets ``fitted_``
    once it is trained.
    """

    rolls_forward = True  # with_data(later history) forecasts from it with the trained network

    def _prepare(
        self, data: ForecastData, context: int, pad: int, lags: np.ndarray, related: bool, metadata: bool
    ) -> Design:
        """Keep the data, its metadata (when ``metadata``) and cold-start items, and build the design.

        ``pad`` periods before each series' first value hold the context and lags of early windows;
        ``related`` says whether the related series go into the panel.
        """
        active = np.flatnonzero(data.lengths > 0)
        if not len(active):
            raise ValueError(f"{self.name} needs at least one series with history before the training end")
        self.data_, self.active_ = data, active
        self.metadata_ = Metadata.encode(data.item_metadata, data.series_keys) if metadata else None
        self.cold_start_ = self._cold_start_keys(data)
        self.design_ = self._design(data, context, pad, lags, related)
        return self.design_

    def _categories(self) -> list:
        return self.metadata_.categories if self.metadata_ is not None else []

    def _cold_start_keys(self, data: ForecastData) -> pd.DataFrame:
        """Keys of the items with metadata and no series; key columns other than the item's stay empty."""
        meta = self.metadata_
        if meta is None:
            return data.keys.iloc[:0].copy()
        known = pd.Index(data.keys[meta.identifier].astype(str).unique())
        cold = meta.items[~meta.items.isin(known)]
        return pd.DataFrame({k: (cold if k == meta.identifier else pd.NA) for k in data.series_keys})

    def _design(self, data: ForecastData, context: int, pad: int, lags: np.ndarray, related: bool) -> Design:
        ids, cold = self.active_, len(self.cold_start_)
        stats = self.related_stats_ = related_stats(data, ids) if related else None
        source = data if stats is not None else dataclasses.replace(data, related=None)
        panel = Panel.build(source, ids, cold, pad, stats)
        if self.metadata_ is not None:
            item_ids = np.r_[data.keys[self.metadata_.identifier].iloc[ids].astype(str), self._cold_ids()]
            codes, reals = self.metadata_.lookup(pd.Index(item_ids))
        else:
            codes, reals = np.zeros((len(ids) + cold, 0), dtype="int64"), np.zeros((len(ids) + cold, 0), "float32")
        warm = np.r_[np.ones(len(ids), bool), np.zeros(cold, bool)]
        log_scales = np.zeros(len(warm))
        for row, i in enumerate(ids):
            y = np.abs(data.series(i))
            log_scales[row] = math.log1p(float(np.nanmean(y))) if not np.isnan(y).all() else 0.0
        spread = float(log_scales[warm].std()) or 1.0
        return Design(
            panel=panel,
            lags=lags,
            context_length=context,
            codes=codes,
            reals=reals,
            prior=prior_log_scales(log_scales, codes, warm),
            log_scale=(float(log_scales[warm].mean()), spread),
            warm=len(ids),
        )

    def with_data(self, data: ForecastData):
        """The fitted network forecasting from ``data``: other future related values (a what-if), or a
        later history of the same series (a backtest's later window). The panel is rebuilt with the
        related series standardised as in training; the series forecast are those trained on."""
        self._check_fitted()
        other = copy.copy(self)
        design = self.design_
        source = data if self.related_stats_ is not None else dataclasses.replace(data, related=None)
        panel = Panel.build(source, self.active_, len(self.cold_start_), design.panel.pad, self.related_stats_)
        other.data_, other.design_ = data, dataclasses.replace(design, panel=panel)
        return other

    def _cold_ids(self) -> np.ndarray:
        if not len(self.cold_start_):
            return np.empty(0, dtype=object)
        return self.cold_start_[self.metadata_.identifier].astype(str).to_numpy()

    def _training_windows(self, design: Design, size: int, rng: np.random.Generator):
        """``size`` windows uniform over every (warm series, forecast start): rows, first forecast
        positions and the id codes (0, the unknown id, for ``ID_DROPOUT`` of them)."""
        panel, h = design.panel, design.panel.horizon
        starts = panel.starts[: design.warm]
        latest = np.maximum(starts, panel.end - h)  # forecast starts run from the first value to end - h
        counts = (latest - starts + 1).astype("float64")
        cumulative = np.cumsum(counts)
        draws = rng.random(size) * cumulative[-1]
        rows = np.minimum(np.searchsorted(cumulative, draws, side="right"), design.warm - 1)
        first = starts[rows] + np.floor(rng.random(size) * counts[rows]).astype("int64")
        ids = np.where(rng.random(size) < ID_DROPOUT, 0, rows + 1)
        return rows, first, ids

    @contextlib.contextmanager
    def _torch(self, seed: int):
        """Torch on the GPU when there is one, else on ``n_jobs`` threads, seeded; the caller's state restored."""
        import torch

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        threads = torch.get_num_threads()
        if device.type == "cpu":
            jobs = os.cpu_count() if self.n_jobs in (-1, None) else max(1, int(self.n_jobs))
            torch.set_num_threads(jobs or 1)
        try:
            with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                yield device
        finally:
            torch.set_num_threads(threads)

    # -- forecasting -----------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(data) first")

    def predict_arrays(self, quantiles: Sequence[float | str] = DEFAULT_QUANTILES):
        self._check_fitted()
        types = forecast_types(quantiles)
        levels = np.array(sorted(t for t in types if t != "mean"), dtype="float64")
        mean, quant = self._forecast_rows(np.arange(self.design_.warm), levels)
        return self.active_, *self._clipped(mean, quant), types

    def predict(self, quantiles: Sequence[float | str] = DEFAULT_QUANTILES) -> pd.DataFrame:
        """Forecasts for every series with history, then for every cold-start item."""
        frame = super().predict(quantiles)
        if not len(self.cold_start_):
            return frame
        return append_cold_start(frame, self.predict_cold_start(quantiles), self.data_.series_keys)

    def predict_cold_start(self, quantiles: Sequence[float | str] = DEFAULT_QUANTILES) -> pd.DataFrame:
        """Forecasts for the items of ITEM_METADATA that have no target history."""
        self._check_fitted()
        types = forecast_types(quantiles)
        levels = sorted(t for t in types if t != "mean")
        design, h = self.design_, self.data_.horizon
        rows = np.arange(design.warm, design.warm + len(self.cold_start_))
        mean, quant = self._clipped(*self._forecast_rows(rows, np.array(levels, dtype="float64")))
        frame = self.cold_start_.iloc[np.repeat(np.arange(len(rows)), h)].reset_index(drop=True)
        frame["timestamp"] = np.tile(self.data_.future_periods().to_numpy(), len(rows))
        for t in types:
            values = mean if t == "mean" else quant[:, :, levels.index(t)]
            frame[column_name(t)] = values.reshape(-1)
        return frame

    def _clipped(self, mean: np.ndarray, quant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Counts stay non-negative; quantiles never cross."""
        if self.data_.non_negative:
            np.maximum(mean, 0.0, out=mean)
            np.maximum(quant, 0.0, out=quant)
        quant.sort(axis=2)
        return mean, quant


def append_cold_start(warm: pd.DataFrame, cold: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Forecasts of series with history, then of cold-start items, in one frame (key columns kept categorical)."""
    for key in keys:
        if isinstance(warm[key].dtype, pd.CategoricalDtype):
            categories = warm[key].cat.categories.union(pd.Index(cold[key].dropna().astype(str).unique()))
            warm[key] = warm[key].cat.set_categories(categories)
            cold[key] = pd.Categorical(cold[key].astype(object), categories=categories)
    return pd.concat([warm, cold], ignore_index=True)
