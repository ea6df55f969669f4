"""Forecast accuracy and speed on M3 and two hourly data sets, beside StatsForecast, via `airsight bench forecast`.

M3 (../shared/data/forecast/m3.json): each frequency with its official horizon (yearly 6, quarterly
8, monthly 18, other 8), the competition's test values as the test window. Series are re-dated to
end together (M3's own dates differ per series; the models see positions, not dates); "other" runs
as yearly data (no season, as M3's MASE takes it). Hourly, horizon 24, the last --hourly-windows
days scored, every model (ours and each peer) under --hourly-time-limit seconds: electricity
(electricity_item_demand_time.csv, 3 clients) and bike (bike_hourly_with_weather.csv: one
series with gaps, `count` as the target and the weather, season and holiday columns as related
series). A peer that does not finish every series within its budget is reported with the series
it did; the hourly target compares the AutoPredictor with the best peer that finished all.

Each data set is written as long-format CSV into --workdir and measured by the command in a
subprocess of this interpreter (run it in .venv-bench: `make bench-forecast`), so every number
comes from the stable interface. Results: <out>/forecast.json (every command's RESULT.json) and
<out>/forecast.md (the tables, with the targets of issue 3 marked met or missed).

    python benchmarks/bench_forecast.py [--frequencies yearly,quarterly,monthly,other] [--series N]
        [--models AutoPredictor,SeasonalNaive,...] [--time-limit S] [--hourly electricity,bike] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AIRSIGHT_SHARED_DATA", ROOT.parent / "shared" / "data"))
M3 = {  # name: (M3 period, horizon, Forecast frequency, pandas frequency for the re-dated stamps, last stamp)
    "yearly": ("YEARLY", 6, "1Y", "YS", "2000-01-01"),
    "quarterly": ("QUARTERLY", 8, "3M", "QS", "2000-10-01"),
    "monthly": ("MONTHLY", 18, "1M", "MS", "2000-12-01"),
    "other": ("OTHER", 8, "1Y", "YS", "2000-01-01"),
}
PEER_NAMES = ("statsforecast.AutoETS", "statsforecast.AutoARIMA", "statsforecast.AutoTheta")


def write_m3(name: str, workdir: Path, limit: int | None) -> tuple[Path, int]:
    import numpy as np
    import pandas as pd

    period, _, _, pandas_freq, last = M3[name]
    everything = json.loads((SHARED / "forecast" / "m3.json").read_text())
    chosen = [s for s in everything.values() if s["period"][0] == period]
    if limit:
        chosen = [chosen[i] for i in np.unique(np.linspace(0, len(chosen) - 1, limit).round().astype(int))]
    frames = []
    for s in chosen:
        y = np.r_[s["x"], s["xx"]].astype("float64")
        stamps = pd.date_range(end=last, periods=len(y), freq=pandas_freq)
        frames.append(pd.DataFrame({"item_id": s["sn"][0], "timestamp": stamps, "target_value": y}))
    path = workdir / f"m3_{name}.csv"
    pd.concat(frames).to_csv(path, index=False)
    return path, len(chosen)


def write_electricity(workdir: Path) -> tuple[Path, None]:
    import pandas as pd

    raw = pd.read_csv(
        SHARED / "forecast" / "electricity_item_demand_time.csv",
        header=None,
        names=["timestamp", "target_value", "item_id"],
    )
    path = workdir / "electricity.csv"
    raw[["item_id", "timestamp", "target_value"]].to_csv(path, index=False)
    return path, None


BIKE_COLUMNS = ["timestamp", "season", "holiday", "workingday", "weather", "temp", "atemp", "humidity", "windspeed",
                "casual", "registered", "count", "item_id"]  # fmt: skip
BIKE_RELATED = ["season", "holiday", "workingday", "weather", "temp", "atemp", "humidity", "windspeed"]


def write_bike(workdir: Path) -> tuple[Path, Path]:
    """The bike rentals (``count``) and their related series; casual and registered add up to the target,
    so they are left out."""
    import pandas as pd

    raw = pd.read_csv(SHARED / "forecast" / "bike_hourly_with_weather.csv", header=None, names=BIKE_COLUMNS)
    target, related = workdir / "bike.csv", workdir / "bike_related.csv"
    raw.rename(columns={"count": "target_value"})[["item_id", "timestamp", "target_value"]].to_csv(target, index=False)
    raw[["item_id", "timestamp", *BIKE_RELATED]].to_csv(related, index=False)
    return target, related


HOURLY = {"electricity": write_electricity, "bike": write_bike}


def command(target: Path, frequency: str, horizon: int, out: Path, extra: list[str]) -> dict:
    argv = [sys.executable, "-m", "pipelines.cli", "bench", "forecast", "--target", str(target), "--frequency",
            frequency, "--horizon", str(horizon), "--out", str(out), *extra]  # fmt: skip
    began = time.perf_counter()
    print("$ airsight", " ".join(argv[4:]), flush=True)
    subprocess.run(argv, check=True, cwd=ROOT)
    result = json.loads(out.read_text())
    result["command_seconds"] = round(time.perf_counter() - began, 1)
    return result


def pooled(results: dict[str, dict]) -> list[dict]:
    """All of M3: sMAPE and coverage weighted by points, MASE by series, seconds summed (wQL and WAPE
    are ratios of sums the per-frequency results do not carry, so they stay per frequency)."""
    names = [e["name"] for e in next(iter(results.values()))["models"]]
    rows = []
    for name in names:
        entries = [next(e for e in r["models"] if e["name"] == name) for r in results.values()]
        horizons = [r["settings"]["horizon"] for r in results.values()]
        points = [e["series_done"] * h for e, h in zip(entries, horizons, strict=True)]
        series = [e["series_done"] for e in entries]

        def weighted(key, weights, entries=entries):
            pairs = [(e[key], w) for e, w in zip(entries, weights, strict=True) if e.get(key) is not None and w]
            total = sum(w for _, w in pairs)
            return sum(v * w for v, w in pairs) / total if total else None

        rows.append(
            {
                "name": name,
                "smape": weighted("smape", points),
                "mase": weighted("mase", series),
                "coverage_80": weighted("coverage_80", points),
                "below_p10": weighted("below_p10", points),
                "below_p90": weighted("below_p90", points),
                "wall_seconds": round(sum(e["wall_seconds"] for e in entries), 1),
                "peak_memory_mb": max(e["peak_memory_mb"] for e in entries),
                "series_done": sum(series),
                "series_total": sum(e["series_total"] for e in entries),
            }
        )
    return rows


def fmt(value, digits=3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict], columns: list[tuple[str, str, int]]) -> list[str]:
    lines = ["| " + " | ".join(label for _, label, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for key, _, digits in columns:
            value = row.get(key)
            if key == "series_done":
                cells.append(f"{value}/{row['series_total']}")
            elif isinstance(value, str):
                cells.append(value)
            else:
                cells.append(fmt(value, digits))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def best_complete_peer(result: dict) -> dict | None:
    """The StatsForecast model with the lowest MASE among those that finished every series."""
    done = [m for m in result["models"] if m["name"].startswith("statsforecast.") and m["mase"] is not None
            and m["series_done"] == m["series_total"]]  # fmt: skip
    return min(done, key=lambda m: m["mase"]) if done else None


def hourly_targets(name: str, result: dict) -> list[str]:
    e = {m["name"]: m for m in result["models"]}
    out = []
    auto, peer = e.get("AutoPredictor"), best_complete_peer(result)
    if auto and auto["mase"] is not None and peer:
        ratio = auto["mase"] / peer["mase"]
        out.append(f"- {name}: AutoPredictor MASE at most 0.97x the best StatsForecast model that finished every "
                   f"series ({peer['name']}): {auto['mase']:.3f} vs {peer['mase']:.3f} = {ratio:.3f}x, "
                   f"**{'met' if ratio <= 0.97 else 'missed'}**")  # fmt: skip
    if name == "electricity":
        for model in ("CNN-QR", "DeepAR+"):
            if model in e and "SeasonalNaive" in e:
                d, s = e[model]["average_wql"], e["SeasonalNaive"]["average_wql"]
                verdict = "met" if d <= 0.8 * s else "missed"
                out.append(f"- {model} average wQL on electricity at least 20% below SeasonalNaive: {d:.4f} vs "
                           f"{s:.4f} ({100 * (1 - d / s):.1f}% lower), **{verdict}**")  # fmt: skip
    return out


def targets(all_m3: list[dict], hourly: dict[str, dict], complete: bool) -> list[str]:
    by = {r["name"]: r for r in all_m3}
    auto, ens = by.get("AutoPredictor"), by.get("statsforecast.Ensemble")
    scope = "all of M3" if complete else "the M3 series run here (not all of M3: see above)"
    out = []

    def mark(ok):
        return "met" if ok else "missed"

    if auto and ens and auto["mase"] is not None and ens["mase"] is not None:
        out.append(f"- AutoPredictor MASE below the StatsForecast ensemble's on {scope}: {auto['mase']:.3f} vs "
                   f"{ens['mase']:.3f}, **{mark(auto['mase'] < ens['mase'])}**")  # fmt: skip
    if auto and auto["smape"] is not None:
        ok = mark(auto["smape"] < 12.5)
        out.append(f"- AutoPredictor sMAPE below 12.5 on {scope}: {auto['smape']:.2f}, **{ok}**")
    if auto and auto["mase"] is not None:
        out.append(f"- AutoPredictor MASE below 1.30 on {scope}: {auto['mase']:.3f}, **{mark(auto['mase'] < 1.30)}**")
    for row in all_m3:  # every model that publishes quantiles: ours, calibrated as published
        c = row["coverage_80"]
        if c is not None and not row["name"].startswith("statsforecast."):
            low, high = 100 * (row.get("below_p10") or 0), 100 * (row.get("below_p90") or 0)
            out.append(f"- {row['name']} P10-P90 coverage 78-82%: {100 * c:.1f}% (below P10 {low:.1f}%, "
                       f"below P90 {high:.1f}%), **{mark(0.78 <= c <= 0.82)}**")  # fmt: skip
    if auto and ens:
        out.append(f"- AutoPredictor run no slower than the StatsForecast ensemble's: {auto['wall_seconds']:.0f} s vs "
                   f"{ens['wall_seconds']:.0f} s, **{mark(auto['wall_seconds'] <= ens['wall_seconds'])}**")  # fmt: skip
    for name, result in hourly.items():
        out += hourly_targets(name, result)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frequencies", default="yearly,quarterly,monthly,other")
    parser.add_argument("--series", type=int, help="at most N series per frequency, evenly spread (default: all)")
    parser.add_argument("--models", default="AutoPredictor,SeasonalNaive,Theta,NPTS")
    parser.add_argument("--time-limit", type=float, help="seconds per model and data set (default: none)")
    parser.add_argument("--auto-candidates", default="SeasonalNaive,ETS,ARIMA,Theta,NPTS")
    parser.add_argument("--reuse", action="store_true", help="reuse results already in --workdir")
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--hourly", default="electricity,bike", help="hourly data sets to run ('' for none)")
    parser.add_argument("--hourly-models", default="AutoPredictor,DeepAR+,CNN-QR,SeasonalNaive,Theta")
    parser.add_argument("--hourly-windows", type=int, default=1)
    parser.add_argument("--hourly-time-limit", type=float, default=300.0, help="seconds per model (and peer)")
    # One torch thread: on 2 shared cores two threads made an epoch about 100 times slower.
    parser.add_argument("--hourly-n-jobs", type=int, default=1)
    parser.add_argument("--workdir", default="/tmp/airsight-bench-forecast")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    workdir, out = Path(args.workdir), Path(args.out)
    workdir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--n-jobs", str(args.n_jobs)]
    if args.time_limit:
        common += ["--time-limit", str(args.time_limit)]
    m3, counts = {}, {}
    for name in [f.strip() for f in args.frequencies.split(",") if f.strip()]:
        if name not in M3:
            raise ValueError(f"--frequencies: {name!r} is not one of {', '.join(M3)}")
        _, horizon, frequency, _, _ = M3[name]
        extra = [*common, "--models", args.models, "--auto-candidates", args.auto_candidates]
        extra += [] if args.no_peers else ["--peers"]
        result = workdir / f"m3_{name}.json"
        if args.reuse and result.is_file():
            m3[name] = json.loads(result.read_text())
        else:
            target, _ = write_m3(name, workdir, args.series)
            m3[name] = command(target, frequency, horizon, result, extra)
        counts[name] = m3[name]["settings"]["series_total"]
    hourly = {}
    for name in [h.strip() for h in args.hourly.split(",") if h.strip()]:
        if name not in HOURLY:
            raise ValueError(f"--hourly: {name!r} is not one of {', '.join(HOURLY)}")
        extra = ["--n-jobs", str(args.hourly_n_jobs), "--models", args.hourly_models]
        extra += ["--backtest-windows", str(args.hourly_windows), "--time-limit", str(args.hourly_time_limit)]
        extra += [] if args.no_peers else ["--peers"]
        result = workdir / f"{name}.json"
        if args.reuse and result.is_file():
            hourly[name] = json.loads(result.read_text())
        else:
            target, related = HOURLY[name](workdir)
            extra += ["--related", str(related)] if related else []
            hourly[name] = command(target, "1H", 24, result, extra)
    total = {"yearly": 645, "quarterly": 756, "monthly": 1428, "other": 174}
    complete = set(m3) == set(M3) and all(counts[k] == total[k] for k in m3)
    all_m3 = pooled(m3) if m3 else []
    report = {"argv": sys.argv[1:], "m3": m3, "m3_pooled": all_m3, "m3_complete": complete, "hourly": hourly}
    (out / "forecast.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Forecast benchmark", "", f"Command: `python benchmarks/bench_forecast.py {' '.join(sys.argv[1:])}`", ""]
    columns = [("name", "model", 0), ("smape", "sMAPE", 2), ("mase", "MASE", 3), ("average_wql", "avg wQL", 4),
               ("wape", "WAPE", 4), ("coverage_80", "P10-P90 coverage", 3), ("below_p10", "below P10", 3),
               ("below_p90", "below P90", 3), ("wall_seconds", "seconds", 1),
               ("peak_memory_mb", "peak MB", 0), ("series_done", "series", 0)]  # fmt: skip
    if m3:
        scope = "all 3,003 series" if complete else ", ".join(f"{k} {v}" for k, v in counts.items()) + " series"
        lines += [f"## M3 ({scope}, official horizons)", ""]
        lines += [*table(all_m3, [c for c in columns if c[0] not in ("average_wql", "wape")]), ""]
        for name, result in m3.items():
            lines += [f"### M3 {name} (horizon {result['settings']['horizon']})", ""]
            lines += [*table(result["models"], columns), ""]
    for name, result in hourly.items():
        settings = result["settings"]
        lines += [f"## {name.capitalize()} ({settings['series_total']} series, hourly, horizon 24, "
                  f"{settings['backtest_windows']} window(s), {settings['time_limit']:g} s per model)", ""]  # fmt: skip
        lines += [*table(result["models"], columns), ""]
    lines += ["## Targets", "", *targets(all_m3, hourly, complete), ""]
    machine = next(iter(m3.values()))["machine"] if m3 else next(iter(hourly.values()), {}).get("machine", {})
    lines += [f"Machine: {json.dumps(machine)}", ""]
    (out / "forecast.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
