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

import math

import numpy as np

from pipelines.forecast.base import ALGORITHMS, ForecastAlgorithm, register
from pipelines.forecast.data import ForecastData
from pipelines.forecast.deepar_features import lags_for
from pipelines.forecast.global_model import Design, GlobalModel, out_of_time
from pipelines.forecast.hyperparameters import DeepARLimits


@register
class DeepARPlus(GlobalModel, ForecastAlgorithm):
    """DeepAR+; see the module's docstring. ``context_length`` None means twice the horizon.

    An epoch is ``num_batches_per_epoch`` batches of ``batch_size`` windows drawn at random from
    all series (GluonTS' definition, which Forecast's DeepAR+ uses). ``num_averaged_models``
    trains that many networks with consecutive seeds and pools their sample paths.
    """

    name = "DeepAR+"

    hyperparameter_model = DeepARLimits

    def __init__(self, *, n_jobs=1, chunk_size=256, seed=0, **hyperparameters):
        super().__init__(n_jobs=n_jobs, chunk_size=chunk_size, seed=seed, **hyperparameters)

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, data: ForecastData) -> DeepARPlus:
        active = np.flatnonzero(data.lengths > 0)
        if self.likelihood == "negative-binomial" and min(np.nanmin(data.series(i), initial=0) for i in active) < 0:
            raise ValueError("the negative-binomial likelihood is for counts: the target has negative values")
        from pipelines.forecast import deepar_network as nn

        context = self.context_length or 2 * data.horizon
        lags = lags_for(data.freq, int(data.lengths.max()))
        design = self._prepare(
            data, context, context + int(lags.max()), lags, self.use_related_data, self.use_item_metadata
        )
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
            if k and out_of_time():  # a deadline keeps the networks already trained
                break
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
                self.training_loss_.append(nn.train(net, sampler, settings, rng, device, stop=out_of_time))
                self.networks_.append(net.to("cpu"))
        self.epochs_trained_ = max(len(loss) for loss in self.training_loss_)
        self.stopped_by_deadline_ = out_of_time() and (
            self.epochs_trained_ < self.epochs or len(self.networks_) < self.num_averaged_models
        )
        self.fitted_ = True
        return self

    def _window_sampler(self, design: Design):
        """A function drawing a training batch: windows uniform over every (series, forecast start)."""
        context, h = design.context_length, design.panel.horizon
        steps = np.arange(context + h)

        def sample(size: int, rng: np.random.Generator):
            rows, first, ids = self._training_windows(design, size, rng)
            return self._inputs(design, rows, first[:, None] - context + steps, ids, context)

        return sample

    def _inputs(self, design: Design, rows: np.ndarray, t: np.ndarray, ids: np.ndarray, context: int):
        """The network's inputs for windows of ``rows`` at grid positions ``t``; the scale comes from the
        first ``context`` steps (the prior from metadata where they hold no value)."""
        from pipelines.forecast.deepar_network import Batch

        panel = design.panel
        scale = design.scales(rows, panel.at(rows, t[:, :context]))
        lagged = panel.at(rows, t[..., None] - design.lags) / scale[:, None, None]
        dynamic = np.concatenate([np.nan_to_num(lagged), ~np.isnan(lagged), panel.covariates(rows, t)], axis=-1)
        return Batch(dynamic=dynamic.astype("float32"), **design.window_inputs(rows, ids, scale, panel.at(rows, t)))

    # -- forecasting -----------------------------------------------------------------------

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
        return mean, quant


ALGORITHMS["Deep_AR_Plus"] = DeepARPlus  # the name in Forecast's ARN: arn:aws:forecast:::algorithm/Deep_AR_Plus
