"""Late (back-dated) events through the HTTP API: in effect after a restart and after a swap, in every process.

A loaded model replays every stored event its training history does not hold, whatever its
sentAt. The champion is SIMS on the two taste groups (a_ users use a_ items); a new user's one
back-dated click on an a_ item turns the user's list from the popular b_ items to a_ items.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pipelines.personalize import InteractionData, get_recipe
from pipelines.serving.app import create_app
from tests.personalize.conftest import two_groups
from tests.serving.conftest import build_world, items_frame, register_champion

GROUP = "late"
LONG_AGO = 1_000_000_000  # 2001: years before the training data's newest event
USER = "latecomer"


@pytest.fixture(scope="module")
def world(mlflow_store):
    return build_world(mlflow_store / "world_late_events", GROUP)


def items(client, world, user: str = USER) -> list[str]:
    answer = client.post("/recommendations", json={"campaignArn": GROUP, "userId": user, "numResults": 10},
                         headers=world.headers("reader"))  # fmt: skip
    assert answer.status_code == 200, answer.text
    return [entry["itemId"] for entry in answer.json()["itemList"]]


def put(client, world, user: str, item: str, sent_at: float) -> None:
    event = {"eventType": "click", "itemId": item, "sentAt": sent_at}
    answer = client.post("/events", json={"trackingId": GROUP, "userId": user, "sessionId": f"s-{user}",
                                          "eventList": [event]}, headers=world.headers("writer"))  # fmt: skip
    assert answer.status_code == 200, answer.text


def app(world) -> TestClient:
    return TestClient(create_app(world.settings()))


def test_a_back_dated_event_survives_a_restart_and_a_swap_in_every_process(world):
    with app(world) as first:
        popular = items(first, world)
        put(first, world, USER, "a_i02", LONG_AGO)
        moved = items(first, world)
    assert moved != popular and sum(item.startswith("a_") for item in moved) >= 5
    with app(world) as one, app(world) as two:  # a restart, with two server processes on the store
        assert items(one, world) == items(two, world) == moved
        model = get_recipe("sims", min_cointeraction_count=2).fit(
            InteractionData.from_frames(two_groups(), items_frame())
        )
        version = register_champion(GROUP, model)
        for server in (one, two):
            server.app.state.runtime.poll_once()  # the poll thread's check, now
            assert server.get("/health").json()["models"][GROUP]["version"] == version
        swapped = items(one, world)
        assert swapped == items(two, world) and sum(item.startswith("a_") for item in swapped) >= 5


def test_events_the_training_data_holds_are_not_replayed(world):
    trained = two_groups().iloc[0]  # an event exported into the training data comes back through the import
    with app(world) as first:
        put(first, world, trained.USER_ID, trained.ITEM_ID, float(trained.TIMESTAMP))
        put(first, world, "another-late", "b_i01", LONG_AGO)
    with app(world) as restarted:
        model = restarted.app.state.runtime.models[GROUP].state.model
        assert trained.USER_ID not in model.recent_events_  # seen: its training history holds it
        assert [model.item_ids_[i] for i in model.recent_events_["another-late"][0]] == ["b_i01"]
        assert [model.item_ids_[i] for i in model.recent_events_[USER][0]] == ["a_i02"]
