"""One candidate's Optuna trials spread over mapped tasks: ``training.hpo_workers`` trial workers add
trials to one study in PostgreSQL (Optuna's RDB storage), and the backtest step trains the study's
best. Skips where no PostgreSQL is reachable.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from pipelines.launch import airflow_local
from pipelines.training import runs as wf
from tests.dags.test_forecast_dag import AS_OF, run

SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def optuna_postgres(monkeypatch):
    if not airflow_local.reachable(SERVER):
        pytest.skip("no PostgreSQL at 127.0.0.1:5432: the shared Optuna study needs one")
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/airsight_optuna_{uuid.uuid4().hex[:10]}"
    airflow_local.ensure_database(url)
    monkeypatch.setenv("AIRSIGHT_OPTUNA_STORAGE", url)
    yield url
    airflow_local.drop_database(url)


def test_trial_workers_share_one_study_and_the_best_trial_is_trained(airflow_home, tiny_retail, optuna_postgres):
    import optuna

    path = Path(tiny_retail.source_file)  # three trial workers per tuned candidate
    path.write_text(path.read_text().replace("training:\n", "training:\n  hpo_workers: 3\n", 1))
    state, tasks = run({"algorithms": ["Theta", "SeasonalNaive"], "hpo_trials": 6})
    assert state == "success", tasks
    mapped = sorted(i for (task, i) in tasks if task == "hpo_train")
    assert mapped == [0, 1, 2, 3] and {tasks[("hpo_train", i)] for i in mapped} == {"success"}  # 3 workers + 1
    name = f"forecast.{tiny_retail.name}.as_of=20230829T000000.Theta"
    study = optuna.load_study(study_name=name, storage=optuna_postgres)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(study.trials) == 6 and complete  # 2 trials from each of the 3 workers, in one study
    selection = json.loads((wf.run_dir(tiny_retail, pd.Timestamp(AS_OF)) / "selection.json").read_text())
    theta = next(c for c in selection["leaderboard"] if c["name"] == "Theta")
    assert theta["error"] is None
    trained = next(s for s in selection["scores"] if s["config"]["name"] == "Theta")
    assert trained["config"]["params"]["theta"] == pytest.approx(study.best_trial.params["theta"])


def _worker(args) -> int:
    """One trial worker in its own process: Theta's search on a small generated series set."""
    storage, study_name, seed = args
    from pipelines.example_data import retail
    from pipelines.forecast import tuning
    from pipelines.forecast.data import ForecastData

    frame = retail(items=3, stores=1, days=200, horizon=14, new_items=0)["target.csv"]
    data = ForecastData.from_frame(frame.drop(columns=["store_id"], errors="ignore"), keys=["item_id"],
                                   target_column="demand", freq="D", horizon=14)  # fmt: skip
    result = tuning.tune("Theta", data, n_trials=3, seed=seed, storage=storage, study_name=study_name)
    return len(result.trials)


def test_trial_workers_in_parallel_processes_add_to_one_study(optuna_postgres):
    import optuna

    name = f"parallel-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=optuna_postgres, direction="minimize")
    with ProcessPoolExecutor(2) as pool:
        seen = list(pool.map(_worker, [(optuna_postgres, name, 0), (optuna_postgres, name, 1)]))
    study = optuna.load_study(study_name=name, storage=optuna_postgres)
    assert len(study.trials) == 6 and max(seen) <= 6
    assert len({t.number for t in study.trials}) == 6  # numbered once each: no trial lost or doubled
