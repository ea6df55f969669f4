"""Hyperparameter optimization (Personalize's performHPO) and AutoML (performAutoML) with Optuna.

Each recipe declares, by its Personalize name, which hyperparameters are worth searching and
in which ranges: ``register_search_space("hrnn", {"hidden_dimension": IntRange(32, 256)})``
at the bottom of the recipe's module is the hook, and importing this module costs nothing
(Optuna loads only when a search runs). A trial trains the recipe with the sampled values on
Personalize's split and scores it with ``evaluation.evaluate``: gains (NDCG, precision, MRR,
coverage, recall) are maximized, losses and errors minimized.

Reproducible by default: a seeded TPE sampler, a fixed evaluation split and an in-memory
study give the same trials, best hyperparameters and scores on every run. A time budget
(``timeout``) trades that for a bound on wall time, and so does a shared study: with an
Optuna storage URL (``sqlite:///hpo.db``, ``postgresql://…``) and a study name, many workers
add trials to one study, and a rerun resumes it. With more than one evaluation seed, a trial
reports its running mean after each split and the pruner stops trials that trail the others.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.personalize.base import RECIPES, Recipe, get_recipe
from pipelines.personalize.data import InteractionData
from pipelines.personalize.evaluation import METRICS, evaluate
from pipelines.search_space import Choice, FloatRange, IntRange, last_reported

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)
DEFAULT_METRIC = "normalized_discounted_cumulative_gain_at_25"
GAIN_WORDS = ("coverage", "reciprocal_rank", "discounted_cumulative_gain", "ndcg", "precision", "recall", "hit")
LOSS_WORDS = ("loss", "error", "rmse", "mae", "mape", "wape", "wql")
Evaluator = Callable[[Recipe, InteractionData, int], Mapping[str, float]]


SearchSpace = Mapping[str, FloatRange | IntRange | Choice]
SEARCH_SPACES: dict[str, dict[str, FloatRange | IntRange | Choice]] = {}


def register_search_space(recipe: str, space: SearchSpace) -> None:
    """Declare the hyperparameters HPO searches for ``recipe`` and their ranges (replaces an earlier one)."""
    SEARCH_SPACES[recipe_key(recipe)] = dict(space)


def recipe_key(name: str) -> str:
    """Personalize's recipe name as the registry knows it ('aws-sims' and ARNs become 'sims')."""
    return name.rsplit("/", 1)[-1].removeprefix("aws-")


# Personalize's documented HPO ranges. SIMS' history percentiles range over [0, 1] there; the
# search keeps the minimum in the shortest tenth and the maximum in the longest, so min <= max.
register_search_space(
    "sims",
    {
        "popularity_discount_factor": FloatRange(0.0, 1.0),
        "min_cointeraction_count": IntRange(0, 10),
        "min_user_history_length_percentile": FloatRange(0.0, 0.1),
        "max_user_history_length_percentile": FloatRange(0.9, 1.0),
    },
)
register_search_space("trending-now", {"lookback_window": Choice(("30min", "1h", "3h", "1D"))})
register_search_space("popularity-count", {})


def metric_direction(metric: str) -> str:
    """'maximize' for gains, 'minimize' for losses and errors; ValueError for a name that says neither."""
    name = metric.lower()
    if any(word in name for word in LOSS_WORDS):
        return "minimize"
    if metric in METRICS or any(word in name for word in GAIN_WORDS):
        return "maximize"
    raise ValueError(f"cannot tell whether {metric!r} is a gain or a loss: pass direction='maximize' or 'minimize'")


@dataclass
class TuningResult:
    """The best hyperparameters and score of one recipe's search, and every trial for inspection."""

    recipe: str
    metric: str
    direction: str
    best_params: dict[str, Any]  # the searched hyperparameters of the best trial
    best_hyperparameters: dict[str, Any]  # everything the recipe takes: defaults, fixed values, best_params
    best_score: float
    best_metrics: dict[str, float]
    trials: list[dict[str, Any]]
    search_space: dict[str, str] = field(default_factory=dict)
    study_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values, for a step's manifest or an MLflow run."""
        return asdict(self)


def tune(
    recipe: str,
    data: InteractionData,
    metric: str = DEFAULT_METRIC,
    n_trials: int | None = 20,
    timeout: float | None = None,
    seed: int = 0,
    search_space: SearchSpace | None = None,
    fixed: Mapping[str, Any] | None = None,
    evaluation_seeds: Sequence[int] = (42,),
    direction: str | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    evaluator: Evaluator | None = None,
) -> TuningResult:
    """Search ``recipe``'s hyperparameters for the best ``metric`` on ``data``; see the module's docstring.

    ``search_space`` replaces the registered one and ``fixed`` pins hyperparameters outside it.
    ``evaluation_seeds`` are the seeds of Personalize's split; a trial's score is the mean over
    them. ``evaluator(recipe, data, seed) -> metrics`` replaces ``evaluate`` (for another
    protocol). Stops after ``n_trials`` (per worker, for a shared study) or ``timeout`` seconds.
    """
    import optuna

    key = recipe_key(recipe)
    get_recipe(key, **dict(fixed or {}))  # unknown recipe or fixed values fail here, before any trial
    space = _space(key, search_space)
    direction = direction or metric_direction(metric)
    evaluator = evaluator or _personalize_metrics
    if n_trials is None and timeout is None:
        raise ValueError("give n_trials or timeout, or the search never ends")
    if not space:  # nothing to search: evaluate the defaults once
        n_trials = 1 if n_trials is None else min(n_trials, 1)
    seeds = list(evaluation_seeds)
    if pruner is None:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5) if len(seeds) > 1 else optuna.pruners.NopPruner()
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
        load_if_exists=storage is not None,
    )
    scored: dict[tuple, Mapping[str, float]] = {}  # TPE may propose the same values twice: evaluate once

    def objective(trial: optuna.Trial) -> float:
        params = {name: dimension.suggest(trial, name) for name, dimension in space.items()}
        hyperparameters = {**dict(fixed or {}), **params}
        candidate = get_recipe(key, **hyperparameters)
        runs = []
        for step, split_seed in enumerate(seeds):
            cache_key = (tuple(sorted(hyperparameters.items())), split_seed)
            if cache_key not in scored:
                scored[cache_key] = dict(evaluator(candidate, data, split_seed))
            runs.append(scored[cache_key])
            if metric not in runs[-1]:
                raise KeyError(f"the evaluation gives no {metric!r}; it gives {sorted(runs[-1])}")
            trial.set_user_attr("metrics", _mean(runs))
            trial.report(_mean(runs)[metric], step)
            if step + 1 < len(seeds) and trial.should_prune():
                raise optuna.TrialPruned()
        return _mean(runs)[metric]

    study.optimize(objective, n_trials=n_trials, timeout=timeout)
    return _result(key, metric, direction, study, space, fixed)


@dataclass
class AutoMLResult:
    """The best candidate recipe on the metric, and every candidate's search for inspection."""

    metric: str
    direction: str
    best_recipe: str
    best: TuningResult
    candidates: dict[str, TuningResult]
    errors: dict[str, str] = field(default_factory=dict)  # candidates whose search failed, and why

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def automl(
    candidates: Sequence[str],
    data: InteractionData,
    metric: str = DEFAULT_METRIC,
    n_trials: int | None = 20,
    timeout: float | None = None,
    seed: int = 0,
    study_name: str | None = None,
    **options: Any,
) -> AutoMLResult:
    """Tune each candidate recipe and pick the best on ``metric`` (ties: the first candidate).

    ``n_trials`` is per candidate; ``timeout`` is the whole budget, shared out evenly among the
    candidates still to run, so one that finishes early leaves its time to the rest. A candidate
    whose search fails is recorded in ``errors`` and the others still compete.
    """
    unknown = [name for name in candidates if recipe_key(name) not in RECIPES]
    if unknown or not candidates:
        raise ValueError(f"AutoML candidates {list(candidates)}: unknown {unknown}; known recipes: {sorted(RECIPES)}")
    direction = options.pop("direction", None) or metric_direction(metric)
    deadline = None if timeout is None else time.monotonic() + timeout
    results: dict[str, TuningResult] = {}
    errors: dict[str, str] = {}
    for k, name in enumerate(candidates):
        budget = None if deadline is None else max(0.0, deadline - time.monotonic()) / (len(candidates) - k)
        name_k = None if study_name is None else f"{study_name}-{recipe_key(name)}"
        try:
            results[name] = tune(
                name, data, metric, n_trials, budget, seed, direction=direction, study_name=name_k, **options
            )
        except Exception as exc:  # one recipe failing (bad data for it, a bug) must not sink the others
            log.warning("AutoML: tuning %s failed", name, exc_info=True)
            errors[name] = f"{type(exc).__name__}: {exc}"
    scored = {name: r for name, r in results.items() if not math.isnan(r.best_score)}
    if not scored:
        raise RuntimeError(f"AutoML: no candidate could be tuned: {errors}")
    sign = 1 if direction == "maximize" else -1
    best_name = max(scored, key=lambda name: sign * scored[name].best_score)  # max keeps the first of equals
    return AutoMLResult(metric, direction, best_name, scored[best_name], results, errors)


def _personalize_metrics(recipe: Recipe, data: InteractionData, seed: int) -> Mapping[str, float]:
    return evaluate(recipe, data, seed=seed)["metrics"]


def _space(key: str, given: SearchSpace | None) -> dict[str, FloatRange | IntRange | Choice]:
    if given is None and key not in SEARCH_SPACES:
        log.warning("recipe %r declares no search space (register_search_space): evaluating its defaults", key)
    space = dict(SEARCH_SPACES.get(key, {}) if given is None else given)
    unknown = sorted(set(space) - set(RECIPES[key].hyperparameter_defaults()))
    if unknown:
        raise ValueError(f"recipe {key!r} has no hyperparameters {unknown} to search")
    return space


def _mean(runs: list[Mapping[str, float]]) -> dict[str, float]:
    return {name: sum(run[name] for run in runs) / len(runs) for name in runs[0]}


def _result(
    key: str, metric: str, direction: str, study: optuna.Study, space: SearchSpace, fixed: Mapping[str, Any] | None
) -> TuningResult:
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
    defaults = RECIPES[key].hyperparameter_defaults()
    best_params = dict(best.params) if best else {}
    return TuningResult(
        recipe=key,
        metric=metric,
        direction=direction,
        best_params=best_params,
        best_hyperparameters={**defaults, **dict(fixed or {}), **best_params},
        best_score=float(best.value) if best else math.nan,
        best_metrics=dict(best.user_attrs.get("metrics", {})) if best else {},
        trials=trials,
        search_space={name: repr(dimension) for name, dimension in space.items()},
        study_name=study.study_name,
    )
