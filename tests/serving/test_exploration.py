"""itemExplorationConfig through the HTTP API: the campaign's (UpdateCampaign), a request's over it, item age live.

The champion is user-personalization trained on the two taste groups (explorationWeight 0.3 and
explorationItemAgeCutOff 30 days by default). An item put with PutItems has no CREATION_TIMESTAMP
field in this schema, so it was created when it was put. With a cut-off of a day or less no trained
item is young enough to explore, so with explorationWeight 1 the new item is the only one with a
score above 0 and leads every list; once the newest interaction is more than a cut-off after its
creation, it is too old to explore.
"""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from pipelines.personalize import get_recipe
from pipelines.serving.app import create_app
from tests.serving.conftest import build_world

GROUP = "explore"
USER = "a_u001"


@pytest.fixture(scope="module")
def world(mlflow_store):
    solution = get_recipe("user-personalization", epochs=2, hidden_dimension=32, seed=3)
    return build_world(mlflow_store / "world_exploration", GROUP, solution=solution)


def items(client, world, n: int = 10, **exploration) -> list[str]:
    body = {"campaignArn": GROUP, "userId": USER, "numResults": n}
    if exploration:
        body["itemExplorationConfig"] = exploration
    answer = client.post("/recommendations", json=body, headers=world.headers("reader"))
    assert answer.status_code == 200, answer.text
    return [entry["itemId"] for entry in answer.json()["itemList"]]


def update_campaign(client, world, **exploration):
    return client.put(f"/campaigns/{GROUP}", json={"campaignConfig": {"itemExplorationConfig": exploration}},
                      headers=world.headers("admin"))  # fmt: skip


@pytest.fixture(scope="module")
def fresh(client, world) -> str:
    answer = client.post("/items", json={"items": [{"itemId": "fresh", "properties": '{"genre": "a"}'}]},
                         headers=world.headers("writer"))  # fmt: skip
    assert answer.status_code == 200, answer.text
    return "fresh"


def test_the_campaign_describes_the_trained_exploration_until_updated(client, world):
    described = client.get(f"/campaigns/{GROUP}", headers=world.headers("reader")).json()
    assert described["recipe"] == "user-personalization"
    assert described["campaignConfig"]["itemExplorationConfig"] == {"explorationWeight": "0.3",
                                                                     "explorationItemAgeCutOff": "30"}  # fmt: skip


def test_a_request_explores_new_items_as_it_asks(client, world, fresh):
    assert items(client, world, explorationWeight="1", explorationItemAgeCutOff="0.5")[0] == fresh
    exploit = items(client, world, explorationWeight=0)
    assert exploit == items(client, world, explorationWeight="0", explorationItemAgeCutOff=1)  # no weight, no age
    assert items(client, world, explorationWeight=1, explorationItemAgeCutOff=0.5)[0] == fresh  # numbers as numbers


def test_the_campaign_config_serves_every_request_and_a_request_overrides_it(client, world, fresh):
    exploit = items(client, world, explorationWeight=0)
    answer = update_campaign(client, world, explorationWeight="1", explorationItemAgeCutOff="1")
    assert answer.status_code == 200, answer.text
    assert answer.json()["campaignConfig"]["itemExplorationConfig"] == {"explorationWeight": "1",
                                                                         "explorationItemAgeCutOff": "1"}  # fmt: skip
    assert items(client, world)[0] == fresh  # the campaign's config, no override
    assert items(client, world, explorationWeight="0") == exploit  # the request's weight wins, field by field
    with TestClient(create_app(world.settings())) as other:  # another server (or a restart) on the same store
        assert items(other, world)[0] == fresh
        assert other.get(f"/campaigns/{GROUP}", headers=world.headers("reader")).json()["campaignConfig"] == {
            "itemExplorationConfig": {"explorationWeight": "1", "explorationItemAgeCutOff": "1"}
        }


def test_item_age_runs_on_the_live_clock(client, world, fresh):
    assert items(client, world, explorationWeight="1", explorationItemAgeCutOff="1")[0] == fresh
    later = time.time() + 2 * 86_400  # an interaction two days after the item was put moves the clock on
    event = {"eventType": "click", "itemId": "b_i03", "sentAt": later}
    body = {"trackingId": GROUP, "userId": "someone-else", "sessionId": "s-else", "eventList": [event]}
    assert client.post("/events", json=body, headers=world.headers("writer")).status_code == 200
    assert fresh not in items(client, world, explorationWeight="1", explorationItemAgeCutOff="1")  # two days old
    assert items(client, world, explorationWeight="1", explorationItemAgeCutOff="3")[0] == fresh  # young enough


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"explorationWeight": "1.5"}, "itemExplorationConfig.explorationWeight"),
        ({"explorationWeight": "much"}, "itemExplorationConfig.explorationWeight"),
        ({"explorationItemAgeCutOff": "0"}, "itemExplorationConfig.explorationItemAgeCutOff"),
        ({"explorationItemAgeCutOff": -3}, "itemExplorationConfig.explorationItemAgeCutOff"),
        ({"explorationRate": 1}, "itemExplorationConfig.explorationRate"),
    ],
)
def test_bad_exploration_values_get_422_naming_the_field(client, world, config, field):
    body = {"campaignArn": GROUP, "userId": USER, "itemExplorationConfig": config}
    answer = client.post("/recommendations", json=body, headers=world.headers("reader"))
    assert answer.status_code == 422 and [e["field"] for e in answer.json()["errors"]] == [field]
    updated = update_campaign(client, world, **config)
    assert updated.status_code == 422 and [e["field"] for e in updated.json()["errors"]] == [f"campaignConfig.{field}"]


def test_only_an_admin_key_updates_the_campaign(client, world):
    config = {"campaignConfig": {"itemExplorationConfig": {"explorationWeight": "0.5"}}}
    refused = client.put(f"/campaigns/{GROUP}", json=config, headers=world.headers("writer"))
    assert refused.status_code == 403 and "lacks the 'admin' scope" in refused.json()["message"]
    missing = client.put("/campaigns/nowhere", json=config, headers=world.headers("admin"))
    assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "name"
