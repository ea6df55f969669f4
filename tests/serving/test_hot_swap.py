"""Champions are swapped in while requests run, and a version that fails to load never serves."""

from __future__ import annotations

import threading
from pathlib import Path

from pipelines.personalize import InteractionData, get_recipe
from pipelines.training import pyfunc as models
from tests.personalize.conftest import two_groups
from tests.serving.conftest import recommend, register_champion

GROUP = "swap"


def test_a_new_champion_is_swapped_in_under_load_without_a_failed_request(client, world, runtime):
    event = {"eventType": "click", "itemId": "a_i03", "sentAt": 1_800_000_000}
    client.post("/events", json={"trackingId": world.group, "userId": "loyal", "sessionId": "s", "eventList": [event]},
                headers=world.headers("writer"))  # fmt: skip
    assert "a_i03" not in [e["itemId"] for e in recommend(client, world, "loyal", numResults=20)["itemList"]]

    statuses, versions, stop = [], set(), threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            answer = client.post("/recommendations", json={"campaignArn": world.group, "userId": "a_u005"},
                                 headers=world.headers("reader"))  # fmt: skip
            statuses.append(answer.status_code)
            if answer.status_code == 200:
                versions.add(answer.json()["modelVersion"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        # a solution that leaves seen items out, so the list shows whether the events reached it
        solution = get_recipe("popularity-count", exclude_seen_items=True)
        version = register_champion(world.group, solution.fit(InteractionData.from_frames(two_groups())))
        runtime.poll_once()
        while not any(v == version for v in versions) and len(statuses) < 5000:
            threading.Event().wait(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert len(statuses) > 20 and set(statuses) == {200}
    assert versions == {world.version, version}
    assert client.get("/health").json()["models"][world.group]["version"] == version
    # the new model was brought up to date with the events stored before it loaded (a_i03 is popular)
    assert "a_i03" in [e["itemId"] for e in recommend(client, world, "a_u005", numResults=20)["itemList"]]
    assert "a_i03" not in [e["itemId"] for e in recommend(client, world, "loyal", numResults=20)["itemList"]]


def test_a_model_that_fails_to_load_leaves_the_previous_one_serving(client, world, runtime, mlflow_store):
    serving = client.get("/health").json()["models"][world.group]["version"]
    broken = register_champion(
        world.group, get_recipe("popularity-count").fit(InteractionData.from_frames(two_groups()))
    )
    newest = max(Path(mlflow_store / "artifacts").rglob(models.MODEL_FILE), key=lambda p: p.stat().st_mtime)
    newest.write_bytes(b"not a pickle")
    runtime.poll_once()
    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert health["models"][world.group]["version"] == serving
    assert f"version {broken} failed to load" in health["models"][world.group]["error"]
    assert recommend(client, world, "a_u000")["modelVersion"] == serving
    metrics = client.get("/metrics", headers=world.headers("reader")).text
    assert 'airsight_model_load_failures_total{group="swap"} 1.0' in metrics
