"""Shared DAG wiring for Airsight: one DAG per dataset group settings file.

Only airflow.sdk, the standard library and ``pipelines.settings`` (pydantic and PyYAML, which
Airflow loads anyway) are imported at parse time; pandas, Great Expectations and the rest load
inside the tasks. The params form comes from the settings models (``settings.run_param_schemas``):
bounds and choices live there, once. Both kinds run the same steps through the same surface of
their workflow module (``pipelines.<kind>.workflow``: candidates, partition, hpo_train, backtest,
predict, publish).
"""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, get_current_context, task

from pipelines import domains
from pipelines.settings import RUN_PARAMS, discover_groups, load_group, run_param_schemas

DEFAULT_ARGS = {
    "owner": "airsight",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
}
RUN_ONLY = ("force_promotion",)  # params that are about the run, not settings of the group


def run_as_of() -> str:
    """The run's data cut-off: the as_of param, else the data interval end, else the trigger time."""
    context = get_current_context()
    explicit = (context.get("params") or {}).get("as_of")
    if explicit:
        return str(explicit)
    end = context.get("data_interval_end")
    if end is not None:
        return end.isoformat()
    return context["dag_run"].run_after.isoformat()


def run_overrides(kind: str) -> dict:
    """The run's params that override the group's settings (empty ones keep the group's)."""
    params = get_current_context().get("params") or {}
    return {k: params.get(k) for k in (*RUN_PARAMS[kind], *RUN_ONLY) if params.get(k) is not None}


def form(group) -> dict:
    """The params form: the group's run params, validated by JSON Schema, and the run-only ones."""
    return {
        "dataset_group": Param(group.name, type="string", enum=[group.name], title="Dataset group"),
        "as_of": Param(
            None,
            type=["null", "string"],
            title="As of",
            description="Data cut-off (ISO date or timestamp). Empty: the run's data interval end, "
            "or the trigger time for manual runs.",
        ),
        **{name: Param(**schema) for name, schema in run_param_schemas(group).items()},
        "force_promotion": Param(
            False,
            type="boolean",
            title="Force promotion",
            description="Make the new version champion even if it does not beat the champion.",
        ),
    }


def workflow(kind: str):
    """The kind's workflow module: the same step functions for Forecast and Personalize."""
    return importlib.import_module(f"pipelines.{kind}.workflow")


def resolved(settings_file: str, kind: str):
    """A task's view of the run, resolved once: (group with the run's params applied, as_of, overrides)."""
    from pipelines.training.runs import options

    overrides = run_overrides(kind)
    return options(load_group(settings_file), overrides)[0], run_as_of(), overrides


# The steps. Each task takes the group's settings file and kind (shown as its arguments in the UI)
# and calls one function of the kind's workflow module or of pipelines.preparation.steps.


@task(retries=0)
def plan(settings_file: str, kind: str) -> list[str]:
    """The candidates to train; bad params fail here, before any work is done."""
    group, _, _ = resolved(settings_file, kind)
    return workflow(kind).candidates(group.training)


@task(retries=0)
def validate_schema(settings_file: str, kind: str) -> dict:
    """Great Expectations suites over every dataset; a failure fails fast, without retries."""
    from pipelines.preparation import steps

    group, as_of, _ = resolved(settings_file, kind)
    return steps.validate_schema(group, as_of)


@task
def import_data(settings_file: str, kind: str, validated: dict) -> dict:
    """Align, aggregate, fill and write the snapshot keyed by as_of."""
    from pipelines.preparation import steps

    group, as_of, _ = resolved(settings_file, kind)
    return steps.import_data(group, as_of, validated=validated)


@task(retries=0)
def partition(settings_file: str, kind: str, names: list[str], imported: dict) -> list[str]:
    """The mapped hpo_train entries: the candidates, a local Forecast algorithm cut into shards of series
    when the group sets ``training.series_per_shard`` (known once the snapshot is imported)."""
    group, as_of, overrides = resolved(settings_file, kind)
    return workflow(kind).partition(group, as_of, list(names), overrides)


@task(map_index_template="{{ task.op_kwargs['name'] }}")
def hpo_train(settings_file: str, kind: str, name: str) -> dict:
    """Tune (Optuna, when trials are asked for) and backtest one candidate.

    A candidate that fails ends this task failed, without retries (its error is in the log);
    either way its leaderboard entry goes to the XCom ``candidate`` for the backtest step.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.training.runs import CandidateFailed

    ti = get_current_context()["ti"]
    group, as_of, _ = resolved(settings_file, kind)
    try:
        result = workflow(kind).hpo_train(group, as_of, name)
    except CandidateFailed as failed:
        ti.xcom_push(key="candidate", value=failed.record)
        raise AirflowFailException(str(failed)) from failed
    ti.xcom_push(key="candidate", value=result)
    return result


# Runs once every candidate is done, failed ones included (plan's success is the "one success").
@task(trigger_rule="all_done_min_one_success")
def backtest(settings_file: str, kind: str, names: list[str]) -> dict:
    """The best candidate on the optimization metric, and the champion scored on the same data.

    Runs when every candidate is done, failed ones included; with none trained it fails,
    naming each candidate's error.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from pipelines.training.runs import NoCandidateTrained

    candidates = trained_candidates(list(names))
    group, as_of, overrides = resolved(settings_file, kind)
    try:
        return workflow(kind).backtest(group, as_of, candidates, overrides)
    except NoCandidateTrained as none:  # retrying cannot help: fail now, naming each error
        raise AirflowFailException(str(none)) from none


@task(retries=0)
def plan_fit(settings_file: str, kind: str, selection: dict) -> list[str]:
    """The final fit's mapped shards (``challenger#k/n``, …) when the group shards its series; none otherwise."""
    group, as_of, overrides = resolved(settings_file, kind)
    return workflow(kind).plan_fit(group, as_of, selection, overrides)


@task(map_index_template="{{ task.op_kwargs['entry'] }}")
def fit_shard(settings_file: str, kind: str, selection: dict, entry: str) -> dict:
    """Fit one shard of the series of a final model; the predict step assembles the parts."""
    group, as_of, overrides = resolved(settings_file, kind)
    return workflow(kind).fit_shard(group, as_of, selection, entry, overrides)


# No shards to fit (an empty mapping skips fit_shard) still predicts; a failed shard does not.
@task(trigger_rule="none_failed")
def predict(settings_file: str, kind: str, selection: dict) -> dict:
    """Train the winner on all the data, register it in MLflow, forecast or recommend."""
    group, as_of, _ = resolved(settings_file, kind)
    return workflow(kind).predict(group, as_of, selection)


@task
def publish(settings_file: str, kind: str, selection: dict, predicted: dict) -> dict:
    """Publish the served outputs, then record the gate's decision in the registry.

    A run the monitor's asset event triggered says so in the decision (``trigger``).
    """
    group, as_of, overrides = resolved(settings_file, kind)
    reasons = trigger_reasons()
    if reasons:
        overrides = {**overrides, "trigger": "; ".join(reasons)}
    return workflow(kind).publish(group, as_of, selection, predicted, overrides)


@task(retries=0)
def check_accuracy(settings_file: str, kind: str) -> dict:
    """The monitor's check: skipped while the predictor holds up; on degradation, the asset event that retrains."""
    from airflow.sdk.exceptions import AirflowSkipException

    group, as_of, _ = resolved(settings_file, kind)
    summary = workflow(kind).check_accuracy(group, as_of)
    if not summary["degraded"]:
        raise AirflowSkipException(f"no retraining: {summary['reason']}")
    extra = {"as_of": summary["as_of"], "reason": summary["reason"], "scored_forecast": summary["scored_forecast"]}
    get_current_context()["outlet_events"][degraded_asset(group.name)].extra = extra
    return summary


def trigger_reasons() -> list[str]:
    """Why the monitor retrained this run: the reasons of the asset events that triggered it (none: not so)."""
    events = get_current_context().get("triggering_asset_events") or {}
    return [str(e.extra["reason"]) for found in events.values() for e in found if (e.extra or {}).get("reason")]


def degraded_asset(group_name: str) -> Asset:
    """The event that a group's predictor degraded: the monitor DAG emits it, the group's DAG runs on it."""
    return Asset(name=f"airsight_predictor_degraded__{group_name}", uri=f"airsight://{group_name}/predictor_degraded")


def monitored(group) -> bool:
    return group.kind == "forecast" and group.monitoring.max_wape_increase is not None


def training_schedule(group):
    """The group's schedule; a monitored group also runs when its predictor degraded (the asset event)."""
    if not monitored(group):
        return group.schedule
    if group.schedule is None:
        return [degraded_asset(group.name)]
    timetable = CronTriggerTimetable(group.schedule, timezone="UTC")
    return AssetOrTimeSchedule(timetable=timetable, assets=[degraded_asset(group.name)])


def timed(group, step, task_id: str | None = None):
    """The step as a task Airflow fails once it runs past the group's timeout for it."""
    task_id = task_id or step.function.__name__
    minutes = group.task_timeouts.minutes(task_id)
    return step.override(task_id=task_id, execution_timeout=timedelta(minutes=minutes))


def build_dag(settings_file: str, kind: str):
    """The group's DAG: plan >> validate_schema >> import_data >> partition >> hpo_train[*] >> backtest >> plan_fit
    >> fit_shard[*] >> predict >> publish."""
    group = load_group(settings_file)

    @dag(
        dag_id=f"{kind}__{group.name}",
        description=group.description or f"Airsight {kind} pipeline for dataset group {group.name}",
        schedule=training_schedule(group),
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["airsight", kind, group.name],
        params=form(group),
        doc_md=f"Dataset group `{group.name}` from `{settings_file}`.",
    )
    def pipeline():
        where = {"settings_file": settings_file, "kind": kind}
        candidates = timed(group, plan)(**where)
        imported = timed(group, import_data)(**where, validated=timed(group, validate_schema)(**where))
        candidates >> imported
        entries = timed(group, partition)(**where, names=candidates, imported=imported)
        trained = timed(group, hpo_train).partial(**where).expand(name=entries)
        selection = timed(group, backtest)(**where, names=entries)
        trained >> selection
        shards = timed(group, plan_fit)(**where, selection=selection)
        fits = timed(group, fit_shard).partial(**where, selection=selection).expand(entry=shards)
        predicted = timed(group, predict, domains.PREDICT_STEPS[kind])(**where, selection=selection)
        fits >> predicted
        timed(group, publish)(**where, selection=selection, predicted=predicted)

    return pipeline()


def build_monitor_dag(settings_file: str):
    """A monitored forecast group's monitor: validate_schema >> import_data >> check_accuracy, on its schedule.

    ``check_accuracy`` emits the group's degraded-predictor asset event when the live WAPE passed
    ``monitoring.max_wape_increase``, and the group's DAG, scheduled on that asset too, retrains.
    """
    group = load_group(settings_file)

    @dag(
        dag_id=f"forecast_monitor__{group.name}",
        description=f"Airsight predictor monitor for dataset group {group.name}: retrains it when accuracy degrades",
        schedule=group.monitoring.schedule,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["airsight", "forecast", "monitor", group.name],
        params={key: value for key, value in form(group).items() if key in ("dataset_group", "as_of")},
        doc_md=f"Predictor monitor of dataset group `{group.name}` from `{settings_file}`.",
    )
    def monitor():
        where = {"settings_file": settings_file, "kind": "forecast"}
        imported = timed(group, import_data)(**where, validated=timed(group, validate_schema)(**where))
        check = timed(group, check_accuracy).override(outlets=[degraded_asset(group.name)])(**where)
        imported >> check

    return monitor()


def trained_candidates(names: list[str]) -> list[dict]:
    """Each mapped hpo_train's leaderboard entry by candidate (or why it has none)."""
    ti = get_current_context()["ti"]
    found = []
    for index, name in enumerate(names):
        result = ti.xcom_pull(task_ids="hpo_train", map_indexes=index, key="candidate")
        found.append(
            result
            or {
                "name": name,
                "score": None,
                "error": "hpo_train did not finish (its upstream failed or it was stopped): see its task log",
            }
        )
    return found


def build_all(kind: str) -> dict:
    """One DAG per settings file of this kind in the groups directory (and per domain recommender), by dag_id."""
    dags = {}
    for path in discover_groups():
        group = load_group(path)
        if group.kind == kind:
            built = [build_dag(str(path), kind), *([build_monitor_dag(str(path))] if monitored(group) else [])]
            # each domain recommender trains in a DAG of its own: personalize__<group>__<recommender>
            built += [build_dag(f"{path}#{name}", kind) for name in getattr(group, "recommenders", [])]
            dags.update({d.dag_id: d for d in built})
    return dags
