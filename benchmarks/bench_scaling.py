"""Scaling benchmark: one Forecast DAG run of a 400-series group on one worker, then on two.

The group (generated retail demand: 400 items, 2 years daily, horizon 28, price and promotion
as related series) trains ARIMA, ETS and Theta on two backtest windows with
``training.series_per_shard: 100``: each candidate's backtest runs as 4 mapped ``hpo_train`` shards
and the winner's final fit and forecast as 4 ``fit_shard`` tasks (``--algorithms``, ``--windows``
and ``--series-per-shard`` change that). After the two runs, the machine's own ceiling is measured:
one shard of the first algorithm alone, then two at once, as plain processes. Each run is a real scheduler:
``airflow standalone`` through the launcher `make airflow` uses, on a fresh PostgreSQL
database, with the LocalExecutor's ``parallelism`` (its worker processes) at 1 and then 2, and
MLflow on PostgreSQL. The DAG is triggered once with the same ``as_of`` and the wall time is the
run's end minus its start in Airflow's metadata; the published leaderboards must agree.

    .venv/bin/python benchmarks/bench_scaling.py --out benchmarks/results

Needs PostgreSQL at 127.0.0.1:5432; writes scaling.json and scaling.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.launch import airflow_local  # noqa: E402

DAG_ID = "forecast__retail_demo"
AS_OF = "2024-12-31"
TARGET = 1.7


def write_group(folder: Path, items: int, per_shard: int, windows: int, algorithms: list[str]) -> Path:
    import yaml

    from pipelines.example_data import RETAIL_SETTINGS, retail

    data = folder / "retail_demo"
    data.mkdir(parents=True)
    for name, frame in retail(items=items, stores=1, days=730, horizon=28, new_items=0).items():
        frame.to_csv(data / name, index=False)
    settings = yaml.safe_load(RETAIL_SETTINGS.format(horizon=28))
    for insight in ("explainability", "what_if", "monitoring"):
        settings.pop(insight, None)
    settings["schedule"] = None
    settings["training"] = {"algorithms": algorithms, "hpo_trials": 0, "series_per_shard": per_shard,
                            "plots": 0, "backtest_windows": windows}  # fmt: skip
    groups = folder / "groups.d"
    groups.mkdir()
    (groups / "retail_demo.yaml").write_text(yaml.safe_dump(settings))
    return groups


def run_once(work: Path, groups: Path, workers: int) -> dict:
    """One triggered run on a stack with ``workers`` LocalExecutor processes: its seconds and tasks."""
    from tests.dags.scheduler import query, wait_for

    tag = uuid.uuid4().hex[:8]
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/airsight_scale_{tag}"
    tracking = f"postgresql+psycopg2://postgres@127.0.0.1:5432/airsight_scale_{tag}_mlflow"
    home = work / f"home_{workers}"
    os.environ.update({"AIRSIGHT_GROUPS_DIR": str(groups), "AIRSIGHT_HOME": str(home),
                       "AIRFLOW__CORE__PARALLELISM": str(workers), "MLFLOW_TRACKING_URI": tracking})  # fmt: skip
    log, process = work / f"standalone_{workers}.log", None
    try:
        process, env, port = airflow_local.start(work / f"airflow_{workers}", url, airflow_local.free_port(), log,
                                                 tracking)  # fmt: skip
        airflow_local.wait_for_api(port)
        wait_for(lambda: query(url, "SELECT 1 FROM dag WHERE dag_id = %s", DAG_ID), 300, "the DAG was not parsed", log)
        airflow_local.airflow(["dags", "unpause", DAG_ID], env)
        before = process_cpu(process.pid)
        airflow_local.airflow(["dags", "trigger", DAG_ID, "--conf", json.dumps({"as_of": AS_OF})], env)
        done = "SELECT state, start_date, end_date FROM dag_run WHERE dag_id = %s AND state IN ('success', 'failed')"
        ((state, start, end),) = wait_for(lambda: query(url, done, DAG_ID), 3600, "the run did not finish", log)
        after = process_cpu(process.pid)
        daemons = {role: round(after[role] - before.get(role, 0.0), 1) for role in after}
        tasks = query(url, "SELECT task_id, map_index, EXTRACT(EPOCH FROM end_date - start_date), hostname, pid "
                           "FROM task_instance WHERE dag_id = %s", DAG_ID)  # fmt: skip
        pointer = json.loads((home / "groups" / "retail_demo" / "published" / "forecast" / "latest.json").read_text())
        board = json.loads((Path(pointer["path"]) / "leaderboard.json").read_text())
        return {"workers": workers, "state": state, "seconds": round((end - start).total_seconds(), 1),
                "mapped_hpo_train": sum(1 for t in tasks if t[0] == "hpo_train"),
                "mapped_fit_shard": sum(1 for t in tasks if t[0] == "fit_shard"),
                "task_seconds": round(sum(float(t[2] or 0) for t in tasks), 1),
                "worker_pids": len({t[4] for t in tasks if t[0] in ("hpo_train", "fit_shard")}),
                "task_seconds_by_task": by_task(tasks),
                "airflow_cpu_seconds": daemons,
                "leaderboard": board["candidates"]}  # fmt: skip
    finally:
        if process is not None:
            airflow_local.stop(process)
        airflow_local.drop_database(url)
        airflow_local.drop_database(tracking)


SHARD_SCRIPT = """
import sys, time
from pipelines.forecast import workflow
from pipelines.settings import load_group
print(workflow.hpo_train(load_group(sys.argv[1]), sys.argv[2], sys.argv[3])["seconds"])
"""


def machine_ceiling(home: Path, groups: Path, entry: str) -> dict:
    """What two workers can gain on this machine at best: one shard's backtest (``entry``) run alone,
    then two shards at once, as plain processes (no Airflow); the ceiling is 2 x alone / together.

    Two processes on two cores each run slower than one alone where the cores share caches, memory
    bandwidth or a host; no executor can beat that ratio.
    """
    import subprocess

    name, _, of = entry.partition("#")
    env = {**os.environ, "AIRSIGHT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    settings = str(groups / "retail_demo.yaml")

    def launch(shard: str):
        return subprocess.Popen([sys.executable, "-c", SHARD_SCRIPT, settings, AS_OF, shard], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip

    def seconds(process) -> float:
        out, _ = process.communicate()
        return float(out.strip().splitlines()[-1])

    alone = seconds(launch(entry))
    pair = [launch(entry), launch(f"{name}#1/{of.split('/')[-1]}")]
    together = [seconds(p) for p in pair]
    mean = sum(together) / 2
    return {"shard": entry, "alone_s": alone, "together_s": together, "ceiling": round(2 * alone / mean, 2)}


ROLES = ("scheduler", "dag-processor", "api-server", "triggerer", "standalone")


def process_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by Airflow's long-lived processes under ``pid``, by role;
    a run's difference is what the scheduler, DAG processor and API server took from the cores the
    workers share (the task processes end before it is read)."""
    import psutil

    out: dict[str, float] = {}
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            line, times = " ".join(proc.cmdline()), proc.cpu_times()
        except psutil.Error:
            continue
        role = next((r for r in ROLES if r in line), "other")
        out[role] = out.get(role, 0.0) + times.user + times.system
    return out


def by_task(tasks) -> dict:
    """Seconds per task id (mapped ones summed over their map indexes) and how many instances ran."""
    out: dict[str, dict] = {}
    for task_id, _, seconds, _, _ in tasks:
        entry = out.setdefault(task_id, {"instances": 0, "seconds": 0.0})
        entry["instances"] += 1
        entry["seconds"] = round(entry["seconds"] + float(seconds or 0), 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--series-per-shard", type=int, default=100)
    parser.add_argument("--windows", type=int, default=2, help="backtest windows")
    parser.add_argument("--algorithms", default="ARIMA,ETS,Theta", help="comma-separated, local algorithms")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="airsight_scale_") as tmp:
        work = Path(tmp)
        groups = write_group(work, args.items, args.series_per_shard, args.windows, args.algorithms.split(","))
        runs = [run_once(work, groups, workers) for workers in (1, 2)]
        from pipelines.forecast.sharding import shard_count

        entry = f"{args.algorithms.split(',')[0]}#0/{shard_count(args.items, args.series_per_shard)}"
        ceiling = machine_ceiling(work / "home_2", groups, entry)
    one, two = runs
    speedup = round(one["seconds"] / two["seconds"], 2) if two["seconds"] else None
    same = [(c["name"], round(c["score"], 9)) for c in one["leaderboard"]] == [
        (c["name"], round(c["score"], 9)) for c in two["leaderboard"]
    ]
    result = {"machine": {"cores": os.cpu_count(), "python": platform.python_version()},
              "series": args.items, "series_per_shard": args.series_per_shard, "backtest_windows": args.windows,
              "algorithms": args.algorithms.split(","),
              "runs": runs,
              "speedup": speedup, "target": TARGET, "met": bool(speedup and speedup >= TARGET),
              "machine_ceiling": ceiling,
              "same_leaderboard": same, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(result, indent=2, default=str))
    lines = ["| workers | state | run seconds | hpo_train tasks | fit_shard tasks | task seconds (sum) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['workers']} | {r['state']} | {r['seconds']} | {r['mapped_hpo_train']} | {r['mapped_fit_shard']} "
              f"| {r['task_seconds']} |" for r in runs]  # fmt: skip
    lines += ["", f"Speedup with two workers: {speedup}x (target {TARGET}x, {'met' if result['met'] else 'missed'}); "
              f"same leaderboard: {same}; {os.cpu_count()} cores.", "",
              f"This machine's ceiling for two workers: one shard's backtest ({ceiling['shard']}) took "
              f"{ceiling['alone_s']} s alone and {' s and '.join(map(str, ceiling['together_s']))} s two at once, "
              f"as plain processes: at best {ceiling['ceiling']}x; the run reached "
              f"{round(speedup / ceiling['ceiling'] * 100) if speedup else '-'} % of it.", "",
              f"Command: `python benchmarks/bench_scaling.py {' '.join(sys.argv[1:])}` ({args.items} series, "
              f"{args.windows} backtest windows, shards of {args.series_per_shard}, {args.algorithms}).", "",
              "| task | instances | seconds, 1 worker | seconds, 2 workers |", "|---|---|---|---|"]  # fmt: skip
    for task_id, entry in one["task_seconds_by_task"].items():
        other = two["task_seconds_by_task"].get(task_id, {})
        lines.append(f"| {task_id} | {entry['instances']} | {entry['seconds']} | {other.get('seconds', '-')} |")
    lines += ["", "CPU seconds the long-lived Airflow processes used during each run (they share the workers' cores):",
              "", "| process | 1 worker | 2 workers |", "|---|---|---|"]  # fmt: skip
    cpu = [r["airflow_cpu_seconds"] for r in runs]
    for role in sorted(set(cpu[0]) | set(cpu[1])):
        lines.append(f"| {role} | {cpu[0].get(role, '-')} | {cpu[1].get(role, '-')} |")
    (args.out / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["state"] == "success" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
