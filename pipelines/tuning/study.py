"""The Optuna study both families' searches run, and the one rule for which way a metric points.

A search samples a candidate's hyperparameters from its space, builds the candidate and scores it
step by step (``steps``: one scorer per backtest window or evaluation split, newest or first
first). After each step it reports the running mean of the metric, so a pruner (the median pruner
by default when there are several steps) stops trials that trail the others before they spend
the rest of their steps. Values a sampler proposes twice are scored once.

Reproducible by default: a seeded TPE sampler, the candidate's own fixed seed and an in-memory
study give the same trials and best hyperparameters on every run. A time budget (``timeout``)
trades that for a bound on wall time, and so does a shared study: with an Optuna storage URL
(``sqlite:///hpo.db``, ``postgresql://…``) and a study name, many workers add trials to one
study, and a rerun resumes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.tuning.space import last_reported

if TYPE_CHECKING:
    import optuna

# Gains (Personalize's ranking metrics) are maximized; losses and errors (Forecast's accuracy
# metrics) minimized. Losses are looked for first: "weighted_quantile_loss" is no gain.
LOSS_WORDS = ("loss", "error", "rmse", "mae", "mape", "wape", "wql", "mase")
GAIN_WORDS = ("coverage", "reciprocal_rank", "discounted_cumulative_gain", "ndcg", "precision", "recall", "hit")
Scorer = Callable[[Any], Mapping[str, float]]


def metric_direction(metric: str) -> str:
    """'maximize' for gains, 'minimize' for losses and errors; ValueError for a name that says neither."""
    name = metric.lower()
    if any(word in name for word in LOSS_WORDS):
        return "minimize"
    if any(word in name for word in GAIN_WORDS):
        return "maximize"
    raise ValueError(f"cannot tell whether {metric!r} is a gain or a loss: pass direction='maximize' or 'minimize'")


def higher_is_better(metric: str) -> bool:
    return metric_direction(metric) == "maximize"


@dataclass
class TuningResult:
    """The best hyperparameters and score of one candidate's search, and every trial for inspection."""

    name: str  # the candidate, by its registry name
    metric: str
    direction: str
    best_params: dict[str, Any]  # the searched hyperparameters of the best trial
    best_hyperparameters: dict[str, Any]  # everything the candidate takes: defaults, fixed values, best_params
    best_score: float
    best_metrics: dict[str, float]
    trials: list[dict[str, Any]]
    search_space: dict[str, str] = field(default_factory=dict)
    study_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, for a step's manifest or an MLflow run."""
        return asdict(self)


def search(
    name: str,
    space: Mapping[str, Any],
    build: Callable[[dict[str, Any]], Any],
    steps: Sequence[Scorer],
    metric: str,
    *,
    hyperparameters: Callable[[dict[str, Any]], dict[str, Any]],
    direction: str | None = None,
    n_trials: int | None = 20,
    timeout: float | None = None,
    seed: int = 0,
    storage: str | None = None,
    study_name: str | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    result: type[TuningResult] = TuningResult,
) -> TuningResult:
    """Search ``space`` for the best ``metric``: ``build(params)`` makes a candidate, ``steps`` score it.

    ``hyperparameters(best_params)`` gives everything the best candidate takes, for the result.
    With an empty space the defaults are scored once. Stops after ``n_trials`` (per worker, for a
    shared study) or ``timeout`` seconds, whichever comes first.
    """
    import optuna

    if n_trials is None and timeout is None:
        raise ValueError("give n_trials or timeout, or the search never ends")
    if not space:  # nothing to search: evaluate the defaults once
        n_trials = 1 if n_trials is None else min(n_trials, 1)
    direction = direction or metric_direction(metric)
    if pruner is None:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5) if len(steps) > 1 else optuna.pruners.NopPruner()
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
        load_if_exists=storage is not None,
    )
    scored: dict[tuple, dict[str, float]] = {}  # TPE may propose the same values twice: score once

    def objective(trial: optuna.Trial) -> float:
        params = {key: dimension.suggest(trial, key) for key, dimension in space.items()}
        candidate = build(params)
        runs = []
        for step, score in enumerate(steps):
            cache_key = (tuple(sorted(params.items(), key=lambda kv: kv[0])), step)
            if cache_key not in scored:
                scored[cache_key] = {k: v for k, v in score(candidate).items() if isinstance(v, int | float)}
            runs.append(scored[cache_key])
            if metric not in runs[-1]:
                raise KeyError(f"the scoring gives no {metric!r}; it gives {sorted(runs[-1])}")
            trial.set_user_attr("metrics", mean_metrics(runs))
            trial.report(mean_metrics(runs)[metric], step)
            if step + 1 < len(steps) and trial.should_prune():
                raise optuna.TrialPruned()
        return mean_metrics(runs)[metric]

    study.optimize(objective, n_trials=n_trials, timeout=timeout)
    return _result(result, name, metric, direction, study, space, hyperparameters)


def _result(result, name, metric, direction, study, space, hyperparameters) -> TuningResult:
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
    return result(
        name=name,
        metric=metric,
        direction=direction,
        best_params=best_params,
        best_hyperparameters=hyperparameters(best_params),
        best_score=float(best.value) if best else math.nan,
        best_metrics=dict(best.user_attrs.get("metrics", {})) if best else {},
        trials=trials,
        search_space={key: repr(dimension) for key, dimension in space.items()},
        study_name=study.study_name,
    )


def mean_metrics(runs: list[Mapping[str, float]]) -> dict[str, float]:
    """Each metric's mean over the steps run so far, leaving out steps where it is undefined."""
    out = {}
    for key in runs[0]:
        values = [run[key] for run in runs if not math.isnan(run[key])]
        out[key] = sum(values) / len(values) if values else math.nan
    return out
