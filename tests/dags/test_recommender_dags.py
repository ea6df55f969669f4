"""Domain recommenders as a user sets them up: ``recommenders:`` in an ECOMMERCE group's settings gives each
its own DAG, trained on its use case's events and served under its name.

The example interactions group (clicks and purchases) asks for ``best_sellers`` (popularity over
purchases) and ``customers_who_viewed_x_also_viewed`` (SIMS over views, clicks here); both DAGs run
with ``dag.test()``; then the serving API, over HTTP, answers ``recommenderArn`` for each, refuses a
request outside the use case, applies the dataset group's filters and sends the group's events to
the recommenders' models.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from pipelines.training import publish, registry
from pipelines.training import pyfunc as models

AS_OF = "2024-06-01"
GROUP = "interactions_demo"
BEST, VIEWED = f"{GROUP}__best_sellers", f"{GROUP}__customers_who_viewed_x_also_viewed"


@pytest.fixture
def with_recommenders(airflow_home, example_groups) -> Path:
    settings = Path(example_groups[GROUP])
    text = settings.read_text()
    assert "domain: ECOMMERCE" in text and "recommenders:" not in text
    settings.write_text(text + "recommenders: [best_sellers, customers_who_viewed_x_also_viewed]\n"
                        "recommender_event_types: {View: [click], Purchase: [purchase]}\n")  # fmt: skip
    return settings


def test_each_recommender_trains_in_its_own_dag_and_serves_under_its_name(with_recommenders, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from pipelines.launch.demo import DAGS_FOLDER
    from pipelines.serving.app import create_app
    from pipelines.serving.auth import create_key
    from pipelines.serving.settings import ServingSettings
    from pipelines.settings import load_group

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    assert {f"personalize__{BEST}", f"personalize__{VIEWED}", f"personalize__{GROUP}"} <= set(bag.dags)
    for name in (BEST, VIEWED):
        run = bag.dags[f"personalize__{name}"].test(run_conf={"as_of": AS_OF})
        assert str(run.state) == "success", name
        champion = registry.current_champion(models.registered_name("personalize", name))
        assert champion is not None, name
    best = load_group(f"{with_recommenders}#best_sellers")
    pointer = publish.latest(best.storage_root, "personalize")
    assert Path(pointer["path"]).is_relative_to(Path(load_group(with_recommenders).storage_root) / "recommenders")
    purchases = pd.read_csv(Path(best.datasets.INTERACTIONS.path))
    top = purchases[purchases["EVENT_TYPE"] == "purchase"]["ITEM_ID"].value_counts().index[0]
    first = json.loads(Path(pointer["path"], "batch_recommendations.jsonl").read_text().splitlines()[0])
    assert first["output"]["recommendedItems"][0] == top  # popularity over purchases, not clicks

    settings = ServingSettings(groups_dir=str(with_recommenders.parent), database_url=f"sqlite:///{tmp_path / 's.db'}",
                               poll_seconds=3600)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        key = {"X-API-Key": create_key(client.app.state.runtime.store, "rec-test", ["read", "write", "admin"])}
        user = purchases["USER_ID"].iloc[0]
        answer = client.post("/recommendations", json={"recommenderArn": f"recommender/{BEST}", "userId": user,
                                                       "numResults": 5}, headers=key)  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["itemList"][0]["itemId"] == top
        related = client.post("/recommendations", json={"recommenderArn": VIEWED, "itemId": top, "numResults": 5},
                              headers=key)  # fmt: skip
        assert related.status_code == 200 and top not in [i["itemId"] for i in related.json()["itemList"]]
        refused = client.post("/recommendations", json={"recommenderArn": VIEWED, "userId": user}, headers=key)
        assert refused.status_code == 400 and "needs itemId" in refused.json()["message"]
        both = client.post("/recommendations", json={"recommenderArn": BEST, "campaignArn": GROUP, "userId": user},
                           headers=key)  # fmt: skip
        assert both.status_code == 422
        items = pd.read_csv(Path(best.datasets.ITEMS.path)).set_index("ITEM_ID")
        genre = str(items.loc[top, "GENRES"]).split("|")[0]  # the dataset group's filter, on an item field
        expression = f'EXCLUDE ItemID WHERE Items.GENRES IN ("{genre}")'
        made = client.post("/filters", headers=key, json={"name": "not-top", "datasetGroup": GROUP,
                                                          "filterExpression": expression})  # fmt: skip
        assert made.status_code == 201, made.text
        filtered = client.post("/recommendations", json={"recommenderArn": BEST, "userId": user, "numResults": 5,
                                                         "filterArn": "filter/not-top"}, headers=key)  # fmt: skip
        assert filtered.status_code == 200 and top not in [i["itemId"] for i in filtered.json()["itemList"]]
        event = {"eventType": "purchase", "itemId": top, "sentAt": 1_800_000_000}
        body = {"trackingId": GROUP, "userId": user, "sessionId": "s", "eventList": [event]}
        sent = client.post("/events", json=body, headers=key)  # the dataset group's events
        assert sent.status_code == 200
        health = client.get("/health").json()["models"]
        assert health[BEST]["events_applied"] >= 1 and health[GROUP]["status"] in ("ok", "unavailable")
