"""DeepAR+: one autoregressive recurrent network for all series, as Amazon Forecast's DeepAR+.

After Salinas et al., "DeepAR: Probabilistic forecasting with autoregressive recurrent networks"
(arXiv 1704.04110). One LSTM learns from windows of every series at once: a window is
``context_length`` periods the network reads with their true values, then ``horizon`` periods
it learns to predict, each step conditioned on the true value before it (teacher forcing). A
forecast unrolls the context, then samples ``num_samples`` paths one step at a time, feeding
each sampled value back as the next step's lag, and reads the quantiles and the mean off them.

- Likelihoods: ``student-t`` (the default), ``gaussian``, and ``negative-binomial`` for counts.
- Scale: each window is divided by ``v = 1 + mean(|z|)`` over its context (the paper's mean
  scaling), so that one network serves series of any size; ``log v`` is also an input.
- Inputs at each step: the target at the lags of the frequency (deepar_features.LAGS) and
  whether each was observed, time features (day of week, month, ...) in [-0.5, 0.5], the age of
  the series, related series standardised (known into the future), and static features: an
  embedding of the series id and of each categorical metadata field, numeric metadata fields.
- Cold start: items in ITEM_METADATA with no target history are forecast from their metadata
  embeddings and an empty context. Training prepares for it: some windows start at a series'
  first value (no context), the series id is hidden from 10% of windows, and a window without
  context takes its scale from the series that share its metadata (``prior_log_scales``).

Hyperparameters keep Forecast's names. Training runs on the GPU when torch sees one, else on
``n_jobs`` CPU threads; on the CPU the same ``seed`` gives the same forecasts.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.forecast.base import (
    ALGORITHMS,
    DEFAULT_QUANTILES,
    ForecastAlgorithm,
    column_name,
    forecast_types,
    register,
)
from pipelines.forecast.data import ForecastData
from pipelines.forecast.deepar_features import Metadata, Panel, lags_for, prior_log_scales, related_stats

LIKELIHOODS = ("student-t", "gaussian", "negative-binomial")
ID_DROPOUT = 0.1  # share of training windows that do not see their series id (what a cold-start item gets)


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


@register
class DeepARPlus(ForecastAlgorithm):
    """DeepAR+; see the module's docstring. ``context_length`` None means twice the horizon.

    An epoch is ``num_batches_per_epoch`` batches of ``batch_size`` windows drawn at random from
    all series (GluonTS' definition, which Forecast's DeepAR+ uses). ``num_averaged_models``
    trains that many networks with consecutive seeds and pools their sample paths.
    """

    name = "DeepAR+"

    def __init__(
        self,
        context_length: int | None = None,
        epochs: int = 100,
        learning_rate: float = 1e-3,
        learning_rate_decay: float = 0.5,
        max_learning_rate_decays: int = 0,
        num_layers: int = 2,
        num_cells: int = 40,
        likelihood: str = "student-t",
        dropout_rate: float = 0.1,
        batch_size: int = 64,
        num_batches_per_epoch: int = 50,
        num_samples: int = 100,
        num_averaged_models: int = 1,
        use_related_data: bool = True,
        use_item_metadata: bool = True,
        *,
        n_jobs=1,
        chunk_size=256,
        seed=0,
    ):
        super().__init__(n_jobs=n_jobs, chunk_size=chunk_size, seed=seed)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood {likelihood!r}: DeepAR+ takes {', '.join(LIKELIHOODS)}")
        checks = {
            "context_length": context_length is None or context_length >= 1,
            "epochs": epochs >= 1,
            "learning_rate": 0 < learning_rate < 1,
            "num_layers": num_layers >= 1,
            "num_cells": num_cells >= 1,
            "batch_size": batch_size >= 1,
            "num_batches_per_epoch": num_batches_per_epoch >= 1,
            "num_samples": num_samples >= 1,
            "num_averaged_models": 1 <= num_averaged_models <= 5,
            "dropout_rate": 0 <= dropout_rate < 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"DeepAR+ hyperparameters out of range: {bad}")
        self.context_length = context_length
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.learning_rate_decay = learning_rate_decay
        self.max_learning_rate_decays = max_learning_rate_decays
        self.num_layers = num_layers
        self.num_cells = num_cells
        self.likelihood = likelihood
        self.dropout_rate = dropout_rate
        self.batch_size = batch_size
        self.num_batches_per_epoch = num_batches_per_epoch
        self.num_samples = num_samples
        self.num_averaged_models = num_averaged_models
        self.use_related_data = use_related_data
        self.use_item_metadata = use_item_metadata

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, data: ForecastData) -> DeepARPlus:
        active = np.flatnonzero(data.lengths > 0)
        if not len(active):
            raise ValueError("DeepAR+ needs at least one series with history before the training end")
        if self.likelihood == "negative-binomial" and min(np.nanmin(data.series(i), initial=0) for i in active) < 0:
            raise ValueError("the negative-binomial likelihood is for counts: the target has negative values")
        from pipelines.forecast import deepar_network as nn

        self.data_, self.active_ = data, active
        self.metadata_ = Metadata.encode(data.item_metadata, data.series_keys) if self.use_item_metadata else None
        self.cold_start_ = self._cold_start_keys(data)
        self.design_ = design = self._design(data)
        rng = np.random.default_rng(self.seed)
        settings = nn.TrainingSettings(
            epochs=self.epochs,
            num_batches_per_epoch=self.num_batches_per_epoch,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            learning_rate_decay=self.learning_rate_decay,
            max_learning_rate_decays=self.max_learning_rate_decays,
            patience=max(1, min(10, self.epochs // 10)),
        )
        n_dynamic = 2 * len(design.lags) + design.panel.time.shape[1] + 1 + design.panel.related.shape[1]
        cardinalities = [design.warm + 1] + [len(c) + 1 for c in self._categories()]
        self.networks_, self.training_loss_ = [], []
        sampler = self._window_sampler(design)
        for k in range(self.num_averaged_models):
            with self._torch(self.seed + k) as device:
                net = nn.DeepARNetwork(
                    n_dynamic,
                    cardinalities,
                    design.reals.shape[1] + 1,
                    self.num_cells,
                    self.num_layers,
                    self.likelihood,
                    self.dropout_rate,
                ).to(device)
                self.training_loss_.append(nn.train(net, sampler, settings, rng, device))
                self.networks_.append(net.to("cpu"))
        return self

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

    def _design(self, data: ForecastData) -> Design:
        ids, cold = self.active_, len(self.cold_start_)
        h = data.horizon
        context = self.context_length or 2 * h
        lags = lags_for(data.freq, int(data.lengths.max()))
        stats = related_stats(data, ids) if self.use_related_data else None
        source = data if stats is not None else _without_related(data)
        panel = Panel.build(source, ids, cold, context + int(lags.max()), stats)
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

    def _cold_ids(self) -> np.ndarray:
        if not len(self.cold_start_):
            return np.empty(0, dtype=object)
        return self.cold_start_[self.metadata_.identifier].astype(str).to_numpy()

    def _window_sampler(self, design: Design):
        """A function drawing a training batch: windows uniform over every (series, forecast start)."""
        panel, h, context = design.panel, design.panel.horizon, design.context_length
        starts = panel.starts[: design.warm]
        latest = np.maximum(starts, panel.end - h)  # forecast starts run from the first value to end - h
        counts = (latest - starts + 1).astype("float64")
        cumulative = np.cumsum(counts)
        steps = np.arange(context + h)

        def sample(size: int, rng: np.random.Generator):
            draws = rng.random(size) * cumulative[-1]
            rows = np.minimum(np.searchsorted(cumulative, draws, side="right"), design.warm - 1)
            first = starts[rows] + np.floor(rng.random(size) * counts[rows]).astype("int64")
            t = first[:, None] - context + steps
            ids = np.where(rng.random(size) < ID_DROPOUT, 0, rows + 1)
            return self._inputs(design, rows, t, ids, context)

        return sample

    def _inputs(self, design: Design, rows: np.ndarray, t: np.ndarray, ids: np.ndarray, context: int):
        """The network's inputs for windows of ``rows`` at grid positions ``t``; the scale comes from the
        first ``context`` steps (the prior from metadata where they hold no value)."""
        from pipelines.forecast.deepar_network import Batch

        panel = design.panel
        past = panel.at(rows, t[:, :context])
        seen = ~np.isnan(past)
        n = seen.sum(axis=1)
        mean_abs = np.where(seen, np.abs(np.nan_to_num(past)), 0).sum(axis=1) / np.maximum(n, 1)
        scale = np.where(n > 0, 1.0 + mean_abs, np.exp(design.prior[rows]))
        lagged = panel.at(rows, t[..., None] - design.lags) / scale[:, None, None]
        target = panel.at(rows, t)
        observed = ~np.isnan(target)
        dynamic = np.concatenate([np.nan_to_num(lagged), ~np.isnan(lagged), panel.covariates(rows, t)], axis=-1)
        mean, spread = design.log_scale
        reals = np.column_stack([design.reals[rows], (np.log(scale) - mean) / spread])
        return Batch(
            dynamic=dynamic.astype("float32"),
            codes=np.column_stack([ids, design.codes[rows]]).astype("int64"),
            reals=reals.astype("float32"),
            target=np.where(observed, target, 0.0).astype("float32"),
            weight=observed.astype("float32"),
            scale=scale.astype("float32"),
        )

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

    def predict_arrays(self, quantiles: Sequence[float | str] = DEFAULT_QUANTILES):
        if not hasattr(self, "networks_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(data) first")
        types = forecast_types(quantiles)
        levels = np.array(sorted(t for t in types if t != "mean"), dtype="float64")
        mean, quant = self._forecast_rows(np.arange(self.design_.warm), levels)
        return self.active_, mean, quant, types

    def predict(self, quantiles: Sequence[float | str] = DEFAULT_QUANTILES) -> pd.DataFrame:
        """Forecasts for every series with history, then for every cold-start item."""
        frame = super().predict(quantiles)
        if not len(self.cold_start_):
            return frame
        return append_cold_start(frame, self.predict_cold_start(quantiles), self.data_.series_keys)

    def predict_cold_start(self, quantiles: Sequence[float | str] = DEFAULT_QUANTILES) -> pd.DataFrame:
        """Forecasts for the items of ITEM_METADATA that have no target history."""
        if not hasattr(self, "networks_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(data) first")
        types = forecast_types(quantiles)
        levels = sorted(t for t in types if t != "mean")
        design, h = self.design_, self.data_.horizon
        rows = np.arange(design.warm, design.warm + len(self.cold_start_))
        mean, quant = self._forecast_rows(rows, np.array(levels, dtype="float64"))
        frame = self.cold_start_.iloc[np.repeat(np.arange(len(rows)), h)].reset_index(drop=True)
        frame["timestamp"] = np.tile(self.data_.future_periods().to_numpy(), len(rows))
        for t in types:
            values = mean if t == "mean" else quant[:, :, levels.index(t)]
            frame[column_name(t)] = values.reshape(-1)
        return frame

    def _forecast_rows(self, rows: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean (rows, h) and quantiles (rows, h, levels) from sample paths, in chunks of rows."""
        from pipelines.forecast.deepar_network import sample_paths

        design, h = self.design_, self.data_.horizon
        panel, context = design.panel, design.context_length
        max_lag = int(design.lags.max())
        models = len(self.networks_)
        per_model = math.ceil(self.num_samples / models)
        ranks = np.round((self.num_samples - 1) * levels).astype(int)
        mean, quant = np.empty((len(rows), h)), np.empty((len(rows), h, len(levels)))
        with self._torch(self.seed) as device:
            for first in range(0, len(rows), max(1, self.chunk_size)):
                part = rows[first : first + self.chunk_size]
                t = np.broadcast_to(panel.end - context + np.arange(context), (len(part), context))
                ids = np.where(part < design.warm, part + 1, 0)
                inputs = self._inputs(design, part, t, ids, context)
                scale = inputs.scale.astype("float64")[:, None]
                past = panel.at(part, panel.end - max_lag + np.arange(max_lag)[None, :]) / scale
                future = panel.covariates(part, np.broadcast_to(panel.end + np.arange(h), (len(part), h)))
                paths = np.concatenate(
                    [
                        sample_paths(
                            net.to(device),
                            inputs,
                            np.nan_to_num(past).astype("float32"),
                            (~np.isnan(past)).astype("float32"),
                            future.astype("float32"),
                            design.lags,
                            per_model,
                            device,
                        )
                        for net in self.networks_
                    ],
                    axis=1,
                )[:, : self.num_samples]
                mean[first : first + len(part)] = paths.mean(axis=1)
                quant[first : first + len(part)] = np.sort(paths, axis=1)[:, ranks, :].transpose(0, 2, 1)
        for net in self.networks_:
            net.to("cpu")
        if self.data_.non_negative:
            np.maximum(mean, 0.0, out=mean)
            np.maximum(quant, 0.0, out=quant)
        return mean, quant


ALGORITHMS["Deep_AR_Plus"] = DeepARPlus  # the name in Forecast's ARN: arn:aws:forecast:::algorithm/Deep_AR_Plus


def _without_related(data: ForecastData) -> ForecastData:
    import dataclasses

    return dataclasses.replace(data, related=None)


def append_cold_start(warm: pd.DataFrame, cold: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Forecasts of series with history, then of cold-start items, in one frame (key columns kept categorical)."""
    for key in keys:
        if isinstance(warm[key].dtype, pd.CategoricalDtype):
            categories = warm[key].cat.categories.union(pd.Index(cold[key].dropna().astype(str).unique()))
            warm[key] = warm[key].cat.set_categories(categories)
            cold[key] = pd.Categorical(cold[key].astype(object), categories=categories)
    return pd.concat([warm, cold], ignore_index=True)
