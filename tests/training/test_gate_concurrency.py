"""Several runs through the gate at once never leave the champion alias, the tags and latest.json disagreeing.

Every run reads the champion at its backtest before any of them publishes (the worst case for a
race), then all publish together: threads on a SQLite store (the file lock), and processes on a
PostgreSQL store (the advisory lock; skipped where 127.0.0.1:5432 is unreachable). A run either
publishes or stops with ChampionChanged having moved nothing; afterwards one story holds.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")

from pipelines.training import pyfunc as models  # noqa: E402
from pipelines.training import registry  # noqa: E402
from pipelines.training import runs as workflow  # noqa: E402
from tests.training import gate_world  # noqa: E402

CONFIGS = [{"name": name, "params": {}} for name in ("ETS", "Theta", "NPTS", "Prophet")]
DATES = ("2024-02-01", "2024-02-02", "2024-02-03")
POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def plan(group, seed: int, dates=DATES, per_date: int = 2) -> list[dict]:
    """Register one version per run and build its selection against the champion of the moment."""
    rng = random.Random(seed)
    base = gate_world.register(group, "2024-01-01", CONFIGS[0])
    gate_world.finish(group, "2024-01-01", gate_world.selection("WAPE", (CONFIGS[0], 0.5), None), base)
    runs = []
    for date in dates:
        scores = {key(c): round(rng.uniform(0.2, 0.6), 3) for c in CONFIGS}  # every configuration on this date
        for _ in range(per_date):
            candidates = rng.sample(CONFIGS, rng.choice([1, 2, 4]))
            winner = min(candidates, key=lambda c: scores[key(c)])
            champion = workflow.champion_as_of("personalize", group.name, pd.Timestamp(date))
            champion["score"] = scores[key(champion["config"])]
            chosen = gate_world.selection(
                "WAPE", (winner, scores[key(winner)]), champion, {key(c): scores[key(c)] for c in candidates}
            )
            version = gate_world.register(group, date, winner)
            runs.append({"as_of": date, "selection": chosen, "version": version, "force": rng.random() < 0.15})
    return runs


def publish_one(group, run: dict) -> tuple[str, str]:
    try:
        gate_world.finish(group, run["as_of"], run["selection"], run["version"], run["force"], pause=0.02)
        return "published", run["version"]
    except workflow.ChampionChanged as exc:
        return "changed", str(exc)


def assert_one_story(group, runs: list[dict], outcomes: list[tuple[str, str]]) -> dict:
    assert {kind for kind, _ in outcomes} <= {"published", "changed"}
    story = gate_world.assert_registry_and_latest_agree(group)
    for run, (kind, _) in zip(runs, outcomes, strict=True):
        decided = gate_world.tags(group, run["version"]).get("gate.decision")
        assert (decided is not None) == (kind == "published"), (run, kind)  # a stopped run recorded nothing
    name = models.registered_name("personalize", group.name)
    versions = registry.model_versions(name)
    for date in DATES:  # each date's folder holds the last decision taken for that date
        folder = Path(group.storage_root) / "published" / "personalize" / f"as_of={date.replace('-', '')}T000000"
        mine = [v for v in versions if v.tags.get(workflow.AS_OF_TAG) == folder.name and "gate.decision" in v.tags]
        if not mine:
            continue
        last = max(mine, key=lambda v: int(v.tags["gate.sequence"]))
        decision = json.loads((folder / "decision.json").read_text())
        assert decision["version"] == str(last.version)
        assert decision["promoted"] == (last.tags["gate.decision"] == "promoted")
    sequences = [int(v.tags["gate.sequence"]) for v in versions if "gate.sequence" in v.tags]
    assert len(sequences) == len(set(sequences))  # one decision at a time
    return story


@pytest.fixture
def sqlite_store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    (tmp_path / "mlflow").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("AIRSIGHT_MLFLOW_ARTIFACTS", (tmp_path / "artifacts").as_uri())
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.mark.parametrize("seed", range(4))
def test_runs_publishing_at_once_in_threads_leave_one_story(sqlite_store, tmp_path, seed):
    assert registry.lock_target()[0] == "file"
    group = gate_world.example_group(tmp_path, f"race{seed}")
    runs = plan(group, seed)
    start = threading.Barrier(len(runs))

    def go(run):
        start.wait()
        return publish_one(group, run)

    with ThreadPoolExecutor(len(runs)) as pool:
        outcomes = list(pool.map(go, runs))
    story = assert_one_story(group, runs, outcomes)
    print(f"seed {seed}: {[kind for kind, _ in outcomes]} -> {story['champion alias']}")


def publish_in_process(group_json: str, run: dict, ready: str, go: str) -> tuple[str, str]:
    """A worker process: import and connect first, then wait for every other worker, then publish."""
    from pipelines.settings import PersonalizeGroup

    group = PersonalizeGroup.model_validate_json(group_json)
    registry.model_versions(models.registered_name("personalize", group.name))  # warm: imports, connection
    Path(ready).write_text("ready")
    while not Path(go).exists():
        time.sleep(0.01)
    return publish_one(group, run)


@pytest.fixture
def postgres_store(tmp_path, monkeypatch):
    from pipelines.launch import airflow_local

    if not airflow_local.reachable(POSTGRES):
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432: the advisory lock across processes is not tested")
    import psycopg2

    database = f"airsight_gate_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {database}")
    uri = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("AIRSIGHT_MLFLOW_ARTIFACTS", (tmp_path / "artifacts").as_uri())
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        from mlflow.store.db import utils

        for engine in getattr(utils, "_engines", {}).values():  # close pooled connections, if MLflow keeps them there
            engine.dispose()
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.close()


def test_runs_publishing_at_once_in_processes_on_postgres_leave_one_story(postgres_store, tmp_path):
    assert registry.lock_target()[0] == "postgresql"
    group = gate_world.example_group(tmp_path, "race_pg")
    runs = plan(group, seed=7, dates=DATES[:2])
    go = tmp_path / "go"
    readies = [tmp_path / f"ready-{i}" for i in range(len(runs))]
    with ProcessPoolExecutor(len(runs), mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(publish_in_process, group.model_dump_json(), run, str(ready), str(go))
            for run, ready in zip(runs, readies, strict=True)
        ]
        deadline = time.monotonic() + 300
        while not all(r.exists() for r in readies):
            assert time.monotonic() < deadline, "the worker processes did not start"
            assert not any(f.done() for f in futures), [f.exception() for f in futures if f.done()]
            time.sleep(0.1)
        go.write_text("go")
        outcomes = [f.result(timeout=300) for f in futures]
    story = assert_one_story(group, runs, outcomes)
    print(f"postgres: {[kind for kind, _ in outcomes]} -> {story['champion alias']}")
