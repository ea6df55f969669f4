"""A real Airflow on one machine: scheduler, DAG processor, triggerer and API server on PostgreSQL.

``make airflow`` (``airsight airflow``) runs ``airflow standalone`` with its metadata in
PostgreSQL and the LocalExecutor, so scheduled runs, UI triggers and ``airflow backfill
create`` run in parallel as they would in production (a scheduler on SQLite cannot: its
database locks under concurrent runs). The server is ``$AIRSIGHT_AIRFLOW_DB`` (a SQLAlchemy
URL), by default the local PostgreSQL at 127.0.0.1:5432, database ``airsight_airflow``,
created when missing.

The UI listens on 127.0.0.1 unless ``$AIRSIGHT_AIRFLOW_HOST`` says otherwise (``0.0.0.0`` to
reach it from other machines). Stopping it with Ctrl-C (SIGINT) or SIGTERM stops every process
it started: standalone runs in a session of its own, and each process of that session, and each
process descended from it, gets SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.launch.demo import DAGS_FOLDER

DEFAULT_DB = "postgresql+psycopg2://postgres@127.0.0.1:5432/airsight_airflow"
DEFAULT_MLFLOW_DB = "postgresql+psycopg2://postgres@127.0.0.1:5432/airsight_mlflow"
DEFAULT_HOST = "127.0.0.1"  # the UI is for this machine unless asked otherwise


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


def api_host() -> str:
    """The address the API server and UI bind to: ``$AIRSIGHT_AIRFLOW_HOST``, else 127.0.0.1."""
    return os.environ.get("AIRSIGHT_AIRFLOW_HOST") or DEFAULT_HOST


def local_address(host: str) -> str:
    """Where processes on this machine reach a server bound to ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(
    airflow_home: Path, url: str, port: int = 8080, tracking: str | None = None, host: str | None = None
) -> dict[str, str]:
    """Environment for a local Airflow on PostgreSQL with the LocalExecutor and our DAGs."""
    bin_dir = str(Path(sys.executable).parent)
    host = host or api_host()
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking or mlflow_url(),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone starts `airflow` itself
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        # the serving API at /airsight and the views in the UI (plugins/airsight_serving.py)
        "AIRFLOW__CORE__PLUGINS_FOLDER": os.environ.get(
            "AIRSIGHT_PLUGINS_FOLDER", str(Path(DAGS_FOLDER).parent / "plugins")
        ),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAG_IGNORE_FILE_SYNTAX": "glob",
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "4"),
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{local_address(host)}:{port}/execution/",
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


def prepare(
    airflow_home: Path, url: str | None = None, port: int | None = None, tracking: str | None = None
) -> tuple[dict[str, str], int]:
    """Create and migrate the databases of a local Airflow; return its environment and API port."""
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
    return env, port


def launch(env: dict[str, str], log_file: Path | None = None) -> subprocess.Popen:
    """Start ``airflow standalone`` in a session of its own, so that everything it starts can be found."""
    output = open(log_file, "ab") if log_file else None  # noqa: SIM115  (the child writes to it)
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("airflow")), "standalone"],
        env=env, stdout=output, stderr=output, start_new_session=True,
    )  # fmt: skip


def start(
    airflow_home: Path,
    url: str | None = None,
    port: int | None = None,
    log_file: Path | None = None,
    tracking: str | None = None,
):
    """Migrate the databases and start ``airflow standalone``; return (process, env, port)."""
    env, port = prepare(airflow_home, url, port, tracking)
    return launch(env, log_file), env, port


def _process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, start time) of every running process, from /proc (none elsewhere)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # what follows "pid (comm)"
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] not in ("Z", "X"):  # a zombie has ended; only its parent's wait is missing
            table[int(stat.parent.name)] = (int(fields[1]), int(fields[3]), fields[19])
    return table


def started_by(pid: int) -> dict[int, str]:
    """The processes ``pid`` started, with their start times: its session (a task in a process
    group of its own stays in it) and every descendant (one in a session of its own too)."""
    table = _process_table()
    found = {p: start for p, (_, session, start) in table.items() if session == pid and p != pid}
    children: dict[int, list[int]] = {}
    for p, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(p)
    todo = [pid, *found]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = table[child][2]
                todo.append(child)
    return found


def _alive(processes: dict[int, str]) -> dict[int, str]:
    """Those of ``processes`` still running as the same process (a pid can be reused)."""
    table = _process_table()
    return {p: start for p, start in processes.items() if p in table and table[p][2] == start}


def _signal(processes: Iterable[int], sig: int) -> None:
    for pid in processes:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop(process: subprocess.Popen, timeout: float = 30.0, known: dict[int, str] | None = None) -> None:
    """Stop ``process`` and every process it started: SIGTERM to all, wait up to ``timeout``
    seconds for them to end, then SIGKILL to what is left. ``known`` (pid -> start time, from
    ``started_by``) adds those seen earlier: a descendant in a session of its own can no longer
    be found once its parent has died."""
    signalled = _alive(known or {}) | started_by(process.pid)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)  # started in a session of its own: it leads the group
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # in case it left its group
    _signal(signalled, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        late = {p: s for p, s in started_by(process.pid).items() if p not in signalled}
        _signal(late, signal.SIGTERM)  # started while the others were stopping
        signalled = _alive(signalled | late)
        if process.poll() is not None and not signalled:
            return
        time.sleep(0.2)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    signalled = _alive(signalled | started_by(process.pid))
    _signal(signalled, signal.SIGKILL)
    if process.poll() is None:
        process.kill()
    with suppress(subprocess.TimeoutExpired):
        process.wait(5)
    deadline = time.monotonic() + 5  # SIGKILL is delivered, not waited for: see them gone
    while _alive(signalled) and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_for_api(port: int, timeout: float = 180.0, host: str | None = None) -> None:
    import urllib.request

    address = local_address(host or api_host())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{address}:{port}/api/v2/monitor/health", timeout=2):
                return
        except OSError:
            time.sleep(2)
    raise TimeoutError(f"the Airflow API server did not answer on port {port} within {timeout:.0f} s")


class Stopped(Exception):
    """SIGINT or SIGTERM arrived."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """SIGINT and SIGTERM raise Stopped, except between ``defer()`` and ``resume()``: the first
    one that comes then is kept and raised by ``resume()``, so a process being started is never lost."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.pending: int | None = None
        self._deferring = False
        self._previous = {}

    def __enter__(self) -> StopSignals:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self._deferring:
            self.pending = self.pending or signum
        else:
            raise Stopped(signum)

    def defer(self) -> None:
        self._deferring = True

    def resume(self) -> None:
        self._deferring = False
        if self.pending:
            raise Stopped(self.pending)

    def ignore(self) -> None:
        """From now on, ignore them: a second Ctrl-C must not cut the clean-up short."""
        self._deferring = True  # not raised; kept for the record


def supervise(process: subprocess.Popen, signals: StopSignals, grace: float = 30.0) -> int:
    """Wait for ``process``; on SIGINT or SIGTERM, or when it ends, stop everything it started.

    Returns its exit code, or 128 + the signal's number when a signal stopped it. A signal that
    came after ``signals.defer()``, while the process was being started, stops it at once.
    """
    known: dict[int, str] = {}
    code = None
    try:
        signals.resume()
        while code is None:
            known = _alive(known) | started_by(process.pid)  # while the tree can still be walked
            with suppress(subprocess.TimeoutExpired):
                code = process.wait(timeout=1.0)
    except Stopped as stopped:
        code = 128 + stopped.signum
    signals.ignore()
    stop(process, grace, known)
    return code


def main() -> int:
    """``airsight airflow``: the UI, scheduler and DAG processor on PostgreSQL, until Ctrl-C or SIGTERM."""
    home = Path(os.environ.get("AIRSIGHT_HOME") or Path.cwd() / ".airsight")
    passwords = home / "airflow-postgres" / "simple_auth_manager_passwords.json.generated"
    with StopSignals() as signals:
        try:
            env, port = prepare(home / "airflow-postgres")  # interrupted at once: nothing runs yet
        except Stopped as stopped:
            return 128 + stopped.signum
        signals.defer()
        process = launch(env)
        print(f"Airflow UI: http://{api_host()}:{port}  (metadata in {database_url()}, MLflow in {mlflow_url()})")
        print(f"Login: the password file is {passwords}", flush=True)
        return supervise(process, signals)


if __name__ == "__main__":
    sys.exit(main())
