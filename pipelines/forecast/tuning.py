"""Hyperparameter optimization of forecasting algorithms (Forecast's PerformHPO) with Optuna.

Each algorithm declares, by its Forecast name, which hyperparameters are worth searching and in
which ranges: ``register_search_space("DeepAR+", {"num_cells": IntRange(30, 200)})`` is the
hook, and importing this module costs nothing (Optuna loads only when a search runs). A range
may depend on the data: ``HorizonRange(1, 4)`` is one to four forecast horizons (Forecast
searches DeepAR+'s context length from the horizon up), and ``Likelihoods()`` offers the
negative binomial only for non-negative targets.

A trial fits the algorithm with the sampled values and scores it on the backtest
(``backtest.py``) with the chosen metric, window by window, newest window first. After each
window it reports the running mean, so a pruner (the median pruner by default when there are
several windows) stops trials that trail the others before they spend the rest of their windows.

Reproducible by default: a seeded TPE sampler, the algorithm's own fixed seed and an in-memory
study give the same trials and best hyperparameters on every run. A time budget (``timeout``)
trades that for a bound on wall time, and so does a shared study: with an Optuna storage URL
(``sqlite:///hpo.db``, ``postgresql://…``) and a study name, many workers add trials to one
study, and a rerun resumes it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.forecast.backtest import backtest, window_starts
from pipelines.forecast.base import DEFAULT_QUANTILES, ForecastAlgorithm, get_algorithm
from pipelines.forecast.data import ForecastData
from pipelines.search_space import Choice, FloatRange, IntRange, last_reported

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)
DEFAULT_METRIC = "AverageWeightedQuantileLoss"
MAX_CONTEXT_LENGTH = 500  # Forecast's upper bound on DeepAR+'s context_length


@dataclass(frozen=True)
class HorizonRange:
    """Whole periods from ``low`` to ``high`` forecast horizons (at most 500)."""

    low: float
    high: float

    def resolve(self, data: ForecastData) -> IntRange:
        low = max(1, round(self.low * data.horizon))
        return IntRange(low, max(low, min(MAX_CONTEXT_LENGTH, round(self.high * data.horizon))))


@dataclass(frozen=True)
class Likelihoods:
    """DeepAR+'s likelihoods that suit the data: the negative binomial only for non-negative targets."""

    options: tuple = ("student-t", "gaussian", "negative-binomial")

    def resolve(self, data: ForecastData) -> Choice:
        lowest = min((np.nanmin(data.series(i), initial=np.inf) for i in np.flatnonzero(data.lengths)), default=0)
        counts = data.non_negative or lowest >= 0
        return Choice(tuple(o for o in self.options if counts or o != "negative-binomial"))


Dimension = FloatRange | IntRange | Choice | HorizonRange | Likelihoods
SearchSpace = Mapping[str, Dimension]
SEARCH_SPACES: dict[str, dict[str, Dimension]] = {}


def algorithm_key(name: str) -> str:
    """The registry's name of an algorithm, however it is spelled (ARN, other case)."""
    return type(get_algorithm(name)).name


def register_search_space(algorithm: str, space: SearchSpace) -> None:
    """Declare the hyperparameters HPO searches for ``algorithm`` and their ranges (replaces an earlier one)."""
    SEARCH_SPACES[algorithm_key(algorithm)] = dict(space)


# Forecast's DeepAR+ HPO searches context_length from the horizon up, learning_rate, num_cells
# and num_layers; the epochs' range is narrower than Forecast's 1-1000 because a CPU pays for them.
register_search_space(
    "DeepAR+",
    {
        "context_length": HorizonRange(1, 4),
        "epochs": IntRange(20, 200, log=True),
        "learning_rate": FloatRange(1e-4, 1e-1, log=True),
        "num_layers": IntRange(1, 3),
        "num_cells": IntRange(30, 200, log=True),
        "likelihood": Likelihoods(),
    },
)
register_search_space(
    "NPTS", {"kernel_type": Choice(("exponential", "uniform")), "exp_kernel_weights": FloatRange(0.01, 10, log=True)}
)
register_search_space("Theta", {"theta": FloatRange(1.0, 4.0)})
register_search_space("ETS", {"damped": Choice((None, True, False))})


@dataclass
class TuningResult:
    """The best hyperparameters and score of one algorithm's search, and every trial for inspection."""

    algorithm: str
    metric: str
    best_params: dict[str, Any]  # the searched hyperparameters of the best trial
    best_hyperparameters: dict[str, Any]  # everything the algorithm takes: defaults, fixed values, best_params
    best_score: float
    best_metrics: dict[str, float]
    trials: list[dict[str, Any]]
    search_space: dict[str, str] = field(default_factory=dict)
    study_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, for a step's manifest or an MLflow run."""
        return asdict(self)

    def best_algorithm(self) -> ForecastAlgorithm:
        """A fresh, unfitted estimator with the best hyperparameters: what the predictor trains."""
        return get_algorithm(self.algorithm, **self.best_hyperparameters)


def tune(
    algorithm: str,
    data: ForecastData,
    metric: str = DEFAULT_METRIC,
    n_trials: int | None = 20,
    timeout: float | None = None,
    seed: int = 0,
    search_space: SearchSpace | None = None,
    fixed: Mapping[str, Any] | None = None,
    windows: int = 1,
    offset: int | None = None,
    forecast_types: Sequence[float | str] = DEFAULT_QUANTILES,
    storage: str | None = None,
    study_name: str | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> TuningResult:
    """Search ``algorithm``'s hyperparameters for the lowest backtest ``metric`` on ``data``.

    ``search_space`` replaces the registered one and ``fixed`` pins hyperparameters outside it
    (``seed`` among them: every trial fits with the same seed, so that trials differ only in
    what is searched). Stops after ``n_trials`` (per worker, for a shared study) or ``timeout``
    seconds, whichever comes first.
    """
    import optuna

    key = algorithm_key(algorithm)
    fixed = dict(fixed or {})
    get_algorithm(key, **fixed)  # unknown algorithm or fixed values fail here, before any trial
    space = _space(key, search_space, data)
    if n_trials is None and timeout is None:
        raise ValueError("give n_trials or timeout, or the search never ends")
    if not space:  # nothing to search: evaluate the defaults once
        n_trials = 1 if n_trials is None else min(n_trials, 1)
    splits = _splits(data, windows, offset)
    if pruner is None:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5) if len(splits) > 1 else optuna.pruners.NopPruner()
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="minimize",  # every Forecast accuracy metric is an error
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
        load_if_exists=storage is not None,
    )
    scored: dict[tuple, dict[str, float]] = {}  # TPE may propose the same values twice: evaluate once

    def objective(trial: optuna.Trial) -> float:
        params = {name: dimension.suggest(trial, name) for name, dimension in space.items()}
        candidate = get_algorithm(key, **{**fixed, **params})
        runs = []
        for step, (view, window_offset, count) in enumerate(splits):
            cache_key = (tuple(sorted(params.items(), key=lambda kv: kv[0])), step)
            if cache_key not in scored:
                summary = backtest(candidate, view, count, window_offset, forecast_types).summary
                scored[cache_key] = {k: v for k, v in summary.items() if isinstance(v, float)}
            runs.append(scored[cache_key])
            if metric not in runs[-1]:
                raise KeyError(f"the backtest gives no {metric!r}; it gives {sorted(runs[-1])}")
            trial.set_user_attr("metrics", _mean(runs))
            trial.report(_mean(runs)[metric], step)
            if step + 1 < len(splits) and trial.should_prune():
                raise optuna.TrialPruned()
        return _mean(runs)[metric]

    study.optimize(objective, n_trials=n_trials, timeout=timeout)
    return _result(key, metric, study, space, fixed)


def _splits(data: ForecastData, windows: int, offset: int | None) -> list[tuple[ForecastData, int | None, int]]:
    """The backtest, one window at a time, newest first: (data to backtest, offset, windows) per step.

    Window k of the full backtest is the last window of the data cut ``(k - 1) * offset`` periods
    earlier; where such a cut is too short for Forecast's rules, the backtest runs whole (one step).
    """
    step = data.horizon if offset is None else offset
    starts = window_starts(data.end, data.horizon, windows, offset)  # refuses bad settings up front
    cuts = [start + step for start in reversed(starts)]
    try:
        for cut in cuts:
            window_starts(cut, data.horizon, 1, offset)
    except ValueError:
        return [(data, offset, windows)]
    return [(data.until(cut) if cut < data.end else data, offset, 1) for cut in cuts]


def _space(key: str, given: SearchSpace | None, data: ForecastData) -> dict[str, FloatRange | IntRange | Choice]:
    if given is None and key not in SEARCH_SPACES:
        log.warning("algorithm %r declares no search space (register_search_space): evaluating its defaults", key)
    space = dict(SEARCH_SPACES.get(key, {}) if given is None else given)
    unknown = sorted(set(space) - set(get_algorithm(key).get_params()))
    if unknown:
        raise ValueError(f"algorithm {key!r} has no hyperparameters {unknown} to search")
    return {name: d.resolve(data) if hasattr(d, "resolve") else d for name, d in space.items()}


def _mean(runs: list[Mapping[str, float]]) -> dict[str, float]:
    """Each metric's mean over the windows run so far, leaving out windows where it is undefined."""
    out = {}
    for name in runs[0]:
        values = [run[name] for run in runs if not math.isnan(run[name])]
        out[name] = sum(values) / len(values) if values else math.nan
    return out


def _result(key: str, metric: str, study: optuna.Study, space: SearchSpace, fixed: Mapping[str, Any]) -> TuningResult:
    import optuna

    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "params": dict(t.params),
            "score": t.value if t.value is not None else last_reported(t),
            "metrics": t.user_attrs.get("metrics", {}),
            "seconds": t.duration.total_seconds() if t.duration else None,
        }
        for t in study.trials
    ]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial if complete else None
    best_params = dict(best.params) if best else {}
    return TuningResult(
        algorithm=key,
        metric=metric,
        best_params=best_params,
        best_hyperparameters=get_algorithm(key, **fixed, **best_params).get_params(),
        best_score=float(best.value) if best else math.nan,
        best_metrics=dict(best.user_attrs.get("metrics", {})) if best else {},
        trials=trials,
        search_space={name: repr(dimension) for name, dimension in space.items()},
        study_name=study.study_name,
    )
