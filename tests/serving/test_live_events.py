"""Live events through the HTTP API under a training filter: models learn what passes, filters see everything.

The group trains on clicks with a value of at least 0.5 (``training_filter``); the champion is SIMS.
"""

from __future__ import annotations

import pytest

from tests.serving.conftest import build_world

GROUP = "clicks"
TRAINING_FILTER = "training_filter:\n  event_types: [click]\n  event_value_threshold: 0.5\n"
BUY_AGAIN = 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")'


@pytest.fixture(scope="module")
def world(mlflow_store):
    return build_world(mlflow_store / "world_live_events", GROUP, settings=TRAINING_FILTER)


@pytest.fixture(scope="module")
def buy_again(client, world) -> str:
    created = client.post("/filters", json={"name": "again", "datasetGroup": GROUP, "filterExpression": BUY_AGAIN},
                          headers=world.headers("admin"))  # fmt: skip
    assert created.status_code == 201, created.text
    return created.json()["filterArn"]


def put(client, world, user: str, kind: str, item: str, value: float | None = None) -> None:
    event = {"eventType": kind, "itemId": item, "sentAt": 1_800_000_000}
    if value is not None:
        event["eventValue"] = value
    answer = client.post("/events", json={"trackingId": GROUP, "userId": user, "sessionId": f"s-{user}",
                                          "eventList": [event]}, headers=world.headers("writer"))  # fmt: skip
    assert answer.status_code == 200, answer.text


def items(client, world, user: str, **body) -> list[str]:
    answer = client.post("/recommendations", json={"campaignArn": GROUP, "userId": user, "numResults": 10, **body},
                         headers=world.headers("reader"))  # fmt: skip
    assert answer.status_code == 200, answer.text
    return [entry["itemId"] for entry in answer.json()["itemList"]]


def test_events_outside_the_training_filter_do_not_move_the_model(client, world, buy_again):
    popular = items(client, world, "nobody-yet")  # an unknown user: the popular items
    put(client, world, "shopper", "purchase", "a_i02", 1.0)  # another event type
    put(client, world, "shopper", "click", "a_i04", 0.1)  # a click below the threshold
    put(client, world, "shopper", "click", "a_i06")  # a click without a value
    assert items(client, world, "shopper") == popular
    assert items(client, world, "shopper", filterArn=buy_again) == ["a_i02"]  # filters read every event
    put(client, world, "shopper", "click", "a_i02", 0.9)  # passes: the model learns it
    moved = items(client, world, "shopper")
    assert moved != popular and sum(item.startswith("a_") for item in moved) >= 5


def test_the_training_filter_holds_for_events_replayed_into_a_new_model(client, world, runtime):
    holder = runtime.models[GROUP]
    assert holder.load(holder.state.version, runtime.tail)  # a swap replays stored events into a fresh copy
    model = holder.state.model
    assert set(model.recent_events_) == {"shopper"}
    assert [model.item_ids_[i] for i in model.recent_events_["shopper"][0]] == ["a_i02"]
    assert [item for item, _, _ in holder.state.live["shopper"]] == ["a_i02", "a_i04", "a_i06", "a_i02"]
