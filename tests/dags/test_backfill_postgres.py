"""A backfill with a real scheduler on PostgreSQL retrains history, and re-running it reproduces it.

``airflow standalone`` (scheduler, DAG processor, triggerer, API server, LocalExecutor) runs on
a fresh database of the local PostgreSQL; ``airflow backfill create`` retrains the example
interactions group as of three past days, one run at a time. Running the same backfill again
must give byte-identical published outputs and no new model versions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.launch import airflow_local
from pipelines.training import pyfunc as models
from pipelines.training import registry
from pipelines.training import runs as workflow
from tests.dags.scheduler import query, standalone, wait_for

DAG_ID = "personalize__interactions_demo"
DATES = ("2024-05-01", "2024-05-03")  # three daily runs, as of each date (a cron schedule: interval end = logical date)


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
    with standalone(tmp_path, monkeypatch, "interactions_demo", [DAG_ID]) as running:
        yield running


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
