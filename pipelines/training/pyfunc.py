"""Trained models as MLflow pyfunc models: one registered model per dataset group.

A forecast predictor or a Personalize solution version is pickled as it was trained (the
native object that serves: ``ForecastAlgorithm`` or ``Recipe``) and logged with a pyfunc
wrapper and a signature, so that ``mlflow.pyfunc.load_model("models:/<name>@champion")``
answers requests in any MLflow tool, while the serving API unwraps the native object for its
fast paths (``recommend``, ``update``). The registry gate (pipelines.training.registry) decides which
version is ``champion``; ``load_champion`` is how readers find it.

Loading verifies what it unpickles: the sha256 of the pickled model is recorded as a version
tag (``airsight.sha256``) at registration, in the registry's database, and ``load_version``
refuses a file whose digest differs (a tampered or corrupted artifact store) or a version that
has no recorded digest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import tempfile
from pathlib import Path
from typing import Any

MODEL_FILE = "model.pkl"
CONFIG_TAG = "airsight.config"  # the algorithm or recipe and its hyperparameters, as JSON
DIGEST_TAG = "airsight.sha256"  # sha256 of MODEL_FILE, hex


class ModelIntegrityError(RuntimeError):
    """A model version's pickled file is not the one registered: it is not unpickled."""


def registered_name(kind: str, group: str) -> str:
    """The registered model of a dataset group: ``forecast.<group>`` or ``personalize.<group>``."""
    return f"{kind}.{group}"


def _pyfunc_classes():
    import mlflow
    import pandas as pd

    class NativeModel(mlflow.pyfunc.PythonModel):
        def load_context(self, context) -> None:
            with open(context.artifacts["model"], "rb") as handle:
                self.model = pickle.load(handle)

    class ForecastPredictor(NativeModel):
        """Input: a frame with item_id (and any dimensions); output: its forecast rows."""

        def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
            quantiles = (params or {}).get("quantiles") or "0.1,0.5,0.9"
            forecast = self.model.predict([q if q == "mean" else float(q) for q in str(quantiles).split(",")])
            keys = [c for c in model_input.columns if c in forecast.columns]
            return forecast.merge(model_input[keys].astype(str).drop_duplicates(), on=keys)

    class SolutionVersion(NativeModel):
        """Input: userId (recommendations) or itemId (related items); output: ranked items with scores."""

        def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
            n = int((params or {}).get("numResults", 25))
            rows = []
            for record in model_input.to_dict("records"):
                if record.get("userId"):
                    key, found = "userId", self.model.recommend(str(record["userId"]), n)
                else:
                    key, found = "itemId", self.model.related_items(str(record["itemId"]), n)
                rows += [
                    {"query": f"{key}={record[key]}", "rank": r + 1, "itemId": item, "score": score}
                    for r, (item, score) in enumerate(found)
                ]
            return pd.DataFrame(rows, columns=["query", "rank", "itemId", "score"])

    return ForecastPredictor, SolutionVersion


def log_model(kind: str, native: Any, example) -> Any:
    """Log ``native`` in the active MLflow run as a pyfunc model named ``model``; return its ModelInfo.

    ``example`` is a small input frame: the signature is inferred from it and the wrapper's
    answer to it, so it also proves the logged model loads and predicts.
    """
    import mlflow
    from mlflow.models import infer_signature

    logging.getLogger("mlflow.models.signature").setLevel(logging.WARNING)  # "Unsupported type hint" notes
    forecast_cls, solution_cls = _pyfunc_classes()
    wrapper = forecast_cls() if kind == "forecast" else solution_cls()
    params = {"quantiles": "0.1,0.5,0.9"} if kind == "forecast" else {"numResults": 25}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_FILE
        pickled = pickle.dumps(native, protocol=pickle.HIGHEST_PROTOCOL)
        path.write_bytes(pickled)
        wrapper.model = native
        output = wrapper.predict(None, example, params)
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=wrapper,
            artifacts={"model": str(path)},
            signature=infer_signature(example, output, params),
            input_example=(example, params),
            pip_requirements=["airsight", "mlflow", "pandas", "numpy"],
            metadata={DIGEST_TAG: hashlib.sha256(pickled).hexdigest()},  # carried to ``register``
        )


def register(info, kind: str, group: str, config: dict) -> str:
    """Register the model ``log_model`` logged as a new version of the group's model; return the version.

    The version's tags get its configuration and the sha256 of its pickled model.
    """
    import mlflow

    from pipelines.training import registry

    digest = (info.metadata or {}).get(DIGEST_TAG)
    if not digest:
        raise ValueError(f"{info.model_uri} has no {DIGEST_TAG} in its metadata: log it with models.log_model")
    name = registered_name(kind, group)
    version = mlflow.register_model(info.model_uri, name).version
    mlflow_client = registry.client()
    mlflow_client.set_model_version_tag(name, version, DIGEST_TAG, digest)
    mlflow_client.set_model_version_tag(name, version, CONFIG_TAG, json.dumps(config, sort_keys=True))
    return str(version)


def load_version(kind: str, group: str, version: str) -> Any:
    """The native object of one model version (its pickled ForecastAlgorithm or Recipe).

    The file's sha256 must equal the digest recorded when the version was registered, or
    ModelIntegrityError is raised before anything is unpickled. The version's location comes
    from our registry client, never from MLflow's global registry address (which falls back to
    ./mlflow.db when MLFLOW_TRACKING_URI is not set).
    """
    import mlflow

    from pipelines.training import registry

    name = registered_name(kind, group)
    mlflow_client = registry.client()
    expected = mlflow_client.get_model_version(name, str(version)).tags.get(DIGEST_TAG)
    if not expected:
        raise ModelIntegrityError(
            f"model version {name}/{version} has no recorded {DIGEST_TAG} tag: it was not registered by "
            "models.register, so it is not unpickled (retrain it, or register it again)"
        )
    source = mlflow_client.get_model_version_download_uri(name, str(version))
    local = mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=registry.tracking_uri())
    found = list(Path(local).rglob(MODEL_FILE))
    if not found:
        raise FileNotFoundError(f"model version {name}/{version} has no {MODEL_FILE} artifact at {source}")
    pickled = found[0].read_bytes()
    actual = hashlib.sha256(pickled).hexdigest()
    if actual != expected:
        raise ModelIntegrityError(
            f"model version {name}/{version}: {MODEL_FILE} at {source} has sha256 {actual}, but {expected} was "
            "recorded at registration; the artifact was changed, so it is not unpickled"
        )
    return pickle.loads(pickled)


def load_champion(kind: str, group: str) -> tuple[str, Any] | None:
    """``(version, native model)`` of the group's champion, or None while there is none."""
    from pipelines.training import registry

    champion = registry.current_champion(registered_name(kind, group))
    if champion is None:
        return None
    return str(champion.version), load_version(kind, group, str(champion.version))
