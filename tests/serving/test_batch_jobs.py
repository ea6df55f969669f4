"""Batch inference jobs a stopped server left IN_PROGRESS are marked FAILED, through the API and at restart."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from pipelines.serving import batch_jobs
from pipelines.serving.app import create_app
from pipelines.serving.store import Store

REQUEST = {"jobName": "x", "numResults": 5}


def stopped_server_job(database_url: str, name: str) -> None:
    """A server process records a job, then stops (killed) before it finishes it."""
    code = (
        "import os, sys\n"
        "from pipelines.serving.batch_jobs import OWNER\n"
        "from pipelines.serving.store import Store\n"
        f"Store({database_url!r}).add_job({name!r}, 'shop', {REQUEST!r}, owner=OWNER)\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_job_whose_server_stopped_is_failed_at_restart_and_described_so(world):
    stopped_server_job(world.database_url, "orphan")
    with TestClient(create_app(world.settings())) as client:  # the restart
        described = client.get("/batch-inference-jobs/orphan", headers=world.headers("reader"))
    assert described.status_code == 200, described.text
    job = described.json()
    assert job["status"] == "FAILED" and job["failureReason"].startswith("orphaned:"), job
    assert job["lastUpdatedDateTime"] >= job["creationDateTime"]


def test_a_running_job_beats_while_it_runs(world, monkeypatch):
    monkeypatch.setattr(batch_jobs, "HEARTBEAT_SECONDS", 0.05)
    store = Store(world.database_url)
    started = time.time()

    def slow_infer(*args, **kwargs):
        time.sleep(0.5)
        return {"lines": 0, "failed": 0}

    monkeypatch.setattr("pipelines.personalize.batch.batch_infer", slow_infer)
    monkeypatch.setattr("pipelines.training.pyfunc.load_version", lambda *a: None)
    source = world.root / "in.jsonl"
    thread = batch_jobs.start_job(store, "beating", "shop", world.version, None, REQUEST, source,
                                  world.root / "out.jsonl", None)  # fmt: skip
    time.sleep(0.3)
    beat = store._query("SELECT heartbeat_at FROM airsight_batch_jobs WHERE name = 'beating'")[0][0]
    assert beat > started + 0.1  # renewed after it was recorded
    thread.join(10)
    assert store.get_job("beating")["status"] == "ACTIVE"
    store.close()


@pytest.mark.parametrize("same_process", [True, False])
def test_this_hosts_live_processes_keep_their_jobs(tmp_path, same_process):
    store = Store(f"sqlite:///{tmp_path / 'serving.db'}")
    if same_process:
        owner = batch_jobs.OWNER
    else:
        sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        owner = f"{batch_jobs.OWNER.rpartition(':')[0]}:{sibling.pid}"
    store.add_job("live", "shop", REQUEST, owner=owner)
    try:
        assert batch_jobs.fail_orphaned(store) == []
    finally:
        if not same_process:
            sibling.kill()
            sibling.wait()
    assert batch_jobs.fail_orphaned(store) == ([] if same_process else ["live"])
    store.close()
