"""What the training steps of both DAGs share: run folders, options, MLflow runs and the gate.

A run of a dataset group is identified by its ``as_of``. Everything a step computes goes to
``<storage>/runs/as_of=<key>/`` (rewritten whole when a step runs again), the next step reads
it from there, and only ``publish`` makes anything visible: it writes the published version and
then records the gate's decision in the MLflow registry. A run that fails before that leaves the
previous champion and exports as they were.

Backfills are historical retraining: the champion a run compares with is the one promoted for
the latest as_of *before* the run's (read from the registry's version tags), so re-running a
date reproduces its decision and outputs whatever ran later. Only a run whose as_of is not older
than any date already decided moves the live aliases and the ``latest`` pointer; an older date
is published and recorded beside them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines import storage
from pipelines.errors import SettingsError
from pipelines.settings import RUN_PARAMS, ForecastTraining, Group, PersonalizeTraining
from pipelines.training import pyfunc as models
from pipelines.training import registry
from pipelines.tuning.study import higher_is_better

log = logging.getLogger(__name__)

AS_OF_TAG, STEP_TAG, GROUP_TAG = "airsight.as_of", "airsight.step", "airsight.group"


def study_options(training: ForecastTraining | PersonalizeTraining) -> dict[str, Any]:
    """What a candidate's tuning study takes from the training settings (both engines' ``tune``)."""
    return {
        "metric": training.optimization_metric,
        "n_trials": training.hpo_trials,
        "timeout": training.hpo_timeout_seconds,
        "seed": training.seed,
    }


TRIALS = "~"  # a trial worker's entry: ``name~w/k``, worker w of k adding trials to one shared study


def fan_out(names: list[str], sep: str, parts: int, selected) -> list[str]:
    """Each name ``selected(name)`` picks as ``parts`` mapped entries ``<name><sep><k>/<parts>``; the rest as is."""
    return [e for n in names for e in ([f"{n}{sep}{k}/{parts}" for k in range(parts)] if selected(n) else [n])]


def parse_entry(entry: str, sep: str) -> tuple[str, int | None, int | None]:
    """(name, k, parts) of a mapped entry ``fan_out`` made; (entry, None, None) for a plain one."""
    name, found, part = entry.rpartition(sep)
    if not found:
        return entry, None, None
    k, parts = (int(x) for x in part.split("/"))
    return name, k, parts


def trial_entries(names: list[str], tuned, workers: int) -> list[str]:
    """Each candidate ``tuned(name)`` says runs trials, as ``workers`` trial-worker entries (when > 1)."""
    return fan_out(names, TRIALS, workers, tuned) if workers > 1 else list(names)


def parse_trials(entry: str) -> tuple[str, int | None, int | None]:
    """(candidate, worker, workers) of a trial worker's entry; (entry, None, None) otherwise."""
    return parse_entry(entry, TRIALS)


def shared_study(kind: str, group: Group, as_of: pd.Timestamp, name: str, training, worker: int,
                 workers: int) -> dict[str, Any]:  # fmt: skip
    """Study options of trial worker ``worker``: the run's one study of the candidate in the shared
    storage, this worker's share of the trials, and a seed of its own (so workers propose apart)."""
    storage_url = training.hpo_storage or os.environ.get("AIRSIGHT_OPTUNA_STORAGE")
    if not storage_url:
        folder = run_dir(group, as_of)
        folder.mkdir(parents=True, exist_ok=True)
        storage_url = f"sqlite:///{folder / 'optuna.db'}"
    return {
        **study_options(training),
        "n_trials": -(-training.hpo_trials // workers),
        "seed": training.seed + worker,
        "storage": storage_url,
        "study_name": f"{kind}.{group.name}.{storage.as_of_key(as_of)}.{name}",
    }


def study_best(kind: str, group: Group, as_of: pd.Timestamp, name: str, training) -> dict:
    """The best trial of the candidate's shared study: its params and the study's trial count."""
    import optuna

    options = shared_study(kind, group, as_of, name, training, 0, 1)
    study = optuna.load_study(study_name=options["study_name"], storage=options["storage"])
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise RuntimeError(f"the study {options['study_name']} has no complete trial")
    return {"params": dict(study.best_trial.params), "trials": len(study.trials)}


def fold_trials(records: list[dict], train) -> list[dict]:
    """The mapped records with each candidate's trial workers folded into one candidate record:
    ``train(name, workers' records)`` trains and scores it with the shared study's best params; the
    first failed worker's error otherwise."""
    out, workers = [], {}
    for record in records:
        name, worker, _ = parse_trials(record["name"])
        if worker is None:
            out.append(record)
            continue
        if name not in workers:
            workers[name] = []
            out.append({"name": name, "workers": workers[name]})
        workers[name].append(record)
    for k, record in enumerate(out):
        if "workers" not in record:
            continue
        failed = next((r for r in record["workers"] if r.get("error")), None)
        if failed is not None:
            out[k] = {"name": record["name"], "score": None, "error": f"trial worker: {failed['error']}"}
            continue
        try:
            out[k] = train(record["name"], record["workers"])
        except CandidateFailed as exc:
            out[k] = exc.record
    return out


def run_dir(group: Group, as_of: pd.Timestamp) -> Path:
    return Path(group.storage_root) / "runs" / storage.as_of_key(as_of)


def options(group: Group, overrides: dict | None = None) -> tuple[Group, ForecastTraining | PersonalizeTraining]:
    """The group (with a horizon override) and its training options with the run's params applied.

    A param left empty (None, "", []) keeps the group's default; a bad value raises SettingsError
    naming the param, before anything is trained.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v not in (None, "", [], {})}
    training = group.training.model_dump()
    for name in RUN_PARAMS[group.kind]:
        if name in overrides and name in training:
            training[name] = overrides[name]
    if isinstance(training.get("forecast_types"), list):  # the form sends text: "0.1", "mean"
        training["forecast_types"] = [v if v == "mean" else float(v) for v in training["forecast_types"]]
    try:
        checked = type(group.training).model_validate(training)
        if "horizon" in overrides and group.kind == "forecast":
            group = type(group).model_validate({**group.model_dump(), "horizon": int(overrides["horizon"])})
    except Exception as exc:
        raise SettingsError(f"run params for dataset group {group.name}: {exc}") from exc
    return group.model_copy(update={"training": checked}), checked


def snapshot(group: Group, as_of: pd.Timestamp) -> Path:
    """The snapshot import_data wrote for ``as_of``; a clear error when there is none."""
    folder = storage.snapshot_dir(group.storage_root, as_of)
    if not (folder / "manifest.json").is_file():
        raise FileNotFoundError(f"no snapshot of {group.name} as of {as_of}: run import_data first ({folder})")
    return folder


def config_key(config: dict) -> str:
    """A short, stable digest of a candidate's configuration (name and hyperparameters)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


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


def champion_as_of(kind: str, group: str, as_of: pd.Timestamp, versions: list | None = None) -> dict | None:
    """The champion for a run as of ``as_of``: version, config and as_of key, or None before the first.

    It is the version served by the last decision taken for an earlier as_of (the promoted
    version, or the champion a losing challenger left serving); decisions for the same as_of are
    ordered by ``gate.sequence``. ``versions`` are the registered model's versions when the
    caller has read them already. An MLflow error propagates: no champion is never assumed.
    """
    name = models.registered_name(kind, group)
    versions = registry.model_versions(name) if versions is None else versions
    by_version = {str(v.version): v for v in versions}
    key = storage.as_of_key(as_of)
    decided = [
        v
        for v in versions
        if v.tags.get("gate.decision")
        and v.tags.get(AS_OF_TAG, "") < key
        and models.CONFIG_TAG in _served_tags(v, by_version)
    ]
    if not decided:
        return None
    best = by_version[_served_version(max(decided, key=_decision_order))]
    return {
        "version": str(best.version),
        "config": json.loads(best.tags[models.CONFIG_TAG]),
        "as_of": best.tags.get(AS_OF_TAG, ""),
    }


def _served_version(version) -> str:
    """The version a recorded decision serves: itself when promoted, else the champion it kept."""
    if version.tags.get("gate.decision") == "promoted":
        return str(version.version)
    return version.tags.get("gate.champion_version", "")


def _served_tags(version, by_version: dict) -> dict:
    served = by_version.get(_served_version(version))
    return served.tags if served is not None else {}


def _decision_order(version) -> tuple:
    """Decisions in the order they were taken: as_of, then ``gate.sequence``, then version number."""
    return version.tags.get(AS_OF_TAG, ""), int(version.tags.get("gate.sequence") or 0), int(version.version)


def register_once(kind: str, group: str, as_of: pd.Timestamp, config: dict, native: Any, example) -> str:
    """Log and register ``native`` unless this as_of already has a version with this config.

    Re-running a date (a retry, a backfill run twice) reuses its version instead of piling up
    copies of the same model in the registry.
    """
    import mlflow

    name = models.registered_name(kind, group)
    key = storage.as_of_key(as_of)
    wanted = json.dumps(config, sort_keys=True, default=str)
    for version in registry.model_versions(name):  # an MLflow error fails the step: no duplicate version
        if version.tags.get(AS_OF_TAG) == key and version.tags.get(models.CONFIG_TAG) == wanted:
            mlflow.set_tag("airsight.model_version", version.version)
            return str(version.version)
    info = models.log_model(kind, native, example)
    version = models.register(info, kind, group, json.loads(wanted))
    registry.client().set_model_version_tag(name, version, AS_OF_TAG, key)
    mlflow.set_tag("airsight.model_version", version)
    return version


def register_winner(
    group: Group,
    as_of: pd.Timestamp,
    selection: dict,
    params: dict,
    native: Any,
    example,
    artifacts: Path | None = None,
    extra_metrics: dict | None = None,
) -> str:
    """The forecast/recommend step's MLflow run: the winner's params and metrics, every candidate's
    score, the selection, the Great Expectations report (and ``artifacts``), ``extra_metrics`` (the
    monitoring of the previous forecast), and the registered model."""
    import mlflow

    winner = selection["winner"]
    step = "forecast" if group.kind == "forecast" else "recommend"
    with mlflow_run(group, as_of, step, f"{step} {winner['name']}"):
        mlflow.log_params({**params, **{f"hp.{k}": v for k, v in winner["config"]["params"].items()}})
        log_metrics("", winner["metrics"])
        log_metrics("", extra_metrics or {})
        for candidate in selection["leaderboard"]:
            if candidate["score"] is not None:
                log_metrics(f"candidate.{candidate['name']}.", {selection["metric"]: candidate["score"]})
        mlflow.log_dict(selection, "selection.json")
        if artifacts is not None:
            mlflow.log_artifacts(str(artifacts), "outputs")
        docs = storage.validation_dir(group.storage_root, as_of) / "docs"
        if docs.is_dir():
            mlflow.log_artifacts(str(docs), "great_expectations")
        return register_once(group.kind, group.name, as_of, winner["config"], native, example)


def is_live(kind: str, group: str, as_of: pd.Timestamp, versions: list | None = None) -> bool:
    """Whether a run for ``as_of`` may move the live aliases: no newer as_of has been decided yet."""
    if versions is None:
        versions = registry.model_versions(models.registered_name(kind, group))
    decided = [v.tags.get(AS_OF_TAG, "") for v in versions if "gate.decision" in v.tags]
    return not decided or max(decided) <= storage.as_of_key(as_of)


def select(candidates: list[dict], metric: str) -> dict:
    """The best candidate on ``metric`` (the first of equals); failed candidates are skipped."""
    ok = [c for c in candidates if not c.get("error") and _finite(c.get("score"))]
    if not ok:
        failures = "; ".join(f"{c['name']}: {c.get('error')}" for c in candidates)
        raise NoCandidateTrained(f"no candidate trained: {failures}")
    sign = 1 if higher_is_better(metric) else -1
    return max(ok, key=lambda c: (sign * c["score"], -candidates.index(c)))


def decide(selection: dict, version: str, margin: float, model: str = "") -> registry.Decision:
    """The gate's decision for the run's winner (``version``; "new" before it is registered).

    The winner is compared with the champion's configuration scored on the same windows. When the
    winner *is* the champion's configuration, its retrained version takes over: same model,
    newer data. A champion that could not be scored on this data keeps serving unless the run
    forces the promotion: the gate fails closed.
    """
    winner, champion = selection["winner"], selection.get("champion")
    force = bool(selection.get("force"))
    metric = selection["metric"]
    if champion is not None and not champion.get("error") and not _finite(champion.get("score")):
        champion = {**champion, "error": f"its {metric} is undefined on this data ({champion.get('score')})"}

    def decided(promoted: bool, reason: str) -> registry.Decision:
        return registry.Decision(model, str(version), promoted, reason, metric, float(winner["score"]),
                                 champion["version"], champion.get("score"), force)  # fmt: skip

    if champion is not None and champion.get("error"):  # it cannot defend its title today; nor can it lose it
        reason = f"the champion v{champion['version']} could not be scored on this data ({champion['error']})"
        if force:
            return decided(True, f"forced promotion ({reason})")
        return decided(False, f"{reason}: it keeps serving (force_promotion replaces it)")
    if champion is not None and champion["config"] == winner["config"]:
        return decided(
            True, f"the champion's configuration (v{champion['version']}) won again: retrained as of this run"
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


def finish(kind: str, group: Group, as_of, selection: dict, version: str, write, overrides: dict | None) -> dict:
    """Decide, publish what the decision serves (and the leaderboard), then record it in the registry.

    ``write(run, served, folder)`` fills the published folder from the run's folder; ``served`` is
    "challenger" when the new version is promoted and "champion" when the champion's
    configuration keeps serving.
    All of it runs under the registered model's gate lock, against the champion read inside
    it: a run that finished meanwhile may have promoted another (ChampionChanged when this run
    cannot be decided against it). An MLflow error fails the run before anything moves.
    """
    from pipelines.training import publish as publishing

    as_of = storage.resolve_as_of(as_of)
    group, _ = options(group, overrides)
    run = run_dir(group, as_of)
    training = group.training
    name = models.registered_name(kind, group.name)
    selection = {**selection, "force": bool((overrides or {}).get("force_promotion"))}
    with registry.gate_lock(name):
        versions = registry.model_versions(name)
        planned = selection.get("champion")
        current = champion_as_of(kind, group.name, as_of, versions)
        changed = _version_of(planned) != _version_of(current)
        if changed:
            selection = {**selection, "champion": _rescored(selection, planned, current)}
        decision = decide(selection, version, training.promotion_margin, name)
        if changed and not decision.promoted:  # this run's outputs are those of the champion it planned for
            raise ChampionChanged(
                f"{name}: the champion changed from v{_version_of(planned)} to v{_version_of(current)} since this "
                f"run's backtest, and v{version} does not replace it ({decision.reason}): run it again from backtest"
            )
        served = "challenger" if decision.promoted else "champion"
        served_version = version if decision.promoted else selection["champion"]["version"]
        live = is_live(kind, group.name, as_of, versions)
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
        if (overrides or {}).get("trigger"):  # why the run ran off schedule (the monitor's asset event)
            details["trigger"] = str(overrides["trigger"])

        def fill(folder: Path) -> dict:
            write(run, served, folder)
            board = {"metric": decision.metric, "candidates": selection["leaderboard"]}
            storage.write_json(folder / "leaderboard.json", board)
            storage.write_json(folder / "decision.json", details)
            return {**details, "checksums": checksums(folder)}

        # The version folder first, then the registry, and the latest pointer last: a failure at any
        # point leaves readers on the previous version.
        pointer = publishing.publish(group.storage_root, kind, as_of, fill, move_latest=False)
        sequence = 1 + max((int(v.tags.get("gate.sequence") or 0) for v in versions), default=0)
        registry.record(decision, training.promotion_margin, move_aliases=live, sequence=sequence)
        if live:
            publishing.point_latest(group.storage_root, kind, pointer)
            publishing.prune(group.storage_root, kind, keep=training.keep_versions)  # never what a backfill just wrote
    return {**pointer, "live": live}


def _version_of(champion: dict | None) -> str | None:
    return None if champion is None else str(champion["version"])


def _rescored(selection: dict, planned: dict | None, current: dict | None) -> dict | None:
    """``current`` (the champion read under the gate lock) with its score on this run's data.

    A champion's score depends on its configuration only (it is refitted on the run's data), so
    it is known when the winner, a scored candidate or the planned champion had that
    configuration. Otherwise this run cannot defend against it: with force_promotion it is
    replaced anyway; without, ChampionChanged.
    """
    if current is None:
        return None
    winner = selection["winner"]
    known = [(winner["config"], winner["score"]), *((s["config"], s["score"]) for s in selection.get("scores", []))]
    if planned is not None and not planned.get("error"):
        known.append((planned["config"], planned.get("score")))
    score = next((score for config, score in known if config == current["config"]), None)
    if score is not None:
        return {**current, "score": score}
    if selection.get("force"):
        return {**current, "score": None, "error": "promoted by a run that finished during this one"}
    raise ChampionChanged(
        f"the champion changed to v{current['version']} ({current['config']}) since this run's backtest, which did not "
        "score its configuration: run it again from backtest, or with force_promotion"
    )


def compare(kind: str, group: Group, as_of: pd.Timestamp, candidates: list[dict], overrides: dict | None,
            score_champion) -> dict:  # fmt: skip
    """The backtest step of both DAGs: the winner, the champion scored on the same data, the expected decision.

    ``score_champion(config) -> dict`` scores the champion's configuration when no candidate has
    it (its ``score``, and anything the next step needs, such as ``path``); its failure means the
    champion cannot defend its title today. The selection is written to the run folder.
    """
    training = group.training
    winner = select(candidates, training.optimization_metric)
    champion = champion_as_of(kind, group.name, as_of)  # an MLflow error fails the step
    if champion is not None:
        same = next((c for c in candidates if c.get("config") == champion["config"]), None)
        try:
            found = same if same is not None else score_champion(champion["config"])
            champion.update({k: found[k] for k in ("score", "path") if k in found})
        except Exception as exc:
            log.exception("the champion v%s could not be scored on this data", champion["version"])
            champion.update(score=None, error=f"{type(exc).__name__}: {exc}")
    selection = {
        "metric": training.optimization_metric,
        "winner": winner,
        "champion": champion,
        "force": bool((overrides or {}).get("force_promotion")),
        "leaderboard": leaderboard(candidates, training.optimization_metric),
        # every configuration scored on this run's data: the gate may meet another champion at publish
        "scores": [{"config": c["config"], "score": c["score"]} for c in candidates if _scored(c)],
    }
    expected = decide(selection, "new", training.promotion_margin)
    selection["expected"] = expected.reason
    storage.write_json(run_dir(group, as_of) / "selection.json", selection)
    unscored = champion is not None and (champion.get("error") or not _finite(champion.get("score")))
    if unscored and not expected.promoted:
        raise ChampionNotScored(f"{models.registered_name(kind, group.name)}: {expected.reason}; nothing is published")
    return selection


def _scored(candidate: dict) -> bool:
    return not candidate.get("error") and "config" in candidate and _finite(candidate.get("score"))


def leaderboard(candidates: list[dict], metric: str) -> list[dict]:
    """Every candidate, best first on ``metric``; failed ones last, with their errors."""
    sign = -1 if higher_is_better(metric) else 1
    rows = [{"name": c["name"], "score": c.get("score"), "error": c.get("error")} for c in candidates]
    return sorted(rows, key=lambda c: (not _finite(c["score"]), sign * c["score"] if _finite(c["score"]) else 0.0))


class ChampionNotScored(RuntimeError):
    """The champion could not be scored on the run's data: it keeps serving and the run stops (unless forced)."""


class ChampionChanged(RuntimeError):
    """Another run promoted a champion this run's backtest did not score: nothing of this run is published."""


class NoCandidateTrained(RuntimeError):
    """Every candidate of a run failed (or scored nothing): the run cannot select a model."""


class CandidateFailed(RuntimeError):
    """A candidate could not be trained or scored; ``record`` is its leaderboard entry, error included."""

    def __init__(self, record: dict):
        super().__init__(f"candidate {record['name']} failed: {record['error']}")
        self.record = record


def failed_candidate(name: str, exc: Exception) -> CandidateFailed:
    """Record a candidate's failure on its MLflow run (ended FAILED); the exception its step raises.

    The step fails (a red task in Airflow's grid, the error in its log) and carries the leaderboard
    entry, so the backtest step still ranks the candidates that trained and lists this one's error.
    """
    import mlflow

    log.exception("candidate %s failed", name)
    message = f"{type(exc).__name__}: {exc}"
    mlflow.set_tag("airsight.error", message[:5000])
    mlflow.end_run(status="FAILED")
    return CandidateFailed({"name": name, "error": message, "score": None})


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every published file, by relative path: what a re-run must reproduce."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "decision.json"
    }
