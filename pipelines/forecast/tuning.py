"""Hyperparameter optimization of forecasting algorithms (Forecast's PerformHPO): spaces and scorer.

Each algorithm declares, by its Forecast name, which hyperparameters are worth searching and in
which ranges: ``register_search_space("DeepAR+", {"num_cells": IntRange(30, 200)})`` is the
hook, and importing this module costs nothing (Optuna loads only when a search runs). A range
may depend on the data: ``HorizonRange(1, 4)`` is one to four forecast horizons (Forecast
searches DeepAR+'s context length from the horizon up), and ``Likelihoods()`` offers the
negative binomial only for non-negative targets.

A trial fits the algorithm with the sampled values and scores it on the backtest
(``backtest.py``) with the chosen metric, window by window, newest window first; the study
itself (seeding, pruning, shared storage) is ``pipelines.tuning``'s, the same as Personalize's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.forecast.backtest import backtest, window_starts
from pipelines.forecast.base import DEFAULT_QUANTILES, ForecastAlgorithm, get_algorithm
from pipelines.forecast.data import ForecastData
from pipelines.tuning import Choice, FloatRange, IntRange, TuningResult, search
from pipelines.tuning.space import SearchSpaces

if TYPE_CHECKING:
    pass

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


def algorithm_key(name: str) -> str:
    """The registry's name of an algorithm, however it is spelled (ARN, other case)."""
    return type(get_algorithm(name)).name


SEARCH_SPACES = SearchSpaces(algorithm_key)
register_search_space = SEARCH_SPACES.register  # (algorithm, space): declare or replace its ranges


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
# Forecast's CNN-QR HPO: context_length, use_related_data, use_item_metadata and epochs.
register_search_space(
    "CNN-QR",
    {
        "context_length": HorizonRange(1, 4),
        "use_related_data": Choice(("ALL", "NONE", "HISTORICAL", "FORWARD_LOOKING")),
        "use_item_metadata": Choice(("ALL", "NONE")),
        "epochs": IntRange(20, 200, log=True),
    },
)
register_search_space(
    "NPTS", {"kernel_type": Choice(("exponential", "uniform")), "exp_kernel_weights": FloatRange(0.01, 10, log=True)}
)
register_search_space("Theta", {"model": Choice(("auto", "STM", "OTM", "DSTM", "DOTM")), "theta": FloatRange(1.0, 4.0)})
register_search_space("ETS", {"damped": Choice((None, True, False))})


class AlgorithmTuning(TuningResult):
    """A search's result, by algorithm."""

    @property
    def algorithm(self) -> str:
        return self.name

    def best_algorithm(self) -> ForecastAlgorithm:
        """A fresh, unfitted estimator with the best hyperparameters: what the predictor trains."""
        return get_algorithm(self.name, **self.best_hyperparameters)


def tune(
    algorithm: str,
    data: ForecastData,
    metric: str = DEFAULT_METRIC,
    search_space: SearchSpace | None = None,
    fixed: Mapping[str, Any] | None = None,
    windows: int = 1,
    offset: int | None = None,
    forecast_types: Sequence[float | str] = DEFAULT_QUANTILES,
    **study: Any,
) -> AlgorithmTuning:
    """Search ``algorithm``'s hyperparameters for the lowest backtest ``metric`` on ``data``.

    ``search_space`` replaces the registered one and ``fixed`` pins hyperparameters outside it
    (``seed`` among them: every trial fits with the same seed, so that trials differ only in
    what is searched). ``study`` holds ``pipelines.tuning.search``'s options: ``n_trials`` (per
    worker, for a shared study) and ``timeout`` seconds, whichever stops it first, ``seed``,
    ``storage``, ``study_name`` and ``pruner``.
    """
    key = algorithm_key(algorithm)
    fixed = dict(fixed or {})
    get_algorithm(key, **fixed)  # unknown algorithm or fixed values fail here, before any trial
    space = _space(key, search_space, data)
    steps = [
        lambda candidate, view=view, at=window_offset, count=count: (
            backtest(candidate, view, count, at, forecast_types).summary
        )
        for view, window_offset, count in _splits(data, windows, offset)
    ]
    return search(
        key,
        space,
        lambda params: get_algorithm(key, **{**fixed, **params}),
        steps,
        metric,
        hyperparameters=lambda best: get_algorithm(key, **fixed, **best).get_params(),
        direction="minimize",  # every Forecast accuracy metric is an error
        result=AlgorithmTuning,
        **study,
    )


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
    space = SEARCH_SPACES.space(key, given, get_algorithm(key).get_params())
    return {name: d.resolve(data) if hasattr(d, "resolve") else d for name, d in space.items()}
