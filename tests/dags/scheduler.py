"""A real Airflow for DAG tests: ``airflow standalone`` (LocalExecutor) on a fresh PostgreSQL database."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipelines.launch import airflow_local
from pipelines.settings import load_group

SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
PARSED = "SELECT 1 FROM dag WHERE dag_id = %s"


def query(url: str, sql: str, *args) -> list[tuple]:
    """Rows of ``sql`` on the database at ``url`` (SQLAlchemy's or libpq's spelling)."""
    import psycopg2

    conn = psycopg2.connect(url.replace("+psycopg2", ""))
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


@contextmanager
def standalone(
    tmp_path: Path, monkeypatch, group: str, dag_ids: list[str], edit: Callable[[str], str] | None = None
) -> Iterator[tuple]:
    """The example ``group`` alone (its settings file's text through ``edit``) under a real scheduler,
    its ``dag_ids`` parsed and unpaused; yields (database url, env, log, group)."""
    if not airflow_local.reachable(SERVER):
        pytest.skip("no PostgreSQL at 127.0.0.1:5432: the scheduler-based tests need one")
    from pipelines.example_data import write_examples

    written = write_examples(tmp_path / "examples")
    for name in [n for n in written if n != group]:
        written.pop(name).unlink()  # one group keeps the test short
    if edit is not None:
        written[group].write_text(edit(written[group].read_text()))
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
        for dag_id in dag_ids:
            wait_for(lambda dag_id=dag_id: query(url, PARSED, dag_id), 240, f"{dag_id} was not parsed", log)
            airflow_local.airflow(["dags", "unpause", dag_id], env)
        yield url, env, log, load_group(written[group])
    finally:
        if process is not None:
            airflow_local.stop(process)
        airflow_local.drop_database(url)
        airflow_local.drop_database(tracking)
