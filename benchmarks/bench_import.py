"""Validate + import throughput (rows/s) and peak RSS of Airsight, against plain pandas read_csv + to_parquet.

Each case runs in a fresh subprocess, so its peak RSS (ru_maxrss) is its own. Linux carries a
process's ru_maxrss over fork and exec, so this parent stays lean: it imports only the standard
library and generates the (seeded) input files in a subprocess too, into --workdir, reusing them
when their row count matches. Imports are done before the clock starts; the timed window is the
call alone.

    python benchmarks/bench_import.py [--quick] [--interactions-rows N] [--target-rows N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

AS_OF = "2030-01-01"
# validate and import alone (an import with nothing staged validates too), both in a row as the
# DAG runs them (end to end: the import reuses what validate staged), and the pandas peer.
CASES = ("validate", "import", "validate+import", "pandas")
INTERACTIONS_SCHEMA = (
    "[{name: USER_ID, type: string}, {name: ITEM_ID, type: string}, {name: TIMESTAMP, type: long},"
    " {name: EVENT_TYPE, type: string}, {name: EVENT_VALUE, type: [null, float]}]"
)
TARGET_SCHEMA = (
    "[{name: item_id, type: string}, {name: store_id, type: string}, {name: timestamp, type: timestamp},"
    " {name: demand, type: float}]"
)


def _ids(prefix: str, n: int, codes):
    import pyarrow as pa

    return pa.array([f"{prefix}{i:06d}" for i in range(n)]).take(pa.array(codes))


def make_interactions(rows: int, rng):
    import numpy as np
    import pyarrow as pa

    purchase = rng.random(rows) < 0.1
    value = np.round(rng.gamma(2.0, 20.0, rows), 2)
    return pa.table(
        {
            "USER_ID": _ids("u", 100_000, rng.integers(0, 100_000, rows)),
            "ITEM_ID": _ids("i", 20_000, rng.zipf(1.3, rows) % 20_000),
            "TIMESTAMP": rng.integers(1_672_531_200, 1_735_689_600, rows),  # 2023-01-01 .. 2025-01-01
            "EVENT_TYPE": pa.array(np.where(purchase, "purchase", "click")),
            "EVENT_VALUE": pa.array(value, mask=~purchase),  # empty unless a purchase
        }
    )


def make_target(rows: int, rng):
    import numpy as np
    import pyarrow as pa

    stores, days = 5, 500
    items = -(-rows // (stores * days))
    cell = np.arange(rows)  # item-major, then store, then day: one row per item x store x day
    dates = pa.array(np.datetime64("2022-01-01") + np.arange(days)).cast(pa.string())
    return pa.table(
        {
            "item_id": _ids("item", items, cell // (stores * days)),
            "store_id": _ids("store", stores, cell // days % stores),
            "timestamp": dates.take(pa.array(cell % days)),
            "demand": np.round(rng.gamma(1.5, 4.0, rows), 1),
        }
    )


def count_rows(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b"")) - 1


def generate(dataset: str, rows: str, path: str) -> None:
    import numpy as np
    import pyarrow.csv as pacsv

    make, seed = {"INTERACTIONS": (make_interactions, 0), "TARGET_TIME_SERIES": (make_target, 1)}[dataset]
    table = make(int(rows), np.random.default_rng(seed))
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))


def child(*argv) -> subprocess.CompletedProcess:
    """Run this file's ``--child`` mode in a fresh interpreter; raise with its stderr if it fails."""
    cmd = [sys.executable, __file__, "--child", *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, check=True)


def write_settings(work: Path, dataset: str, csv: Path) -> Path:
    if dataset == "INTERACTIONS":
        head, schema = "kind: personalize", INTERACTIONS_SCHEMA
    else:
        head = "kind: forecast\ndomain: RETAIL\nfrequency: 1D\nhorizon: 14\nforecast_dimensions: [store_id]"
        schema = TARGET_SCHEMA
    path = work / f"{dataset.lower()}.yaml"
    path.write_text(
        f"name: bench_{dataset.lower()}\n{head}\nstorage: {work / 'out' / dataset.lower()}\n"
        f"datasets:\n  {dataset}:\n    path: {csv}\n    schema: {schema}\n"
    )
    return path


def _peak_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # ru_maxrss is in KB on Linux


def measure(case: str, source: str, target: str) -> dict:
    """One case in this (fresh) process: seconds for the call alone; peak RSS before it (imports) and at the end."""
    import pandas as pd

    if case == "pandas":
        import pyarrow.parquet  # noqa: F401

        before, start = _peak_mb(), time.perf_counter()
        pd.read_csv(source).to_parquet(target)
    else:
        import great_expectations  # noqa: F401  (imported lazily by the library; loaded before the clock starts)

        import pipelines.preparation.validation  # noqa: F401
        from pipelines.preparation.steps import import_data, validate_schema
        from pipelines.settings import load_group

        shutil.rmtree(target, ignore_errors=True)
        group = load_group(source)
        steps = {"validate": [validate_schema], "import": [import_data]}.get(case, [validate_schema, import_data])
        before, start = _peak_mb(), time.perf_counter()
        for step in steps:
            step(group, AS_OF)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 3), "peak_rss_mb": _peak_mb(), "rss_before_mb": before}


def run_case(case: str, dataset: str, csv: Path, settings: Path, rows: int, work: Path) -> dict:
    out = work / "out" / dataset.lower()  # the group's storage; the pandas peer writes out.parquet
    source, target = (csv, out.with_suffix(".parquet")) if case == "pandas" else (settings, out)
    print(f"{dataset} {case} ...", file=sys.stderr, flush=True)
    row = {"dataset": dataset, "case": case, "rows": rows}
    try:
        result = json.loads(child("measure", case, source, target).stdout.strip().splitlines()[-1])
    except subprocess.CalledProcessError as exc:
        return {**row, "error": exc.stderr.strip().splitlines()[-40:]}
    return {**row, **result, "rows_per_s": round(rows / result["seconds"])}


def markdown(results: list[dict], machine: dict) -> str:
    lines = [
        f"Machine: {machine['cpu_count']} CPUs, Python {machine['python']}, pandas {machine['pandas']}, "
        f"pyarrow {machine['pyarrow']}, great_expectations {machine['great_expectations']}\n",
        "| dataset | case | rows | seconds | rows/s | peak RSS (MB) | seconds / pandas |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['dataset']} | {r['case']} | {r['rows']:,} | failed | | | |")
            continue
        ratio = f"{r['ratio_to_pandas']:.1f}x" if "ratio_to_pandas" in r else ""
        lines.append(
            f"| {r['dataset']} | {r['case']} | {r['rows']:,} | {r['seconds']:.1f} | {r['rows_per_s']:,} "
            f"| {r['peak_rss_mb']:,} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/airsight-bench"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--interactions-rows", type=int, default=10_000_000)
    parser.add_argument("--target-rows", type=int, default=5_000_000)
    parser.add_argument("--quick", action="store_true", help="1,000,000 interactions and 500,000 target rows")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # generate DATASET ROWS PATH | measure ...
    args = parser.parse_args()
    if args.child:
        mode, *rest = args.child
        if mode == "generate":
            generate(*rest)
        else:
            print(json.dumps(measure(*rest)))
        return 0
    if args.quick:
        args.interactions_rows, args.target_rows = 1_000_000, 500_000
    work = args.workdir.resolve()
    (work / "out").mkdir(parents=True, exist_ok=True)
    results = []
    for dataset, rows in (("INTERACTIONS", args.interactions_rows), ("TARGET_TIME_SERIES", args.target_rows)):
        csv = work / f"{dataset.lower()}_{rows}.csv"
        if not (csv.is_file() and count_rows(csv) == rows):
            print(f"generating {csv} ({rows:,} rows)", file=sys.stderr, flush=True)
            child("generate", dataset, rows, csv)
        settings = write_settings(work, dataset, csv)
        cases = {case: run_case(case, dataset, csv, settings, rows, work) for case in CASES}
        for case in CASES[:-1]:
            if "seconds" in cases[case] and "seconds" in cases["pandas"]:
                cases[case]["ratio_to_pandas"] = round(cases[case]["seconds"] / cases["pandas"]["seconds"], 2)
        results += cases.values()
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    machine |= {pkg: version(pkg) for pkg in ("numpy", "pandas", "pyarrow", "great_expectations")}
    git = ["git", "-C", str(Path(__file__).parent), "describe", "--always", "--dirty"]
    machine["airsight_commit"] = subprocess.run(git, capture_output=True, text=True).stdout.strip() or None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "import.json").write_text(json.dumps({"machine": machine, "as_of": AS_OF, "cases": results}, indent=2))
    table = markdown(results, machine)
    (args.out / "import.md").write_text(table)
    print(table)
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"{r['dataset']} {r['case']} failed:\n" + "\n".join(r["error"]), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
