"""The MLflow model registry as the gate to users: only a better model becomes ``champion``.

Each dataset group has one registered model. A new version always gets the ``challenger``
alias; it takes ``champion`` only when it beats the current champion on the group's
optimization metric, scored on the same backtest windows, by at least ``margin`` (relative).
The decision and both scores are recorded as version tags, so the registry itself says why
each version is or is not serving. A forced promotion says so in its tags.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
# Metrics where larger is better; the rest (wQL, WAPE, RMSE, MAPE, MASE, ...) are losses.
HIGHER_IS_BETTER = {"coverage", "mean_reciprocal_rank_at_25", "recall_at_10"}
HIGHER_IS_BETTER_PREFIXES = ("normalized_discounted_cumulative_gain", "precision_at", "ndcg", "recall")


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


def higher_is_better(metric: str) -> bool:
    return metric in HIGHER_IS_BETTER or metric.startswith(HIGHER_IS_BETTER_PREFIXES)


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
    """The champion's model version, or None while there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(model, CHAMPION)
    except MlflowException:
        return None


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


def record(decision: Decision, margin: float = 0.0, move_aliases: bool = True) -> None:
    """Write the decision as version tags; with ``move_aliases``, set challenger (and champion)."""
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
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(model, version, key, value)
    if move_aliases:
        mlflow_client.set_registered_model_alias(model, CHALLENGER, version)
        if decision.promoted:
            mlflow_client.set_registered_model_alias(model, CHAMPION, version)
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

    ``champion_score`` is the current champion's score on the same backtest windows as the
    challenger's; when not given, the score recorded when the champion was promoted is used.
    ``margin`` is relative: 0.02 asks a loss to fall (or a gain to rise) by at least 2 %.
    """
    champion = current_champion(model)
    champion_version = champion.version if champion is not None else None
    if champion is not None and champion_score is None:
        recorded = champion.tags.get(f"score.{metric}")
        champion_score = float(recorded) if recorded is not None else None
    decision = decide(metric, challenger_score, champion_version, champion_score, str(version), margin, force, model)
    record(decision, margin)
    return decision


def _beats(challenger: float, champion: float, margin: float, higher: bool) -> bool:
    if higher:
        return challenger > champion + abs(champion) * margin
    return challenger < champion - abs(champion) * margin
