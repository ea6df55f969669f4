"""A registry and a dataset group for tests of the gate (``workflow.finish``) without training.

Versions are registered as a run's forecast/recommend step leaves them (configuration and as_of
tags); selections are what its backtest step hands to publish. The gate itself runs for real:
lock, MLflow registry, published folders and ``latest.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import pandas as pd

from pipelines import storage
from pipelines.training import publish, registry
from pipelines.training import pyfunc as models
from pipelines.training import runs as workflow

KIND = "personalize"


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def example_group(tmp: Path, name: str, margin: float = 0.0):
    from pipelines.example_data import write_examples
    from pipelines.settings import load_group

    path = write_examples(tmp / "examples")["interactions_demo"]
    group = load_group(path)
    training = group.training.model_copy(update={"promotion_margin": margin})
    return group.model_copy(update={"name": name, "storage": str(tmp / name), "training": training})


def register(group, as_of: str, config: dict) -> str:
    """A new version of the group's model, tagged as the forecast/recommend step tags it."""
    name = models.registered_name(KIND, group.name)
    with mlflow.start_run(experiment_id=registry.experiment(name)):
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
    version = str(mlflow.register_model(info.model_uri, name).version)
    client = registry.client()
    client.set_model_version_tag(name, version, models.CONFIG_TAG, json.dumps(config, sort_keys=True))
    client.set_model_version_tag(name, version, workflow.AS_OF_TAG, storage.as_of_key(pd.Timestamp(as_of)))
    return version


def selection(metric: str, winner: tuple[dict, float], champion: dict | None, scores: dict | None = None) -> dict:
    """What the backtest step hands on: winner, the champion it planned against (scored), every score."""
    config, score = winner
    scores = {json.dumps(config, sort_keys=True): score, **(scores or {})}
    return {
        "metric": metric,
        "winner": {"name": config["name"], "config": config, "score": score},
        "champion": champion,
        "leaderboard": [{"name": json.loads(c)["name"], "score": s, "error": None} for c, s in scores.items()],
        "scores": [{"config": json.loads(c), "score": s} for c, s in scores.items()],
    }


def finish(group, as_of: str, chosen: dict, version: str, force: bool = False, pause: float = 0.0) -> dict:
    """The publish step: ``served.json`` says which role and version the published folder holds."""

    def write(run: Path, served: str, folder: Path) -> None:
        time.sleep(pause)  # publishing takes time: widen the window a race would need
        served_version = version if served == "challenger" else chosen["champion"]["version"]
        (folder / "served.json").write_text(json.dumps({"served": served, "version": served_version}))

    overrides = {"force_promotion": force}
    return workflow.finish(KIND, group, pd.Timestamp(as_of), chosen, version, write, overrides)


def aliases(group) -> dict[str, str]:
    found = registry.client().get_registered_model(models.registered_name(KIND, group.name)).aliases
    return {alias: str(version) for alias, version in found.items()}


def tags(group, version: str) -> dict:
    return registry.client().get_model_version(models.registered_name(KIND, group.name), version).tags


def assert_registry_and_latest_agree(group) -> dict:
    """The champion alias, the version tags, ``latest.json`` and the published decision tell one story."""
    name = models.registered_name(KIND, group.name)
    versions = registry.model_versions(name)
    decided = [v for v in versions if v.tags.get("gate.decision")]
    last = max(decided, key=lambda v: (v.tags[workflow.AS_OF_TAG], int(v.tags.get("gate.sequence") or 0)))
    served = str(last.version) if last.tags["gate.decision"] == "promoted" else last.tags["gate.champion_version"]
    pointer = publish.latest(group.storage_root, KIND)
    folder = Path(pointer["path"])
    decision = json.loads((folder / "decision.json").read_text())
    written = json.loads((folder / "served.json").read_text())
    found = aliases(group)
    story = {
        "champion alias": found["champion"],
        "challenger alias": found["challenger"],
        "served by the last decision (tags)": served,
        "champion for the next run (tags)": workflow.champion_as_of(KIND, group.name, pd.Timestamp.max)["version"],
        "latest.json served_version": str(pointer["served_version"]),
        "decision.json served_version": str(decision["served_version"]),
        "published files": written["version"],
    }
    assert len({value for key, value in story.items() if key != "challenger alias"}) == 1, story
    assert found["challenger"] == str(last.version) == str(pointer["version"]), (story, last.version, pointer)
    assert pointer["as_of"] == pd.Timestamp(storage.parse_key(last.tags[workflow.AS_OF_TAG])).isoformat()
    assert (last.tags["gate.decision"] == "promoted") == decision["promoted"] == pointer["promoted"]
    return story
