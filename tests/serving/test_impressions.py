"""Impressions through the HTTP API: explicit ones, and the answers a recommendationId names, in every process.

The champion is user-personalization trained on the two taste groups; two items put with PutItems
(``f1``, ``f2``) are the only ones young enough to explore with explorationItemAgeCutOff 0.5 days, so
with explorationWeight 1 they lead every list, ordered by their bonus. A second app on the same
store stands for another server process: it learns every impression through the event tail.
"""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from pipelines.personalize import get_recipe
from pipelines.serving import answers
from pipelines.serving.app import create_app
from tests.serving.conftest import build_world

GROUP = "impressed"
EXPLORE = {"explorationWeight": "1", "explorationItemAgeCutOff": "0.5"}


@pytest.fixture(scope="module")
def world(mlflow_store):
    solution = get_recipe("user-personalization", epochs=2, hidden_dimension=32, seed=3)
    return build_world(mlflow_store / "world_impressions", GROUP, solution=solution)


@pytest.fixture(scope="module")
def other(world):
    with TestClient(create_app(world.settings())) as second:
        yield second


@pytest.fixture(scope="module", autouse=True)
def fresh(client, world):
    body = {"items": [{"itemId": "f1"}, {"itemId": "f2"}]}
    answer = client.post("/items", json=body, headers=world.headers("writer"))
    assert answer.status_code == 200, answer.text


def recommend(client, world, user: str, n: int = 5) -> dict:
    body = {"campaignArn": GROUP, "userId": user, "numResults": n, "itemExplorationConfig": EXPLORE}
    answer = client.post("/recommendations", json=body, headers=world.headers("reader"))
    assert answer.status_code == 200, answer.text
    return answer.json()


def scores(client, world, user: str) -> dict[str, float]:
    return {entry["itemId"]: entry["score"] for entry in recommend(client, world, user)["itemList"]}


def put(client, world, user: str, *events: dict) -> None:
    listed = [{"eventType": "click", "sentAt": time.time(), **event} for event in events]
    body = {"trackingId": GROUP, "userId": user, "sessionId": f"s-{user}", "eventList": listed}
    answer = client.post("/events", json=body, headers=world.headers("writer"))
    assert answer.status_code == 200, answer.text


def stored_impressions(runtime, count: int) -> list[tuple[str, ...]]:
    return [e.impression for e in runtime.store.events_of_group(GROUP, limit=count, newest=True)]


def test_an_item_shown_often_without_clicks_loses_its_exploration_in_every_process(client, other, world):
    before = scores(client, world, "a_u010")
    assert set(list(before)[:2]) == {"f1", "f2"}  # the only items in scope lead
    for k in range(4):  # other users are shown f1 beside what they click, and never click it
        put(client, world, f"viewer{k}", {"itemId": "a_i01", "impression": ["f1", "a_i01"]})
    after = scores(client, world, "a_u010")
    assert next(iter(after)) == "f2" and after["f1"] < before["f1"] and after["f2"] > before["f2"]
    assert scores(other, world, "a_u010") == after  # the other process applied the same impressions


def test_impressions_a_user_lets_pass_demote_the_item_for_that_user_most(client, other, world):
    user, bystander = "b_u020", "b_u021"
    mine, theirs = scores(client, world, user), scores(client, world, bystander)
    put(client, world, user, *[{"eventType": "view", "impression": ["f2"]}] * 2)  # shown f2 twice, no item taken
    mine_after, theirs_after = scores(other, world, user), scores(other, world, bystander)
    change = (mine_after["f2"] / mine_after["f1"]) / (mine["f2"] / mine["f1"])
    everyone = (theirs_after["f2"] / theirs_after["f1"]) / (theirs["f2"] / theirs["f1"])
    assert everyone < 1  # two more exposures for everyone
    assert change == pytest.approx(everyone / 3**0.5, rel=1e-3)  # and 1 / sqrt(1 + 2) for this user
    model = other.app.state.runtime.models[GROUP].state.model
    assert model.ignored_[user] == {model.item_index_["f2"]: 2}


def test_a_recommendation_id_stands_for_its_answers_items_in_any_process(client, other, world, runtime):
    answer = recommend(client, world, "a_u030")
    shown = [entry["itemId"] for entry in answer["itemList"]]
    put(other, world, "a_u030", {"itemId": shown[1], "recommendationId": answer["recommendationId"]})
    assert stored_impressions(runtime, 1) == [tuple(shown)]  # resolved by the other process, from the store
    recommend(client, world, "a_u030")  # a read catches up with the other process's events
    model = client.app.state.runtime.models[GROUP].state.model
    assert model.ignored_["a_u030"] == {model.item_index_[i]: 1 for i in shown if i != shown[1]}
    again = recommend(other, world, "a_u031")
    put(client, world, "a_u031", {"itemId": "a_i02", "recommendationId": again["recommendationId"],
                                  "impression": ["a_i02", "f1"]})  # fmt: skip
    assert stored_impressions(runtime, 1) == [("a_i02", "f1")]  # an explicit impression wins, as in Personalize


def test_an_unknown_or_expired_recommendation_id_is_ignored_as_personalize_does(client, world, runtime, monkeypatch):
    monkeypatch.setattr(answers, "FRESH_SECONDS", 0.3)
    put(client, world, "a_u040", {"itemId": "a_i03", "recommendationId": "RID-not-ours"})
    put(client, world, "a_u040", {"itemId": "a_i03", "recommendationId": "RID-18c1e4a0000-0"})  # long minted
    start = time.monotonic()
    put(client, world, "a_u040", {"itemId": "a_i03", "recommendationId": "RID-ffffffffffff-0"})  # "minted" in 10889
    assert time.monotonic() - start < 1.3  # waited at most as for an id minted now (FRESH_SECONDS)
    assert stored_impressions(runtime, 3) == [(), (), ()]  # stored and learned, without an impression
    with TestClient(create_app(world.settings(recommendation_id_seconds=0.0))) as forgetful:
        answer = recommend(forgetful, world, "a_u041")
        put(forgetful, world, "a_u041", {"itemId": "a_i03", "recommendationId": answer["recommendationId"]})
    assert stored_impressions(runtime, 1) == [()]  # expired at once
