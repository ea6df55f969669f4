"""Seen items through the HTTP API: Personalize's default (they may come back), filters, the recipe setting.

The world's interactions are the two groups' clicks plus a few purchases: a_u000 bought a_i05
and b_i07 (an item outside its group's taste), a_u001 bought a_i05.
"""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.personalize import get_recipe
from tests.personalize.conftest import two_groups
from tests.serving.conftest import build_world

GROUP = "buyers"
PURCHASES = {"a_u000": {"a_i05", "b_i07"}, "a_u001": {"a_i05"}}
BUY_AGAIN = 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")'
UNSEEN = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")'


def with_purchases() -> pd.DataFrame:
    clicks = two_groups()
    last = int(clicks["TIMESTAMP"].max())
    bought = [(user, item, last + k, "purchase") for k, (user, items) in enumerate(PURCHASES.items()) for item in items]
    return pd.concat([clicks, pd.DataFrame(bought, columns=clicks.columns)], ignore_index=True)


@pytest.fixture(scope="module")
def world(mlflow_store):
    return build_world(mlflow_store / "world_seen_items", GROUP, interactions=with_purchases())


@pytest.fixture(scope="module")
def filters(client, world) -> dict[str, str]:
    arns = {}
    for name, expression in (("buy-again", BUY_AGAIN), ("unseen", UNSEEN)):
        created = client.post("/filters", json={"name": name, "datasetGroup": GROUP, "filterExpression": expression},
                              headers=world.headers("admin"))  # fmt: skip
        assert created.status_code == 201, created.text
        arns[name] = created.json()["filterArn"]
    return arns


def items(client, world, user: str, n: int = 10, **body) -> list[str]:
    answer = client.post("/recommendations", json={"campaignArn": GROUP, "userId": user, "numResults": n, **body},
                         headers=world.headers("reader"))  # fmt: skip
    assert answer.status_code == 200, answer.text
    return [entry["itemId"] for entry in answer.json()["itemList"]]


def seen_by(user: str) -> set[str]:
    frame = with_purchases()
    return set(frame.loc[frame["USER_ID"] == user, "ITEM_ID"])


def test_buy_again_returns_the_users_purchases(client, world, filters):
    for user, bought in PURCHASES.items():
        assert set(items(client, world, user, filterArn=filters["buy-again"])) == bought
    assert items(client, world, "a_u002", filterArn=filters["buy-again"]) == []  # clicked, never bought
    assert items(client, world, "nobody-at-all", filterArn=filters["buy-again"]) == []


def test_seen_items_may_come_back_as_in_personalize_and_a_filter_drops_them(client, world, filters):
    catalog = 60
    everything = items(client, world, "a_u000", n=catalog)
    assert len(everything) == catalog and seen_by("a_u000") <= set(everything)  # nothing left out by default
    unseen = items(client, world, "a_u000", n=catalog, filterArn=filters["unseen"])
    assert not set(unseen) & seen_by("a_u000") and len(unseen) == catalog - len(seen_by("a_u000"))
    assert unseen == [i for i in everything if i not in seen_by("a_u000")]  # the same order, seen items taken out


def test_the_recipe_setting_leaves_seen_items_out_of_what_is_served(client, world, filters, runtime):
    model = runtime.models[GROUP].state.model
    assert model.exclude_seen_items is False  # Personalize's default, kept through the registry
    model.exclude_seen_items = True
    try:
        served = items(client, world, "a_u000", n=60)
        assert not set(served) & seen_by("a_u000") and len(served) == 60 - len(seen_by("a_u000"))
        assert items(client, world, "a_u000", filterArn=filters["buy-again"]) == []  # a filter applies after
    finally:
        model.exclude_seen_items = False


def test_the_setting_is_chosen_with_the_recipe_and_survives_cloning():
    assert get_recipe("sims").exclude_seen_items is False
    chosen = get_recipe("aws-sims", exclude_seen_items="true")
    assert chosen.exclude_seen_items is True and chosen.clone().exclude_seen_items is True
    assert "exclude_seen_items" not in chosen.get_params()  # a setting, not a hyperparameter to tune
    with pytest.raises(ValueError, match="exclude_seen_items must be true or false, got 'maybe'"):
        get_recipe("sims", exclude_seen_items="maybe")


def put(client, world, user: str, *events: tuple[str, str]) -> None:
    body = {"trackingId": GROUP, "userId": user, "sessionId": f"s-{user}",
            "eventList": [{"eventType": kind, "itemId": item, "sentAt": 1_800_000_000 + k}
                          for k, (item, kind) in enumerate(events)]}  # fmt: skip
    answer = client.post("/events", json=body, headers=world.headers("writer"))
    assert answer.status_code == 200, answer.text


def test_a_purchase_sent_with_put_events_is_bought_again_at_once(client, world, filters, runtime):
    put(client, world, "a_u002", ("a_i09", "Purchase"), ("a_i10", "click"))  # event types match ignoring case
    assert items(client, world, "a_u002", filterArn=filters["buy-again"]) == ["a_i09"]
    stored = [e for e in runtime.store.events_of_group(GROUP) if e.user_id == "a_u002"]
    assert [(e.item_id, e.event_type) for e in stored] == [("a_i09", "Purchase"), ("a_i10", "click")]
    unseen = items(client, world, "a_u002", n=60, filterArn=filters["unseen"])
    assert not {"a_i09", "a_i10"} & set(unseen)  # "*" reads live events of every type too
    # a user known only through PutEvents (not in the snapshot) is filtered by those events alone
    put(client, world, "first-timer", ("b_i02", "purchase"))
    assert items(client, world, "first-timer", filterArn=filters["buy-again"]) == ["b_i02"]


def test_another_server_on_the_same_store_sees_the_purchase(client, world, filters):
    from fastapi.testclient import TestClient

    from pipelines.serving.app import create_app

    with TestClient(create_app(world.settings())) as other:  # its own runtime, model and event tail
        assert items(other, world, "a_u003", filterArn=filters["buy-again"]) == []
        put(client, world, "a_u003", ("b_i11", "purchase"))
        assert items(other, world, "a_u003", filterArn=filters["buy-again"]) == ["b_i11"]
        body = {"campaignArn": GROUP, "userId": "a_u003", "inputList": ["a_i00", "b_i11"],
                "filterArn": filters["buy-again"]}  # fmt: skip
        ranked = other.post("/personalize-ranking", json=body, headers=world.headers("reader"))
        assert [r["itemId"] for r in ranked.json()["personalizedRanking"]] == ["b_i11"]


def test_the_group_settings_choose_the_setting_for_the_trained_recipe(tmp_path):
    from pipelines.personalize.workflow import recipe
    from pipelines.settings import load_group
    from tests.serving.conftest import SHOP

    for extra, expected in (("", False), ("training:\n  exclude_seen_items: true\n", True)):
        (tmp_path / "g.yaml").write_text(SHOP.format(name="g") + extra)
        training = load_group(tmp_path / "g.yaml").training
        assert training.exclude_seen_items is expected
        chosen = recipe({"name": "sims", "params": {"min_cointeraction_count": 1}}, training.exclude_seen_items)
        assert chosen.exclude_seen_items is expected and chosen.clone().exclude_seen_items is expected
