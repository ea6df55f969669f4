"""docker-compose.yaml and the Dockerfile against what the code reads (Docker cannot run here).

Each compose service runs what ``airsight deploy ROLE`` runs for its role on a plain host
(pipelines/deploy.py, with its COMPOSE_SETTINGS): the same environment, the same command.

The compose file is read as Compose reads it (anchors, merge keys, ``${VAR:-default}`` and
``${VAR:?error}`` interpolation, ``$$``), then every process is checked with the project's own
settings readers and MLflow's own host check, fed the environment that process would get.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from pipelines import settings as group_settings
from pipelines.launch import deploy
from pipelines.serving.settings import ServingSettings
from pipelines.training import registry

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {name: f"{name.lower()}-value" for name in deploy.SECRETS}
_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value, env: dict[str, str]):
    """Compose's interpolation of ``$$``, ``${V}``, ``${V:-default}`` and ``${V:?error}``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.groups()
        value = env.get(name)
        if value or (value is not None and not (op or "").startswith(":")):
            return value
        if op and op.endswith("?"):
            raise KeyError(f"${{{name}}} is required: {arg}")
        return arg if op else ""

    return _VARIABLE.sub(replace, value)


def compose(env: dict[str, str] | None = None) -> dict:
    raw = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    return interpolate({k: v for k, v in raw.items() if not k.startswith("x-")}, SECRETS if env is None else env)


@pytest.fixture(scope="module")
def services() -> dict:
    return compose()["services"]


def _command(service: dict) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else " ".join(command.split())


def _airsight(services: dict) -> dict:
    """The services that run the project's image: Airflow's, the serving API and MLflow."""
    return {name: s for name, s in services.items() if s.get("image") == "airsight:latest"}


def _clients(services: dict) -> dict:
    """Every process that runs tasks, mounts the serving API or serves it: it talks to MLflow."""
    return {n: s for n, s in _airsight(services).items() if not _command(s).startswith("mlflow ")}


def _mounts(service: dict) -> dict[str, str]:
    """container path -> host path (or volume name) of a service's volumes."""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def _databases() -> set[str]:
    sql = (ROOT / "deploy" / "postgres-init.sql").read_text()
    return set(re.findall(r"CREATE DATABASE (\w+)", sql)) | {
        compose()["services"]["postgres"]["environment"]["POSTGRES_DB"]
    }


def _database(url: str) -> str:
    parts = urlsplit(url)
    assert parts.hostname == "postgres", f"{url}: not the compose PostgreSQL"
    return parts.path.lstrip("/")


def test_compose_refuses_to_start_without_its_secrets():
    for name in SECRETS:
        with pytest.raises(KeyError, match=name):
            compose({k: v for k, v in SECRETS.items() if k != name})


def test_every_airflow_process_and_the_api_share_one_serving_store(services, monkeypatch):
    clients = _clients(services)
    assert {"airflow-apiserver", "airflow-scheduler", "airflow-worker", "airflow-dag-processor", "serving"} <= set(
        clients
    )
    stores = set()
    for name, service in clients.items():
        for key, value in service["environment"].items():
            monkeypatch.setenv(key, str(value))
        url = ServingSettings.from_env().resolved_database_url()
        assert url.startswith("postgresql://"), f"{name}: the serving store would be {url}"
        assert _database(url) in _databases()
        stores.add(url)
    assert len(stores) == 1


@pytest.mark.parametrize(
    "key",
    [
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "AIRSIGHT_SERVING_DB",
        "AIRSIGHT_HOME",
        "AIRSIGHT_GROUPS_DIR",
    ],
)
def test_every_client_process_gets_the_same_setting(services, key):
    values = {name: s["environment"].get(key) for name, s in _clients(services).items()}
    assert None not in values.values(), f"{key} is missing in {[n for n, v in values.items() if v is None]}"
    assert len(set(values.values())) == 1, values


def test_airflow_runs_on_celery_with_postgresql_and_redis(services):
    env = services["airflow-worker"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert _database(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]) in _databases()
    assert _database(env["AIRFLOW__CELERY__RESULT_BACKEND"].removeprefix("db+")) in _databases()
    assert urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).hostname in services
    execution = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution.hostname == "airflow-apiserver"
    assert f"{execution.port}:{execution.port}" in services["airflow-apiserver"]["ports"]
    assert _command(services["airflow-worker"]) == "airflow celery worker"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("apache-airflow-providers-celery") for req in extras["deploy"])


def test_the_groups_folder_exists_and_every_process_reads_it(services, monkeypatch):
    for name, service in _clients(services).items():
        monkeypatch.setenv("AIRSIGHT_GROUPS_DIR", service["environment"]["AIRSIGHT_GROUPS_DIR"])
        inside = str(group_settings.groups_dir())
        source = _mounts(service).get(inside)
        assert source, f"{name}: nothing is mounted at {inside}"
        assert (ROOT / source).resolve().is_dir(), f"{name}: {source} does not exist in the repository"


def _read_auth_config():
    """MLflow's own reader of the basic-auth settings, without the auth app (it needs mlflow[auth])."""
    import importlib.util

    import mlflow.server

    path = Path(mlflow.server.__file__).parent / "auth" / "config.py"
    spec = importlib.util.spec_from_file_location("mlflow_auth_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read_auth_config()


def test_mlflow_serves_behind_basic_auth_to_the_host_its_clients_call(services, monkeypatch):
    from mlflow.server.security_utils import is_allowed_host_header

    mlflow = services["mlflow"]
    args = _command(mlflow).split()
    assert args[:2] == ["mlflow", "server"]
    assert args[args.index("--app-name") + 1] == "basic-auth"
    allowed = args[args.index("--allowed-hosts") + 1].split(",")
    assert _database(args[args.index("--backend-store-uri") + 1]) in _databases()

    for name, service in _clients(services).items():
        monkeypatch.setenv("MLFLOW_TRACKING_URI", service["environment"]["MLFLOW_TRACKING_URI"])
        uri = urlsplit(registry.tracking_uri())
        assert uri.hostname == "mlflow", f"{name} would track to {uri.geturl()}"
        assert is_allowed_host_header(allowed, uri.netloc), f"MLflow would answer {name} 403 Invalid Host header"
    port = next(p.split(":")[0] for p in mlflow["ports"])
    assert is_allowed_host_header(allowed, f"localhost:{port}")  # the browser on the host, the healthcheck
    assert not is_allowed_host_header(allowed, "attacker.example")

    env = mlflow["environment"]
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    config = _mounts(mlflow)[env["MLFLOW_AUTH_CONFIG_PATH"]]
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(ROOT / config))
    for key in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        monkeypatch.setenv(key, env[key])
    auth = _read_auth_config()
    assert _database(auth.database_uri) in _databases()
    for name, service in _clients(services).items():
        assert service["environment"]["MLFLOW_TRACKING_USERNAME"] == auth.admin_username, name
        assert service["environment"]["MLFLOW_TRACKING_PASSWORD"] == auth.admin_password, name


def test_every_long_running_service_has_a_healthcheck(services):
    for name, service in services.items():
        if service.get("restart") == "no":
            continue  # a one-off job: airflow db migrate
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for needed, condition in (service.get("depends_on") or {}).items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], f"{name} waits for {needed}, which has no healthcheck"


def test_the_image_is_built_in_two_stages_and_runs_as_a_user():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) >= 2
    final = stages[-1]
    assert not re.search(r"build-essential|\bgcc\b|-dev\b", final), "build tools in the final image"
    users = re.findall(r"^USER (\S+)", final, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"COPY --from=\w+ /opt/venv /opt/venv", final)
    assert re.search(r'pip install "\.\[deploy\]"', stages[0]), "the build stage must install the wheel with deploy"
    assert not re.search(r"^COPY \S*expectations", text, flags=re.M), "the suites come with the package"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("mlflow[auth]") for req in extras["deploy"]), "basic-auth needs mlflow[auth]"


def _image_env() -> dict[str, str]:
    """The ENV of the Dockerfile's final stage (what every container starts with)."""
    final = re.split(r"^FROM ", (ROOT / "Dockerfile").read_text(), flags=re.M)[-1].replace("\\\n", " ")
    found = {}
    for line in re.findall(r"^ENV (.+)$", final, flags=re.M):
        found |= dict(pair.split("=", 1) for pair in line.split())
    return found


@pytest.fixture(scope="module")
def launcher() -> deploy.DeploySettings:
    return deploy.DeploySettings.from_env({**deploy.COMPOSE_SETTINGS, **SECRETS})


@pytest.mark.parametrize("service", sorted(deploy.COMPOSE_SERVICES))
def test_each_service_gets_the_environment_the_launcher_gives_its_role(services, launcher, service):
    role = deploy.COMPOSE_SERVICES[service]
    declared = {key: str(value) for key, value in services[service]["environment"].items()}
    container = {**_image_env(), **declared}
    expected = deploy.environment(role, launcher)
    assert not set(expected) - set(container), f"{service} lacks {sorted(set(expected) - set(container))}"
    differ = {key: (value, container[key]) for key, value in expected.items() if container[key] != value}
    assert not differ, f"{service}: (launcher, compose) {differ}"
    assert not set(declared) - set(expected), (
        f"{service} sets what the launcher does not: {set(declared) - set(expected)}"
    )


@pytest.mark.parametrize("service", sorted(set(deploy.COMPOSE_SERVICES) - {"airflow-init"}))
def test_each_service_runs_the_command_the_launcher_runs_for_its_role(services, launcher, service):
    argv = deploy.command(deploy.COMPOSE_SERVICES[service], launcher)
    assert [Path(argv[0]).name, *argv[1:]] == _command(services[service]).split()


def test_the_launcher_creates_the_databases_compose_creates(launcher):
    assert set(launcher.databases()) == _databases()
    assert _command(compose()["services"]["airflow-init"]) == "airflow db migrate"


def test_the_launcher_writes_the_mlflow_auth_config_compose_mounts(launcher, tmp_path):
    import configparser

    def read(path: Path) -> dict:
        parser = configparser.ConfigParser()
        parser.read(path)
        return dict(parser["mlflow"])

    deploy.write_auth_config(launcher, str(tmp_path / "auth.ini"))
    assert read(tmp_path / "auth.ini") == read(ROOT / "deploy" / "mlflow-auth.ini")


def test_the_launcher_refuses_to_start_a_role_without_its_secrets():
    settings = deploy.DeploySettings.from_env({k: v for k, v in SECRETS.items() if k != "AIRFLOW_SECRET_KEY"})
    with pytest.raises(deploy.DeployError, match="AIRFLOW_SECRET_KEY"):
        deploy.environment("scheduler", settings)


def test_a_named_worker_records_its_own_hostname(monkeypatch):
    settings = deploy.DeploySettings.from_env(SECRETS)
    one, two = (deploy.environment("worker", settings, name) for name in ("worker-1", "worker-2"))
    assert one[deploy.HOSTNAME_ENV] == "worker-1" and two[deploy.HOSTNAME_ENV] == "worker-2"
    assert deploy.command("worker", settings, "worker-1")[-2:] == ["--celery-hostname", "worker-1@%h"]
    monkeypatch.setenv(deploy.HOSTNAME_ENV, "worker-1")
    from airflow.sdk.api.client import get_hostname

    monkeypatch.setenv("AIRFLOW__CORE__HOSTNAME_CALLABLE", one["AIRFLOW__CORE__HOSTNAME_CALLABLE"])
    assert get_hostname() == "worker-1"
