"""CNN-QR: Amazon Forecast's convolutional quantile regression, one network for all series.

MQ-CNN (Wen et al. 2017, cnn_qr_network.py): a causal dilated CNN reads each window's context and a
decoder forecasts every step of the horizon at once, directly as quantiles, trained with the
quantile loss. No sampling, no feedback of its own forecasts: fast to forecast and free of
compounding errors over long horizons.

- Related series, as Forecast's ``use_related_data``: ``ALL`` (the default: each related feature in
  the encoder over the context and in the decoder over the horizon), ``HISTORICAL`` (encoder
  only), ``FORWARD_LOOKING`` (decoder only) or ``NONE``. The group's holidays are a related
  feature known into the future, so they reach it too.
- Item metadata, as ``use_item_metadata``: ``ALL`` (categorical fields as embeddings, numeric
  fields as reals) or ``NONE``.
- Quantiles: the network learns a fixed grid of levels (``TRAINING_LEVELS``, 0.01 to 0.99); any
  forecast type is read off it by linear interpolation, and the mean is the integral of that
  quantile function.
- Cold start: items in ITEM_METADATA with no target history are forecast from their metadata
  alone (see global_model.py: the same preparation DeepAR+ gets).

Scale, windows and id dropout are DeepAR+'s (global_model.py). Training runs on the GPU when
torch sees one, else on ``n_jobs`` CPU threads; the same ``seed`` gives the same forecasts on
the CPU.
"""

from __future__ import annotations

import numpy as np

from pipelines.forecast.base import ForecastAlgorithm, register
from pipelines.forecast.data import ForecastData
from pipelines.forecast.global_model import Design, GlobalModel, out_of_time
from pipelines.forecast.hyperparameters import CNNQRLimits

TRAINING_LEVELS = np.array([0.01, *np.round(np.arange(0.05, 0.951, 0.05), 2), 0.99])


@register
class CNNQR(GlobalModel, ForecastAlgorithm):
    """CNN-QR; see the module's docstring. ``context_length`` None means four horizons (at most 500)."""

    name = "CNN-QR"

    hyperparameter_model = CNNQRLimits

    def __init__(self, *, n_jobs=1, chunk_size=1024, seed=0, **hyperparameters):
        super().__init__(n_jobs=n_jobs, chunk_size=chunk_size, seed=seed, **hyperparameters)

    def fit(self, data: ForecastData) -> CNNQR:
        from pipelines.forecast import cnn_qr_network as nn

        context = self.context_length or min(4 * data.horizon, 500)
        related = self.use_related_data != "NONE"
        design = self._prepare(data, context, context, np.array([1]), related, self.use_item_metadata == "ALL")
        n_related = design.panel.related.shape[1]
        n_time = design.panel.time.shape[1] + 1  # time features and age
        self.past_related_ = self.use_related_data in ("ALL", "HISTORICAL")
        self.future_related_ = self.use_related_data in ("ALL", "FORWARD_LOOKING")
        n_past = 2 + n_time + (n_related if self.past_related_ else 0)
        n_future = n_time + (n_related if self.future_related_ else 0)
        cardinalities = [design.warm + 1] + [len(c) + 1 for c in self._categories()]
        rng = np.random.default_rng(self.seed)
        steps = np.arange(context)

        def sample(size: int, generator: np.random.Generator):
            rows, first, ids = self._training_windows(design, size, generator)
            return self._inputs(design, rows, first[:, None] - context + steps, ids)

        with self._torch(self.seed) as device:
            net = nn.CNNQRNetwork(
                n_past,
                n_future,
                cardinalities,
                design.reals.shape[1] + 1,
                data.horizon,
                TRAINING_LEVELS,
                channels=self.channels,
                dropout=self.dropout_rate,
            ).to(device)
            patience = max(1, min(10, self.epochs // 5))
            self.training_loss_ = nn.train(
                net, sample, self.epochs, self.num_batches_per_epoch, self.batch_size, self.learning_rate, rng, device,
                patience, stop=out_of_time,
            )  # fmt: skip
            self.network_ = net.to("cpu")
        self.epochs_trained_ = len(self.training_loss_)
        self.stopped_by_deadline_ = out_of_time() and self.epochs_trained_ < self.epochs
        self.fitted_ = True
        return self

    def _inputs(self, design: Design, rows: np.ndarray, t_past: np.ndarray, ids: np.ndarray):
        """The network's inputs for windows whose contexts sit at grid positions ``t_past`` (rows, context)."""
        from pipelines.forecast.cnn_qr_network import Batch

        panel, h = design.panel, design.panel.horizon
        past = panel.at(rows, t_past)
        scale = design.scales(rows, past)
        n_related = panel.related.shape[1]
        t_future = t_past[:, -1:] + 1 + np.arange(h)
        covariates = panel.covariates(rows, t_past)
        future = panel.covariates(rows, t_future)
        if not self.past_related_ and n_related:
            covariates = covariates[..., :-n_related]
        if not self.future_related_ and n_related:
            future = future[..., :-n_related]
        scaled = past / scale[:, None]
        target = panel.at(rows, t_future) / scale[:, None]
        return Batch(
            past=np.concatenate(
                [np.nan_to_num(scaled)[..., None], ~np.isnan(scaled)[..., None], covariates], axis=-1
            ).astype("float32"),
            future=future.astype("float32"),
            **design.window_inputs(rows, ids, scale, target),
        )

    def _forecast_rows(self, rows: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean (rows, h) and quantiles (rows, h, levels) read off the learned quantile grid."""
        from pipelines.forecast.cnn_qr_network import predict

        design = self.design_
        context = design.context_length
        grid = np.empty((len(rows), self.data_.horizon, len(TRAINING_LEVELS)))
        with self._torch(self.seed) as device:
            net = self.network_.to(device)
            for first in range(0, len(rows), max(1, self.chunk_size)):
                part = rows[first : first + self.chunk_size]
                t = np.broadcast_to(design.panel.end - context + np.arange(context), (len(part), context))
                ids = np.where(part < design.warm, part + 1, 0)
                grid[first : first + len(part)] = predict(net, self._inputs(design, part, t, ids), device)
            self.network_ = net.to("cpu")
        return quantile_mean(grid), interpolate_levels(grid, levels)


def interpolate_levels(grid: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantiles at ``levels`` from quantiles at TRAINING_LEVELS (last axis), linearly interpolated."""
    position = np.interp(levels, TRAINING_LEVELS, np.arange(len(TRAINING_LEVELS)))
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(TRAINING_LEVELS) - 1)
    weight = position - low
    return grid[..., low] * (1 - weight) + grid[..., high] * weight


def quantile_mean(grid: np.ndarray) -> np.ndarray:
    """The mean of the piecewise-linear quantile function on TRAINING_LEVELS, its tails held flat."""
    tau = TRAINING_LEVELS
    widths = np.diff(tau)
    inner = ((grid[..., 1:] + grid[..., :-1]) / 2 * widths).sum(axis=-1)
    return inner + grid[..., 0] * tau[0] + grid[..., -1] * (1 - tau[-1])
