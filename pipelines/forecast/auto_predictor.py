"""AutoPredictor: for each series, the algorithm or blend of algorithms that did best on the backtest.

Amazon Forecast's AutoPredictor backtests several algorithms and, item by item, forecasts with the
combination that scored best on the optimization metric. Here: every candidate runs through
``backtest`` with the same windows; each item's metric is averaged over the windows; then, for
each item, the candidates are ranked and the top ``top_k`` are blended with weights proportional
to their inverse error (``selection="blend"``, the default); with ``selection="best"`` the blend
of the top 1, 2, ... ``top_k`` with the lowest backtest metric wins instead. Picking the best on
one backtest window overfits it: on all 645 yearly M3 series the fixed blend scored sMAPE 15.80
and MASE 2.72, the best-of blends 16.28 and 2.82 (other: 4.34 / 1.87 against 4.58 / 1.95).
One window also tells little about one item, so each item's weights are partly pooled: a share
``item_share`` (default 0.5) comes from its own ranking and the rest from the data set's blend
(the ``top_k`` candidates by their mean item score, weighted the same way). On M3 yearly, other
and quarterly (test windows, weights from the window before) the share 0.5 scored MASE 1.820
and mean wQL 0.0639 where per-item weights alone (1.0) scored 1.842 and 0.0639 and the data
set's alone (0.0) 1.831 and 0.0660. Quantiles are blended level by level (a weighted average of
sorted values stays sorted), the mean as the mean. Every candidate is then fitted on the full
data of the items that chose it (global models such as DeepAR+ on every item), and the forecast
of an item is its chosen blend of their forecasts.

Intervals are calibrated (``calibrate_intervals``): each candidate's spread around its p50 is
stretched or shrunk, level by level, by the factor that makes its own backtest quantiles hold the
share of actuals their level promises (split conformal calibration of the scale, one factor per
candidate and level over all items and steps). Model intervals are often too narrow (statistical
models ignore parameter and model uncertainty); calibrated ones are what coverage claims rest on.
Then the blend, which is what gets published, is calibrated the same way on its own backtest
forecast: averaging candidates whose errors partly cancel leaves the averaged spreads too wide
(``result_.calibration["AutoPredictor"]`` holds its factors).

Time (``time_limit``, seconds, as AutoGluon's ``time_limit``): candidates run cheapest first. Before
each, the planner times it on a small probe of series (a neural candidate: fits of two epochs and of
one, whose difference is an epoch) and extrapolates its backtest and its final fit; a neural
candidate is given the epochs that fit its share of the time left (shared with the neural candidates
still to come; ``result_.shortened`` says how many, at least 10), and a candidate that would still
not finish inside what is left, with the final fits of those already accepted, is left out, and
``result_.left_out`` says why. A neural model is left out for the series whose history is shorter
than three horizons (Forecast's limit for neural algorithms: a horizon of at most 500 and a third
of the series) before the oldest window, so more windows raise that minimum by their span, and
entirely when no series is long enough. The plan rests on timings taken once; a machine that slows
down afterwards (another job starting) would stretch the networks' epochs past it, so each network
trains inside a deadline (``global_model.training_deadline``): its backtest stops between two epochs
at the end of its share, and the final fits of the networks, made last, share what is left of the
limit (one epoch each at least).

Windows: the choices and the calibration are made on ``windows`` backtest windows (Forecast's
NumberOfBacktestWindows, 1 to 5; the DAG passes the group's). Where none are given, as many as
keep the windows within 5 % of the median series' history (``selection_windows``): one on short
histories such as M3's, where each window costs a refit of every candidate and moves the training
end back, five on long ones such as two years of hourly data, where one window of 24 hours is too
small a sample to choose or calibrate on. A global network (DeepAR+, CNN-QR) is trained once, before the oldest
window, and forecasts each window from that window's history (``backtest(..., refit=False)``):
five windows cost it one training, not five.

Choices are made on the same backtest that scores them, so the AutoPredictor's own backtest
numbers (``result_.summary``) are optimistic; the candidates' are not. Items that no window
scored (too new) take the data set's blend. Every candidate's backtest, per-item scores and the
choices stay in ``result_`` for inspection.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipelines.forecast import calibration, metrics
from pipelines.forecast.backtest import MAX_WINDOWS, BacktestResult, backtest, window_starts
from pipelines.forecast.base import (
    DEFAULT_QUANTILES,
    ForecastAlgorithm,
    column_name,
    get_algorithm,
    register,
)
from pipelines.forecast.base import forecast_types as parse_types
from pipelines.forecast.data import ForecastData
from pipelines.forecast.global_model import training_deadline

log = logging.getLogger(__name__)
OPTIMIZATION_METRICS = ("AverageWeightedQuantileLoss", "WAPE", "RMSE", "MASE", "MAPE")
DEFAULT_CANDIDATES = ("SeasonalNaive", "ETS", "ARIMA", "Theta", "NPTS", "DeepAR+")
# Joins the default candidates when the data has related series or item metadata for it to use, or
# long histories: 40 horizons and more (candidate_names).
WITH_FEATURES = ("CNN-QR",)
# Cheapest first, so that a tight budget keeps the candidates that cost little (unknown names last).
COST_ORDER = ("SeasonalNaive", "NPTS", "Theta", "ETS", "ARIMA", "Prophet", "CNN-QR", "DeepAR+")
NEURAL_MAX_HORIZON = 500  # Forecast: a neural model's horizon is at most 500 and a third of the series
SAFETY = 1.15  # estimates are stretched by this much before they are held against the time left
MIN_EPOCHS = 10  # a neural candidate the budget holds for fewer epochs than this is left out
SELECTION_SHARE = 0.05  # the default backtest windows span at most this share of the median history


@dataclass
class AutoPredictorResult:
    """What the AutoPredictor learned on the backtest, and every candidate's results."""

    metric: str
    candidates: list[str]  # the candidates that ran, in the order given
    backtests: dict[str, BacktestResult]  # each candidate's full backtest (windows, items, export)
    item_scores: pd.DataFrame  # keys, then the metric per candidate and for the chosen blend (window mean)
    choices: pd.DataFrame  # keys, the chosen candidates ("ETS+Theta"), and a weight column per candidate
    summary: pd.DataFrame  # one row per candidate and one for the AutoPredictor: backtest metrics
    errors: dict[str, str] = field(default_factory=dict)  # candidates whose backtest failed, and why
    timings: dict[str, float] = field(default_factory=dict)  # seconds: each backtest, then the final fits
    left_out: dict[str, str] = field(default_factory=dict)  # candidates left out (time, history), and why
    shortened: dict[str, str] = field(default_factory=dict)  # neural candidates given fewer epochs to fit the time
    excluded_items: dict[str, int] = field(default_factory=dict)  # per candidate: series it could not serve
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)  # candidate -> level -> spread factor
    windows: int = 1  # the backtest windows the choices were made on

    def to_dict(self) -> dict:
        """A small JSON-able digest for a step's manifest: summary, how often each choice won, errors."""
        return {
            "metric": self.metric,
            "candidates": self.candidates,
            "summary": self.summary.to_dict(orient="records"),
            "choices": self.choices["algorithms"].value_counts().to_dict(),
            "errors": self.errors,
            "timings": self.timings,
            "left_out": self.left_out,
            "shortened": self.shortened,
            "excluded_items": self.excluded_items,
            "calibration": self.calibration,
            "windows": self.windows,
        }


@register
class AutoPredictor(ForecastAlgorithm):
    """Per-item selection and blending of ``candidates`` on the backtest; see the module's docstring.

    ``candidate_params`` gives hyperparameters by candidate name; ``n_jobs`` and ``seed`` are passed
    to every candidate that does not set them. ``top_k=1`` picks one candidate per item, no blends.
    ``forecast_types`` are what the backtest forecasts and scores (the point metrics score the
    mean, forecast whether or not it is one of them, as Forecast does). ``time_limit`` bounds
    ``fit`` in seconds (None: no bound).
    """

    name = "AutoPredictor"

    def __init__(
        self,
        candidates: Sequence[str] | None = None,
        metric: str = "AverageWeightedQuantileLoss",
        forecast_types: Sequence[float | str] = DEFAULT_QUANTILES,
        windows: int | None = None,
        offset: int | None = None,
        top_k: int = 3,
        candidate_params: Mapping[str, Mapping] | None = None,
        time_limit: float | None = None,
        calibrate_intervals: bool = True,
        selection: str = "blend",
        item_share: float = 0.5,
        *,
        n_jobs=1,
        chunk_size=64,
        seed=0,
    ):
        super().__init__(n_jobs=n_jobs, chunk_size=chunk_size, seed=seed)
        if metric not in OPTIMIZATION_METRICS:
            raise ValueError(f"optimization metric {metric!r}: use one of {', '.join(OPTIMIZATION_METRICS)}")
        if candidates is not None and not candidates:
            raise ValueError("AutoPredictor needs at least one candidate algorithm")
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        if time_limit is not None and not time_limit > 0:
            raise ValueError(f"time_limit {time_limit!r} must be a positive number of seconds")
        types = parse_types(forecast_types)
        if metric == "AverageWeightedQuantileLoss" and all(t == "mean" for t in types):
            raise ValueError("AverageWeightedQuantileLoss needs quantile forecast types")
        self.candidates = None if candidates is None else tuple(candidates)
        self.metric = metric
        self.forecast_types = tuple(forecast_types)
        if windows is not None and not 1 <= windows <= MAX_WINDOWS:
            raise ValueError(f"windows {windows}: Forecast takes 1 to {MAX_WINDOWS} backtest windows")
        self.windows = windows
        self.offset = offset
        self.top_k = top_k
        self.candidate_params = dict(candidate_params or {})
        if selection not in ("best", "blend"):
            raise ValueError(f"selection {selection!r}: 'best' (of the top 1..top_k blends) or 'blend' (top_k always)")
        self.time_limit = time_limit
        self.calibrate_intervals = calibrate_intervals
        self.selection = selection
        if not 0 <= item_share <= 1:
            raise ValueError(f"item_share {item_share!r} must be between 0 and 1")
        self.item_share = item_share
        for candidate in self.candidates or (*DEFAULT_CANDIDATES, *WITH_FEATURES):  # bad names or values fail here
            self.candidate(candidate)

    def candidate_names(self, data: ForecastData) -> tuple[str, ...]:
        """The candidates given, else the defaults, with CNN-QR where the data has related series or
        metadata for it to use, or histories long enough for ``selection_windows`` to take two
        windows or more (a median history of at least 40 horizons: there it learns the calendar
        from the time features alone), whatever windows are given."""
        if self.candidates is not None:
            return self.candidates
        features = data.related is not None or data.item_metadata is not None
        long = selection_windows(data, self.offset) > 1
        return (*DEFAULT_CANDIDATES, *WITH_FEATURES) if features or long else DEFAULT_CANDIDATES

    def candidate(self, name: str) -> ForecastAlgorithm:
        """An unfitted candidate with its hyperparameters, inheriting ``n_jobs`` and ``seed`` (and the
        epochs a time limit left it, once planned)."""
        params = {"n_jobs": self.n_jobs, "seed": self.seed, **self.candidate_params.get(name, {})}
        model = get_algorithm(name, **params)
        if name in getattr(self, "epochs_", {}):
            model.epochs = self.epochs_[name]
        return model

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, data: ForecastData) -> AutoPredictor:
        began_fit = time.perf_counter()
        deadline = None if self.time_limit is None else began_fit + self.time_limit
        self.data_ = data
        self.active_ = np.flatnonzero(data.lengths > 0)
        self.windows_ = self.windows or selection_windows(data, self.offset)
        types = parse_types(self.forecast_types)
        levels = sorted(t for t in types if t != "mean")
        timings: dict[str, float] = {}
        self.candidates_ = self.candidate_names(data)
        self.epochs_: dict[str, int] = {}  # neural candidates' epochs, where a time limit cut them
        backtests, eligible, errors, left_out, excluded, shortened = self._backtest_candidates(
            data, types, deadline, timings
        )
        names = [n for n in self.candidates_ if n in backtests]
        starts = window_starts(data.end, data.horizon, self.windows_, self.offset)
        actual, forecasts = _window_arrays(data, [backtests[n] for n in names], types, levels, len(starts))
        for c, name in enumerate(names):  # a model's forecasts for series it cannot serve do not count
            forecasts[c][0][~eligible[name]] = np.nan
            forecasts[c][1][~eligible[name]] = np.nan
        self.calibration_ = {}
        if self.calibrate_intervals and 0.5 in levels:
            for c, name in enumerate(names):
                self.calibration_[name] = calibration.factors(actual, forecasts[c][1], levels)
                forecasts[c] = (forecasts[c][0], calibration.apply(forecasts[c][1], levels, self.calibration_[name]))
        scales = _scales(data, starts)
        point = "mean"  # Forecast's point metrics score the mean, which every backtest export holds
        scores = np.column_stack([self._score(actual, f, scales, point, levels) for f in forecasts])
        weights, blend_scores = self._choose(scores, actual, forecasts, scales, point, levels, names, backtests)
        self.weights_ = self._servable(weights, np.column_stack([eligible[n] for n in names]), names, backtests)
        blended = _blend(self.weights_, forecasts)
        self.blend_calibration_ = {}
        if self.calibration_:  # what is published is the blend: its spread is calibrated too
            self.blend_calibration_ = calibration.factors(actual, blended[1], levels)
            blended = (blended[0], calibration.apply(blended[1], levels, self.blend_calibration_))
        cold = self._cold_start_name(data, names)
        unused = cold is not None and not (self.weights_[:, names.index(cold)] > 0).any()
        self._fit_chosen(data, names, timings, deadline, later=int(unused))
        with training_deadline(deadline):  # a network fitted for cold start alone: the time left
            self.cold_start_model_ = self._cold_start_model(data, cold, timings)
        self.candidate_names_ = names
        self.result_ = self._result(data, names, backtests, errors, timings, scores, blend_scores, self.weights_)
        self.result_.left_out, self.result_.excluded_items = left_out, excluded
        self.result_.shortened, self.result_.windows = shortened, self.windows_
        found = {**self.calibration_, "AutoPredictor": self.blend_calibration_} if self.calibration_ else {}
        self.result_.calibration = {n: {str(k): v for k, v in f.items()} for n, f in found.items()}
        self.result_.summary = _summary(backtests, names, actual, blended, scales, point, levels)
        timings["total"] = round(time.perf_counter() - began_fit, 3)
        return self

    def _backtest_candidates(self, data: ForecastData, types, deadline: float | None, timings: dict):
        """Backtest each candidate that fits the history and the time left; (backtests, eligible series
        per candidate, errors, left out, excluded series counts, neural candidates given fewer epochs)."""
        backtests, errors, left_out, excluded, shortened = {}, {}, {}, {}, {}
        eligible: dict[str, np.ndarray] = {}
        finals_ahead = 0.0  # seconds the accepted candidates' final fits are expected to take
        train_end = window_starts(data.end, data.horizon, self.windows_, self.offset)[0]
        order = self._planned_order()
        for position, name in enumerate(order):
            model, stop_at = self.candidate(name), None
            mask = self._eligible(model, data, train_end)
            if not mask.any():
                left_out[name] = (
                    f"no series is long enough: a neural model needs a horizon of at most "
                    f"{NEURAL_MAX_HORIZON} and a third of the history"
                )
                continue
            if not mask.all():
                excluded[name] = int((~mask).sum())
            if deadline is not None:
                try:
                    estimate, per_epoch = self._estimate(model, data)
                except Exception as exc:  # a probe that fails: the backtest would too
                    errors[name] = f"{type(exc).__name__}: {exc}"
                    continue
                timings[f"estimate {name}"] = round(estimate, 3)
                left = deadline - time.perf_counter()
                # The backtest fits once per window, then the final fit; a model that rolls forward
                # trains once and forecasts each further window (``extra``: the design and forecast).
                fits = 1 + (1 if model.rolls_forward else self.windows_)
                predicting = estimate - per_epoch * model.epochs if per_epoch else estimate
                extra = (self.windows_ - 1) * predicting if model.rolls_forward else 0.0
                # A neural candidate shares the time left with those still to come (one taking it all
                # left none for the next); one whose share holds fewer than MIN_EPOCHS is left out.
                sharing = 1 + sum(hasattr(self.candidate(n), "epochs") for n in order[position + 1 :])
                share = (left / SAFETY - finals_ahead) / sharing - extra
                if per_epoch and fits * estimate > share:  # fewer epochs, if enough fit
                    epochs = int((share / fits - predicting) / per_epoch)
                    if epochs >= MIN_EPOCHS:
                        shortened[name] = f"epochs {model.epochs} -> {epochs}: what the time limit holds"
                        estimate -= per_epoch * (model.epochs - epochs)
                        model.epochs = self.epochs_[name] = epochs
                if SAFETY * (fits * estimate + extra + finals_ahead) > left:
                    left_out[name] = (
                        f"time: its backtest and final fit need about {fits * estimate + extra:.0f} s, "
                        f"{max(left - finals_ahead, 0):.0f} s of the {self.time_limit:g} s budget were left"
                    )
                    continue
                if per_epoch:  # its training stops at the end of its share, however fast the machine is then
                    stop_at = time.perf_counter() + max(share / fits, 0.0)
            began = time.perf_counter()
            try:
                with training_deadline(stop_at):
                    backtests[name] = backtest(model, data, self.windows_, self.offset, types, refit=False)
                eligible[name] = mask
            except Exception as exc:  # one algorithm failing on this data must not sink the others
                log.warning("AutoPredictor: backtesting %s failed", name, exc_info=True)
                errors[name] = f"{type(exc).__name__}: {exc}"
            spent = time.perf_counter() - began
            timings[f"backtest {name}"] = round(spent, 3)
            if name in backtests:
                finals_ahead += spent / (1 if model.rolls_forward else self.windows_)
        if not backtests:
            raise RuntimeError(f"AutoPredictor: every candidate failed or was left out: {errors or left_out}")
        return backtests, eligible, errors, left_out, excluded, shortened

    def _servable(self, weights: np.ndarray, allowed: np.ndarray, names: list[str], backtests) -> np.ndarray:
        """Weights restricted to the candidates that can serve each item, normalised per item.

        An item whose chosen blend has no such candidate takes the best candidate overall that can.
        """
        weights = weights * allowed
        orphans = weights.sum(axis=1) == 0
        if orphans.any():
            overall = np.array([backtests[n].summary.get(self.metric, np.nan) for n in names], dtype="float64")
            rank = np.where(allowed[orphans], np.where(np.isnan(overall), 1e300, overall), np.inf)
            weights[np.flatnonzero(orphans), np.argmin(rank, axis=1)] = 1.0
        total = weights.sum(axis=1, keepdims=True)
        return np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)

    def _fit_chosen(
        self, data: ForecastData, names: list[str], timings: dict, deadline: float | None, later: int = 0
    ) -> None:
        """Fit each candidate some item uses on the full data (local models only on those items); under
        a time limit the networks, fitted last, share what is left of it with ``later`` networks still
        to fit (one epoch each at least)."""
        self.models_, self.model_ids_ = {}, {}
        used = [c for c in range(len(names)) if (self.weights_[:, c] > 0).any()]
        networks = [c for c in used if hasattr(self.candidate(names[c]), "epochs")] if deadline is not None else []
        for c in [c for c in used if c not in networks] + networks:
            name, ids = names[c], np.flatnonzero(self.weights_[:, c] > 0)
            began = time.perf_counter()
            model = self.candidate(name)
            stop_at = None
            if c in networks:
                stop_at = began + max(deadline - began, 0.0) / (len(networks[networks.index(c) :]) + later)
            if _is_global(model) or len(ids) == data.n_series:
                with training_deadline(stop_at):
                    self.models_[name], self.model_ids_[name] = model.fit(data), None
            else:  # a local model is fitted only where it is used
                self.models_[name], self.model_ids_[name] = model.fit(subset(data, ids)), ids
            timings[f"fit {name}"] = round(time.perf_counter() - began, 3)

    def _planned_order(self) -> list[str]:
        """The candidates in the order they run: as given, or cheapest first under a time limit."""
        if self.time_limit is None:
            return list(self.candidates_)
        rank = {name: i for i, name in enumerate(COST_ORDER)}
        return sorted(self.candidates_, key=lambda n: rank.get(n, len(COST_ORDER)))

    @staticmethod
    def _eligible(model: ForecastAlgorithm, data: ForecastData, train_end: int) -> np.ndarray:
        """Series a candidate may serve: all, but for a neural model only those with a history (as the
        oldest backtest window sees it) of at least three horizons, and a horizon of at most 500."""
        if not _is_global(model):
            return np.ones(data.n_series, dtype=bool)
        history = np.maximum(train_end - data.starts, 0)
        return (history >= 3 * data.horizon) & (data.horizon <= NEURAL_MAX_HORIZON)

    def _estimate(self, model: ForecastAlgorithm, data: ForecastData) -> tuple[float, float | None]:
        """Seconds one fit and forecast of ``model`` on all of ``data`` should take, from a probe, and
        for a model trained in epochs the seconds of one (None for the others)."""
        jobs = (os.cpu_count() or 1) if self.n_jobs in (-1, None) else max(1, int(self.n_jobs))
        if _is_global(model):  # a global model's cost is its epochs, not its series
            if not hasattr(model, "epochs"):
                return _timed_fit(model.clone(), data), None
            # A fit of one series and one batch pays what only the first fit does (importing torch:
            # about 3 s); then fits of one and of two epochs: their difference is an epoch, the rest
            # (the design, the forecast) is paid once. One probe alone counted that once-paid part in
            # every epoch (electricity: 506 s estimated for a fit that took 18 s with 16 epochs).
            one, two, warm = model.clone(), model.clone(), model.clone()
            one.epochs, two.epochs, warm.epochs = 1, 2, 1
            if hasattr(warm, "num_batches_per_epoch"):
                warm.num_batches_per_epoch = 1
            _timed_fit(warm, subset(data, self.active_[:1]))
            once, twice = _timed_fit(one, data), _timed_fit(two, data)
            per_epoch = max(twice - once, 0.1 * once)
            return once - per_epoch + per_epoch * model.epochs, per_epoch
        n = data.n_series
        size = min(n, max(8, math.ceil(0.01 * n)))
        ids = np.unique(np.linspace(0, n - 1, size).round().astype(int))
        probe = model.clone()
        probe.n_jobs = 1
        for module in model.worker_imports:  # imports are paid once, not per series
            importlib.import_module(module)
        probe.fit(subset(data, ids[:1])).predict_arrays([0.1, 0.5, 0.9])  # warm-up: lazy imports, caches
        began = time.perf_counter()
        probe.fit(subset(data, ids)).predict_arrays([0.1, 0.5, 0.9])
        per_series = (time.perf_counter() - began) / len(ids)
        return per_series * n / min(jobs, max(1, n // 8)), None

    @staticmethod
    def _cold_start_name(data: ForecastData, names: list[str]) -> str | None:
        """The first candidate that forecasts items without history; None when there are no such items
        (ITEM_METADATA items missing from the target) or no such candidate."""
        meta = data.item_metadata
        key = next((k for k in data.series_keys if meta is not None and k in meta.columns), None)
        if key is None or meta[key].astype(str).isin(data.keys[key].astype(str)).all():
            return None
        return next((n for n in names if hasattr(get_algorithm(n), "predict_cold_start")), None)

    def _cold_start_model(self, data: ForecastData, name: str | None, timings: dict) -> str | None:
        """``name`` (``_cold_start_name``), fitted if no item chose it."""
        if name is not None and name not in self.models_:
            began = time.perf_counter()
            self.models_[name], self.model_ids_[name] = self.candidate(name).fit(data), None
            timings[f"fit {name}"] = round(time.perf_counter() - began, 3)
        return name

    def _score(self, actual, forecast, scales, point, levels) -> np.ndarray:
        """Each item's metric, averaged over the windows that scored it (NaN when none did)."""
        mean, quant = forecast
        per_window = []
        for w in range(actual.shape[1]):
            yhat = mean[:, w] if point == "mean" else quant[:, w, :, levels.index(0.5)]
            by_level = {tau: quant[:, w, :, j] for j, tau in enumerate(levels)}
            per_window.append(metrics.item_metrics(actual[:, w], yhat, by_level, scales[:, w])[self.metric])
        return _nanmean(np.column_stack(per_window), axis=1)

    def _choose(self, scores, actual, forecasts, scales, point, levels, names, backtests):
        """Per item: weights over the candidates (items, candidates), and the chosen blend's score."""
        n, k = scores.shape
        ranked = np.argsort(np.where(np.isnan(scores), np.inf, scores), axis=1, kind="stable")
        best_weights, best_scores = None, np.full(n, np.inf)
        first = min(self.top_k, k) if self.selection == "blend" else 1
        for top in range(first, min(self.top_k, k) + 1):
            weights = _inverse_error_weights(scores, ranked, top)
            score = self._score(actual, _blend(weights, forecasts), scales, point, levels)
            better = np.where(np.isnan(score), False, score < best_scores - 1e-12)
            if best_weights is None:
                best_weights = weights.copy()
            best_weights[better] = weights[better]
            best_scores[better] = score[better]
        unscored = ~np.isfinite(best_scores) | (best_weights.sum(axis=1) == 0)
        pooled = self._pooled_weights(scores)
        if pooled is None:  # no candidate has a score: the best overall, as the backtests summarise them
            overall = [backtests[name].summary.get(self.metric, np.nan) for name in names]
            pooled = np.eye(k)[int(np.argmin(np.where(np.isnan(overall), np.inf, overall)))]
        best_weights[unscored] = pooled
        if self.item_share < 1:  # partial pooling: part of each item's weights from the data set's
            mixed = self.item_share * best_weights + (1 - self.item_share) * pooled
            best_weights[~unscored] = mixed[~unscored]
            best_scores = self._score(actual, _blend(best_weights, forecasts), scales, point, levels)
        best_scores[unscored] = np.nan
        return best_weights, best_scores

    def _pooled_weights(self, scores: np.ndarray) -> np.ndarray | None:
        """The data set's blend: the ``top_k`` candidates by their mean item score, weighted by its inverse."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a candidate no item has a score for
            overall = np.nanmean(scores, axis=0)
        if not np.isfinite(overall).any():
            return None
        ranked = np.argsort(np.where(np.isnan(overall), np.inf, overall), kind="stable")
        return _inverse_error_weights(overall[None], ranked[None], self.top_k)[0]

    def _result(self, data, names, backtests, errors, timings, scores, blend_scores, weights):
        keys = data.keys.reset_index(drop=True)
        item_scores = keys.assign(**{name: scores[:, c] for c, name in enumerate(names)}, AutoPredictor=blend_scores)
        labels = np.array(["+".join(n for n, w in zip(names, row, strict=True) if w > 0) for row in weights])
        choices = keys.assign(algorithms=labels, **{f"weight_{n}": weights[:, c] for c, n in enumerate(names)})
        return AutoPredictorResult(
            metric=self.metric,
            candidates=names,
            backtests=backtests,
            item_scores=item_scores,
            choices=choices,
            summary=pd.DataFrame(),
            errors=errors,
            timings=timings,
        )

    # -- forecasting -----------------------------------------------------------------------

    def predict_arrays(self, quantiles: Sequence[float | str] = DEFAULT_QUANTILES):
        if not hasattr(self, "models_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(data) first")
        types = parse_types(quantiles)
        levels = sorted(t for t in types if t != "mean")
        calibrate = bool(self.calibration_) and bool(levels)
        inner = sorted({*levels, 0.5}) if calibrate else levels  # the median anchors the calibration
        inner_types = [*inner, "mean"]
        n, h = self.data_.n_series, self.data_.horizon
        forecasts = []
        for name in self.candidate_names_:
            mean, quant = np.full((n, 1, h), np.nan), np.full((n, 1, h, len(inner)), np.nan)
            if name in self.models_:
                ids, m, q, _ = self.models_[name].predict_arrays(inner_types)
                if self.model_ids_[name] is not None:
                    ids = self.model_ids_[name][ids]
                if calibrate and name in self.calibration_:
                    q = calibration.apply(q[:, None], inner, self.calibration_[name])[:, 0]
                mean[ids, 0], quant[ids, 0] = m, q
            forecasts.append((mean, quant))
        mean, quant = _blend(self.weights_, forecasts)
        if calibrate and getattr(self, "blend_calibration_", None):
            quant = calibration.apply(quant, inner, self.blend_calibration_)
        quant = quant[..., [inner.index(t) for t in levels]]
        ids = self.active_
        quant = np.sort(quant[ids, 0], axis=2)
        return ids, mean[ids, 0], quant, types

    def with_data(self, data: ForecastData) -> AutoPredictor:
        """The fitted blend forecasting from ``data`` (other future related values), each candidate too."""
        other = super().with_data(data)
        other.models_ = {
            name: model.with_data(data if self.model_ids_[name] is None else subset(data, self.model_ids_[name]))
            for name, model in self.models_.items()
        }
        return other

    def predict(self, quantiles: Sequence[float | str] = DEFAULT_QUANTILES) -> pd.DataFrame:
        """The blended forecasts; cold-start items get those of a candidate that makes them from their
        metadata (DeepAR+, CNN-QR), else forecasts borrowed from the items most like them (cold_start.py)."""
        from pipelines.forecast.cold_start import borrowed, cold_start_items
        from pipelines.forecast.global_model import append_cold_start

        frame = super().predict(quantiles)
        key, cold = cold_start_items(self.data_)
        if not len(cold):
            return frame
        if self.cold_start_model_ is not None:
            made = self.models_[self.cold_start_model_].predict_cold_start(quantiles)
        else:
            made = borrowed(self.data_, frame, key, cold)
        return append_cold_start(frame, made, self.data_.series_keys)


def _timed_fit(model: ForecastAlgorithm, data: ForecastData) -> float:
    """Seconds ``model`` takes to fit ``data`` and forecast it."""
    began = time.perf_counter()
    model.fit(data).predict_arrays([0.1, 0.5, 0.9])
    return time.perf_counter() - began


def selection_windows(data: ForecastData, offset: int | None = None) -> int:
    """The backtest windows the choices are made on when none are given: as many (1 to 5) as keep
    the windows together within ``SELECTION_SHARE`` of the median series' history, so one window on
    short histories (M3's, a year of daily sales) and five on long ones (two years of hourly data)."""
    lengths = data.lengths[data.lengths > 0]
    if not len(lengths):
        return 1
    step = max(data.horizon, offset or data.horizon)
    return int(np.clip(SELECTION_SHARE * float(np.median(lengths)) // step, 1, MAX_WINDOWS))


def _is_global(model: ForecastAlgorithm) -> bool:
    """A model that learns across series (DeepAR+) rather than one model per series."""
    return type(model).predict_arrays is not ForecastAlgorithm.predict_arrays


def subset(data: ForecastData, ids: np.ndarray) -> ForecastData:
    """The series ``ids`` of ``data`` alone (their values copied), same grid, end and related features."""
    ids = np.asarray(ids, dtype="int64")
    pieces = [np.arange(data.offsets[i], data.offsets[i + 1]) for i in ids]
    take = np.concatenate(pieces) if pieces else np.empty(0, dtype="int64")
    related = data.related
    if related is not None:
        related = dataclasses.replace(related, index=related.index[ids])
    return dataclasses.replace(
        data,
        keys=data.keys.iloc[ids].reset_index(drop=True),
        values=data.values[take],
        observed=data.observed[take],
        starts=data.starts[ids],
        related=related,
    )


def _inverse_error_weights(scores: np.ndarray, ranked: np.ndarray, top: int) -> np.ndarray:
    """Per row of ``scores`` (rows, candidates): the ``top`` first candidates of ``ranked`` weighted by
    their inverse score and normalised (candidates without a score get none; rows without any, zeros)."""
    weights = np.zeros(scores.shape)
    chosen = ranked[:, :top]
    picked = np.take_along_axis(scores, chosen, axis=1)
    inverse = 1.0 / np.maximum(picked, 1e-12)
    inverse[np.isnan(picked)] = 0.0
    np.put_along_axis(weights, chosen, inverse, axis=1)
    total = weights.sum(axis=1, keepdims=True)
    return np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)


def _window_arrays(data: ForecastData, backtests: list[BacktestResult], types, levels, windows: int):
    """Actuals (items, windows, h) and each candidate's (mean, quantiles) on the same grid, NaN where absent."""
    n, h = data.n_series, data.horizon
    lookup = pd.MultiIndex.from_frame(data.keys.astype(str))
    actual = np.full((n, windows, h), np.nan)
    forecasts = []
    for result in backtests:
        export = result.export
        rows = lookup.get_indexer(pd.MultiIndex.from_frame(export[data.series_keys].astype(str)))
        window = export["backtest_window"].to_numpy() - 1
        step = np.arange(len(export)) % h  # each window lists its items h rows apiece, in order
        actual[rows, window, step] = export[data.target].to_numpy(dtype="float64")
        mean = np.full((n, windows, h), np.nan)
        quant = np.full((n, windows, h, len(levels)), np.nan)
        mean[rows, window, step] = export["mean"].to_numpy(dtype="float64")
        for j, tau in enumerate(levels):
            quant[rows, window, step, j] = export[column_name(tau)].to_numpy(dtype="float64")
        forecasts.append((mean, quant))
    return actual, forecasts


def _scales(data: ForecastData, starts: list[int]) -> np.ndarray:
    """MASE's scale per item and window: the in-sample seasonal-naive error before the window."""
    scales = np.full((data.n_series, len(starts)), np.nan)
    for w, start in enumerate(starts):
        train = data.until(start)
        for i in np.flatnonzero(train.lengths > 1):
            values = np.where(train.observed_mask(i), train.series(i), np.nan)
            scales[i, w] = metrics.seasonal_error(values, train.season_length)
    return scales


def _blend(weights: np.ndarray, forecasts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of the candidates' forecasts per item; a candidate without a forecast gives its
    weight to the others; NaN where no candidate with weight has one."""
    out = []
    for part in (0, 1):
        stack = np.stack([f[part] for f in forecasts])  # (candidates, items, ...)
        w = weights.T.reshape(weights.shape[1], weights.shape[0], *([1] * (stack.ndim - 2)))
        have = np.isfinite(stack)
        w = np.where(have, w, 0.0)
        total = w.sum(axis=0)
        combined = (np.where(have, stack, 0.0) * w).sum(axis=0)
        out.append(np.divide(combined, total, out=np.full(combined.shape, np.nan), where=total > 0))
    return out[0], out[1]


def _summary(backtests, names, actual, blended, scales, point, levels) -> pd.DataFrame:
    """Backtest metrics per candidate (as ``backtest`` reported them) and for the AutoPredictor's blends."""
    rows = [{"algorithm": name, **_metric_values(backtests[name].summary)} for name in names]
    mean, quant = blended
    windows = []
    for w in range(actual.shape[1]):
        scored = ~np.isnan(actual[:, w]).all(axis=1)
        yhat = mean[:, w] if point == "mean" else quant[:, w, :, levels.index(0.5)]
        by_level = {tau: quant[scored, w, :, j] for j, tau in enumerate(levels)}
        windows.append(metrics.summary_metrics(actual[scored, w], yhat[scored], by_level, scales[scored, w]))
    rows.append({"algorithm": "AutoPredictor", **pd.DataFrame(windows).mean().to_dict()})
    return pd.DataFrame(rows)


def _metric_values(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if isinstance(v, float)}


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: items no window scored
        return np.nanmean(values, axis=axis)
