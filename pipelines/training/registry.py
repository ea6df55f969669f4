"""The MLflow model registry as the gate to users: only a better model becomes ``champion``.

Each dataset group has one registered model. A new version always gets the ``challenger``
alias; it takes ``champion`` only when it beats the current champion on the group's
optimization metric, scored on the same backtest windows, by at least ``margin`` (relative).
The decision and both scores are recorded as version tags, so the registry itself says why
each version is or is not serving. A forced promotion says so in its tags.

Deciding, recording and moving the ``latest`` pointer happen under one lock per registered
model (``gate_lock``): a PostgreSQL advisory lock where the MLflow store is PostgreSQL or
$AIRSIGHT_GATE_LOCK_URL names one, else a file lock beside the local store, so concurrent
runs and backfills never leave the aliases, the version tags and ``latest.json`` disagreeing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.tuning.study import higher_is_better  # the one rule for which way a metric points

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
# A PostgreSQL URL for the gate's advisory lock, for stores that are not PostgreSQL themselves
# (an MLflow server over HTTP whose database the workers cannot see); and how long to wait for it.
LOCK_URL_ENV, LOCK_TIMEOUT_ENV = "AIRSIGHT_GATE_LOCK_URL", "AIRSIGHT_GATE_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_SECONDS = 600.0


def tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else a SQLite store under $AIRSIGHT_HOME (the embedded default)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    home = Path(os.environ.get("AIRSIGHT_HOME") or Path.cwd() / ".airsight")
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def artifact_root() -> str:
    """Where run artifacts go: $AIRSIGHT_MLFLOW_ARTIFACTS, else beside the SQLite store."""
    default = Path(os.environ.get("AIRSIGHT_HOME") or Path.cwd() / ".airsight") / "mlartifacts"
    return os.environ.get("AIRSIGHT_MLFLOW_ARTIFACTS") or default.resolve().as_uri()


def experiment(name: str) -> str:
    """The id of the experiment ``name``, created with its artifacts under artifact_root()."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return mlflow_client.create_experiment(name, artifact_location=f"{artifact_root()}/{name}")
    except MlflowException:  # a parallel task created it first
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def client():
    from mlflow import MlflowClient

    uri = tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def model_versions(model: str) -> list:
    """Every version of ``model`` (all pages); none while it is not registered.

    Any other MLflow error propagates: a gate that cannot read the registry must not decide.
    """
    from mlflow.exceptions import MlflowException

    mlflow_client, found, token = client(), [], None
    while True:
        try:
            page = mlflow_client.search_model_versions(f"name='{model}'", page_token=token)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return []
            raise
        found.extend(page)
        token = page.token
        if not token:
            return found


class GateLockTimeout(TimeoutError):
    """Another run held the gate of the same registered model for longer than the lock timeout."""


@contextlib.contextmanager
def gate_lock(model: str, timeout: float | None = None):
    """Hold the gate of ``model``: one run at a time reads the champion, decides, records and points.

    A session-level PostgreSQL advisory lock where the tracking store is PostgreSQL (or
    $AIRSIGHT_GATE_LOCK_URL names a PostgreSQL database): released by the server if the process
    dies. Otherwise an ``flock`` on a file beside the local store, which serializes the processes of
    one machine only (a warning says so for a remote tracking server without a lock URL).
    """
    if timeout is None:
        timeout = float(os.environ.get(LOCK_TIMEOUT_ENV) or DEFAULT_LOCK_TIMEOUT_SECONDS)
    kind, where = lock_target()
    lock = _postgres_lock(where, model, timeout) if kind == "postgresql" else _file_lock(where, model, timeout)
    with lock:
        yield


def lock_target() -> tuple[str, str]:
    """``("postgresql", libpq URL)`` or ``("file", folder)``: where ``gate_lock`` locks."""
    named = os.environ.get(LOCK_URL_ENV)
    uri = named or tracking_uri()
    if re.match(r"postgres(ql)?(\+\w+)?://", uri):
        return "postgresql", re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", uri)
    if named:
        raise ValueError(f"${LOCK_URL_ENV} must be a PostgreSQL URL (postgresql://...), not {named!r}")
    if uri.startswith("sqlite:///"):
        store = Path(uri.removeprefix("sqlite:///").split("?")[0]).parent
    elif uri.startswith("file:") or "://" not in uri:
        store = Path(uri.removeprefix("file://")).parent
    else:  # an MLflow server: its database is out of reach
        log.warning("the registry gate locks with a file on this machine: set $%s to a PostgreSQL URL shared by "
                    "every worker that publishes to %s", LOCK_URL_ENV, uri)  # fmt: skip
        store = Path(os.environ.get("AIRSIGHT_HOME") or Path.cwd() / ".airsight")
    return "file", str(store.resolve() / "gate-locks")


def _lock_key(model: str) -> int:
    """A stable signed 64-bit advisory lock key for ``model``."""
    return int.from_bytes(hashlib.sha256(f"airsight.gate:{model}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def _postgres_lock(url: str, model: str, timeout: float):
    import psycopg2
    import psycopg2.errors

    key = _lock_key(model)
    conn = psycopg2.connect(url, connect_timeout=30)
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, false)", (f"{max(1, int(timeout * 1000))}ms",))
            try:
                cursor.execute("SELECT pg_advisory_lock(%s)", (key,))
            except psycopg2.errors.LockNotAvailable as exc:
                held = f"the gate of {model} stayed locked for {timeout:.0f} s (advisory lock {key})"
                raise GateLockTimeout(held) from exc
        try:
            yield
        finally:
            with contextlib.suppress(psycopg2.Error), conn.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (key,))
    finally:
        conn.close()  # ends the session, which releases the lock in any case


@contextlib.contextmanager
def _file_lock(folder: str, model: str, timeout: float):
    import fcntl

    path = Path(folder) / f"{re.sub(r'[^0-9A-Za-z_.-]', '_', model)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(path, "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise GateLockTimeout(f"the gate of {model} stayed locked for {timeout:.0f} s ({path})") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Decision:
    """What the gate decided for one model version, as recorded in its tags."""

    model: str
    version: str
    promoted: bool
    reason: str
    metric: str
    challenger_score: float
    champion_version: str | None
    champion_score: float | None
    forced: bool = False


def current_champion(model: str):
    """The champion's model version, or None while there is none; other MLflow errors propagate."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    try:
        version = mlflow_client.get_registered_model(model).aliases.get(CHAMPION)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return None if version is None else mlflow_client.get_model_version(model, str(version))


def decide(
    metric: str,
    challenger_score: float,
    champion_version: str | None,
    champion_score: float | None,
    version: str,
    margin: float = 0.0,
    force: bool = False,
    model: str = "",
) -> Decision:
    """The gate's decision, without touching the registry (so a run can publish before it records)."""
    if champion_version is None:
        promoted, reason = True, "no champion yet"
    elif champion_version == version:
        promoted, reason = True, "already champion"
    elif champion_score is None:
        promoted, reason = False, f"the champion has no recorded {metric} to compare with"
    else:
        promoted = _beats(challenger_score, champion_score, margin, higher_is_better(metric))
        direction = "higher" if higher_is_better(metric) else "lower"
        reason = (
            f"{metric} {challenger_score:.6g} vs champion {champion_score:.6g} "
            f"({direction} is better, margin {margin:.2%}): {'better' if promoted else 'not better'}"
        )
    if force and not promoted:
        promoted, reason = True, f"forced promotion ({reason})"
    return Decision(model, str(version), promoted, reason, metric, float(challenger_score), champion_version,
                    champion_score, force)  # fmt: skip


def record(decision: Decision, margin: float = 0.0, move_aliases: bool = True, sequence: int | None = None) -> None:
    """Write the decision as version tags; with ``move_aliases``, set challenger and champion.

    ``champion`` then names the version the decision serves: this one when promoted, else the
    champion it kept (which a decision recorded earlier for the same as_of may have moved).
    ``sequence`` (``gate.sequence``) orders decisions taken under ``gate_lock``.
    """
    mlflow_client = client()
    model, version = decision.model, decision.version
    tags = {
        f"score.{decision.metric}": repr(decision.challenger_score),
        "gate.decision": "promoted" if decision.promoted else "kept challenger",
        "gate.reason": decision.reason,
        "gate.metric": decision.metric,
        "gate.margin": repr(margin),
        "gate.forced": str(bool(decision.forced)).lower(),
        "gate.champion_version": decision.champion_version or "",
        "gate.champion_score": "" if decision.champion_score is None else repr(float(decision.champion_score)),
    }
    if sequence is not None:
        tags["gate.sequence"] = str(sequence)
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(model, version, key, value)
    if move_aliases:
        mlflow_client.set_registered_model_alias(model, CHALLENGER, version)
        served = version if decision.promoted else decision.champion_version
        if served:
            mlflow_client.set_registered_model_alias(model, CHAMPION, served)
    log.info("%s v%s: %s", model, version, decision.reason)


def gate(
    model: str,
    version: str,
    metric: str,
    challenger_score: float,
    champion_score: float | None = None,
    margin: float = 0.0,
    force: bool = False,
) -> Decision:
    """Give ``version`` the challenger alias and promote it to champion only if it is better.

    For models registered outside the DAGs (tests, benchmarks): the DAGs' gate is
    ``pipelines.training.runs.finish``, which scores the champion on the run's own data.
    ``champion_score`` is the current champion's score on the same backtest windows as the
    challenger's; when not given, the score recorded when the champion was promoted is used.
    ``margin`` is relative: 0.02 asks a loss to fall (or a gain to rise) by at least 2 %.
    """
    with gate_lock(model):
        champion = current_champion(model)
        champion_version = champion.version if champion is not None else None
        if champion is not None and champion_score is None:
            recorded = champion.tags.get(f"score.{metric}")
            champion_score = float(recorded) if recorded is not None else None
        decision = decide(metric, challenger_score, champion_version, champion_score, str(version), margin, force,
                          model)  # fmt: skip
        record(decision, margin)
    return decision


def _beats(challenger: float, champion: float, margin: float, higher: bool) -> bool:
    if higher:
        return challenger > champion + abs(champion) * margin
    return challenger < champion - abs(champion) * margin
