"""What the training steps of both DAGs share: run folders, options, MLflow runs and the gate.

A run of a dataset group is identified by its ``as_of``. Everything a step computes goes to
``<storage>/runs/as_of=<key>/`` (rewritten whole when a step runs again), the next step reads
it from there, and only ``publish`` makes anything visible: it writes the published version and
then records the gate's decision in the MLflow registry. A run that fails before that leaves the
previous champion and exports as they were.

Backfills are historical retraining: the champion a run compares with is the one promoted for
the latest as_of *before* the run's (read from the registry's version tags), so re-running a
date reproduces its decision and outputs whatever ran later. Only a run at least as new as the
current champion moves the live aliases and the ``latest`` pointer; an older date is published
and recorded beside them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines import models, registry, storage
from pipelines.errors import SettingsError
from pipelines.settings import ForecastTraining, Group, PersonalizeTraining

log = logging.getLogger(__name__)

AS_OF_TAG, STEP_TAG, GROUP_TAG = "airsight.as_of", "airsight.step", "airsight.group"
# Params a UI trigger may set, and the training option each one overrides.
OVERRIDES = {
    "algorithms": "algorithms",
    "recipes": "recipes",
    "forecast_types": "forecast_types",
    "backtest_windows": "backtest_windows",
    "hpo_trials": "hpo_trials",
    "hpo_timeout_seconds": "hpo_timeout_seconds",
    "optimization_metric": "optimization_metric",
    "num_results": "num_results",
}


def run_dir(group: Group, as_of: pd.Timestamp) -> Path:
    return Path(group.storage_root) / "runs" / storage.as_of_key(as_of)


def options(group: Group, overrides: dict | None = None) -> tuple[Group, ForecastTraining | PersonalizeTraining]:
    """The group (with a horizon override) and its training options with the run's params applied.

    A param left empty (None, "", []) keeps the group's default; a bad value raises SettingsError
    naming the param, before anything is trained.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v not in (None, "", [])}
    training = group.training.model_dump()
    for param, option in OVERRIDES.items():
        if param in overrides and option in training:
            training[option] = overrides[param]
    try:
        checked = type(group.training).model_validate(training)
        if "horizon" in overrides and group.kind == "forecast":
            group = type(group).model_validate({**group.model_dump(), "horizon": int(overrides["horizon"])})
    except Exception as exc:
        raise SettingsError(f"run params for dataset group {group.name}: {exc}") from exc
    return group.model_copy(update={"training": checked}), checked


def config_key(config: dict) -> str:
    """A short, stable digest of a candidate's configuration (name and hyperparameters)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


@contextlib.contextmanager
def mlflow_run(group: Group, as_of: pd.Timestamp, step: str, name: str):
    """An MLflow run in the group's experiment, tagged with the group, as_of and step."""
    import mlflow

    # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI, which would then outlive this run
    # and outrank $AIRSIGHT_HOME for the next one in this process: put both back afterwards.
    exported = os.environ.get("MLFLOW_TRACKING_URI")
    uri = registry.tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        experiment = registry.experiment(models.registered_name(group.kind, group.name))
        tags = {GROUP_TAG: group.name, AS_OF_TAG: storage.as_of_key(as_of), STEP_TAG: step}
        with mlflow.start_run(experiment_id=experiment, run_name=name, tags=tags) as run:
            yield run
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        if exported is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = exported


def log_metrics(prefix: str, values: dict, step: int | None = None) -> None:
    import math

    import mlflow

    clean = {}
    for key, value in values.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            name = re.sub(r"[^0-9A-Za-z_\-. :/]", "_", f"{prefix}{key}".replace("@", "_at_")).strip("_")
            clean[name] = float(value)  # wQL[0.1] -> wQL_0.1
    if clean:
        mlflow.log_metrics(clean, step=step)


def champion_as_of(kind: str, group: str, as_of: pd.Timestamp) -> dict | None:
    """The version promoted for the newest as_of before this one: version, config and as_of key."""
    name = models.registered_name(kind, group)
    key = storage.as_of_key(as_of)
    try:
        versions = registry.client().search_model_versions(f"name='{name}'")
    except Exception:  # no registered model yet
        return None
    promoted = [
        v
        for v in versions
        if v.tags.get("gate.decision") == "promoted" and v.tags.get(AS_OF_TAG, "") < key and models.CONFIG_TAG in v.tags
    ]
    if not promoted:
        return None
    best = max(promoted, key=lambda v: (v.tags[AS_OF_TAG], int(v.version)))
    return {
        "version": str(best.version),
        "config": json.loads(best.tags[models.CONFIG_TAG]),
        "as_of": best.tags[AS_OF_TAG],
    }


def register_once(kind: str, group: str, as_of: pd.Timestamp, config: dict, native: Any, example) -> str:
    """Log and register ``native`` unless this as_of already has a version with this config.

    Re-running a date (a retry, a backfill run twice) reuses its version instead of piling up
    copies of the same model in the registry.
    """
    import mlflow

    name = models.registered_name(kind, group)
    key = storage.as_of_key(as_of)
    wanted = json.dumps(config, sort_keys=True, default=str)
    with contextlib.suppress(Exception):
        for version in registry.client().search_model_versions(f"name='{name}'"):
            if version.tags.get(AS_OF_TAG) == key and version.tags.get(models.CONFIG_TAG) == wanted:
                mlflow.set_tag("airsight.model_version", version.version)
                return str(version.version)
    info = models.log_model(kind, native, example)
    version = models.register(info, kind, group, json.loads(wanted))
    registry.client().set_model_version_tag(name, version, AS_OF_TAG, key)
    mlflow.set_tag("airsight.model_version", version)
    return version


def is_live(kind: str, group: str, as_of: pd.Timestamp) -> bool:
    """Whether a run for ``as_of`` may move the live aliases: not older than the current champion."""
    champion = registry.current_champion(models.registered_name(kind, group))
    return champion is None or champion.tags.get(AS_OF_TAG, "") <= storage.as_of_key(as_of)


def select(candidates: list[dict], metric: str) -> dict:
    """The best candidate on ``metric`` (the first of equals); failed candidates are skipped."""
    ok = [c for c in candidates if not c.get("error") and c.get("score") is not None]
    if not ok:
        failures = "; ".join(f"{c['name']}: {c.get('error')}" for c in candidates)
        raise RuntimeError(f"no candidate trained: {failures}")
    sign = 1 if registry.higher_is_better(metric) else -1
    return max(ok, key=lambda c: (sign * c["score"], -candidates.index(c)))


def decide(selection: dict, version: str, margin: float, model: str = "") -> registry.Decision:
    """The gate's decision for the run's winner (``version``; "new" before it is registered).

    The winner is compared with the champion's configuration scored on the same windows. When the
    winner *is* the champion's configuration, its retrained version takes over: same model,
    newer data.
    """
    winner, champion = selection["winner"], selection.get("champion")
    force = bool(selection.get("force"))
    metric = selection["metric"]
    if champion is not None and (champion["config"] == winner["config"] or champion.get("error")):
        reason = f"the champion's configuration (v{champion['version']}) won again: retrained as of this run"
        if champion.get("error"):  # it cannot defend its title on today's data
            reason = f"the champion's configuration (v{champion['version']}) failed on this data: {champion['error']}"
        return registry.Decision(
            model,
            str(version),
            True,
            reason,
            metric,
            float(winner["score"]),
            champion["version"],
            champion.get("score"),
            force,
        )
    return registry.decide(
        metric,
        winner["score"],
        champion and champion["version"],
        champion and champion.get("score"),
        str(version),
        margin,
        force,
        model,
    )


def finish(kind: str, group: Group, as_of: pd.Timestamp, selection: dict, version: str, write) -> dict:
    """Decide, publish what the decision serves, then record it in the registry.

    ``write(folder, served)`` fills the published folder; ``served`` is "challenger" when the
    new version is promoted and "champion" when the champion's configuration keeps serving.
    """
    from pipelines import publish as publishing

    training = group.training
    decision = decide(selection, version, training.promotion_margin, models.registered_name(kind, group.name))
    served = "challenger" if decision.promoted else "champion"
    served_version = version if decision.promoted else selection["champion"]["version"]
    live = is_live(kind, group.name, as_of)
    details = {
        "model": decision.model,
        "version": version,
        "served": served,
        "served_version": served_version,
        "promoted": decision.promoted,
        "decision": decision.reason,
        "metric": decision.metric,
        "challenger_score": decision.challenger_score,
        "champion_score": decision.champion_score,
    }

    def fill(folder: Path) -> dict:
        write(folder, served)
        storage.write_json(folder / "decision.json", details)
        return {**details, "checksums": checksums(folder)}

    pointer = publishing.publish(group.storage_root, kind, as_of, fill, move_latest=live)
    registry.record(decision, training.promotion_margin, move_aliases=live)
    publishing.prune(group.storage_root, kind, keep=training.keep_versions)
    return {**pointer, "live": live}


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every published file, by relative path: what a re-run must reproduce."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "decision.json"
    }
