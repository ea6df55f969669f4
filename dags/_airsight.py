"""Shared DAG wiring for Airsight: one DAG per dataset group settings file.

Only airflow.sdk, the standard library and ``pipelines.settings`` (pydantic and PyYAML, which
Airflow loads anyway) are imported at parse time; pandas, Great Expectations and the rest load
inside the tasks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from pipelines import domains
from pipelines.settings import discover_groups, load_group

DEFAULT_ARGS = {
    "owner": "airsight",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
}


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


# Params a UI trigger may set besides as_of; empty means the group's default (its settings file).
RUN_PARAMS = (
    "algorithms",
    "recipes",
    "horizon",
    "forecast_types",
    "backtest_windows",
    "hpo_trials",
    "hpo_timeout_seconds",
    "optimization_metric",
    "algorithm_params",
    "num_results",
    "force_promotion",
)


def training_params(group) -> dict:
    """The params form: what a UI trigger may change for one run, validated by JSON Schema."""
    t = group.training
    common = {
        "hpo_trials": Param(
            t.hpo_trials,
            type="integer",
            minimum=0,
            maximum=500,
            title="HPO trials per candidate",
            description="Optuna trials for each candidate; 0 trains the defaults.",
        ),
        "hpo_timeout_seconds": Param(
            t.hpo_timeout_seconds,
            type=["null", "number"],
            exclusiveMinimum=0,
            title="HPO time budget (s)",
            description="Per candidate; empty: no limit.",
        ),
        "force_promotion": Param(
            False,
            type="boolean",
            title="Force promotion",
            description="Make the new version champion even if it does not beat the champion.",
        ),
    }
    if group.kind == "forecast":
        return {
            "algorithms": Param(
                list(t.algorithms),
                type="array",
                title="Algorithms",
                items={"type": "string", "enum": list(domains.FORECAST_ALGORITHMS)},
                minItems=1,
                uniqueItems=True,
                examples=list(domains.FORECAST_ALGORITHMS),
            ),
            "horizon": Param(
                group.horizon,
                type="integer",
                minimum=1,
                maximum=domains.MAX_HORIZON,
                title="Forecast horizon",
                description=f"Periods of {group.frequency}.",
            ),
            "forecast_types": Param(
                [str(x) for x in t.forecast_types],
                type="array",
                title="Forecast types",
                items={"type": "string", "pattern": r"^(mean|0?\.\d+)$"},
                minItems=1,
                description="Quantiles 0.01-0.99 and 'mean'.",
            ),
            "backtest_windows": Param(
                t.backtest_windows, type="integer", minimum=1, maximum=5, title="Backtest windows"
            ),
            "optimization_metric": Param(
                t.optimization_metric, type="string", title="Optimization metric", enum=list(domains.FORECAST_METRICS)
            ),
            "algorithm_params": Param(
                dict(t.algorithm_params),
                type="object",
                title="Hyperparameters per algorithm",
                description='e.g. {"DeepAR+": {"epochs": 20}, "AutoPredictor": {"time_limit": 600}}; '
                "checked against each algorithm's ranges when the run starts. Empty: the group's.",
            ),
            **common,
        }
    return {
        "recipes": Param(
            list(t.recipes),
            type="array",
            title="Recipes",
            items={"type": "string", "enum": list(domains.PERSONALIZE_RECIPES)},
            minItems=1,
            uniqueItems=True,
            examples=list(domains.PERSONALIZE_RECIPES),
        ),
        "optimization_metric": Param(
            t.optimization_metric, type="string", title="Optimization metric", enum=list(domains.PERSONALIZE_METRICS)
        ),
        "num_results": Param(
            t.num_results, type="integer", minimum=1, maximum=500, title="Items per user in the batch recommendations"
        ),
        **common,
    }


def run_overrides() -> dict:
    """The run's params that override the group's training settings."""
    params = get_current_context().get("params") or {}
    overrides = {k: params.get(k) for k in RUN_PARAMS if params.get(k) is not None}
    if "forecast_types" in overrides:
        overrides["forecast_types"] = [v if v == "mean" else float(v) for v in overrides["forecast_types"]]
    return overrides


def run_group(settings_file: str):
    """The group as this run sees it: a horizon param also bounds the related series' future values."""
    from pipelines import workflow

    return workflow.options(load_group(settings_file), run_overrides())[0]


def build_dag(settings_file: str, kind: str):
    group = load_group(settings_file)

    @dag(
        dag_id=f"{kind}__{group.name}",
        description=group.description or f"Airsight {kind} pipeline for dataset group {group.name}",
        schedule=group.schedule,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["airsight", kind, group.name],
        params={
            "dataset_group": Param(group.name, type="string", enum=[group.name], title="Dataset group"),
            "as_of": Param(
                None,
                type=["null", "string"],
                title="As of",
                description="Data cut-off (ISO date or timestamp). Empty: the run's data interval end, "
                "or the trigger time for manual runs.",
            ),
            **training_params(group),
        },
        doc_md=f"Dataset group `{group.name}` from `{settings_file}`.",
    )
    def pipeline():
        @task(retries=0)
        def plan() -> list[str]:
            """The candidates to train; bad params fail here, before any work is done."""
            from pipelines import workflow

            _, training = workflow.options(load_group(settings_file), run_overrides())
            return list(training.algorithms if kind == "forecast" else training.recipes)

        @task(retries=0)
        def validate_schema() -> dict:
            """Great Expectations suites over every dataset; a failure fails fast, without retries."""
            from pipelines import steps

            return steps.validate_schema(run_group(settings_file), run_as_of())

        @task
        def import_data(validated: dict) -> dict:
            """Align, aggregate, fill and write the snapshot keyed by as_of."""
            from pipelines import steps

            return steps.import_data(run_group(settings_file), run_as_of(), validated=validated)

        @task(map_index_template="{{ task.op_kwargs['name'] }}")
        def hpo_train(name: str) -> dict:
            """Tune (Optuna, when trials are asked for) and backtest one candidate.

            A candidate that fails ends this task failed, without retries (its error is in the log);
            either way its leaderboard entry goes to the XCom ``candidate`` for the backtest step.
            """
            from airflow.sdk.exceptions import AirflowFailException

            from pipelines.workflow import CandidateFailed

            ti = get_current_context()["ti"]
            try:
                result = _steps(kind).hpo_train(load_group(settings_file), run_as_of(), name, run_overrides())
            except CandidateFailed as failed:
                ti.xcom_push(key="candidate", value=failed.record)
                raise AirflowFailException(str(failed)) from failed
            ti.xcom_push(key="candidate", value=result)
            return result

        # Runs once every candidate is done, failed ones included (plan's success is the "one success").
        @task(trigger_rule="all_done_min_one_success")
        def backtest(names: list[str]) -> dict:
            """The best candidate on the optimization metric, and the champion scored on the same data.

            Runs when every candidate is done, failed ones included; with none trained it fails,
            naming each candidate's error.
            """
            from airflow.sdk.exceptions import AirflowFailException

            from pipelines.workflow import NoCandidateTrained

            candidates = trained_candidates(list(names))
            try:
                return _steps(kind).backtest(load_group(settings_file), run_as_of(), candidates, run_overrides())
            except NoCandidateTrained as none:  # retrying cannot help: fail now, naming each error
                raise AirflowFailException(str(none)) from none

        @task(task_id="forecast" if kind == "forecast" else "recommend")
        def predict(selection: dict) -> dict:
            """Train the winner on all the data, register it in MLflow, forecast or recommend."""
            steps = _steps(kind)
            run = steps.forecast if kind == "forecast" else steps.recommend
            return run(load_group(settings_file), run_as_of(), selection, run_overrides())

        @task
        def publish(selection: dict, predicted: dict) -> dict:
            """Publish the served outputs, then record the gate's decision in the registry."""
            return _steps(kind).publish(load_group(settings_file), run_as_of(), selection, predicted, run_overrides())

        candidates = plan()
        imported = import_data(validate_schema())
        candidates >> imported
        trained = hpo_train.expand(name=candidates)
        imported >> trained
        selection = backtest(candidates)
        trained >> selection
        publish(selection, predict(selection))

    return pipeline()


def trained_candidates(names: list[str]) -> list[dict]:
    """Each mapped hpo_train's result by candidate, or its failure (or why it has neither)."""
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


def _steps(kind: str):
    if kind == "forecast":
        from pipelines.forecast import workflow
    else:
        from pipelines.personalize import workflow
    return workflow


def build_all(kind: str) -> dict:
    """One DAG per settings file of this kind in the groups directory, by dag_id."""
    dags = {}
    for path in discover_groups():
        if load_group(path).kind == kind:
            built = build_dag(str(path), kind)
            dags[built.dag_id] = built
    return dags
