"""The champion gate on a real MLflow registry (SQLite store in a temporary AIRSIGHT_HOME)."""

from __future__ import annotations

import pytest

mlflow = pytest.importorskip("mlflow")

from pipelines import registry  # noqa: E402


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        return model_input


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


def new_version(model: str) -> str:
    with mlflow.start_run(experiment_id=registry.experiment(model)):
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant(), pip_requirements=["mlflow"])
    return mlflow.register_model(info.model_uri, model).version


def aliases(model: str) -> dict:
    return registry.client().get_registered_model(model).aliases


def test_first_version_becomes_champion_and_a_worse_one_stays_challenger():
    name = "shop_a"
    first = new_version(name)
    decision = registry.gate(name, first, "WAPE", 0.30)
    assert decision.promoted and decision.reason == "no champion yet"
    second = new_version(name)
    decision = registry.gate(name, second, "WAPE", 0.35)
    assert not decision.promoted
    assert aliases(name) == {"champion": first, "challenger": second}
    tags = registry.client().get_model_version(name, second).tags
    assert tags["gate.decision"] == "kept challenger"
    assert tags["gate.champion_score"] == "0.3" and tags["score.WAPE"] == "0.35"


def test_a_better_version_is_promoted_and_margin_is_respected():
    name = "shop_b"
    first = new_version(name)
    registry.gate(name, first, "WAPE", 0.30)
    second = new_version(name)
    assert not registry.gate(name, second, "WAPE", 0.295, margin=0.05).promoted  # under 5 % better
    third = new_version(name)
    decision = registry.gate(name, third, "WAPE", 0.25, champion_score=0.30, margin=0.05)
    assert decision.promoted
    assert aliases(name)["champion"] == third


def test_higher_is_better_metrics_and_forced_promotion():
    name = "recs"
    first = new_version(name)
    registry.gate(name, first, "normalized_discounted_cumulative_gain_at_10", 0.20)
    second = new_version(name)
    assert not registry.gate(name, second, "normalized_discounted_cumulative_gain_at_10", 0.10).promoted
    forced = registry.gate(name, second, "normalized_discounted_cumulative_gain_at_10", 0.10, force=True)
    assert forced.promoted and forced.reason.startswith("forced promotion")
    assert registry.client().get_model_version(name, second).tags["gate.forced"] == "true"
    assert aliases(name)["champion"] == second
