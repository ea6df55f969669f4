"""DeepFM's context through the HTTP API: kept with a filter, with promotions and on /personalize-ranking.

The champion is DeepFM trained on the two groups with a DEVICE per event (a users on phones,
b users on the web), so for a user the model has never seen the device alone decides.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.personalize import get_recipe
from tests.personalize.conftest import two_groups
from tests.serving.conftest import build_world

GROUP = "contextual"
FAST = {"embedding_dimension": 16, "hidden_dimension": 32, "epochs": 30, "learning_rate": 0.01, "batch_size": 128}
CHEAP = "EXCLUDE ItemID WHERE Items.PRICE < 2"  # drops a_i00 and a_i01
PHONE, WEB = {"DEVICE": "phone"}, {"DEVICE": "web"}


@pytest.fixture(scope="module")
def world(mlflow_store):
    frame = two_groups()
    frame["DEVICE"] = np.where(frame["USER_ID"].str.startswith("a"), "phone", "web")
    return build_world(mlflow_store / "world_context", GROUP, interactions=frame, solution=get_recipe("deepfm", **FAST))


@pytest.fixture(scope="module")
def cheap(client, world) -> str:
    created = client.post("/filters", json={"name": "not-cheap", "datasetGroup": GROUP, "filterExpression": CHEAP},
                          headers=world.headers("admin"))  # fmt: skip
    assert created.status_code == 201, created.text
    return created.json()["filterArn"]


def scored(client, world, route: str, **body) -> list[tuple[str, float]]:
    answer = client.post(route, json={"campaignArn": GROUP, "userId": "stranger", **body}, headers=world.headers())
    assert answer.status_code == 200, answer.text
    key = "itemList" if route == "/recommendations" else "personalizedRanking"
    return [(entry["itemId"], entry["score"]) for entry in answer.json()[key]]


def share_of(group: str, ranked: list[tuple[str, float]]) -> float:
    return float(np.mean([item.startswith(group) for item, _ in ranked]))


def test_context_decides_a_strangers_recommendations(client, world):
    assert client.get("/health").json()["models"][GROUP]["recipe"] == "deepfm"
    phone, web = (
        scored(client, world, "/recommendations", numResults=10, context=PHONE),
        scored(client, world, "/recommendations", numResults=10, context=WEB),
    )
    assert share_of("a_", phone) > 0.8 and share_of("b_", web) > 0.8
    assert all(score > 0 for _, score in phone + web)  # scored by the model, not popular fill-ins


def test_a_filter_keeps_the_context(client, world, cheap):
    for context in (PHONE, WEB):
        plain = scored(client, world, "/recommendations", numResults=40, context=context)
        filtered = scored(client, world, "/recommendations", numResults=10, context=context, filterArn=cheap)
        assert filtered == [pair for pair in plain if pair[0] not in ("a_i00", "a_i01")][:10]  # same scores, order
    assert share_of("a_", scored(client, world, "/recommendations", context=PHONE, filterArn=cheap)) > 0.8


def test_a_promotion_keeps_the_context(client, world, cheap):
    promotion = {"name": "dear", "percentPromotedItems": 50, "filterArn": cheap}
    answer = scored(client, world, "/recommendations", numResults=10, context=PHONE, promotions=[promotion])
    assert share_of("a_", answer) > 0.8 and all(score > 0 for _, score in answer)


def test_ranking_reads_the_context_with_and_without_a_filter(client, world, cheap):
    listed = ["b_i03", "a_i03", "b_i04", "a_i04", "a_i00", "b_i00"]
    phone = scored(client, world, "/personalize-ranking", inputList=listed, context=PHONE)
    web = scored(client, world, "/personalize-ranking", inputList=listed, context=WEB)
    assert [i[0] for i, _ in phone[:3]] == ["a"] * 3 and [i[0] for i, _ in web[:3]] == ["b"] * 3
    filtered = scored(client, world, "/personalize-ranking", inputList=listed, context=PHONE, filterArn=cheap)
    assert filtered == [pair for pair in phone if pair[0] != "a_i00"]
