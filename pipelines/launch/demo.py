"""``make demo``: run every dataset group's DAG once, in one process, on Airflow's SQLite.

Airflow's own ``dag.test()`` runs the tasks for real (the same code a scheduler would run),
with its metadata database in ``$AIRSIGHT_HOME/airflow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DAGS_FOLDER = Path(os.environ.get("AIRSIGHT_DAGS_FOLDER", Path(__file__).parents[2] / "dags"))


def airflow_env(airflow_home: Path) -> dict[str, str]:
    """Environment for an embedded Airflow: SQLite in ``airflow_home``, our DAGs, no examples."""
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__CORE__DAG_IGNORE_FILE_SYNTAX": "glob",
    }


def prepare_airflow(airflow_home: Path) -> None:
    """Point this process at an embedded Airflow and create its database if needed."""
    airflow_home.mkdir(parents=True, exist_ok=True)
    os.environ.update(airflow_env(airflow_home))
    # Airflow puts the DAGs folder on sys.path for its own processes; do the same here.
    if str(DAGS_FOLDER) not in sys.path:
        sys.path.insert(0, str(DAGS_FOLDER))
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy())
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def run_dags(dag_ids: list[str] | None = None, conf: dict | None = None) -> dict[str, str]:
    """dag.test() each DAG (all by default); the final state of each run by dag_id."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {json.dumps(bag.import_errors, indent=2)}")
    states = {}
    for dag_id in sorted(dag_ids or bag.dags):
        run = bag.dags[dag_id].test(run_conf=conf)
        states[dag_id] = str(run.state)
    return states


def run_demo() -> int:
    """Run every group's DAG end to end and say where its outputs are."""
    import time

    from pipelines.settings import discover_groups, groups_dir, load_group
    from pipelines.training import publish, registry

    home = Path(os.environ.get("AIRSIGHT_HOME") or Path.cwd() / ".airsight")
    if not discover_groups():
        print(f"no dataset groups in {groups_dir()}: run `airsight example-data DIR` first", file=sys.stderr)
        return 2
    began = time.perf_counter()
    prepare_airflow(home / "airflow")
    states = run_dags()
    failed = [d for d, s in states.items() if s != "success"]
    print(f"\nAirsight demo ({time.perf_counter() - began:.0f} s)")
    for dag_id, state in states.items():
        print(f"  DAG {dag_id}: {state}")
    for path in discover_groups():
        group = load_group(path)
        pointer = publish.latest(group.storage_root, group.kind)
        if pointer is None:
            continue
        folder = Path(pointer["path"])
        board = json.loads((folder / "leaderboard.json").read_text())
        scores = ", ".join(f"{c['name']} {c['score']:.4f}" for c in board["candidates"] if c["score"] is not None)
        print(f"\n  {group.name} ({group.kind}) as of {pointer['as_of']}")
        print(f"    published: {folder}")
        print(f"    {board['metric']}: {scores}")
        model = f"{pointer['model']} v{pointer['version']}"
        print(f"    model {model}: {pointer['decision']}; serving v{pointer['served_version']}")
        if group.kind == "forecast":
            print(f"    forecast export: {folder / 'forecast.csv'} (and .parquet)")
            print(
                f"    backtest export: {folder / 'backtest_forecasts.csv'}, {folder / 'backtest_accuracy_metrics.csv'}"
            )
            print(f"    plots: {folder / 'plots' / 'summary.png'} and one PNG per item")
            for scenario in sorted((folder / "what_if").glob("*")):
                print(f"    what-if {scenario.name}: {scenario / 'forecast.csv'}, comparison.csv and .png beside it")
            if (folder / "explainability").is_dir():
                print(
                    f"    impact scores: {folder / 'explainability' / 'impact_scores_global.csv'} (and .png, per item)"
                )
        else:
            print(f"    batch recommendations: {folder / 'batch_recommendations.jsonl'}")
        manifest = json.loads((folder.parents[2] / "snapshots" / folder.name / "manifest.json").read_text())
        print(f"    Great Expectations Data Docs: {manifest['data_docs']}")
    print(f"\n  MLflow UI: mlflow ui --backend-store-uri {registry.tracking_uri()} --port 5000")
    print("  Serving API: airsight serve   (see the README's Serving section)")
    return 1 if failed else 0
