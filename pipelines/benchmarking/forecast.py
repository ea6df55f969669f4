"""``airsight bench forecast``: accuracy, speed and memory of every forecasting model on one data set.

    airsight bench forecast --target FILE --frequency F --horizon H [--related FILE] [--metadata FILE]
        [--backtest-windows N] [--time-limit SECONDS] [--peers] --out RESULT.json

FILE is long format (CSV or Parquet): ``item_id``, ``timestamp``, ``target_value``; further columns
are dimensions (series keys). The last ``H`` observed periods of every series are its test window,
as the M4 competition scores them: a series that ends before the data set's last period is re-dated
(moved forward on the frequency's grid, its order and spacing kept) to end there, so every series is
scored on its own last ``H`` periods and trained on what it had before them (``series_redated``
in RESULT.json counts them). The models then see shifted calendar dates for those series, so with
``--related`` (values tied to real dates) series must end together. With ``--backtest-windows N``
the N windows of ``H`` periods before the end are scored, each model trained on what comes before
its window.

RESULT.json holds one entry per model (``name``: ours AutoPredictor, ETS, ARIMA, Theta, NPTS,
Prophet, DeepAR+, CNN-QR, SeasonalNaive; with ``--peers`` also statsforecast.AutoETS, .AutoARIMA,
.AutoTheta, .SeasonalNaive and .Ensemble, the mean of the first three) with:

- ``smape``: mean over points of 200 |y - f| / (|y| + |f|) (M3's sMAPE, percent; 0 where both are 0)
- ``mase``: mean over series of mean |y - f| / the in-sample seasonal-naive error (season by frequency)
- ``average_wql``: Forecast's average wQL over P10, P50, P90; ``wape``: sum |y - f| / sum |y|
- ``coverage_80``: share of actuals inside [P10, P90]; ``below_p10`` and ``below_p90``: shares of
  actuals at or below P10 and P90 (0.10 and 0.90 when each quantile holds its level)
- ``wall_seconds``, ``peak_memory_mb`` (resident memory of the process and its workers, sampled),
  ``series_done`` of ``series_total``

The point forecast ``f`` is the mean (Forecast's rule); a peer's P10/P90 are its 80% interval.
Single algorithms' quantiles are calibrated as the forecast step publishes them (``calibration.py``:
factors from the model's own backtest window just before the scored one, applied to the forecast
of the model fitted on all the data; ``--no-calibration`` scores the raw ones); the AutoPredictor
calibrates its candidates itself.

``--time-limit`` bounds each model the way AutoGluon's ``time_limit`` bounds a fit (split evenly over
the windows; ``notes.within_time_limit`` says whether every window's fit and forecast took at most
110% of its share): the
AutoPredictor plans its candidates within it (``left_out`` says which it skipped and why), DeepAR+
and CNN-QR train as many epochs as fit, and per-series models and peers work through the series in chunks,
starting no chunk once the budget is spent; their metrics cover ``series_done`` series. A peer
that fails on a chunk records the error and leaves those series undone.

StatsForecast is a peer only, imported when ``--peers`` is given: it pins pandas below 3, so it
lives in the benchmark venv (``make .venv-bench/.installed``), never in the runtime one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import threading
import time
from pathlib import Path

OURS = ("AutoPredictor", "ETS", "ARIMA", "Theta", "NPTS", "Prophet", "DeepAR+", "CNN-QR", "SeasonalNaive")
GLOBAL = ("DeepAR+", "CNN-QR")  # trained for epochs, as many as a budget holds
PEERS = ("AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive")
ENSEMBLE = ("AutoETS", "AutoARIMA", "AutoTheta")
LEVELS = (0.1, 0.5, 0.9)
REQUIRED = ("item_id", "timestamp", "target_value")


def add_arguments(parser) -> None:
    parser.add_argument("--target", required=True, help="long-format CSV or Parquet: item_id, timestamp, target_value")
    parser.add_argument("--frequency", required=True, help="Forecast's frequency: 1H, 1D, 1W, 1M, 3M, 1Y, ...")
    parser.add_argument("--horizon", required=True, type=int, help="periods to forecast (the test window)")
    parser.add_argument("--related", help="related time series (item_id or fewer keys, timestamp, features)")
    parser.add_argument("--metadata", help="item metadata (item_id, attributes)")
    parser.add_argument("--backtest-windows", type=int, default=1, help="windows of HORIZON periods scored (1-5)")
    parser.add_argument("--time-limit", type=float, help="seconds each model may spend (default: no limit)")
    parser.add_argument("--peers", action="store_true", help="also run StatsForecast's models (the bench extra)")
    parser.add_argument("--out", required=True, help="RESULT.json to write")
    parser.add_argument(
        "--models",
        default=",".join(OURS),
        help=f"our models to run, comma-separated (default: all of {', '.join(OURS)})",
    )
    parser.add_argument(
        "--auto-candidates", help="the AutoPredictor's candidates, comma-separated (default: its own defaults)"
    )
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="score single algorithms' raw quantiles (default: calibrated from their own backtest, as published)",
    )


def run(args) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in OURS]
    if unknown:
        raise ValueError(f"--models: unknown {unknown}; ours are {', '.join(OURS)}")
    if args.horizon < 1:
        raise ValueError(f"--horizon {args.horizon} must be at least 1")
    if not 1 <= args.backtest_windows <= 5:
        raise ValueError(f"--backtest-windows {args.backtest_windows}: take 1 to 5")
    if args.time_limit is not None and not args.time_limit > 0:
        raise ValueError(f"--time-limit {args.time_limit} must be a positive number of seconds")
    if args.peers:
        _import_statsforecast()  # fail before hours of our models, not after
    data, redated = load(args)
    bench = Bench(data, args.backtest_windows, args.time_limit, max(1, args.n_jobs), args.seed)
    bench.calibrate = not args.no_calibration
    if args.auto_candidates:
        bench.auto_candidates = [c.strip() for c in args.auto_candidates.split(",") if c.strip()]
    entries = []
    for name in models:
        print(f"{name} ...", file=sys.stderr, flush=True)
        entries.append(bench.ours(name))
        _log(entries[-1])
    if args.peers:
        for entry in bench.peers():
            entries.append(entry)
            _log(entry)
    result = {
        "settings": {
            "target": str(args.target),
            "frequency": args.frequency,
            "horizon": args.horizon,
            "backtest_windows": args.backtest_windows,
            "time_limit": args.time_limit,
            "n_jobs": args.n_jobs,
            "calibrated": bench.calibrate,
            "series_total": data.n_series,
            "series_redated": redated,
            "season_length": data.season_length,
        },
        "machine": _machine(),
        "models": entries,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_clean(result), indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


# -- loading ---------------------------------------------------------------------------------


def _read(path: str, what: str):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    return pd.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else pd.read_csv(p)


def load(args):
    """The target (and related, metadata) as ForecastData with every series ending at the last period, and how
    many series were re-dated to end there (``align_ends``)."""
    import numpy as np
    import pandas as pd

    from pipelines.forecast.data import ForecastData
    from pipelines.frequency import Frequency

    target = _read(args.target, "--target")
    missing = [c for c in REQUIRED if c not in target.columns]
    if missing:
        raise ValueError(f"--target {args.target} lacks column(s) {missing}; it needs {list(REQUIRED)}")
    keys = ["item_id", *[c for c in target.columns if c not in REQUIRED]]
    target = target.copy()
    try:
        target["timestamp"] = pd.to_datetime(target["timestamp"])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--target {args.target}: timestamps do not parse: {exc}") from None
    values = pd.to_numeric(target["target_value"], errors="coerce")
    if values.isna().all():
        raise ValueError(f"--target {args.target}: target_value holds no numbers")
    target["target_value"] = values
    for key in keys:
        target[key] = target[key].astype(str)
    related = _read(args.related, "--related") if args.related else None
    if related is not None:
        related = related.copy()
        related["timestamp"] = pd.to_datetime(related["timestamp"])
        for key in [k for k in keys if k in related.columns]:
            related[key] = related[key].astype(str)
    metadata = _read(args.metadata, "--metadata") if args.metadata else None
    if metadata is not None and "item_id" in metadata.columns:
        metadata = metadata.copy()
        metadata["item_id"] = metadata["item_id"].astype(str)
    target, redated = align_ends(target, keys, Frequency.parse(args.frequency))
    if redated and args.related:
        raise ValueError(
            f"--target {args.target}: {redated} series end before the data set's last period, and --related "
            "values are tied to real dates; re-dating those series would misalign them: give series that end together"
        )
    data = ForecastData.from_frame(
        target,
        keys=keys,
        target_column="target_value",
        freq=Frequency.parse(args.frequency),
        horizon=args.horizon,
        related=related,
        item_metadata=metadata,
        non_negative=bool((values.dropna() >= 0).all()),
    )
    need = args.backtest_windows * args.horizon
    short = np.flatnonzero(data.lengths - need < 2)
    if len(short):
        i = short[0]
        raise ValueError(
            f"{len(short)} series have fewer than {need + 2} periods ({args.backtest_windows} window(s) of "
            f"{args.horizon} plus two to learn from): e.g. {dict(data.keys.iloc[i].astype(str))} has {data.lengths[i]}"
        )
    return data, redated


def align_ends(target, keys: list[str], freq) -> tuple:
    """The target with every series moved forward on the frequency's grid to end (at its last observed
    value) at the data set's last period, and how many series moved. Rows after a series' last observed
    value say nothing to score and are dropped; a series with no observed value is an error."""
    import numpy as np
    import pandas as pd

    from pipelines.frequency import Boundary
    from pipelines.preparation.importing import calendar

    stamps = calendar.align(freq, target["timestamp"], Boundary())
    grid = calendar.periods(freq, stamps.min(), stamps.max(), Boundary())
    position = grid.searchsorted(stamps.to_numpy("datetime64[ns]"))
    codes = target.groupby(keys, sort=False).ngroup().to_numpy()
    observed = target["target_value"].notna().to_numpy()
    last = np.full(codes.max() + 1, -1)
    np.maximum.at(last, codes[observed], position[observed])
    if (last < 0).any():
        first = target.loc[codes == int(np.flatnonzero(last < 0)[0]), keys].iloc[0]
        raise ValueError(f"series {dict(first.astype(str))} has no numeric target_value: nothing to learn or score")
    end = int(last.max())
    keep = position <= last[codes]
    lag = end - last[codes]
    if not (lag > 0).any():
        return target, 0
    moved = target.loc[keep].copy()
    moved["timestamp"] = pd.DatetimeIndex(grid[position[keep] + lag[keep]])
    return moved, int((last < end).sum())


# -- measuring ---------------------------------------------------------------------------------


class PeakMemory:
    """Peak resident memory (MB) of this process and its children while the block runs, sampled."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak = interval, 0.0
        self._stop = threading.Event()

    def _sample(self) -> float:
        import psutil

        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a worker that just ended
                total += child.memory_info().rss
        return total / 2**20

    def _loop(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._sample())

    def __enter__(self):
        self.peak = self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


class Bench:
    """The data set's windows, each model's forecasts for them, and the scores."""

    def __init__(self, data, windows: int, time_limit: float | None, n_jobs: int, seed: int):
        import numpy as np

        from pipelines.forecast.metrics import seasonal_error

        self.data, self.windows, self.time_limit, self.n_jobs, self.seed = data, windows, time_limit, n_jobs, seed
        self.auto_candidates: list[str] | None = None
        self.calibrate = True  # single algorithms' intervals as the forecast step publishes them
        h = data.horizon
        self.starts = [data.end - k * h for k in range(windows, 0, -1)]
        self.trains = [data.until(s) for s in self.starts]
        self.actuals, self.scales = [], []
        for start, train in zip(self.starts, self.trains, strict=True):
            actual = np.full((data.n_series, h), np.nan)
            scale = np.full(data.n_series, np.nan)
            for i in range(data.n_series):
                values, seen = data.window(i, start, start + h)
                actual[i] = np.where(seen, values, np.nan)
                history = np.where(train.observed_mask(i), train.series(i), np.nan)
                scale[i] = seasonal_error(history, train.season_length)
            self.actuals.append(actual)
            self.scales.append(scale)

    @property
    def budget(self) -> float | None:
        return None if self.time_limit is None else self.time_limit / self.windows

    # -- our models ----------------------------------------------------------------------

    def ours(self, name: str) -> dict:
        notes: dict = {}
        outputs, seconds = [], 0.0
        with PeakMemory() as memory:
            for train in self.trains:
                began = time.perf_counter()
                if name == "AutoPredictor":
                    outputs.append(self._auto(train, notes))
                elif name in GLOBAL:
                    outputs.append(self._global(name, train, notes))
                else:
                    outputs.append(self._local(name, train, notes))
                spent = time.perf_counter() - began
                seconds += spent
                if self.budget is not None:  # held when within 10% of the budget, fit and forecast included
                    notes.setdefault("seconds_per_window", []).append(round(spent, 2))
                    notes["budget_per_window"] = round(self.budget, 2)
                    notes["within_time_limit"] = notes.get("within_time_limit", True) and spent <= 1.1 * self.budget
        return self._entry(name, outputs, seconds, memory.peak, notes)

    def _auto(self, train, notes: dict):
        from pipelines.forecast.auto_predictor import AutoPredictor

        settings = {"candidates": self.auto_candidates} if self.auto_candidates else {}
        model = AutoPredictor(
            forecast_types=[*LEVELS, "mean"], time_limit=self.budget, n_jobs=self.n_jobs, seed=self.seed, **settings
        ).fit(train)
        result = model.result_
        notes.setdefault("candidates", result.candidates)
        notes.setdefault("left_out", result.left_out)
        notes.setdefault("shortened", result.shortened)
        notes.setdefault("excluded_items", result.excluded_items)
        if result.errors:
            notes.setdefault("errors", result.errors)
        notes.setdefault("choices", result.choices["algorithms"].value_counts().head(10).to_dict())
        notes.setdefault("timings", result.timings)
        ids, mean, quant, _ = model.predict_arrays([*LEVELS, "mean"])
        return ids, mean, quant

    def _global(self, name: str, train, notes: dict):
        from pipelines.forecast.base import get_algorithm

        model = get_algorithm(name, n_jobs=self.n_jobs, seed=self.seed)
        if self.budget is not None:  # as many epochs as the budget holds, timed on one
            began = time.perf_counter()
            probe = model.clone()
            probe.epochs = 1
            probe.fit(train).predict_arrays(list(LEVELS))
            per_epoch = time.perf_counter() - began
            left = (self.budget - per_epoch) / (2 if self.calibrate else 1)  # calibrating trains twice
            model.epochs = int(max(1, min(model.epochs, left * 0.85 // max(per_epoch, 1e-6))))
            notes["epochs"] = model.epochs
        factors = self._factors(model, train, notes)
        model.fit(train)
        ids, mean, quant, _ = model.predict_arrays([*LEVELS, "mean"])
        return ids, mean, _calibrated(quant, factors)

    def _factors(self, model, train, notes: dict) -> dict:
        """The calibration the forecast step applies to a single algorithm's published quantiles: factors
        from its own backtest window before ``train``'s end ({} when not calibrating or too short)."""
        from pipelines.forecast import calibration
        from pipelines.forecast.backtest import backtest

        if not self.calibrate or train.end < 3 * train.horizon:
            return {}
        result = backtest(model, train, 1, None, [*LEVELS, "mean"])
        found = calibration.backtest_factors(result.export, train.target, list(LEVELS))
        notes.setdefault("calibration", []).append({str(k): round(v, 4) for k, v in found.items()})
        return found

    def _budgeted_chunks(self, n: int, notes: dict):
        """Series ids in chunks (all at once without a budget); none started once the budget is spent."""
        import numpy as np

        if self.budget is None:
            yield np.arange(n)
            return
        size = max(min(8 * self.n_jobs, max(n // 4, 1)), math.ceil(n / 20))  # a few series: one at a time
        self.deadline = time.perf_counter() + self.budget
        for first in range(0, n, size):
            if time.perf_counter() >= self.deadline:
                notes["stopped"] = "time limit reached"
                return
            yield np.arange(first, min(first + size, n))

    def _local(self, name: str, train, notes: dict):
        """A per-series model over chunks of series, none started once the budget is spent."""
        import numpy as np

        from pipelines.forecast.auto_predictor import subset
        from pipelines.forecast.base import get_algorithm

        n = train.n_series
        done, means, quants = [], [], []
        for ids in self._budgeted_chunks(n, notes):
            part = train if len(ids) == n else subset(train, ids)
            try:
                model = get_algorithm(name, n_jobs=self.n_jobs, seed=self.seed)
                factors = self._factors(model, part, notes)
                got, mean, quant, _ = model.fit(part).predict_arrays([*LEVELS, "mean"])
                quant = _calibrated(quant, factors)
            except Exception as exc:  # the chunk's series stay undone; the error is reported
                notes.setdefault("errors", []).append(f"{type(exc).__name__}: {exc}")
                continue
            done.append(ids[got])
            means.append(mean)
            quants.append(quant)
        if not done:
            return np.empty(0, dtype=int), np.empty((0, train.horizon)), np.empty((0, train.horizon, len(LEVELS)))
        return np.concatenate(done), np.concatenate(means), np.concatenate(quants)

    # -- peers ---------------------------------------------------------------------------

    def peers(self) -> list[dict]:
        import numpy as np

        outputs = {name: [] for name in PEERS}
        seconds = dict.fromkeys(PEERS, 0.0)
        peaks = dict.fromkeys(PEERS, 0.0)
        notes = {name: {} for name in PEERS}
        for train in self.trains:
            frame = _peer_frame(train)
            for name in PEERS:
                print(f"statsforecast.{name} ...", file=sys.stderr, flush=True)
                began = time.perf_counter()
                with PeakMemory() as memory:
                    outputs[name].append(self._peer(name, train, frame, notes[name]))
                seconds[name] += time.perf_counter() - began
                peaks[name] = max(peaks[name], memory.peak)
        entries = [
            self._entry(f"statsforecast.{name}", outputs[name], seconds[name], peaks[name], notes[name])
            for name in PEERS
        ]
        ensemble = []
        for w in range(self.windows):
            parts = [outputs[name][w] for name in ENSEMBLE]
            common = parts[0][0]
            for ids, _, _ in parts[1:]:
                common = np.intersect1d(common, ids)
            means, quants = [], []
            for ids, mean, quant in parts:
                rows = np.searchsorted(ids, common) if len(ids) else np.empty(0, dtype=int)
                means.append(mean[rows])
                quants.append(quant[rows])
            ensemble.append((common, np.mean(means, axis=0), np.mean(quants, axis=0)))
        entries.append(
            self._entry(
                "statsforecast.Ensemble",
                ensemble,
                sum(seconds[n] for n in ENSEMBLE),
                max(peaks[n] for n in ENSEMBLE),
                {"members": [f"statsforecast.{n}" for n in ENSEMBLE], "combination": "mean of mean, P10, P90"},
            )
        )
        return entries

    def _peer(self, name: str, train, frame, notes: dict):
        import numpy as np
        from statsforecast import StatsForecast
        from statsforecast import models as sf_models

        m = train.season_length
        n, h = train.n_series, train.horizon
        done, means, quants = [], [], []
        for ids in self._budgeted_chunks(n, notes):
            part = frame[frame["unique_id"].isin(ids)]
            model = getattr(sf_models, name)(season_length=m)
            try:
                sf = StatsForecast(models=[model], freq=1, n_jobs=self.n_jobs)
                if self.budget is None:
                    fc = sf.forecast(h=h, df=part, level=[80])
                else:  # StatsForecast cannot stop within a chunk: the chunk runs apart, stopped at the deadline
                    fc = within(self.deadline - time.perf_counter(), sf.forecast, h=h, df=part, level=[80])
            except TimeoutError:
                notes["stopped"] = "time limit reached within a chunk of series, which was stopped"
                break
            except Exception as exc:  # the chunk's series stay undone; the error is reported
                notes.setdefault("errors", []).append(f"{type(exc).__name__}: {exc}")
                continue
            fc = fc.reset_index() if "unique_id" not in fc.columns else fc
            fc = fc.sort_values(["unique_id", "ds"])
            got = fc["unique_id"].to_numpy().reshape(-1, h)[:, 0].astype(int)
            mean = fc[name].to_numpy("float64").reshape(-1, h)
            low = fc[f"{name}-lo-80"].to_numpy("float64").reshape(-1, h)
            high = fc[f"{name}-hi-80"].to_numpy("float64").reshape(-1, h)
            done.append(got)
            means.append(mean)
            quants.append(np.stack([low, mean, high], axis=2))
        if not done:
            return np.empty(0, dtype=int), np.empty((0, h)), np.empty((0, h, len(LEVELS)))
        ids = np.concatenate(done)
        order = np.argsort(ids)
        return ids[order], np.concatenate(means)[order], np.concatenate(quants)[order]

    # -- scoring -------------------------------------------------------------------------

    def _entry(self, name: str, outputs: list, seconds: float, peak: float, notes: dict) -> dict:
        import numpy as np

        ys, fs, qs, mases = [], [], [], []
        done_sets = []
        for w, (ids, mean, quant) in enumerate(outputs):
            ids = np.asarray(ids, dtype=int)
            finite = np.isfinite(mean).all(axis=1) & np.isfinite(quant).all(axis=(1, 2))
            ids, mean, quant = ids[finite], mean[finite], quant[finite]
            if self.data.non_negative:
                mean, quant = np.maximum(mean, 0.0), np.maximum(quant, 0.0)
            done_sets.append(set(ids.tolist()))
            y = self.actuals[w][ids]
            ys.append(y)
            fs.append(mean)
            qs.append(np.sort(quant, axis=2))
            with np.errstate(invalid="ignore", divide="ignore"):
                mases.append(np.nanmean(np.abs(y - mean), axis=1) / self.scales[w][ids])
        done = set.intersection(*done_sets) if done_sets else set()
        y, f, q = np.concatenate(ys), np.concatenate(fs), np.concatenate(qs)
        mase = np.concatenate(mases)
        entry = {"name": name, **scores(y, f, q, mase)}
        entry.update(
            wall_seconds=round(seconds, 3),
            peak_memory_mb=round(peak, 1),
            series_done=len(done),
            series_total=self.data.n_series,
        )
        if notes:
            entry["notes"] = notes
        return entry


def scores(y, f, q, mase) -> dict:
    """sMAPE, MASE, average wQL (P10, P50, P90), WAPE and P10-P90 coverage over the observed actuals."""
    import numpy as np

    seen = np.isfinite(y)
    if not seen.any():
        return dict.fromkeys(("smape", "mase", "average_wql", "wape", "coverage_80", "below_p10", "below_p90"), None)
    yv, fv = y[seen], f[seen]
    denominator = np.abs(yv) + np.abs(fv)
    smape = np.divide(200 * np.abs(yv - fv), denominator, out=np.zeros_like(yv), where=denominator > 0)
    total = np.abs(yv).sum()
    wql = []
    for j, tau in enumerate(LEVELS):
        qv = q[..., j][seen]
        loss = tau * np.maximum(yv - qv, 0) + (1 - tau) * np.maximum(qv - yv, 0)
        wql.append(2 * loss.sum() / total if total > 0 else np.nan)
    inside = (q[..., 0][seen] <= yv) & (yv <= q[..., -1][seen])
    finite_mase = mase[np.isfinite(mase)]
    return {
        "smape": float(smape.mean()),
        "mase": float(finite_mase.mean()) if finite_mase.size else None,
        "average_wql": float(np.mean(wql)),
        "wape": float(np.abs(yv - fv).sum() / total) if total > 0 else None,
        "coverage_80": float(inside.mean()),
        "below_p10": float((yv <= q[..., 0][seen]).mean()),
        "below_p90": float((yv <= q[..., -1][seen]).mean()),
    }


def _calibrated(quant, factors: dict):
    """Quantiles (..., LEVELS) with the calibration factors applied (unchanged without factors)."""
    from pipelines.forecast import calibration

    return calibration.apply(quant, list(LEVELS), factors)


def _peer_frame(train):
    """StatsForecast's long frame (unique_id = series index, ds = grid position, y) of the training data,
    gaps filled as our models fill them (StatsForecast takes no NaN)."""
    import numpy as np
    import pandas as pd

    from pipelines.forecast.base import fill_gaps

    ids, ds, ys = [], [], []
    for i in range(train.n_series):
        raw = np.where(train.observed_mask(i), train.series(i), np.nan)
        if np.isnan(raw).all():
            continue
        y = fill_gaps(raw)
        ids.append(np.full(len(y), i))
        ds.append(np.arange(train.end - len(y), train.end))
        ys.append(y)
    return pd.DataFrame({"unique_id": np.concatenate(ids), "ds": np.concatenate(ds), "y": np.concatenate(ys)})


def _import_statsforecast():
    try:
        import statsforecast
    except ImportError:
        raise RuntimeError(
            "--peers needs StatsForecast, which is not installed here. It is a benchmark peer only and pins "
            "pandas below 3: install it in the benchmark venv (`make .venv-bench/.installed`, the `bench` extra) "
            "and run the command there, never in the runtime venv"
        ) from None
    return statsforecast


def _machine() -> dict:
    import numpy
    import pandas

    out = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pandas": pandas.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import statsforecast

        out["statsforecast"] = statsforecast.__version__
    except ImportError:
        pass
    return out


def _clean(value):
    """NaN and infinities as null: RESULT.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        return _clean(value.item())
    return value


def _log(entry: dict) -> None:
    def fmt(v):
        return "-" if v is None else f"{v:.4g}"

    print(
        f"{entry['name']:<28} sMAPE {fmt(entry['smape'])}  MASE {fmt(entry['mase'])}  wQL {fmt(entry['average_wql'])}"
        f"  cover80 {fmt(entry['coverage_80'])}  {entry['wall_seconds']:.1f} s  {entry['peak_memory_mb']:.0f} MB"
        f"  {entry['series_done']}/{entry['series_total']} series",
        file=sys.stderr,
        flush=True,
    )


def within(seconds: float, function, *args, **kwargs):
    """``function(*args, **kwargs)`` in a forked process, killed with every process it started after ``seconds``.

    Raises TimeoutError when it did not finish in time, or what it raised (RuntimeError when its
    exception cannot be sent back, or when its process died without an answer). The process leads
    a process group of its own, so the workers it forks (StatsForecast's pool) go with it.
    """
    import multiprocessing
    import signal
    from multiprocessing.connection import wait

    if seconds <= 0:
        raise TimeoutError("no time left")
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_send_result, args=(sender, function, args, kwargs))
    child.start()
    sender.close()
    try:
        # The sentinel too: a child that dies (killed for memory) while its workers keep the pipe
        # open would otherwise be waited for until the deadline.
        ready = wait([receiver, child.sentinel], seconds)
        if not ready:
            raise TimeoutError(f"did not finish in {seconds:.1f} s")
        ok, value = _answer(receiver, child, receiver in ready)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)  # the child and whatever it started, done or not
        child.join()
        receiver.close()
    if not ok:
        raise value
    return value


def _answer(receiver, child, readable: bool) -> tuple[bool, object]:
    """What the child sent, or, where it died without a word, an error naming its exit code."""
    with contextlib.suppress(EOFError):
        if readable or receiver.poll(0):
            return receiver.recv()
    child.join()
    return False, RuntimeError(f"the process running it ended with exit code {child.exitcode}")


def _send_result(sender, function, args, kwargs) -> None:
    os.setsid()  # a process group of its own, for ``within`` to stop at once
    try:
        result = (True, function(*args, **kwargs))
    except Exception as exc:  # sent back to be raised in the parent
        result = (False, exc)
    try:
        sender.send(result)
    except Exception as exc:  # an exception that does not pickle
        sender.send((False, RuntimeError(f"{type(result[1]).__name__}: {result[1]} ({exc})")))
    sender.close()
