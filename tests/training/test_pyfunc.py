"""Trained models logged as MLflow pyfunc models and read back from the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")

from pipelines.forecast.base import get_algorithm  # noqa: E402
from pipelines.forecast.data import ForecastData  # noqa: E402
from pipelines.personalize import InteractionData, get_recipe  # noqa: E402
from pipelines.training import pyfunc as models  # noqa: E402
from pipelines.training import registry  # noqa: E402
from tests.personalize.conftest import two_groups  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    patch.setenv("AIRSIGHT_MLFLOW_ARTIFACTS", tmp_path_factory.mktemp("artifacts").as_uri())
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    patch.undo()


def log_and_register(kind: str, group: str, native, example, config: dict) -> str:
    with mlflow.start_run(experiment_id=registry.experiment(models.registered_name(kind, group))):
        info = models.log_model(kind, native, example)
    return models.register(info, kind, group, config)


def test_a_solution_version_round_trips_and_serves_through_pyfunc():
    model = get_recipe("sims").fit(InteractionData.from_frames(two_groups()))
    example = pd.DataFrame({"userId": ["a_u000"], "itemId": [""]})
    version = log_and_register("personalize", "shop", model, example, {"recipe": "sims"})
    registry.gate(models.registered_name("personalize", "shop"), version, "coverage", 0.5)

    found_version, native = models.load_champion("personalize", "shop")
    assert found_version == version
    assert native.recommend("a_u000", 5) == model.recommend("a_u000", 5)

    pyfunc = mlflow.pyfunc.load_model(f"models:/{models.registered_name('personalize', 'shop')}@champion")
    answer = pyfunc.predict(pd.DataFrame({"userId": ["a_u001"], "itemId": [""]}), params={"numResults": 3})
    assert answer["itemId"].tolist() == [item for item, _ in model.recommend("a_u001", 3)]
    assert answer["rank"].tolist() == [1, 2, 3]


def test_a_forecast_predictor_round_trips_and_answers_for_the_items_asked():
    rng = np.random.default_rng(0)
    series = [10 + np.sin(np.arange(60) * 2 * np.pi / 7) + rng.normal(0, 0.1, 60) for _ in range(3)]
    data = ForecastData.from_arrays(series, freq="D", horizon=5, end="2024-03-01", ids=["a", "b", "c"])
    model = get_algorithm("SeasonalNaive").fit(data)
    version = log_and_register("forecast", "shop", model, pd.DataFrame({"item_id": ["a"]}), {"algorithm": "x"})
    assert models.load_champion("forecast", "shop") is None  # registered, not yet through the gate
    native = models.load_version("forecast", "shop", version)
    pd.testing.assert_frame_equal(native.predict(), model.predict())
    pyfunc = mlflow.pyfunc.load_model(f"models:/{models.registered_name('forecast', 'shop')}/{version}")
    answer = pyfunc.predict(pd.DataFrame({"item_id": ["b", "c"]}), params={"quantiles": "0.5"})
    assert sorted(answer["item_id"].unique()) == ["b", "c"] and len(answer) == 10
    assert "p50" in answer.columns


def test_loading_verifies_the_digest_recorded_at_registration_before_unpickling(tmp_path):
    import hashlib
    import pickle
    from urllib.parse import urlparse

    model = get_recipe("popularity-count").fit(InteractionData.from_frames(two_groups()))
    example = pd.DataFrame({"userId": ["a_u000"], "itemId": [""]})
    version = log_and_register("personalize", "guarded", model, example, {"recipe": "popularity-count"})
    name = models.registered_name("personalize", "guarded")
    source = registry.client().get_model_version_download_uri(name, version)
    (artifact,) = (Path(urlparse(source).path)).rglob(models.MODEL_FILE)
    recorded = registry.client().get_model_version(name, version).tags[models.DIGEST_TAG]
    assert recorded == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert models.load_version("personalize", "guarded", version).recommend("a_u000", 3) == model.recommend("a_u000", 3)

    class Payload:
        def __reduce__(self):
            return (exec, ("raise SystemExit('the tampered model was unpickled')",))

    artifact.write_bytes(pickle.dumps(Payload()))  # someone with write access to the artifact store
    with pytest.raises(models.ModelIntegrityError, match=rf"model version {name}/{version}: model.pkl .* sha256"):
        models.load_version("personalize", "guarded", version)

    registry.client().delete_model_version_tag(name, version, models.DIGEST_TAG)
    with pytest.raises(models.ModelIntegrityError, match=rf"{name}/{version} has no recorded airsight.sha256"):
        models.load_version("personalize", "guarded", version)


def test_a_model_not_logged_by_log_model_is_not_registered():
    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    with mlflow.start_run(experiment_id=registry.experiment(models.registered_name("personalize", "foreign"))):
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
    with pytest.raises(ValueError, match=r"has no airsight\.sha256 in its metadata"):
        models.register(info, "personalize", "foreign", {"recipe": "echo"})
