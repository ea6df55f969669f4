"""Hyperparameter optimization of recipes (Personalize's performHPO): spaces and scorer.

Each recipe declares, by its Personalize name, which hyperparameters are worth searching and
in which ranges: ``register_search_space("hrnn", {"hidden_dimension": IntRange(32, 256)})``
at the bottom of the recipe's module is the hook, and importing this module costs nothing
(Optuna loads only when a search runs). A trial trains the recipe with the sampled values on
Personalize's split and scores it with ``evaluation.evaluate``, split seed by split seed: gains
(NDCG, precision, MRR, coverage, recall) are maximized, losses and errors minimized
(``pipelines.tuning.metric_direction``). The study itself (seeding, pruning, shared storage) is
``pipelines.tuning``'s, the same as Forecast's. AutoML across recipes is the DAG's: one tuned
candidate per mapped ``hpo_train`` task, the best chosen by ``backtest``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipelines.personalize.base import RECIPES, Recipe, get_recipe
from pipelines.personalize.data import InteractionData
from pipelines.personalize.evaluation import evaluate
from pipelines.tuning import Choice, FloatRange, IntRange, TuningResult, search
from pipelines.tuning.space import SearchSpaces

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)
DEFAULT_METRIC = "normalized_discounted_cumulative_gain_at_25"
Evaluator = Callable[[Recipe, InteractionData, int], Mapping[str, float]]
SearchSpace = Mapping[str, FloatRange | IntRange | Choice]


def recipe_key(name: str) -> str:
    """Personalize's recipe name as the registry knows it ('aws-sims' and ARNs become 'sims')."""
    return name.rsplit("/", 1)[-1].removeprefix("aws-")


SEARCH_SPACES = SearchSpaces(recipe_key)
register_search_space = SEARCH_SPACES.register  # (recipe, space): declare or replace its ranges


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


class RecipeTuning(TuningResult):
    """A search's result, by recipe."""

    @property
    def recipe(self) -> str:
        return self.name


def tune(
    recipe: str,
    data: InteractionData,
    metric: str = DEFAULT_METRIC,
    search_space: SearchSpace | None = None,
    fixed: Mapping[str, Any] | None = None,
    evaluation_seeds: Sequence[int] = (42,),
    direction: str | None = None,
    evaluator: Evaluator | None = None,
    **study: Any,
) -> RecipeTuning:
    """Search ``recipe``'s hyperparameters for the best ``metric`` on ``data``; see the module's docstring.

    ``search_space`` replaces the registered one and ``fixed`` pins hyperparameters outside it.
    ``evaluation_seeds`` are the seeds of Personalize's split; a trial's score is the mean over
    them. ``evaluator(recipe, data, seed) -> metrics`` replaces ``evaluate`` (for another
    protocol). ``study`` holds ``pipelines.tuning.search``'s options (``n_trials``, ``timeout``,
    ``seed``, ``storage``, ``study_name``, ``pruner``).
    """
    key = recipe_key(recipe)
    fixed = dict(fixed or {})
    get_recipe(key, **fixed)  # unknown recipe or fixed values fail here, before any trial
    space = SEARCH_SPACES.space(key, search_space, RECIPES[key].hyperparameter_defaults())
    evaluator = evaluator or _personalize_metrics
    return search(
        key,
        space,
        lambda params: get_recipe(key, **{**fixed, **params}),
        [lambda candidate, split=split: evaluator(candidate, data, split) for split in evaluation_seeds],
        metric,
        hyperparameters=lambda best: {**RECIPES[key].hyperparameter_defaults(), **fixed, **best},
        direction=direction,
        result=RecipeTuning,
        **study,
    )


def _personalize_metrics(recipe: Recipe, data: InteractionData, seed: int) -> Mapping[str, float]:
    return evaluate(recipe, data, seed=seed)["metrics"]
