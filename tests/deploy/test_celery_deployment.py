"""The scale-out deployment on real engines, started role by role with ``airsight deploy``.

Fresh PostgreSQL databases (a unique prefix per run, dropped at the end) and an empty Redis
database hold one deployment: MLflow's tracking server behind its basic-auth app, Airflow's API
server (the serving API mounted at /airsight), scheduler and DAG processor on the CeleryExecutor,
two Celery workers with hostnames of their own, and ``airsight serve`` on the serving store the
mounted API shares. Both example DAGs are triggered and the interactions group is backfilled over
three dates with three runs at once; every run must succeed, tasks must have run on both workers,
the registry, ``decision.json`` and ``latest.json`` must agree, and the mounted API must refuse a
read-only key a write. Skips only where PostgreSQL or Redis cannot be reached.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from pipelines.launch import airflow_local, deploy
from tests.dags.scheduler import query

POSTGRES = os.environ.get("AIRSIGHT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")  # a server, no database
REDIS = os.environ.get("AIRSIGHT_TEST_REDIS", "redis://127.0.0.1:6379")  # a server, no database number
FORECAST, PERSONALIZE = "forecast__retail_demo", "personalize__interactions_demo"
BACKFILL = ("2024-05-01", "2024-05-03")  # three daily runs
RUNS_TIMEOUT = float(os.environ.get("AIRSIGHT_CELERY_TEST_TIMEOUT", 420))
# Small and fast: two algorithms and one recipe (the DAGs are the same at any size).
TRAINING = {
    "retail_demo": {"algorithms": ["SeasonalNaive", "Theta"]},
    "interactions_demo": {"recipes": ["popularity-count"]},
}


def _redis_database():
    """An empty Redis database number (Celery's broker for this run only); skip where Redis is unreachable."""
    import airflow.providers.celery  # noqa: F401
    import redis  # the deploy extra, which `make test` installs: missing, the test fails

    try:
        redis.Redis.from_url(REDIS, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS} ({exc}): the Celery deployment test needs one")
    claim = uuid.uuid4().hex
    for number in sorted(range(1, 16), key=lambda _: uuid.uuid4().hex):
        client = redis.Redis.from_url(f"{REDIS}/{number}")
        # Claimed atomically: two runs at once that both see an empty database cannot both take it.
        if client.dbsize() == 0 and client.set("airsight-test:broker-claim", claim, nx=True):
            return client, number
    pytest.fail(f"every Redis database 1-15 at {REDIS} holds keys: none is free for the broker")


@dataclass
class Deployment:
    env: dict[str, str]  # what the roles inherit (the deployment's settings)
    settings: deploy.DeploySettings
    logs: Path
    groups: dict[str, Path]
    processes: dict[str, object] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    @property
    def serve(self) -> str:
        return f"http://127.0.0.1:{self.settings.serve_port}"

    @property
    def airflow_db(self) -> str:
        return self.settings.database("airflow")

    def role_env(self, role: str) -> dict[str, str]:
        return {**self.env, **deploy.environment(role, self.settings)}

    def start(self, role: str, *extra: str, label: str | None = None) -> None:
        label = label or role
        self.processes[label] = deploy.start(role, self.env, *extra, log_file=self.logs / f"{label}.log")

    def check_alive(self) -> None:
        for label, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{label} exited with {process.returncode}:\n{self.tail(label)}")

    def tail(self, label: str, chars: int = 3000) -> str:
        path = self.logs / f"{label}.log"
        return path.read_text(errors="replace")[-chars:] if path.is_file() else "(no log)"

    def wait(self, condition, timeout: float, what: str, every: float = 2.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            found = condition()
            if found:
                return found
            time.sleep(every)
        tails = "\n".join(f"--- {label}\n{self.tail(label, 1500)}" for label in self.processes)
        raise TimeoutError(f"{what} within {timeout:.0f} s\n{tails}")

    def rest(self) -> httpx.Client:
        """A client of Airflow's REST API with a token for the admin user the API server generated."""
        home = Path(self.role_env("api-server")["AIRFLOW_HOME"])
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        login = httpx.post(f"{self.api}/auth/token", json={"username": "admin", "password": password}, timeout=60)
        assert login.status_code in (200, 201), login.text
        token = login.json()["access_token"]
        return httpx.Client(base_url=f"{self.api}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.processes) or 1) as pool:  # SIGTERM, grace, SIGKILL: all at once
            list(pool.map(lambda p: airflow_local.stop(p, timeout=20), self.processes.values()))


def _answers(url: str, **kwargs) -> bool:
    try:
        return httpx.get(url, timeout=3, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


def _write_groups(root: Path) -> dict[str, Path]:
    from pipelines.example_data import write_examples

    written = write_examples(root)
    for name, path in written.items():
        body = yaml.safe_load(path.read_text())
        body["training"] = {**body.get("training", {}), **TRAINING[name]}
        path.write_text(yaml.safe_dump(body, sort_keys=False))
    return written


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    if not airflow_local.reachable(POSTGRES):
        pytest.skip(f"no PostgreSQL at {POSTGRES}: the Celery deployment test needs one")
    broker, number = _redis_database()
    root = tmp_path_factory.mktemp("celery_deployment")
    (root / "logs").mkdir()
    groups = _write_groups(root / "examples")
    ports = {name: airflow_local.free_port() for name in ("api", "mlflow", "serve", "log1", "log2")}
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AIRSIGHT_", "MLFLOW_"))}
    env = {
        **inherited,
        **deploy.fresh_secrets(),
        "AIRSIGHT_POSTGRES": POSTGRES,
        "AIRSIGHT_DATABASE_PREFIX": f"airsight_celery_{uuid.uuid4().hex[:8]}_",
        "AIRSIGHT_REDIS_URL": f"{REDIS}/{number}",
        "AIRSIGHT_API_PORT": str(ports["api"]),
        "AIRSIGHT_MLFLOW_PORT": str(ports["mlflow"]),
        "AIRSIGHT_MLFLOW_WORKERS": "1",
        "AIRSIGHT_SERVE_PORT": str(ports["serve"]),
        "AIRSIGHT_SERVE_WORKERS": "1",
        "AIRSIGHT_WORKER_CONCURRENCY": "2",
        "AIRSIGHT_HOME": str(root / "home"),
        "AIRSIGHT_GROUPS_DIR": str(root / "examples" / "groups.d"),
        # The test's own tuning, not the deployment's: no scheduled runs (only those it makes), quick polls.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
    settings = deploy.DeploySettings.from_env(env)
    run = Deployment(env, settings, root / "logs", groups)
    try:
        run.processes["init"] = deploy.start("init", env, log_file=run.logs / "init.log")
        assert run.processes["init"].wait(300) == 0, run.tail("init")
        del run.processes["init"]
        run.start("mlflow")
        run.start("api-server")
        run.start("scheduler")
        run.start("dag-processor")
        run.start("worker", "--name", "worker-1", "--log-port", str(ports["log1"]), label="worker-1")
        run.start("worker", "--name", "worker-2", "--log-port", str(ports["log2"]), label="worker-2")
        run.start("serve")
        run.wait(lambda: _answers(f"{settings.tracking_uri}/health"), 180, "MLflow did not answer")
        run.wait(lambda: _answers(f"{run.api}/api/v2/monitor/health"), 240, "the API server did not answer")
        run.wait(lambda: _answers(f"{run.serve}/openapi.json"), 120, "airsight serve did not answer")
        parsed = f"SELECT dag_id FROM dag WHERE dag_id IN ('{FORECAST}', '{PERSONALIZE}')"
        run.wait(lambda: len(query(run.airflow_db, parsed)) == 2, 240, "the DAGs were not parsed")
        yield run
    finally:
        run.stop()
        for name in deploy.DATABASES:
            airflow_local.drop_database(settings.database(name))
        broker.flushdb()


@pytest.fixture(scope="module")
def workload(deployment):
    """Both DAGs triggered and a three-date backfill of three runs at once, waited for."""
    run, started = deployment, time.monotonic()
    with run.rest() as api:  # Airflow's REST API, logged in as the admin the API server generated
        for dag_id in (FORECAST, PERSONALIZE):
            assert api.patch(f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
            triggered = api.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
            assert triggered.status_code == 200, triggered.text
        window = {"from_date": f"{BACKFILL[0]}T00:00:00Z", "to_date": f"{BACKFILL[1]}T00:00:00Z"}
        created = api.post("/backfills", json={"dag_id": PERSONALIZE, **window, "max_active_runs": 3})
        assert created.status_code == 200, created.text

    def finished() -> bool:
        states = query(run.airflow_db, "SELECT state FROM dag_run")
        return len(states) == 5 and all(state in ("success", "failed") for (state,) in states)

    try:
        run.wait(finished, RUNS_TIMEOUT, "the runs did not finish", every=5)
    except TimeoutError as exc:
        unfinished = "SELECT dag_id, run_id, task_id, map_index, state, try_number, hostname FROM task_instance "
        states = query(run.airflow_db, unfinished + "WHERE state IS DISTINCT FROM 'success' ORDER BY 1, 2")
        raise TimeoutError(f"{exc}\nunfinished task instances:\n" + "\n".join(map(str, states))) from None
    runs = query(run.airflow_db, "SELECT dag_id, run_id, run_type, state, start_date, end_date, backfill_id "
                                 "FROM dag_run ORDER BY dag_id, run_id")  # fmt: skip
    tasks = query(run.airflow_db, "SELECT dag_id, run_id, task_id, map_index, state, hostname FROM task_instance")
    print(f"\n{len(runs)} runs and {len(tasks)} task instances in {time.monotonic() - started:.0f} s")
    return runs, tasks


def test_every_run_succeeds(deployment, workload):
    runs, tasks = workload
    failed = [t for t in tasks if t[4] not in ("success", "skipped")]
    logs = {p.name: p.read_text(errors="replace")[-2000:] for p in deployment.logs.glob("worker-*.log")}
    assert {(dag, state) for dag, _, _, state, *_ in runs} == {(FORECAST, "success"), (PERSONALIZE, "success")}, (
        runs,
        failed,
        logs,
    )
    kinds = sorted((dag, kind) for dag, _, kind, *_ in runs)
    assert kinds == [(FORECAST, "manual"), *[(PERSONALIZE, "backfill")] * 3, (PERSONALIZE, "manual")]


def test_the_backfill_ran_three_runs_at_once(deployment, workload):
    runs, _ = workload
    (backfill,) = {row[6] for row in runs if row[6] is not None}
    assert query(deployment.airflow_db, "SELECT max_active_runs FROM backfill WHERE id = %s", backfill) == [(3,)]
    spans = [(start, end) for *_, start, end, backfill_id in runs if backfill_id is not None]
    overlapping = max(sum(s <= start < e for s, e in spans) for start, _ in spans)
    assert overlapping >= 2, f"the backfill's runs ran one after the other: {spans}"


def test_tasks_ran_on_both_workers(workload):
    _, tasks = workload
    hosts = {hostname for *_, state, hostname in tasks if state == "success"}
    assert hosts == {"worker-1", "worker-2"}, hosts


def test_the_champion_alias_decision_and_latest_agree(deployment):
    from mlflow import MlflowClient

    from pipelines.training import publish
    from pipelines.training import pyfunc as models

    env = deployment.role_env("serve")
    credentials = {k: env[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    home = Path(env["AIRSIGHT_HOME"])
    with mock.patch.dict(os.environ, {**credentials, "AIRSIGHT_HOME": str(home)}):
        uri = env["MLFLOW_TRACKING_URI"]  # the registry too: never a registry URI an earlier test set globally
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        for kind, group in (("forecast", "retail_demo"), ("personalize", "interactions_demo")):
            champion = client.get_registered_model(models.registered_name(kind, group)).aliases["champion"]
            pointer = publish.latest(str(home / "groups" / group), kind)
            decision = json.loads((Path(pointer["path"]) / "decision.json").read_text())
            story = {"champion alias": str(champion), "latest.json": str(pointer["served_version"]),
                     "decision.json": str(decision["served_version"])}  # fmt: skip
            assert len(set(story.values())) == 1, (group, story)
            if kind == "personalize":  # the manual run (as of now) is newer than every backfilled date
                assert pointer["as_of"] > f"{BACKFILL[1]}T23:59", pointer
    with httpx.Client(timeout=10) as http:  # MLflow's own API refuses anyone without an account
        refused = http.get(f"{env['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/registered-models/search")
        assert refused.status_code == 401


def _create_key(deployment, name: str, scopes: str) -> str:
    import subprocess

    made = subprocess.run([deploy._program("airsight"), "serve", "--create-key", name, "--scopes", scopes],
                          env=deployment.role_env("serve"), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def test_the_api_mounted_in_airflow_refuses_a_read_only_key_a_write(deployment, workload):
    reader = {"Authorization": f"Bearer {_create_key(deployment, 'reader', 'read')}"}
    writer = {"Authorization": f"Bearer {_create_key(deployment, 'writer', 'read,write')}"}
    event = {"eventType": "click", "itemId": "i0001", "sentAt": int(time.time())}
    body = {"trackingId": "interactions_demo", "userId": "u-celery", "sessionId": "s-celery", "eventList": [event]}
    with httpx.Client(timeout=30) as http:
        mounted = f"{deployment.api}/airsight"
        assert http.post(f"{mounted}/events", json=body, headers=reader).status_code == 403
        accepted = http.post(f"{mounted}/events", json=body, headers=writer)
        assert accepted.status_code == 200, accepted.text
        # The keys made on the serving store work on `airsight serve` too: one store for both. Its poll
        # thread picks the published forecast up on its own schedule (after loading the champions).
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            health = http.get(f"{deployment.serve}/health").json()
            if health.get("forecasts", {}).get("retail_demo", {}).get("status") == "ok":
                break
            time.sleep(2)
        served = http.get(f"{deployment.serve}/forecasts/retail_demo/items", headers=reader)
        assert served.status_code == 200, served.text
        assert http.post(f"{deployment.serve}/events", json=body, headers=reader).status_code == 403
    assert urlsplit(deployment.settings.database("serving")).path.endswith("_serving")
