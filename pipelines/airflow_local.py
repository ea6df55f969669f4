"""A real Airflow on one machine: scheduler, DAG processor, triggerer and API server on PostgreSQL.

``make airflow`` (``airsight airflow``) runs ``airflow standalone`` with its metadata in
PostgreSQL and the LocalExecutor, so scheduled runs, UI triggers and ``airflow backfill
create`` run in parallel as they would in production (a scheduler on SQLite cannot: its
database locks under concurrent runs). The server is ``$AIRSIGHT_AIRFLOW_DB`` (a SQLAlchemy
URL), by default the local PostgreSQL at 127.0.0.1:5432, database ``airsight_airflow``,
created when missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.demo import DAGS_FOLDER

DEFAULT_DB = "postgresql+psycopg2://postgres@127.0.0.1:5432/airsight_airflow"
DEFAULT_MLFLOW_DB = "postgresql+psycopg2://postgres@127.0.0.1:5432/airsight_mlflow"


def database_url() -> str:
    return os.environ.get("AIRSIGHT_AIRFLOW_DB", DEFAULT_DB)


def mlflow_url() -> str:
    """MLflow's store when tasks run in parallel processes: PostgreSQL, never one SQLite file."""
    return os.environ.get("MLFLOW_TRACKING_URI") or os.environ.get("AIRSIGHT_MLFLOW_DB", DEFAULT_MLFLOW_DB)


def reachable(url: str, timeout: float = 1.0) -> bool:
    """Whether the database server of ``url`` accepts TCP connections."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_database(url: str) -> None:
    """Create the database of ``url`` on its server when it does not exist yet."""
    import psycopg2

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = psycopg2.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username or "postgres",
        password=parts.password, dbname="postgres",
    )  # fmt: skip
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()


def drop_database(url: str) -> None:
    import psycopg2

    parts = urlsplit(url)
    admin = psycopg2.connect(host=parts.hostname, port=parts.port or 5432, user=parts.username or "postgres",
                             password=parts.password, dbname="postgres")  # fmt: skip
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')
    finally:
        admin.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(airflow_home: Path, url: str, port: int = 8080, tracking: str | None = None) -> dict[str, str]:
    """Environment for a local Airflow on PostgreSQL with the LocalExecutor and our DAGs."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking or mlflow_url(),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone starts `airflow` itself
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAG_IGNORE_FILE_SYNTAX": "glob",
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "4"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SIMPLE_AUTH_MANAGER__SIMPLE_AUTH_MANAGER_ALL_ADMINS": os.environ.get(
            "AIRFLOW__SIMPLE_AUTH_MANAGER__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False"
        ),
    }


def airflow(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def start(
    airflow_home: Path,
    url: str | None = None,
    port: int | None = None,
    log_file: Path | None = None,
    tracking: str | None = None,
):
    """Migrate the databases and start ``airflow standalone``; return (process, env, port)."""
    url, tracking = url or database_url(), tracking or mlflow_url()
    if not reachable(url):
        raise RuntimeError(f"no PostgreSQL at {url}: start one or set AIRSIGHT_AIRFLOW_DB to a SQLAlchemy URL")
    ensure_database(url)
    if tracking.startswith("postgresql"):
        ensure_database(tracking)
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=tracking).search_experiments()  # creates its tables once, before any worker
    airflow_home.mkdir(parents=True, exist_ok=True)
    port = port or int(os.environ.get("AIRSIGHT_AIRFLOW_PORT", "8080"))
    env = environment(airflow_home, url, port, tracking)
    airflow(["db", "migrate"], env)
    output = open(log_file, "ab") if log_file else None  # noqa: SIM115  (the child writes to it)
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("airflow")), "standalone"],
        env=env, stdout=output, stderr=output, start_new_session=True,
    )  # fmt: skip
    return process, env, port


def stop(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Stop standalone and every process it started (its own session)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
            time.sleep(1)  # its children leave the group after it
        except subprocess.TimeoutExpired:
            continue


def wait_for_api(port: int, timeout: float = 180.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2):
                return
        except OSError:
            time.sleep(2)
    raise TimeoutError(f"the Airflow API server did not answer on port {port} within {timeout:.0f} s")


def main() -> int:
    """``airsight airflow``: the UI, scheduler and DAG processor on PostgreSQL, until Ctrl-C."""
    home = Path(os.environ.get("AIRSIGHT_HOME") or Path.cwd() / ".airsight")
    process, _, port = start(home / "airflow-postgres")
    print(f"Airflow UI: http://127.0.0.1:{port}  (metadata in {database_url()}, MLflow in {mlflow_url()})", flush=True)
    print(f"Login: the password file is {home / 'airflow-postgres' / 'simple_auth_manager_passwords.json.generated'}")
    try:
        return process.wait()
    except KeyboardInterrupt:
        stop(process)
        return 130


if __name__ == "__main__":
    sys.exit(main())
