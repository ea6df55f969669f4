"""A backfill with a real scheduler on PostgreSQL retrains history, and re-running it reproduces it.

``airflow standalone`` (scheduler, DAG processor, triggerer, API server, LocalExecutor) runs on
a fresh database of the local PostgreSQL; ``airflow backfill create`` retrains the example
interactions group as of three past days, one run at a time. Running the same backfill again
must give byte-identical published outputs and no new model versions.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from pipelines.launch import airflow_local
from pipelines.settings import load_group
from pipelines.training import pyfunc as models
from pipelines.training import registry
from pipelines.training import runs as workflow

SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DAG_ID = "personalize__interactions_demo"
DATES = ("2024-05-01", "2024-05-03")  # three daily runs, as of each date (a cron schedule: interval end = logical date)


def query(url: str, sql: str, *args) -> list[tuple]:
    from urllib.parse import urlsplit

    import psycopg2

    parts = urlsplit(url)
    conn = psycopg2.connect(host=parts.hostname, port=parts.port, user=parts.username, dbname=parts.path[1:])
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()
    finally:
        conn.close()


def wait_for(condition, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(3)
    tail = log.read_text(errors="replace")[-4000:] if log.is_file() else ""
    raise TimeoutError(f"{what} within {timeout:.0f} s; standalone log ends with:\n{tail}")


def backfill(url: str, env: dict, log: Path, *extra: str) -> dict[str, str]:
    """Create a backfill over DATES, one run at a time; wait for it; return its runs' states by run_id."""
    before = query(url, "SELECT coalesce(max(id), 0) FROM backfill")[0][0]
    airflow_local.airflow(["backfill", "create", "--dag-id", DAG_ID, "--from-date", DATES[0], "--to-date", DATES[1],
                           "--max-active-runs", "1", *extra], env)  # fmt: skip
    created = query(url, "SELECT max(id) FROM backfill")[0][0]
    assert created > before
    done = "SELECT 1 FROM backfill WHERE id = %s AND completed_at IS NOT NULL"
    wait_for(lambda: query(url, done, created), 900, f"backfill {created} did not complete", log)
    rows = query(url, "SELECT r.run_id, r.state FROM dag_run r JOIN backfill_dag_run b ON b.dag_run_id = r.id "
                      "WHERE b.backfill_id = %s", created)  # fmt: skip
    return dict(rows)


def published(group) -> dict[str, dict]:
    """Every published version of the group: its files' sha256 and its decision."""
    root = Path(group.storage_root) / "published" / "personalize"
    return {
        folder.name: {
            "files": workflow.checksums(folder),
            "decision": json.loads((folder / "decision.json").read_text()),
        }
        for folder in sorted(root.glob("as_of=2024*"))
    }


@pytest.fixture
def postgres_airflow(tmp_path, monkeypatch):
    if not airflow_local.reachable(SERVER):
        pytest.skip("no PostgreSQL at 127.0.0.1:5432: the scheduler-based backfill test needs one")
    from pipelines.example_data import write_examples

    written = write_examples(tmp_path / "examples")
    written.pop("retail_demo").unlink()  # the interactions group alone keeps the test short
    monkeypatch.setenv("AIRSIGHT_GROUPS_DIR", str(tmp_path / "examples" / "groups.d"))
    name = f"airsight_test_{uuid.uuid4().hex[:10]}"
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    tracking = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}_mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    log = tmp_path / "standalone.log"
    process = None
    try:
        process, env, port = airflow_local.start(tmp_path / "airflow", url, airflow_local.free_port(), log, tracking)
        airflow_local.wait_for_api(port)
        wait_for(lambda: query(url, "SELECT 1 FROM dag WHERE dag_id = %s", DAG_ID), 240, "the DAG was not parsed", log)
        airflow_local.airflow(["dags", "unpause", DAG_ID], env)
        yield url, env, log, load_group(written["interactions_demo"])
    finally:
        if process is not None:
            airflow_local.stop(process)
        airflow_local.drop_database(url)
        airflow_local.drop_database(tracking)


def test_a_backfill_over_three_dates_reproduces_identical_outputs_when_rerun(postgres_airflow):
    url, env, log, group = postgres_airflow
    runs = backfill(url, env, log)
    assert len(runs) == 3 and set(runs.values()) == {"success"}, runs
    first = published(group)
    assert sorted(first) == ["as_of=20240501T000000", "as_of=20240502T000000", "as_of=20240503T000000"]
    name = models.registered_name("personalize", group.name)
    versions = {v.version for v in registry.client().search_model_versions(f"name='{name}'")}

    runs = backfill(url, env, log, "--reprocess-behavior", "completed")
    assert len(runs) == 3 and set(runs.values()) == {"success"}, runs
    assert published(group) == first  # same bytes, same decisions
    assert {v.version for v in registry.client().search_model_versions(f"name='{name}'")} == versions
