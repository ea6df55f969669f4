"""The Personalize DAG's training steps: hpo_train, backtest, recommend, publish.

Personalize's recipe workflow after the import: create a solution version for each candidate
recipe (tuned by Optuna when the run asks for trials) and compute its offline metrics the way
Personalize does (90 % of users train; the rest are split by time); pick the best on the
group's metric; train it on every interaction and write batch recommendations for every user,
related items for every item and the user segments the group asks for; publish them with the
champion pointer the serving API reads.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from pipelines import storage
from pipelines.settings import PersonalizeGroup
from pipelines.training import runs as wf

log = logging.getLogger(__name__)
KIND = "personalize"


def candidates(training) -> list[str]:
    """The run's candidates: its recipes."""
    return list(training.recipes)


def partition(group: PersonalizeGroup, as_of=None, names: list[str] | None = None, overrides=None) -> list[str]:
    """The mapped hpo_train entries: one per recipe (a recipe learns across users: nothing to shard), a
    tuned one as ``training.hpo_workers`` trial workers of one shared Optuna study."""
    from pipelines.personalize import tuning

    group, training = wf.options(group, overrides)

    def tuned(name: str) -> bool:
        return bool(training.hpo_trials) and tuning.recipe_key(name) in tuning.SEARCH_SPACES

    return wf.trial_entries(list(names or []), tuned, training.hpo_workers)


def plan_fit(group: PersonalizeGroup, as_of=None, selection: dict | None = None, overrides=None) -> list[str]:
    """The final fit's shards: none (a recipe is trained on every event at once, in ``recommend``)."""
    return []


def fit_shard(group: PersonalizeGroup, as_of=None, selection: dict | None = None, entry: str = "", overrides=None):
    raise NotImplementedError("Personalize recipes are not fitted by shards")


def load_data(group: PersonalizeGroup, as_of: pd.Timestamp):
    from pipelines.personalize.data import InteractionData

    return InteractionData.from_snapshot(wf.snapshot(group, as_of))


def recipe(config: dict, exclude_seen_items: bool = False):
    """The candidate's recipe with its hyperparameters and the group's ``training.exclude_seen_items`` setting."""
    from pipelines.personalize.base import get_recipe

    return get_recipe(config["name"], exclude_seen_items=exclude_seen_items, **config["params"])


def hpo_train(group: PersonalizeGroup, as_of=None, name: str = "", overrides: dict | None = None,
              tuned: dict | None = None) -> dict:  # fmt: skip
    """Tune (when trials are asked for) and evaluate one recipe, or run one trial worker's share of its
    shared study (``name~w/k``); ``tuned``: that study's best, evaluated without tuning again. A
    failure is recorded, not raised."""
    from pipelines.personalize.evaluation import evaluate

    as_of = storage.resolve_as_of(as_of)
    group, training = wf.options(group, overrides)
    name, worker, workers = wf.parse_trials(entry := name)
    data = load_data(group, as_of)
    began = time.perf_counter()
    if worker is not None:
        try:
            _, trials = search_params(name, data, training, **wf.shared_study(KIND, group, as_of, name, training,
                                                                              worker, workers))  # fmt: skip
        except Exception as exc:
            raise wf.failed_candidate(entry, exc) from exc
        return {"name": entry, "trials": trials}
    with wf.mlflow_run(group, as_of, "hpo_train", f"solution {name}"):
        import mlflow

        try:
            params, trials = search_params(name, data, training, tuned=tuned)
            config = {"name": name, "params": params}
            report = evaluate(recipe(config, training.exclude_seen_items), data, seed=training.seed)
        except Exception as exc:  # one candidate's failure leaves the others in the race
            raise wf.failed_candidate(name, exc) from exc
        mlflow.log_params({"recipe": name, **{f"hp.{k}": v for k, v in params.items()}})
        wf.log_metrics("", report["metrics"])
        wf.log_metrics("", {"fit_seconds": report["fit_seconds"], "test_users": report["test_users"]})
    return {
        "name": name,
        "config": config,
        "score": report["metrics"][training.optimization_metric],
        "trials": trials,
        "metrics": report["metrics"],
        "seconds": round(time.perf_counter() - began, 3),
    }


def search_params(name: str, data, training, tuned: dict | None = None, **study) -> tuple[dict, int | None]:
    """(hyperparameters, trials) of a recipe: Optuna's best when the run asks for trials (``study``: a
    shared study's worker options), ``tuned``'s (a shared study's result), else the defaults."""
    from pipelines.personalize import tuning

    if tuned is not None:
        return dict(tuned["params"]), tuned["trials"]
    if not (training.hpo_trials and tuning.recipe_key(name) in tuning.SEARCH_SPACES):
        return {}, None
    result = tuning.tune(name, data, **{**wf.study_options(training), **study}, evaluation_seeds=(training.seed,))
    return result.best_params, len(result.trials)


def backtest(group: PersonalizeGroup, as_of=None, candidates: list[dict] | None = None, overrides=None) -> dict:
    """Pick the best recipe and evaluate the champion's configuration on the same split."""
    from pipelines.personalize.evaluation import evaluate

    as_of = storage.resolve_as_of(as_of)
    group, training = wf.options(group, overrides)

    def score_champion(config: dict) -> dict:
        report = evaluate(recipe(config, training.exclude_seen_items), load_data(group, as_of), seed=training.seed)
        return {"score": report["metrics"][training.optimization_metric]}

    def train(name: str, workers: list[dict]) -> dict:  # with the best of the trial workers' shared study
        return hpo_train(group, as_of, name, overrides, tuned=wf.study_best(KIND, group, as_of, name, training))

    found = wf.fold_trials(list(candidates or []), train)
    return wf.compare(KIND, group, as_of, found, overrides, score_champion)


def recommend(group: PersonalizeGroup, as_of=None, selection: dict | None = None, overrides=None) -> dict:
    """Train the winner on every interaction, register it, and write batch recommendations.

    When the champion keeps serving, its own model (from the registry) writes them instead, for
    the same users and items.
    """
    from pipelines.training import pyfunc as models

    as_of = storage.resolve_as_of(as_of)
    group, training = wf.options(group, overrides)
    data = load_data(group, as_of)
    folder = wf.run_dir(group, as_of)
    winner = selection["winner"]
    model = recipe(winner["config"], training.exclude_seen_items).fit(data)
    served = {"challenger": model}
    if not wf.decide(selection, "new", training.promotion_margin).promoted:
        served["champion"] = models.load_version(KIND, group.name, selection["champion"]["version"])
    for role, native in served.items():
        with storage.atomic_dir(folder / role) as tmp:
            write_batch(native, data, tmp, training.num_results)
            if group.batch_segments is not None:
                write_segments(native, data, tmp, group)
    params = {"recipe": winner["name"], "num_results": training.num_results}
    example = pd.DataFrame({"userId": [str(data.user_ids[0])], "itemId": [""]})
    version = wf.register_winner(group, as_of, selection, params, model, example)
    return {"version": version, "outputs": sorted(served), "users": int(data.n_users), "items": int(data.n_items)}


def publish(
    group: PersonalizeGroup, as_of=None, selection: dict | None = None, recommended: dict | None = None, overrides=None
) -> dict:
    """Publish the served batch recommendations, metrics and the champion pointer; then gate."""
    return wf.finish(KIND, group, as_of, selection, recommended["version"], copy_served, overrides)


def copy_served(run: Path, served: str, target: Path) -> None:
    """The published folder holds the run's ``served`` outputs as they are."""
    import shutil

    for path in sorted((run / served).iterdir()):
        shutil.copy(path, target / path.name)


def write_batch(model, data, folder: Path, num_results: int) -> dict:
    """Batch recommendations for every user and, where the recipe has them, related items for every item."""
    from pipelines.personalize import batch

    written = {
        "users": batch.recommend_all_users(
            model, data.user_ids, folder / "batch_recommendations.jsonl", num_results=num_results, progress=False
        )
    }
    try:
        model.related_items(str(data.item_ids[0]), 1)
    except NotImplementedError:
        return written
    written["items"] = batch.related_items_all(
        model, data.item_ids, folder / "related_items.jsonl", num_results=num_results, progress=False
    )
    return written


def write_segments(model, data, folder: Path, group: PersonalizeGroup) -> dict:
    """``batch_segments.jsonl``: the users of each of the group's ``batch_segments`` queries, as a batch segment
    job writes them (a bad query gets its error line; a file without queries fails the run)."""
    from pipelines.personalize import segments

    asked = group.batch_segments
    target, size = folder / "batch_segments.jsonl", asked.num_results
    if asked.path:
        return segments.batch_segment(model, asked.path, target, size, data, group, progress=False)
    return segments.segments_for(model, asked.queries, target, size, data, group)


predict = recommend  # the step every workflow module names alike (the DAG's recommend task)
