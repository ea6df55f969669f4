"""Shared DAG wiring for Airsight: one DAG per dataset group settings file.

Only airflow.sdk, the standard library and ``pipelines.settings`` (pydantic and PyYAML, which
Airflow loads anyway) are imported at parse time; pandas, Great Expectations and the rest load
inside the tasks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

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
        },
        doc_md=f"Dataset group `{group.name}` from `{settings_file}`.",
    )
    def pipeline():
        @task(retries=0)
        def validate_schema() -> dict:
            """Great Expectations suites over every dataset; a failure fails fast, without retries."""
            from pipelines import steps

            return steps.validate_schema(load_group(settings_file), run_as_of())

        @task
        def import_data(validated: dict) -> dict:
            """Align, aggregate, fill and write the snapshot keyed by as_of."""
            from pipelines import steps

            return steps.import_data(load_group(settings_file), run_as_of(), validated=validated)

        import_data(validate_schema())

    return pipeline()


def build_all(kind: str) -> dict:
    """One DAG per settings file of this kind in the groups directory, by dag_id."""
    dags = {}
    for path in discover_groups():
        if load_group(path).kind == kind:
            built = build_dag(str(path), kind)
            dags[built.dag_id] = built
    return dags
