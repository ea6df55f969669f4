"""The champion gate as the DAGs run it (``workflow.finish``) on a real MLflow registry.

SQLite store in a temporary folder (the file lock beside it); tests that need PostgreSQL for the
advisory lock skip where 127.0.0.1:5432 is unreachable.
"""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")

from pipelines.training import publish, registry  # noqa: E402
from pipelines.training import runs as workflow  # noqa: E402
from tests.training.gate_world import aliases, example_group, finish, register, selection, tags  # noqa: E402

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
ETS, THETA, NPTS = ({"name": n, "params": {}} for n in ("ETS", "Theta", "NPTS"))


@pytest.fixture(scope="module", autouse=True)
def store(tmp_path_factory):
    """One registry for the module: creating MLflow's SQLite schema takes seconds."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    patch.setenv("AIRSIGHT_MLFLOW_ARTIFACTS", (tmp_path_factory.mktemp("artifacts")).as_uri())
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    patch.undo()


@pytest.fixture(autouse=True)
def tracking(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # over the shared autouse fixture's home


def champion(group, as_of: str, score: float | None) -> dict | None:
    """The champion as the backtest step reads it, scored on the run's data."""
    found = workflow.champion_as_of("personalize", group.name, pd.Timestamp(as_of))
    return None if found is None else {**found, "score": score}


def test_first_version_becomes_champion_and_a_worse_one_stays_challenger(tmp_path):
    group = example_group(tmp_path, "shop_a")
    first = register(group, "2024-05-01", ETS)
    pointer = finish(group, "2024-05-01", selection("WAPE", (ETS, 0.30), None), first)
    assert pointer["promoted"] and pointer["decision"] == "no champion yet"
    second = register(group, "2024-05-02", THETA)
    chosen = selection("WAPE", (THETA, 0.35), champion(group, "2024-05-02", 0.30))
    pointer = finish(group, "2024-05-02", chosen, second)
    assert not pointer["promoted"] and pointer["served_version"] == first
    assert aliases(group) == {"champion": first, "challenger": second}
    found = tags(group, second)
    assert found["gate.decision"] == "kept challenger" and found["gate.champion_version"] == first
    assert found["gate.champion_score"] == "0.3" and found["score.WAPE"] == "0.35"
    assert publish.latest(group.storage_root, "personalize")["served_version"] == first


def test_a_better_version_is_promoted_and_margin_is_respected(tmp_path):
    group = example_group(tmp_path, "shop_b", margin=0.05)
    first = register(group, "2024-05-01", ETS)
    finish(group, "2024-05-01", selection("WAPE", (ETS, 0.30), None), first)
    second = register(group, "2024-05-02", THETA)
    chosen = selection("WAPE", (THETA, 0.295), champion(group, "2024-05-02", 0.30))
    assert not finish(group, "2024-05-02", chosen, second)["promoted"]  # under 5 % better
    third = register(group, "2024-05-03", NPTS)
    chosen = selection("WAPE", (NPTS, 0.25), champion(group, "2024-05-03", 0.30))
    assert finish(group, "2024-05-03", chosen, third)["promoted"]
    assert aliases(group) == {"champion": third, "challenger": third}


def test_higher_is_better_metrics_and_forced_promotion(tmp_path):
    group = example_group(tmp_path, "recs")
    metric = "normalized_discounted_cumulative_gain_at_10"
    first = register(group, "2024-05-01", ETS)
    finish(group, "2024-05-01", selection(metric, (ETS, 0.20), None), first)
    second = register(group, "2024-05-02", THETA)
    chosen = selection(metric, (THETA, 0.10), champion(group, "2024-05-02", 0.20))
    assert not finish(group, "2024-05-02", chosen, second)["promoted"]
    forced = finish(group, "2024-05-02", chosen, second, force=True)  # the same run again, forced
    assert forced["promoted"] and forced["decision"].startswith("forced promotion")
    assert tags(group, second)["gate.forced"] == "true"
    assert aliases(group)["champion"] == second


def test_a_champion_that_cannot_be_scored_keeps_serving_unless_the_promotion_is_forced(tmp_path):
    group = example_group(tmp_path, "shop_c")
    first = register(group, "2024-05-01", ETS)
    finish(group, "2024-05-01", selection("WAPE", (ETS, 0.30), None), first)
    second = register(group, "2024-05-02", THETA)
    broken = {**champion(group, "2024-05-02", None), "error": "ValueError: too short"}
    kept = finish(group, "2024-05-02", selection("WAPE", (THETA, 0.2), broken), second)
    assert not kept["promoted"] and kept["served_version"] == first
    assert "could not be scored on this data (ValueError: too short): it keeps serving" in kept["decision"]
    assert aliases(group)["champion"] == first
    forced = finish(group, "2024-05-02", selection("WAPE", (THETA, 0.2), broken), second, force=True)
    assert forced["promoted"] and forced["decision"].startswith("forced promotion (the champion v1 could not")
    assert aliases(group)["champion"] == second


def test_the_gate_decides_against_the_champion_a_concurrent_run_promoted_meanwhile(tmp_path):
    group = example_group(tmp_path, "shop_d")
    base = register(group, "2024-05-01", ETS)
    finish(group, "2024-05-01", selection("WAPE", (ETS, 0.40), None), base)
    # Two runs read the same champion (ETS) at backtest; the older date publishes first.
    planned = champion(group, "2024-05-03", 0.40)
    older = register(group, "2024-05-02", THETA)
    finish(group, "2024-05-02", selection("WAPE", (THETA, 0.30), champion(group, "2024-05-02", 0.40)), older)
    newer = register(group, "2024-05-03", NPTS)
    # Its backtest scored Theta too (0.25 on its data): NPTS at 0.28 beats ETS but not Theta.
    late = selection("WAPE", (NPTS, 0.28), planned, {'{"name": "Theta", "params": {}}': 0.25})
    with pytest.raises(workflow.ChampionChanged, match="changed from v1 to v2"):
        finish(group, "2024-05-03", late, newer)
    assert aliases(group) == {"champion": older, "challenger": older}  # nothing of the late run moved
    assert "gate.decision" not in tags(group, newer)
    assert publish.latest(group.storage_root, "personalize")["version"] == older
    # A winner that beats the new champion's configuration on the run's data is promoted over it.
    late = selection("WAPE", (NPTS, 0.20), planned, {'{"name": "Theta", "params": {}}': 0.25})
    pointer = finish(group, "2024-05-03", late, newer)
    assert pointer["promoted"] and pointer["champion_score"] == 0.25 and "vs champion 0.25" in pointer["decision"]
    # The new champion's configuration unscored by this run's backtest: nothing to compare with.
    last = register(group, "2024-05-04", THETA)
    blind = selection("WAPE", (THETA, 0.1), champion(group, "2024-05-03", 0.40))  # planned against v2
    with pytest.raises(workflow.ChampionChanged, match="did not score its configuration"):
        finish(group, "2024-05-04", blind, last)


def test_an_mlflow_error_fails_the_gate_and_publishes_nothing(tmp_path, monkeypatch):
    group = example_group(tmp_path, "shop_e")
    version = register(group, "2024-05-01", ETS)
    from mlflow.exceptions import MlflowException

    def unreachable(*args, **kwargs):
        raise MlflowException("API request to http://mlflow:5000 failed: connection refused", "INTERNAL_ERROR")

    monkeypatch.setattr(mlflow.MlflowClient, "search_model_versions", unreachable)
    with pytest.raises(MlflowException, match="connection refused"):
        finish(group, "2024-05-01", selection("WAPE", (ETS, 0.3), None), version)
    with pytest.raises(MlflowException, match="connection refused"):  # the backtest step's read too
        workflow.champion_as_of("personalize", group.name, pd.Timestamp("2024-05-01"))
    monkeypatch.undo()
    assert publish.latest(group.storage_root, "personalize") is None
    assert not (tmp_path / "shop_e" / "published").exists()
    assert "gate.decision" not in tags(group, version)


def test_the_lock_is_a_file_beside_a_local_store_and_postgres_where_the_store_is(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    assert registry.lock_target() == ("file", str(tmp_path / "store" / "gate-locks"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql+psycopg2://u:p@db:5432/mlflow")
    assert registry.lock_target() == ("postgresql", "postgresql://u:p@db:5432/mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert registry.lock_target() == ("file", str((tmp_path / "home").resolve() / "gate-locks"))  # one host only
    monkeypatch.setenv(registry.LOCK_URL_ENV, "postgresql://airsight@postgres:5432/mlflow")
    assert registry.lock_target() == ("postgresql", "postgresql://airsight@postgres:5432/mlflow")
    monkeypatch.setenv(registry.LOCK_URL_ENV, "redis://redis:6379")
    with pytest.raises(ValueError, match="must be a PostgreSQL URL"):
        registry.lock_target()


def hold(model: str, seconds: float, held: threading.Event) -> threading.Thread:
    def run():
        with registry.gate_lock(model):
            held.set()
            time.sleep(seconds)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def assert_exclusive(model: str) -> None:
    held = threading.Event()
    holder = hold(model, 1.0, held)
    held.wait(10)
    with (
        pytest.raises(registry.GateLockTimeout, match=f"the gate of {model} stayed locked"),
        registry.gate_lock(model, timeout=0.2),
    ):
        pass
    with registry.gate_lock(f"{model}.other", timeout=0.2):  # one lock per registered model
        pass
    began = time.monotonic()
    with registry.gate_lock(model, timeout=30):  # waits for the holder, then gets it
        waited = time.monotonic() - began
        holder.join(5)  # it let go of the lock: all that is left of it is returning
        assert not holder.is_alive() and waited < 5


def test_the_file_lock_lets_one_run_at_a_time_through_the_gate_of_a_model():
    assert registry.lock_target()[0] == "file"
    assert_exclusive("personalize.locked")


def test_the_postgres_advisory_lock_lets_one_run_at_a_time_through(monkeypatch):
    from pipelines.launch import airflow_local

    if not airflow_local.reachable(POSTGRES):
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432: the advisory lock is not tested")
    monkeypatch.setenv(registry.LOCK_URL_ENV, POSTGRES)
    assert registry.lock_target()[0] == "postgresql"
    assert_exclusive("personalize.locked")
