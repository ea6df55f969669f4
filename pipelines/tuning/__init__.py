"""Hyperparameter search for both engines: one Optuna core, each family's spaces and scorer beside it.

``space`` holds the ranges a search samples (``FloatRange``, ``IntRange``, ``Choice``); ``study``
runs a seeded study over a candidate's space, scoring each trial step by step (backtest windows
for Forecast, evaluation splits for Personalize) so that a pruner can stop trials that trail, and
says once which way every metric points (``metric_direction``). ``pipelines.forecast.tuning`` and
``pipelines.personalize.tuning`` declare their spaces and how a trial is scored.

Importing this package costs nothing: Optuna loads only when a search runs.
"""

from pipelines.tuning.space import Choice, FloatRange, IntRange
from pipelines.tuning.study import TuningResult, higher_is_better, metric_direction, search

__all__ = ["Choice", "FloatRange", "IntRange", "TuningResult", "higher_is_better", "metric_direction", "search"]
