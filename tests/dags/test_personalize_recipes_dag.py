"""Every Personalize recipe runs as a candidate of one real run of the Personalize DAG.

The example group's settings file lists all the recipes (``domains.PERSONALIZE_RECIPES``) with HPO
off, and ``dag.test()`` runs plan >> validate_schema >> import_data >> hpo_train (one mapped task
per recipe) >> backtest >> recommend >> publish on SQLite, with MLflow on a SQLite store in the
test's AIRSIGHT_HOME. The settings cannot give a recipe hyperparameters (only HPO does), so the
test shrinks the neural recipes' budgets (one epoch, the smallest sizes their validation allows)
where the workflow builds recipes, ``base.get_recipe``: dag.test() runs every task in this process.

Only the winner of a run is retrained, registered and writes the batch recommendations, so a
second test gives each recipe the sims and popularity-count DAG tests do not cover a run of its
own, as the only candidate: its registered champion model writes the published outputs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from pipelines import domains
from pipelines.personalize import base
from pipelines.personalize.evaluation import METRICS
from pipelines.settings import load_group
from pipelines.training import publish, registry, runs
from pipelines.training import pyfunc as models

DAG_ID = "personalize__interactions_demo"
AS_OF = "2024-06-01"
RECIPES = list(domains.PERSONALIZE_RECIPES)
assert {"trending-now", "deepfm", "similar-items", "user-personalization-v2"} <= set(RECIPES)  # all run here
HRNN = {"epochs": 1, "hidden_dimension": 32, "negative_samples": 32}
TRANSFORMER = {"epochs": 1, "embedding_dimension": 16, "blocks": 1, "heads": 1, "max_sequence_length": 20}
TINY = {
    **{name: HRNN for name in ("hrnn", "hrnn-metadata", "hrnn-coldstart", "user-personalization")},
    "personalized-ranking": HRNN,
    "deepfm": {"epochs": 1, "embedding_dimension": 8, "hidden_dimension": 16, "hidden_layers": 1},
    "user-personalization-v2": {**TRANSFORMER, "negative_samples": 64},
    "personalized-ranking-v2": {**TRANSFORMER, "negative_samples": 64},
}
# The recipes whose models relate items (GetRecommendations for an itemId): co-occurrence and item vectors.
RELATED = {"sims", "similar-items", "user-personalization-v2", "personalized-ranking-v2"}


@pytest.fixture
def every_recipe(airflow_home, example_groups, monkeypatch) -> Path:
    """The example Personalize group with every recipe a candidate, HPO off, tiny neural budgets."""
    settings = Path(example_groups["interactions_demo"])
    assert "training:" not in settings.read_text()
    settings.write_text(settings.read_text() + f"training:\n  recipes: {json.dumps(RECIPES)}\n  hpo_trials: 0\n")
    original = base.get_recipe

    def tiny(name, **kwargs):
        key = name.rsplit("/", 1)[-1].removeprefix("aws-")
        return original(name, **{**TINY.get(key, {}), **kwargs})

    monkeypatch.setattr(base, "get_recipe", tiny)
    return settings


def candidate_runs(group_name: str) -> dict[str, object]:
    """Each recipe's hpo_train MLflow run in the group's experiment, by recipe."""
    experiment = registry.experiment(models.registered_name("personalize", group_name))
    found = registry.client().search_runs([experiment], filter_string="tags.`airsight.step` = 'hpo_train'")
    return {run.data.params["recipe"]: run for run in found}


def test_every_recipe_is_a_candidate_of_one_personalize_dag_run(every_recipe):
    from airflow.dag_processing.dagbag import DagBag

    from pipelines.launch.demo import DAGS_FOLDER

    assert len(RECIPES) == 12 and set(RECIPES) == set(base.RECIPES)
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert not bag.import_errors
    run = bag.dags[DAG_ID].test(run_conf={"as_of": AS_OF})
    instances = run.get_task_instances()
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in instances}
    assert str(run.state) == "success", states
    # fit_shard maps over the final fit's shards, none for Personalize: Airflow skips an empty mapping
    assert states.pop(("fit_shard", -1)) == "skipped"
    assert all(state == "success" for state in states.values()), states
    assert sorted(i for task, i in states if task == "hpo_train") == list(range(len(RECIPES)))

    group = load_group(every_recipe)
    assert group.training.recipes == RECIPES and group.training.hpo_trials == 0
    metric = group.training.optimization_metric

    # Every recipe trained once, with the tiny budget, and has all of Personalize's offline metrics.
    trained = candidate_runs(group.name)
    assert sorted(trained) == sorted(RECIPES)
    for name, found in trained.items():
        assert found.info.status == "FINISHED", (name, found.data.tags.get("airsight.error"))
        values = found.data.metrics
        assert set(METRICS) <= set(values), (name, sorted(values))
        assert all(math.isfinite(values[m]) and 0 <= values[m] <= 1 for m in METRICS), (name, values)
        assert values["test_users"] > 0 and values["coverage"] > 0, (name, values)
        assert not [k for k in found.data.params if k.startswith("hp.")], name  # HPO off: no tuned values
    # The ranking and related-items recipes are scored as the others are: their recommend() lists.
    assert all(trained[name].data.metrics[metric] > 0 for name in RECIPES), metric

    # The published leaderboard ranks all twelve, best first, on the metric their runs logged.
    pointer = publish.latest(group.storage_root, "personalize")
    assert pointer is not None and pointer["as_of"] == f"{AS_OF}T00:00:00"
    published = Path(pointer["path"])
    board = json.loads((published / "leaderboard.json").read_text())
    assert board["metric"] == metric
    assert sorted(c["name"] for c in board["candidates"]) == sorted(RECIPES)
    assert all(c["error"] is None for c in board["candidates"]), board
    scores = [c["score"] for c in board["candidates"]]
    assert scores == sorted(scores, reverse=True)
    for candidate in board["candidates"]:
        assert candidate["score"] == pytest.approx(trained[candidate["name"]].data.metrics[metric])

    # The champion decision: the best candidate, promoted as the first version, recorded in
    # the published folder and in the registry; the champion model is that recipe.
    winner = board["candidates"][0]["name"]
    selection = json.loads((runs.run_dir(group, pd.Timestamp(AS_OF)) / "selection.json").read_text())
    assert selection["winner"]["name"] == winner and selection["champion"] is None
    assert set(METRICS) <= set(selection["winner"]["metrics"])
    decision = json.loads((published / "decision.json").read_text())
    assert decision["promoted"] and decision["version"] == "1" and decision["served"] == "challenger"
    assert decision["metric"] == metric and decision["decision"] == "no champion yet"
    assert decision["challenger_score"] == pytest.approx(board["candidates"][0]["score"])
    name = models.registered_name("personalize", group.name)
    assert {k: str(v) for k, v in registry.client().get_registered_model(name).aliases.items()} == {
        "champion": "1",
        "challenger": "1",
    }
    assert registry.client().get_model_version(name, "1").tags["gate.decision"] == "promoted"
    version, native = models.load_champion("personalize", group.name)
    assert version == "1" and native.name == winner

    # The champion's batch recommendations: every user of the example, 25 known items each.
    lines = (published / "batch_recommendations.jsonl").read_text().splitlines()
    assert len(lines) == 600
    catalog = set(native.item_ids_)
    users = set()
    for line in lines:
        record = json.loads(line)
        recommended = record["output"]["recommendedItems"]
        users.add(record["input"]["userId"])
        assert len(recommended) == group.training.num_results == 25 and len(set(recommended)) == 25
        assert set(recommended) <= catalog
    assert len(users) == 600
    assert (published / "related_items.jsonl").is_file() == (winner in RELATED)


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r not in ("popularity-count", "sims")])
def test_each_recipe_serves_as_the_champion_of_a_dag_run(every_recipe, recipe):
    from airflow.dag_processing.dagbag import DagBag

    from pipelines.launch.demo import DAGS_FOLDER

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    run = bag.dags[DAG_ID].test(run_conf={"as_of": AS_OF, "recipes": [recipe]})
    assert str(run.state) == "success"
    group = load_group(every_recipe)
    published = Path(publish.latest(group.storage_root, "personalize")["path"])
    version, native = models.load_champion("personalize", group.name)
    assert version == "1" and native.name == recipe
    assert {k: native.get_params()[k] for k in TINY.get(recipe, {})} == TINY.get(recipe, {})  # the tiny budget
    lines = (published / "batch_recommendations.jsonl").read_text().splitlines()
    assert len(lines) == 600
    assert all(len(json.loads(line)["output"]["recommendedItems"]) == 25 for line in lines)
    relates = type(native)._related is not base.Recipe._related
    assert relates == (recipe in RELATED) == (published / "related_items.jsonl").is_file()
    if relates:
        related = [json.loads(line) for line in (published / "related_items.jsonl").read_text().splitlines()]
        assert len(related) == len(native.item_ids_) and any(r["output"]["recommendedItems"] for r in related)
        assert all(r["input"]["itemId"] not in r["output"]["recommendedItems"] for r in related)
