"""Airsight on plain hosts: one command per role, every role's environment from one settings object.

``airsight deploy ROLE`` starts one process of the scale-out topology (the one docker-compose.yaml
runs in containers) in the foreground, in place of itself, so a process supervisor (systemd,
supervisord, a shell) sees the role's own process and its signals reach it:

    init           create the databases, migrate Airflow's and MLflow's, create the serving store (once)
    mlflow         MLflow tracking server on PostgreSQL behind its basic-auth app, artifacts proxied
    api-server     Airflow's API server and UI, with the serving API mounted at /airsight
    scheduler      Airflow's scheduler (CeleryExecutor: it queues tasks in Redis)
    dag-processor  Airflow's DAG processor
    triggerer      Airflow's triggerer
    worker         a Celery worker that runs tasks (``--name`` for several on one host)
    serve          ``airsight serve`` on the shared PostgreSQL serving store

Configuration is read once, from environment variables, into ``DeploySettings``; ``environment``
computes what each role gets from it. The secrets have the names docker-compose.yaml reads, so one
``.env`` file serves both (``airsight deploy secrets`` writes a fresh one); tests/test_deploy.py
checks the compose file against ``environment`` and ``command`` for the same roles.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.launch.demo import DAGS_FOLDER

ROLES = ("init", "mlflow", "api-server", "scheduler", "dag-processor", "triggerer", "worker", "serve")
AIRFLOW_ROLES = {"api-server": ["api-server"], "scheduler": ["scheduler"], "dag-processor": ["dag-processor"],
                 "triggerer": ["triggerer"], "worker": ["celery", "worker"]}  # fmt: skip
SECRETS = ("AIRFLOW_JWT_SECRET", "AIRFLOW_SECRET_KEY", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY")
DATABASES = ("airflow", "mlflow", "mlflow_auth", "serving")  # on one PostgreSQL server
HOSTNAME_ENV = "AIRSIGHT_HOSTNAME"  # the hostname a named worker records on its task instances
# The settings docker-compose.yaml runs with (its service names as hosts, the image's paths): each
# service's environment and command there are what ``environment`` and ``command`` give its role.
COMPOSE_SETTINGS = {
    "AIRSIGHT_POSTGRES": "postgresql://airsight:airsight@postgres:5432",
    "AIRSIGHT_REDIS_URL": "redis://redis:6379/0",
    "AIRSIGHT_API_HOST": "0.0.0.0",
    "AIRSIGHT_API_URL": "http://airflow-apiserver:8080",
    "AIRSIGHT_MLFLOW_HOST": "0.0.0.0",
    "AIRSIGHT_MLFLOW_URL": "http://mlflow:5000",
    "AIRSIGHT_SERVE_HOST": "0.0.0.0",
    "AIRSIGHT_HOME": "/data/airsight",
    "AIRSIGHT_GROUPS_DIR": "/data/groups.d",
    "AIRFLOW_HOME": "/opt/airflow",
    "AIRSIGHT_DAGS_FOLDER": "/opt/airsight/dags",
    "AIRSIGHT_MLFLOW_AUTH_CONFIG": "/etc/airsight/mlflow-auth.ini",
}
COMPOSE_SERVICES = {"mlflow": "mlflow", "airflow-init": "init", "airflow-apiserver": "api-server",
                    "airflow-scheduler": "scheduler", "airflow-dag-processor": "dag-processor",
                    "airflow-triggerer": "triggerer", "airflow-worker": "worker", "serving": "serve"}  # fmt: skip


class DeployError(ValueError):
    """The deployment settings are incomplete or wrong (exit code 2)."""


def hostname() -> str:
    """Airflow's ``hostname_callable``: ``$AIRSIGHT_HOSTNAME`` (a named worker), else the host's FQDN.

    Several workers on one host would otherwise record the same hostname on their task instances.
    """
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()


@dataclass(frozen=True)
class DeploySettings:
    """Where every service of the deployment is and what it shares; ``from_env`` reads it."""

    postgres: str = "postgresql://postgres@127.0.0.1:5432"  # the server, without a database
    database_prefix: str = ""  # prefixes every database name (several deployments on one server)
    redis: str = "redis://127.0.0.1:6379/0"  # Celery's broker
    api_host: str = "127.0.0.1"  # where the API server binds
    api_port: int = 8080
    api_url: str = ""  # where workers reach the API server (execution API); empty: from host and port
    mlflow_host: str = "127.0.0.1"
    mlflow_port: int = 5000
    mlflow_url: str = ""  # where clients reach MLflow; empty: from host and port
    mlflow_workers: int = 4
    mlflow_public_hosts: str = "127.0.0.1"  # more Host headers MLflow answers (comma-separated)
    mlflow_username: str = "admin"
    serve_host: str = "127.0.0.1"
    serve_port: int = 8800
    serve_workers: int = 2
    worker_concurrency: int | None = None  # None: Airflow's default
    home: str = ""  # $AIRSIGHT_HOME: data, outputs
    groups_dir: str = ""  # $AIRSIGHT_GROUPS_DIR; empty: <home>/groups.d
    airflow_home: str = ""  # empty: <home>/airflow
    artifacts: str = ""  # MLflow's artifact store (a path or an fsspec/S3 URI); empty: <home>/mlartifacts
    mlflow_auth_config: str = ""  # the basic-auth app's ini file, written by the mlflow role; empty: <home>/...
    dags_folder: str = str(DAGS_FOLDER)
    plugins_folder: str = ""  # empty: the plugins folder beside the DAGs folder
    fernet_key: str = ""
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> DeploySettings:
        env = os.environ if env is None else env
        defaults = cls()

        def get(name: str, default):
            value = env.get(name)
            return default if value in (None, "") else type(default)(value) if default is not None else int(value)

        home = env.get("AIRSIGHT_HOME") or str(Path.cwd() / ".airsight")
        return cls(
            postgres=get("AIRSIGHT_POSTGRES", defaults.postgres).rstrip("/"),
            database_prefix=get("AIRSIGHT_DATABASE_PREFIX", ""),
            redis=get("AIRSIGHT_REDIS_URL", defaults.redis),
            api_host=get("AIRSIGHT_API_HOST", defaults.api_host),
            api_port=get("AIRSIGHT_API_PORT", defaults.api_port),
            api_url=get("AIRSIGHT_API_URL", ""),
            mlflow_host=get("AIRSIGHT_MLFLOW_HOST", defaults.mlflow_host),
            mlflow_port=get("AIRSIGHT_MLFLOW_PORT", defaults.mlflow_port),
            mlflow_url=get("AIRSIGHT_MLFLOW_URL", ""),
            mlflow_workers=get("AIRSIGHT_MLFLOW_WORKERS", defaults.mlflow_workers),
            mlflow_public_hosts=get("MLFLOW_PUBLIC_HOSTS", defaults.mlflow_public_hosts),
            mlflow_username=get("MLFLOW_ADMIN_USERNAME", defaults.mlflow_username),
            serve_host=get("AIRSIGHT_SERVE_HOST", defaults.serve_host),
            serve_port=get("AIRSIGHT_SERVE_PORT", defaults.serve_port),
            serve_workers=get("AIRSIGHT_SERVE_WORKERS", defaults.serve_workers),
            worker_concurrency=get("AIRSIGHT_WORKER_CONCURRENCY", None),
            home=home,
            groups_dir=get("AIRSIGHT_GROUPS_DIR", ""),
            airflow_home=get("AIRFLOW_HOME", ""),
            artifacts=get("AIRSIGHT_MLFLOW_ARTIFACT_STORE", ""),
            mlflow_auth_config=get("AIRSIGHT_MLFLOW_AUTH_CONFIG", ""),
            dags_folder=get("AIRSIGHT_DAGS_FOLDER", defaults.dags_folder),
            plugins_folder=get("AIRSIGHT_PLUGINS_FOLDER", ""),
            fernet_key=get("AIRFLOW_FERNET_KEY", ""),
            secrets={name: env[name] for name in SECRETS if env.get(name)},
        )

    # Derived places: one definition each.

    def database(self, name: str, driver: str = "postgresql") -> str:
        """The URL of the deployment's database ``name`` (airflow, mlflow, mlflow_auth, serving)."""
        return f"{driver}{self.postgres.removeprefix(self.postgres.split('://')[0])}/{self.database_prefix}{name}"

    def databases(self) -> list[str]:
        return [f"{self.database_prefix}{name}" for name in DATABASES]

    @property
    def execution_api(self) -> str:
        base = self.api_url or f"http://{_local(self.api_host)}:{self.api_port}"
        return f"{base.rstrip('/')}/execution/"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_url or f"http://{_local(self.mlflow_host)}:{self.mlflow_port}"

    def path(self, value: str, default: str) -> str:
        return value or str(Path(self.home) / default)

    def allowed_hosts(self) -> list[str]:
        """The Host headers MLflow answers: its clients' name (with and without port) and this host's."""
        client = urlsplit(self.tracking_uri)
        hosts = [client.hostname, client.netloc, "localhost", f"localhost:{self.mlflow_port}",
                 f"127.0.0.1:{self.mlflow_port}", *self.mlflow_public_hosts.split(",")]  # fmt: skip
        return list(dict.fromkeys(h for h in hosts if h))

    def secret(self, name: str) -> str:
        if not self.secrets.get(name):
            raise DeployError(f"set {name} (the same for every role; `airsight deploy secrets` writes fresh ones)")
        return self.secrets[name]


def _local(host: str) -> str:
    """Where this machine reaches a server bound to ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def environment(role: str, settings: DeploySettings, name: str | None = None, log_port: int | None = None) -> dict:
    """The variables ``role`` gets (beside the inherited ones): the one definition for every role.

    Every role gets the same Airflow, MLflow-client and Airsight settings, so the serving API that
    Airflow's API server mounts and ``airsight serve`` share one store, and every task reaches the
    same MLflow; the mlflow role adds its server's own; a named worker adds its hostname.
    """
    if role not in ROLES:
        raise DeployError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    s = settings
    env = {
        "AIRFLOW_HOME": s.path(s.airflow_home, "airflow"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": s.database("airflow", "postgresql+psycopg2"),
        # SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3, which is not installed: name psycopg2.
        "AIRFLOW__CELERY__RESULT_BACKEND": s.database("airflow", "db+postgresql+psycopg2"),
        "AIRFLOW__CELERY__BROKER_URL": s.redis,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": s.dags_folder,
        "AIRFLOW__CORE__PLUGINS_FOLDER": s.plugins_folder or str(Path(s.dags_folder).parent / "plugins"),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.hostname",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": s.execution_api,
        "AIRFLOW__API_AUTH__JWT_SECRET": s.secret("AIRFLOW_JWT_SECRET"),
        "AIRFLOW__API__SECRET_KEY": s.secret("AIRFLOW_SECRET_KEY"),  # signs log requests to the workers
        "AIRFLOW__CORE__FERNET_KEY": s.fernet_key,
        # Every process that runs tasks or serves reaches MLflow as the same user; artifacts go through it.
        "MLFLOW_TRACKING_URI": s.tracking_uri,
        "MLFLOW_TRACKING_USERNAME": s.mlflow_username,
        "MLFLOW_TRACKING_PASSWORD": s.secret("MLFLOW_ADMIN_PASSWORD"),
        # Artifacts through the server (experiments are created at "<this>/<name>": mlflow-artifacts:/<name>).
        "AIRSIGHT_MLFLOW_ARTIFACTS": "mlflow-artifacts:",
        # The registry gate's lock: MLflow's own database (the workers cannot lock through its HTTP API).
        "AIRSIGHT_GATE_LOCK_URL": s.database("mlflow"),
        # One serving store for `airsight serve` and the API mounted in Airflow's API server.
        "AIRSIGHT_SERVING_DB": s.database("serving"),
        "AIRSIGHT_HOME": s.home,
        "AIRSIGHT_GROUPS_DIR": s.path(s.groups_dir, "groups.d"),
        "AIRSIGHT_DAGS_FOLDER": s.dags_folder,
    }
    if role == "mlflow":
        env |= {
            "MLFLOW_AUTH_CONFIG_PATH": s.path(s.mlflow_auth_config, "mlflow-auth.ini"),
            "MLFLOW_AUTH_ADMIN_USERNAME": s.mlflow_username,
            "MLFLOW_AUTH_ADMIN_PASSWORD": s.secret("MLFLOW_ADMIN_PASSWORD"),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": s.secret("MLFLOW_SECRET_KEY"),
        }
    if role == "worker" and name:
        env[HOSTNAME_ENV] = name
    if role == "worker" and log_port:
        env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(log_port)
    return env


def _program(name: str) -> str:
    """The console script ``name`` of this installation (beside its Python), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else name


def command(role: str, settings: DeploySettings, name: str | None = None) -> list[str]:
    """The command line of ``role`` (init runs in this process and has none)."""
    s = settings
    if role in AIRFLOW_ROLES:
        args = [_program("airflow"), *AIRFLOW_ROLES[role]]
        if role == "api-server":
            args += ["--host", s.api_host, "--port", str(s.api_port)]
        if role == "worker" and name:
            args += ["--celery-hostname", f"{name}@%h"]
        if role == "worker" and s.worker_concurrency:
            args += ["--concurrency", str(s.worker_concurrency)]
        return args
    if role == "mlflow":
        return [_program("mlflow"), "server", "--host", s.mlflow_host, "--port", str(s.mlflow_port),
                "--app-name", "basic-auth", "--backend-store-uri", s.database("mlflow", "postgresql+psycopg2"),
                "--artifacts-destination", s.path(s.artifacts, "mlartifacts"), "--serve-artifacts",
                "--allowed-hosts", ",".join(s.allowed_hosts()), "--workers", str(s.mlflow_workers)]  # fmt: skip
    if role == "serve":
        return [_program("airsight"), "serve", "--host", s.serve_host, "--port", str(s.serve_port),
                "--workers", str(s.serve_workers)]  # fmt: skip
    raise DeployError(f"{role} runs in process: it has no command line")


def auth_config(settings: DeploySettings) -> dict[str, str]:
    """MLflow's basic-auth settings (deploy/mlflow-auth.ini holds the same for compose)."""
    return {
        "default_permission": "READ",  # accounts get READ on what they did not create; no account, nothing
        "database_uri": settings.database("mlflow_auth", "postgresql+psycopg2"),
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access": "false",
    }


def write_auth_config(settings: DeploySettings, path: str) -> None:
    body = "".join(f"{key} = {value}\n" for key, value in auth_config(settings).items())
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f"# Written by `airsight deploy mlflow` from the deployment settings.\n[mlflow]\n{body}")
    target.chmod(0o600)  # it names the database and its credentials


def init(settings: DeploySettings) -> None:
    """Create the databases, migrate Airflow's and MLflow's, create the serving store's tables."""
    from pipelines.launch import airflow_local

    url = settings.database("airflow", "postgresql+psycopg2")
    if not airflow_local.reachable(url):
        raise DeployError(f"no PostgreSQL at {settings.postgres} (set AIRSIGHT_POSTGRES)")
    for name in DATABASES:
        airflow_local.ensure_database(settings.database(name))
    env = {**os.environ, **environment("init", settings)}
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    Path(env["AIRSIGHT_GROUPS_DIR"]).mkdir(parents=True, exist_ok=True)
    airflow_local.airflow(["db", "migrate"], env)
    # MLflow's tables once, before its server's workers start side by side.
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=settings.database("mlflow", "postgresql+psycopg2")).search_experiments()
    from pipelines.serving.store import Store

    Store(settings.database("serving")).close()


def fresh_secrets() -> dict[str, str]:
    """New values for every secret the roles share (and a Fernet key for Airflow's connections)."""
    import base64

    values = {name: secrets.token_urlsafe(32) for name in SECRETS}
    values["AIRFLOW_FERNET_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
    return values


def add_arguments(parser) -> None:
    parser.add_argument("role", choices=[*ROLES, "secrets"], help="the role to start (or `secrets`: print new ones)")
    parser.add_argument("--name", help="worker: its Celery node name and the hostname its task instances record "
                        "(for several workers on one host)")  # fmt: skip
    parser.add_argument("--log-port", type=int, help="worker: port of its log server (default 8793)")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the role's environment and command instead of running it")  # fmt: skip


def run(args) -> int:
    if args.role == "secrets":
        for key, value in fresh_secrets().items():
            print(f"{key}={value}")
        return 0
    try:
        settings = DeploySettings.from_env()
        env = environment(args.role, settings, args.name, args.log_port)
        argv = None if args.role == "init" else command(args.role, settings, args.name)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_only:
        for key, value in env.items():
            print(f"{key}={value}")
        if argv:
            print("# " + " ".join(argv))
        return 0
    if args.role == "init":
        try:
            init(settings)
        except DeployError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"databases {', '.join(settings.databases())} ready on {settings.postgres}")
        return 0
    if args.role == "mlflow":
        write_auth_config(settings, env["MLFLOW_AUTH_CONFIG_PATH"])
        Path(settings.path(settings.artifacts, "mlartifacts")).mkdir(parents=True, exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)  # the role's own programs start `airflow`, `celery`, ...
    full = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(argv[0], argv, full)  # the role's process takes this one's place: signals reach it
    return 1  # not reached


def start(role: str, env: dict[str, str], *extra: str, log_file: Path | None = None) -> subprocess.Popen:
    """Start ``airsight deploy ROLE`` in a session of its own (``airflow_local.stop`` ends it and its tree)."""
    output = open(log_file, "ab") if log_file else None  # noqa: SIM115  (the child writes to it)
    try:
        return subprocess.Popen([_program("airsight"), "deploy", role, *extra], env=env, stdout=output,
                                stderr=subprocess.STDOUT if output else None, start_new_session=True)  # fmt: skip
    finally:
        if output:
            output.close()
