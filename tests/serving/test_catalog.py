"""PutItems and PutUsers through the HTTP API: checked against the schema, filterable at once, durable, exported.

The group has the shared world's ITEMS (GENRE a or b, categorical; PRICE) and a USERS dataset
(TIER, categorical; AGE) that has no imported rows: every user's fields come from PutUsers.
The champion is SIMS until the last test makes popularity-count the champion.
"""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from pipelines.personalize import InteractionData, get_recipe
from pipelines.serving import cli
from pipelines.serving.app import create_app
from tests.personalize.conftest import two_groups
from tests.serving.conftest import build_world, items_frame, register_champion

GROUP = "catalog"
USERS = """\
  USERS:
    path: users.csv
    schema:
      - {name: USER_ID, type: string}
      - {name: TIER, type: string, categorical: true}
      - {name: AGE, type: int}
"""
FILTERS = {
    "genre-c": 'INCLUDE ItemID WHERE Items.GENRE IN ("c")',
    "luxury": "INCLUDE ItemID WHERE Items.PRICE >= 1000",
    "not-b": 'EXCLUDE ItemID WHERE Items.GENRE IN ("b")',
    "buy-again": 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")',
    "gold-gets-a": 'INCLUDE ItemID WHERE Items.GENRE IN ("a") IF CurrentUser.TIER IN ("gold")',
}


@pytest.fixture(scope="module")
def world(mlflow_store):
    return build_world(mlflow_store / "world_catalog", GROUP, settings=USERS)


@pytest.fixture(scope="module")
def filters(client, world) -> dict[str, str]:
    arns = {}
    for name, expression in FILTERS.items():
        body = {"name": f"cat-{name}", "datasetGroup": GROUP, "filterExpression": expression}
        created = client.post("/filters", json=body, headers=world.headers("admin"))
        assert created.status_code == 201, created.text
        arns[name] = created.json()["filterArn"]
    return arns


def put_items(client, world, *items: tuple[str, object], who: str = "writer", **body):
    payload = {"datasetArn": f"arn:aws:personalize:eu-west-1:1:dataset/{GROUP}/ITEMS",
               "items": [{"itemId": i, "properties": p} for i, p in items], **body}  # fmt: skip
    return client.post("/items", json=payload, headers=world.headers(who))


def put_users(client, world, *users: tuple[str, object], who: str = "writer"):
    payload = {"datasetArn": f"{GROUP}/USERS", "users": [{"userId": u, "properties": p} for u, p in users]}
    return client.post("/users", json=payload, headers=world.headers(who))


def items(client, world, user: str, filter_arn: str | None = None, n: int = 25) -> list[str]:
    body = {"campaignArn": GROUP, "userId": user, "numResults": n}
    if filter_arn:
        body["filterArn"] = filter_arn
    answer = client.post("/recommendations", json=body, headers=world.headers("reader"))
    assert answer.status_code == 200, answer.text
    return [entry["itemId"] for entry in answer.json()["itemList"]]


def test_put_items_and_put_users_need_the_write_scope(client, world):
    assert put_items(client, world, ("x1", "{}"), who="reader").status_code == 403
    assert put_users(client, world, ("x1", "{}"), who="reader").status_code == 403
    assert "lacks the 'write' scope" in put_items(client, world, ("x1", "{}"), who="reader").json()["message"]
    assert client.post("/items", json={"items": [{"itemId": "x1"}]}).status_code == 401


@pytest.mark.parametrize(
    ("properties", "field", "reason"),
    [
        ('{"COLOR": "red"}', "items.0.properties.COLOR", "unknown field 'COLOR'"),
        ('{"price": "cheap"}', "items.0.properties.price", "PRICE is float: expected a number"),
        ({"genre": 5}, "items.0.properties.genre", "GENRE is text: expected a string"),
        ('{"genre": "a",', "items.0.properties", "not a JSON object"),
        ('["a"]', "items.0.properties", "expected a JSON object"),
        ('{"itemId": "x"}', "items.0.properties.itemId", "the id goes in itemId"),
        ('{"PRICE": 1, "price": 2}', "items.0.properties.price", "PRICE is given twice"),
    ],
)
def test_properties_that_break_the_items_schema_get_400_naming_the_field(client, world, properties, field, reason):
    stored = client.app.state.runtime.store.max_record_id()
    answer = put_items(client, world, ("bad-1", properties))
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == [{"field": field, "reason": answer.json()["errors"][0]["reason"]}]
    assert reason in answer.json()["message"]
    assert client.app.state.runtime.store.max_record_id() == stored  # nothing stored


def test_requests_that_name_the_wrong_dataset_get_4xx_naming_it(client, world):
    second_bad = put_items(client, world, ("ok", '{"genre": "a"}'), ("bad", '{"price": "x"}'))
    assert second_bad.status_code == 400 and second_bad.json()["errors"][0]["field"] == "items.1.properties.price"
    users = put_users(client, world, ("u-bad", '{"age": "old"}'))
    assert users.status_code == 400 and users.json()["errors"][0]["field"] == "users.0.properties.age"
    wrong_kind = put_items(client, world, ("x", "{}"), datasetArn=f"{GROUP}/USERS")
    assert wrong_kind.status_code == 400 and wrong_kind.json()["errors"][0]["field"] == "datasetArn"
    unknown = put_items(client, world, ("x", "{}"), datasetArn="nowhere/ITEMS")
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["field"] == "datasetArn"
    several = client.post("/items", json={"items": [{"itemId": "x"}]}, headers=world.headers("writer"))
    assert several.status_code == 200  # one Personalize group served: datasetArn may be left out
    too_many = put_items(client, world, *[(f"n{k}", "{}") for k in range(11)])
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "items"


def test_new_and_changed_items_are_filterable_at_once(client, world, filters, runtime):
    assert items(client, world, "a_u001", filters["genre-c"]) == []
    new = [("c_new1", '{"genre": "c", "price": "12.5"}'), ("c_new2", {"GENRE": ["c", "d"], "PRICE": 3})]
    answer = put_items(client, world, *new, ("lux", '{"genre": "b", "price": 5000}'))
    assert answer.status_code == 200, answer.text
    assert answer.json()["recordsStored"] == 3 and answer.json()["datasetGroup"] == GROUP
    assert set(items(client, world, "a_u001", filters["genre-c"])) == {"c_new1", "c_new2"}
    assert items(client, world, "a_u001", filters["luxury"]) == ["lux"]
    assert {"c_new1", "c_new2", "lux"} <= set(runtime.models[GROUP].state.model.item_index_)  # the model knows them
    # a record replaces the item's fields: a_i00 leaves genre a for c
    assert put_items(client, world, ("a_i00", '{"genre": "c"}')).status_code == 200
    assert set(items(client, world, "a_u001", filters["genre-c"])) == {"c_new1", "c_new2", "a_i00"}
    assert "lux" not in items(client, world, "a_u001", filters["not-b"], n=100)  # genre b
    assert set(items(client, world, "a_u001", filters["not-b"], n=100)) >= {"c_new1", "c_new2"}


def test_items_first_seen_in_put_events_pass_filters(client, world, filters):
    event = {"eventType": "purchase", "itemId": "z_new", "sentAt": 1_800_000_000}
    body = {"trackingId": GROUP, "userId": "z-buyer", "sessionId": "s-z", "eventList": [event]}
    assert client.post("/events", json=body, headers=world.headers("writer")).status_code == 200
    assert items(client, world, "z-buyer", filters["buy-again"]) == ["z_new"]
    assert "z_new" in items(client, world, "z-buyer", filters["not-b"], n=100)  # no genre, so not excluded
    assert "z_new" not in items(client, world, "z-buyer", filters["genre-c"])


def test_new_users_are_filterable_at_once(client, world, filters):
    assert any(i.startswith("b_") for i in items(client, world, "vip", filters["gold-gets-a"]))  # the IF fails
    answer = put_users(client, world, ("vip", '{"tier": "gold", "age": "41"}'), ("plain", '{"tier": "silver"}'))
    assert answer.status_code == 200, answer.text
    served = items(client, world, "vip", filters["gold-gets-a"])
    assert served and all(i.startswith("a_") for i in served)
    assert any(i.startswith("b_") for i in items(client, world, "plain", filters["gold-gets-a"]))


def test_records_survive_a_restart_and_reach_another_server_at_once(client, world, filters):
    with TestClient(create_app(world.settings())) as other:  # a fresh runtime on the same store
        assert set(items(other, world, "a_u001", filters["genre-c"])) == {"c_new1", "c_new2", "a_i00"}
        assert all(i.startswith("a_") for i in items(other, world, "vip", filters["gold-gets-a"]))
        assert put_items(client, world, ("c_new3", '{"genre": "c"}')).status_code == 200
        assert "c_new3" in items(other, world, "a_u001", filters["genre-c"])
        assert other.get("/health").json()["models"][GROUP]["records_applied"] >= 5


def serve(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def test_items_and_users_are_exported_in_the_datasets_columns(world, tmp_path, capsys):
    settings = str(world.groups_dir / f"{GROUP}.yaml")
    out_items, out_users = tmp_path / "ITEMS.csv", tmp_path / "USERS.csv"
    assert serve("--database", world.database_url, "--export-items", settings, "--to", str(out_items)) == 0
    assert serve("--database", world.database_url, "--export-users", settings, "--to", str(out_users)) == 0
    assert "record(s) written" in capsys.readouterr().out
    exported = pd.read_csv(out_items, keep_default_na=False, dtype=str)
    assert list(exported.columns) == ["ITEM_ID", "GENRE", "PRICE"]
    rows = {r.ITEM_ID: (r.GENRE, r.PRICE) for r in exported.itertuples()}
    assert rows["c_new1"] == ("c", "12.5") and rows["c_new2"] == ("c|d", "3.0") and rows["a_i00"] == ("c", "")
    assert len(exported) == len(rows)  # each item once, its newest record
    users = pd.read_csv(out_users, keep_default_na=False, dtype=str)
    assert list(users.columns) == ["USER_ID", "TIER", "AGE"]
    assert {(r.USER_ID, r.TIER, r.AGE) for r in users.itertuples()} == {("vip", "gold", "41"), ("plain", "silver", "")}
    default = world.groups_dir / f"{GROUP}_store" / "events" / "ITEMS_records.csv"
    assert serve("--database", world.database_url, "--export-items", settings) == 0 and default.is_file()


def test_exploration_is_refused_where_the_recipe_does_not_explore(client, world):
    body = {"campaignArn": GROUP, "userId": "a_u001", "itemExplorationConfig": {"explorationWeight": "0.5"}}
    answer = client.post("/recommendations", json=body, headers=world.headers("reader"))
    assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "itemExplorationConfig"
    config = {"campaignConfig": {"itemExplorationConfig": {"explorationWeight": "0.5"}}}
    updated = client.put(f"/campaigns/{GROUP}", json=config, headers=world.headers("admin"))
    assert updated.status_code == 400 and updated.json()["errors"][0]["field"] == "campaignConfig.itemExplorationConfig"


def test_popularity_count_ranks_a_new_item_by_its_users(client, world, runtime):
    register_champion(
        GROUP, get_recipe("popularity-count").fit(InteractionData.from_frames(two_groups(), items_frame()))
    )
    runtime.poll_once()
    assert runtime.models[GROUP].state.model.name == "popularity-count"
    assert put_items(client, world, ("p_new", '{"genre": "a"}')).status_code == 200

    def score_of(item: str) -> float:
        answer = client.post("/recommendations", json={"campaignArn": GROUP, "userId": "anyone", "numResults": 200},
                             headers=world.headers("reader"))  # fmt: skip
        listed = answer.json()["itemList"]
        assert [e["score"] for e in listed] == sorted((e["score"] for e in listed), reverse=True)
        return next(e["score"] for e in listed if e["itemId"] == item)

    assert score_of("p_new") == 0
    for user in ("p1", "p2", "p3", "p1"):  # p1 twice: a user counts once
        event = {"eventType": "click", "itemId": "p_new", "sentAt": 1_800_000_100}
        body = {"trackingId": GROUP, "userId": user, "sessionId": f"s-{user}", "eventList": [event]}
        assert client.post("/events", json=body, headers=world.headers("writer")).status_code == 200
    assert score_of("p_new") == 3
    assert json.loads(json.dumps(runtime.models[GROUP].health()))["status"] == "ok"
