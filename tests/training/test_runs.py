"""What both DAGs' training steps share: choosing the winner, the gate's decision, live and backfill runs."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from pipelines.example_data import write_examples
from pipelines.personalize import workflow as personalize
from pipelines.preparation import steps
from pipelines.settings import load_group
from pipelines.training import publish, registry
from pipelines.training import pyfunc as models
from pipelines.training import runs as workflow


def test_the_winner_skips_failed_and_undefined_scores_and_the_leaderboard_ranks_them_last():
    candidates = [
        {"name": "nan", "score": math.nan, "config": {}},
        {"name": "broken", "score": None, "error": "ValueError: x"},
        {"name": "good", "score": 0.3, "config": {}},
        {"name": "better", "score": 0.2, "config": {}},
    ]
    assert workflow.select(candidates, "WAPE")["name"] == "better"
    assert [c["name"] for c in workflow.leaderboard(candidates, "WAPE")][:2] == ["better", "good"]
    assert workflow.select(candidates, "coverage")["name"] == "good"  # a gain: higher wins
    with pytest.raises(RuntimeError, match="no candidate trained"):
        workflow.select(candidates[:2], "WAPE")


def test_a_champion_that_cannot_be_scored_today_keeps_serving_unless_the_promotion_is_forced():
    selection = {
        "metric": "WAPE",
        "winner": {"score": 0.4, "config": {"name": "ETS", "params": {}}},
        "champion": {"version": "3", "score": math.nan, "config": {"name": "Theta", "params": {}}},
    }
    decision = workflow.decide(selection, "4", margin=0.0)
    assert not decision.promoted and "undefined" in decision.reason and "it keeps serving" in decision.reason
    forced = workflow.decide({**selection, "force": True}, "4", margin=0.0)
    assert forced.promoted and forced.reason.startswith("forced promotion (the champion v3 could not be scored")
    selection["champion"] = {**selection["champion"], "score": None, "error": "ValueError: too short"}
    assert not workflow.decide(selection, "4", margin=0.0).promoted
    selection["champion"] = {**selection["champion"], "score": 0.3, "error": None}
    assert not workflow.decide(selection, "4", margin=0.0).promoted
    selection["champion"]["score"] = 0.5
    assert workflow.decide(selection, "4", margin=0.0).promoted


def run(group, as_of: str, recipe: str) -> dict:
    overrides = {"recipes": [recipe]}
    steps.import_data(group, as_of)
    selection = personalize.backtest(group, as_of, [personalize.hpo_train(group, as_of, recipe, overrides)], overrides)
    return personalize.publish(group, as_of, selection, personalize.recommend(group, as_of, selection, overrides))


def test_a_run_for_an_older_date_publishes_beside_the_live_version_and_moves_nothing_live(tmp_path):
    shop = load_group(write_examples(tmp_path / "examples")["interactions_demo"])
    live = run(shop, "2024-06-01", "sims")
    assert live["live"] and live["promoted"]
    old = run(shop, "2024-05-01", "popularity-count")  # a backfill: its own lineage had no champion
    assert not old["live"] and old["promoted"] and Path(old["path"]).is_dir()
    name = models.registered_name("personalize", shop.name)
    found = registry.client().get_registered_model(name).aliases
    assert {alias: str(version) for alias, version in found.items()} == {"champion": "1", "challenger": "1"}
    assert publish.latest(shop.storage_root, "personalize")["as_of"] == "2024-06-01T00:00:00"


def test_the_backtest_step_stops_when_the_champion_cannot_be_scored_and_nothing_moves(tmp_path):
    shop = load_group(write_examples(tmp_path / "examples")["interactions_demo"])
    run(shop, "2024-06-01", "sims")
    steps.import_data(shop, "2024-06-15")
    candidate = personalize.hpo_train(shop, "2024-06-15", "popularity-count", {"recipes": ["popularity-count"]})

    def cannot_score(config: dict) -> dict:
        raise ValueError("no user has enough events")

    as_of = pd.Timestamp("2024-06-15")
    with pytest.raises(workflow.ChampionNotScored, match=r"no user has enough events.*it keeps serving"):
        workflow.compare("personalize", shop, as_of, [candidate], {}, cannot_score)
    name = models.registered_name("personalize", shop.name)
    found = registry.client().get_registered_model(name).aliases
    assert {alias: str(version) for alias, version in found.items()} == {"champion": "1", "challenger": "1"}
    assert publish.latest(shop.storage_root, "personalize")["as_of"] == "2024-06-01T00:00:00"
    forced = workflow.compare("personalize", shop, as_of, [candidate], {"force_promotion": True}, cannot_score)
    assert forced["expected"].startswith("forced promotion (the champion v1 could not be scored")
