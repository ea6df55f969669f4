"""Batch segment jobs through the API: item-affinity and item-attribute-affinity queries in, users out.

The world's SIMS champion learned two tastes (a_ users use a_ items, b_ users b_ items; ITEMS.GENRE
is "a" or "b"), so each segment must hold only the users of the item's side.
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from pipelines.serving import batch_jobs
from pipelines.serving.store import Store

GROUP = "segshop"
HOSTILE = [
    {"itemAttributes": 'ITEMS.GENRE = "a") OR (1 = 1'},  # no parentheses, no injection: an error
    {"itemAttributes": 'ITEMS.GENRE = "a"; DROP TABLE airsight_batch_jobs'},
    {"itemAttributes": "ITEMS.GENRE = " + '"a" AND ITEMS.GENRE = ' * 400 + '"a"'},  # too long
    {"itemAttributes": ["ITEMS.GENRE", "a"]},
    {"itemId": "x" * 300},
    {"itemId": "a_i01", "itemAttributes": 'ITEMS.GENRE = "a"'},
    [1, 2],
]


def write_lines(folder, name: str, lines: list) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    (folder / name).write_text(text)
    return f"in/{name}"


def job(name: str, source: str, **more) -> dict:
    return {"jobName": name, "datasetGroup": GROUP, "jobInput": {"path": source},
            "jobOutput": {"path": f"out/{name}.jsonl"}, **more}  # fmt: skip


def finished(client, world, name: str) -> dict:
    for _ in range(400):
        described = client.get(f"/batch-segment-jobs/{name}", headers=world.headers("reader"))
        assert described.status_code == 200, described.text
        if described.json()["status"] != "IN_PROGRESS":
            return described.json()
        time.sleep(0.05)
    raise AssertionError(f"job {name} still IN_PROGRESS")


@pytest.fixture
def folder(runtime):
    return runtime.settings.resolved_batch_dir()


def test_segments_hold_the_users_of_the_items_side(client, world, folder):
    lines = [
        {"itemId": "a_i01"},
        {"itemAttributes": 'ITEMS.GENRE = "b"'},
        {"itemAttributes": 'ITEMS.genre = "a" AND ITEMS.PRICE = 3 OR ITEMS.PRICE = 4'},
        "",
        {"itemId": "no-such-item"},
        "{not json",
        {"itemAttributes": 'ITEMS.COLOUR = "red"'},
        {"userId": "a_u000"},
        {"itemAttributes": 'ITEMS.GENRE = "c"'},
    ]
    body = job("segments", write_lines(folder / "in", "queries.jsonl", lines), numResults=7)
    assert client.post("/batch-segment-jobs", json=body, headers=world.headers("writer")).status_code == 403
    started = client.post("/batch-segment-jobs", json=body, headers=world.headers("admin"))
    assert started.status_code == 202 and started.json()["modelVersion"] == world.version, started.text
    described = finished(client, world, "segments")
    assert described["status"] == "ACTIVE" and described["failureReason"] is None, described
    summary = described["summary"]
    assert (summary["lines"], summary["succeeded"], summary["failed"], summary["blank_lines"]) == (8, 3, 5, 1)
    assert summary["requests"] == {"item_affinity": 1, "item_attribute_affinity": 2}
    assert described["request"]["numResults"] == 7 and summary["modelVersion"] == world.version

    out = [json.loads(line) for line in (folder / "out" / "segments.jsonl").read_text().splitlines()]
    assert [o["input"] for o in out] == [*lines[:3], *lines[4:5], "{not json", *lines[6:]]
    users = [o["output"]["usersList"] if o["output"] else None for o in out]
    assert all(len(u) == 7 and len(set(u)) == 7 for u in users[:3])
    assert all(u.startswith("a_") for u in users[0] + users[2]) and all(u.startswith("b_") for u in users[1])
    assert all(o["error"] is None for o in out[:3]) and all(o["output"] is None for o in out[3:])
    errors = [o["error"] for o in out[3:]]
    assert errors[0] == "line 5: itemId 'no-such-item' is unknown to the model"
    assert errors[1].startswith("line 6: not JSON")
    assert errors[2].startswith("line 7: itemAttributes, column 7: ITEMS has no field 'COLOUR'; its fields: GENRE")
    assert errors[3].startswith("line 8: unknown key(s) ['userId']")
    assert errors[4] == "line 9: no item the model knows has these attributes"

    # The name is taken, by either kind of batch job; the kinds are described apart.
    assert client.post("/batch-segment-jobs", json=body, headers=world.headers("admin")).status_code == 409
    inference = {**body, "jobOutput": {"path": "out/other.jsonl"}}
    assert client.post("/batch-inference-jobs", json=inference, headers=world.headers("admin")).status_code == 409
    assert client.get("/batch-inference-jobs/segments", headers=world.headers("reader")).status_code == 404


def test_hostile_lines_get_their_own_errors_and_the_rest_still_run(client, world, folder):
    lines = [*HOSTILE, {"itemId": "b_i02"}]
    body = job("hostile", write_lines(folder / "in", "hostile.jsonl", lines), numResults=3)
    assert client.post("/batch-segment-jobs", json=body, headers=world.headers("admin")).status_code == 202
    described = finished(client, world, "hostile")
    assert described["status"] == "ACTIVE" and described["summary"]["failed"] == len(HOSTILE), described
    out = [json.loads(line) for line in (folder / "out" / "hostile.jsonl").read_text().splitlines()]
    errors = [o["error"] for o in out]
    assert "unexpected character ')'" in errors[0] and "unexpected character ';'" in errors[1]
    assert "characters; at most 2500" in errors[2] and "must be a string" in errors[3]
    assert "at most 256" in errors[4] and "one" in errors[5] and "expected a JSON object" in errors[6]
    assert all(u.startswith("b_") for u in out[-1]["output"]["usersList"]) and out[-1]["error"] is None
    assert Store(world.database_url).count_events() == 0  # nothing a line said reached the store's tables


@pytest.mark.parametrize("content", ["", "\n\n  \n"], ids=["empty", "blank-lines"])
def test_a_job_with_no_queries_fails_and_writes_nothing(client, world, folder, content):
    name = f"nothing-{len(content)}"
    (folder / "in").mkdir(parents=True, exist_ok=True)
    (folder / "in" / f"{name}.jsonl").write_text(content)
    body = job(name, f"in/{name}.jsonl")
    assert client.post("/batch-segment-jobs", json=body, headers=world.headers("admin")).status_code == 202
    described = finished(client, world, name)
    assert described["status"] == "FAILED" and described["summary"] is None, described
    assert "holds nothing to answer (an empty file, or only blank lines)" in described["failureReason"]
    assert described["lastUpdatedDateTime"] >= described["creationDateTime"]
    assert not (folder / "out" / f"{name}.jsonl").exists()
    assert not list(folder.glob("out/.*.tmp"))  # nor a temporary file left behind


def test_bad_jobs_are_refused_before_they_start(client, world, folder):
    source = write_lines(folder / "in", "one.jsonl", [{"itemId": "a_i01"}])
    admin = world.headers("admin")
    refusals = [
        (job("missing", "in/missing.jsonl"), 404, "jobInput.path"),
        (job("escape", "../../etc/passwd"), 422, "jobInput.path"),
        ({**job("abs", source), "jobOutput": {"path": "/tmp/out.jsonl"}}, 422, "jobOutput.path"),
        ({**job("over", source), "jobOutput": {"path": source}}, 422, "jobOutput.path"),
        ({**job("group", source), "datasetGroup": "nope"}, 404, "datasetGroup"),
        (job("zero", source, numResults=0), 422, "numResults"),
        (job("huge", source, numResults=100_001), 422, "numResults"),
        (job("filtered", source, filterArn="f"), 422, "filterArn"),
        (job("bad name!", source), 422, "jobName"),
    ]
    for body, status, field in refusals:
        answer = client.post("/batch-segment-jobs", json=body, headers=admin)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["errors"][0]["field"] == field, answer.json()
    assert client.get("/batch-segment-jobs/missing", headers=world.headers("reader")).status_code == 404
    assert (
        client.get("/batch-segment-jobs/nope", headers=world.headers("reader")).json()["errors"][0]["field"] == "name"
    )


def test_a_store_from_an_earlier_release_keeps_its_jobs_as_batch_inference_jobs(tmp_path):
    old = sqlite3.connect(tmp_path / "old.db")
    old.execute(
        "CREATE TABLE airsight_batch_jobs (name TEXT PRIMARY KEY, dataset_group TEXT NOT NULL, status TEXT NOT NULL,"
        " request TEXT NOT NULL, summary TEXT, failure TEXT, created_at DOUBLE PRECISION NOT NULL,"
        " finished_at DOUBLE PRECISION, owner TEXT, heartbeat_at DOUBLE PRECISION)"
    )
    old.execute("INSERT INTO airsight_batch_jobs VALUES ('before', 'shop', 'ACTIVE', '{}', NULL, NULL, 0, 1, NULL, 1)")
    old.commit()
    old.close()
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    assert store.get_job("before")["status"] == "ACTIVE" and store.get_job("before", "segment") is None
    store.add_job("seg", "shop", {"numResults": 5}, owner=batch_jobs.OWNER, kind="segment")
    assert store.get_job("seg", "segment")["status"] == "IN_PROGRESS" and store.get_job("seg") is None
    store.close()
