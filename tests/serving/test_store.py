"""The serving store on SQLite and PostgreSQL: events in id order, filters, hashed keys, the app on PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
import uuid

import pytest
from fastapi.testclient import TestClient

from pipelines.serving import batch_jobs
from pipelines.serving.app import create_app
from pipelines.serving.auth import KeyChecker, create_key
from pipelines.serving.store import DuplicateName, Store
from tests.serving.conftest import build_world, recommend

GROUP = "pgshop"
PG = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def pg_url():
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        conn = psycopg2.connect(PG, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG} is unreachable: {exc}")
    schema = f"airsight_test_{uuid.uuid4().hex[:10]}"
    conn.autocommit = True
    conn.cursor().execute(f"CREATE SCHEMA {schema}")
    yield f"{PG}?options=-csearch_path%3D{schema}"
    conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    opened = Store(url)
    yield opened
    opened.close()


def test_events_filters_and_keys_round_trip(store):
    start = store.max_event_id()
    ids = store.put_events("g", "g", "u1", "s1", [
        {"eventType": "click", "itemId": "i1", "sentAt": 10.5, "properties": {"k": 1}},
        {"eventType": "buy", "itemId": "i2", "sentAt": 11, "eventValue": 3.0, "impression": ["i1", "i2"]},
    ])  # fmt: skip
    store.put_events("other", "other", "u2", "s2", [{"eventType": "click", "itemId": "x", "sentAt": 12}])
    assert ids == sorted(ids) and len(ids) == 2
    after = store.events_after(start)
    assert [(e.dataset_group, e.item_id) for e in after] == [("g", "i1"), ("g", "i2"), ("other", "x")]
    assert [e.item_id for e in store.events_of_group("g", sent_after=10.9)] == ["i2"]
    assert store.events_after(after[-1].id, also=[ids[0]])[0].id == ids[0]  # a skipped id is asked for again
    assert store.count_events("g") == 2

    store.add_filter("f1", "g", "EXCLUDE ItemID WHERE Items.GENRE IN ($G)")
    with pytest.raises(DuplicateName):
        store.add_filter("f1", "g", "x")
    assert (
        [r[0] for r in store.list_filters("g")] == ["f1"]
        and store.delete_filter("f1")
        and not store.delete_filter("f1")
    )

    key = create_key(store, "k1", ["read"])
    assert key.split("_", 2)[2] not in str(store.list_keys())  # only the digest is stored
    checker = KeyChecker(store, cache_seconds=0)
    assert checker.check(key, "read").name == "k1"
    with pytest.raises(Exception, match="lacks the 'write' scope"):
        checker.check(key, "write")
    with pytest.raises(DuplicateName):
        create_key(store, "k1", ["read"])


def test_events_keep_their_impression_and_answers_expire(store):
    store.put_events("g", "g", "u1", "s1", [{"eventType": "view", "sentAt": 1, "impression": ["i1", "i2"]}])
    assert store.events_of_group("g", limit=1, newest=True)[0].impression == ("i1", "i2")
    now = time.time()
    store.put_answers([("RID-x", "g", ["a", "b"], now - 100), ("RID-y", "g", ["c"], now)])
    assert store.get_answer("RID-x") == ("g", ["a", "b"], pytest.approx(now - 100))
    assert store.expire_answers(now - 50) == 1
    assert store.get_answer("RID-x") is None and store.get_answer("RID-y")[1] == ["c"]
    ids = store.put_events("g", "g", "u1", "s1", [{"eventType": "click", "itemId": "i1", "sentAt": 2}])
    assert ids and store.events_of_group("g", after_id=ids[0] - 1)[0].impression == ()  # events commit as before


def test_the_app_serves_and_stores_events_on_postgresql(pg_url, mlflow_store):
    world = build_world(mlflow_store / "world_pg", GROUP, database_url=pg_url)
    with TestClient(create_app(world.settings())) as client:
        before = [e["itemId"] for e in recommend(client, world, "pg-user", numResults=10)["itemList"]]
        event = {"eventType": "click", "itemId": "a_i04", "sentAt": 1_800_000_000}
        stored = client.post("/events", json={"trackingId": GROUP, "userId": "pg-user", "sessionId": "s",
                                              "eventList": [event]}, headers=world.headers("writer"))  # fmt: skip
        assert stored.status_code == 200, stored.text
        after = [e["itemId"] for e in recommend(client, world, "pg-user", numResults=10)["itemList"]]
        assert after != before and "a_i04" not in after
        assert client.get("/health").json()["database"].startswith("127.0.0.1")


def test_concurrent_put_events_share_commits_and_each_gets_its_own_ids(store):
    import threading

    before = store.count_events("burst")
    answers: list[list[int]] = []

    def put(k: int) -> None:
        for j in range(10):
            events = [{"eventType": "click", "itemId": f"i{k}-{j}", "sentAt": 1}, {"eventType": "x", "sentAt": 2}]
            answers.append(store.put_events("burst", "burst", f"u{k}", "s", events))

    threads = [threading.Thread(target=put, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for answer in answers for i in answer]
    assert len(answers) == 60 and all(len(a) == 2 for a in answers) and len(set(ids)) == 120
    assert store.count_events("burst") == before + 120
    stored = {e.id: e for e in store.events_of_group("burst")}
    assert all(stored[a[0]].item_id is not None and stored[a[1]].item_id is None for a in answers)


def test_replay_takes_the_newest_events_when_there_are_too_many(store):
    events = [{"eventType": "c", "itemId": f"i{k}", "sentAt": k} for k in range(6)]
    ids = store.put_events("many", "many", "u", "s", events)
    newest = store.events_of_group("many", limit=2, newest=True)
    assert [e.id for e in newest] == ids[-2:]
    assert [e.id for e in store.events_of_group("many", limit=2)] == ids[:2]


def test_another_hosts_job_fails_only_once_its_heartbeat_is_stale(store):
    store.add_job("running", "shop", {"numResults": 5}, owner="worker-2:4242")
    store.add_job("silent", "shop", {"numResults": 5}, owner="worker-3:4242")
    with store._cursor() as tx:  # worker-3 has not beaten for two minutes
        tx.execute("UPDATE airsight_batch_jobs SET heartbeat_at = ? WHERE name = 'silent'", (time.time() - 120,))
    assert batch_jobs.fail_orphaned(store) == ["silent"]
    assert store.get_job("running")["status"] == "IN_PROGRESS"
    assert store.get_job("silent")["status"] == "FAILED"
    store.beat_job("running")
    assert batch_jobs.fail_orphaned(store) == []  # a job that beats is left to its server


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_store_from_an_earlier_release_gains_the_heartbeat_columns(backend, tmp_path, request):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        old = sqlite3.connect(tmp_path / "old.db")
    else:
        import psycopg2

        url = request.getfixturevalue("pg_url")
        old = psycopg2.connect(url)
        old.cursor().execute("DROP TABLE IF EXISTS airsight_batch_jobs")
    cursor = old.cursor()
    cursor.execute(
        "CREATE TABLE airsight_batch_jobs (name TEXT PRIMARY KEY, dataset_group TEXT NOT NULL, status TEXT NOT NULL,"
        " request TEXT NOT NULL, summary TEXT, failure TEXT, created_at DOUBLE PRECISION NOT NULL,"
        " finished_at DOUBLE PRECISION)"
    )
    cursor.execute(
        "INSERT INTO airsight_batch_jobs VALUES ('before', 'shop', 'IN_PROGRESS', '{}', NULL, NULL, 0, NULL)"
    )
    old.commit()
    old.close()
    store = Store(url)
    assert batch_jobs.fail_orphaned(store) == ["before"]  # no heartbeat: stale since it was created
    store.add_job("after", "shop", {"numResults": 5}, owner=batch_jobs.OWNER)
    assert store.get_job("after")["status"] == "IN_PROGRESS"
    store.close()
