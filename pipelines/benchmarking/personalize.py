"""``airsight bench personalize``: recommendation quality and speed on any data set, one way every time.

    airsight bench personalize --interactions FILE [--items FILE] [--users FILE] [--recipes a,b,c]
        [--protocol personalize|leave-last-out] [--repeats N] [--peers] --out RESULT.json

FILEs are CSV in Personalize's layout: INTERACTIONS has USER_ID, ITEM_ID, TIMESTAMP (epoch
seconds or ISO text) and optionally EVENT_TYPE, EVENT_VALUE and context fields; ITEMS has
ITEM_ID and metadata (multi-valued fields split on ``|``); USERS has USER_ID and metadata.

Every model, ours and the peers (``--peers``: implicit's ALS and BPR, from the ``bench`` extra),
goes through the same code: ``pipelines.personalize.evaluation.evaluate`` (Personalize's
protocol) or ``evaluate_leave_last_out``, on the same split, recommending with the same
``recommend`` (seen items excluded). Repeat k (0-based) uses seed ``--seed + k`` for the user
split and for every model's random seed (recipes with a ``seed`` hyperparameter, the peers'
``random_state``); otherwise each recipe keeps its default hyperparameters. Leave-last-out's
split has no randomness, so there repeats vary only the models' seeds.

The peers are tuned first (``--peer-tuning grid``, the default with ``--peers``): every point of
``PEER_GRIDS`` (factors and regularization, and ALS's confidence ``alpha`` or BPR's learning
rate) is scored by NDCG@10 of Personalize's protocol on a user split of its own (seed
``--seed + 1000``), and the best point is what every repeat runs. That split's held-out users are
drawn apart from the reported splits' but the data is the same, so the peers' settings have seen
some of the events the reported splits hold out: a choice that favours the peers, never the
recipes. ``--peer-tuning none`` runs implicit's defaults. RESULT.json's ``peer_tuning`` lists
every point scored.

RESULT.json: ``models`` holds one entry per model: ``name`` (the recipe's name, or
``implicit.als``/``implicit.bpr``), ``kind`` (recipe or peer), ``hyperparameters``, and one key
per measured value: the protocol's metrics under Personalize's names (coverage,
mean_reciprocal_rank_at_25, normalized_discounted_cumulative_gain_at_5/10/25,
precision_at_5/10/25; recall_at_10 and ndcg_at_10 for leave-last-out), ``train_seconds``,
``peak_memory_mb`` (the process's peak resident memory while the model trained and was
evaluated, data and interpreter included), ``memory_added_mb`` (that peak less the resident
memory just before), ``recommend_p50_ms`` and ``recommend_p99_ms`` (one ``recommend(user, 25)``
call each, for up to ``--latency-users`` users drawn at random after one warm-up call, BLAS on
one thread as in a server with one worker per core) and
``test_users``. Each of these is ``{"mean": m, "std": s, "values": [one per repeat]}``, with the
sample standard deviation (null for one repeat), whatever the number of repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

DEFAULT_RECIPES = ("popularity-count", "sims", "similar-items", "hrnn", "user-personalization",
                   "user-personalization-v2", "deepfm")  # fmt: skip
PROTOCOLS = ("personalize", "leave-last-out")
PEERS = ("implicit.als", "implicit.bpr")
LATENCY_RESULTS = 25
PEER_GRIDS = {  # the peers' settings searched: sizes, regularization and alpha / learning rate around where
    # the best points fell on the MovieLens sets (a first, smaller grid had its best ALS and BPR points on its edges)
    "implicit.als": {
        "factors": [16, 32, 64, 128],
        "regularization": [0.001, 0.01, 0.1, 1.0],
        "alpha": [0.3, 1.0, 3.0, 10.0],
    },
    "implicit.bpr": {
        "factors": [32, 64, 128, 256],
        "regularization": [0.0001, 0.001, 0.01],
        "learning_rate": [0.005, 0.01, 0.05],
    },
}
TUNING_SEED_OFFSET = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interactions", required=True, metavar="FILE", help="INTERACTIONS CSV in Personalize's layout"
    )
    parser.add_argument("--items", metavar="FILE", help="ITEMS CSV (ITEM_ID and metadata)")
    parser.add_argument("--users", metavar="FILE", help="USERS CSV (USER_ID and metadata)")
    parser.add_argument(
        "--recipes",
        help=f"comma-separated recipe names (default: {','.join(DEFAULT_RECIPES[:-1])}, and deepfm where it exists)",
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default="personalize", help="offline protocol")
    parser.add_argument("--repeats", type=int, default=1, help="splits (and model seeds) to average over")
    parser.add_argument("--peers", action="store_true", help="also run implicit's ALS and BPR (pip install implicit)")
    parser.add_argument(
        "--peer-tuning",
        choices=("grid", "none"),
        default="grid",
        help="grid: each peer runs the best point of its grid on a split of its own; none: implicit's defaults",
    )
    parser.add_argument("--out", required=True, metavar="RESULT.json", help="where the JSON result goes")
    parser.add_argument("--seed", type=int, default=42, help="seed of the first repeat; repeat k uses seed + k")
    parser.add_argument("--latency-users", type=int, default=1000, help="users timed for recommend latency")
    parser.add_argument("--quiet", action="store_true", help="no per-model progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.repeats < 1:
        return _usage(f"--repeats must be at least 1, got {args.repeats}")
    if args.latency_users < 1:
        return _usage(f"--latency-users must be at least 1, got {args.latency_users}")
    for flag in ("interactions", "items", "users"):
        path = getattr(args, flag)
        if path is not None and not Path(path).is_file():
            return _usage(f"--{flag} {path}: no such file")
    if args.peers:
        try:
            import implicit  # noqa: F401
        except ImportError:
            return _usage(
                "--peers runs implicit's ALS and BPR, and the implicit package is not installed: "
                "pip install 'airsight[bench]' (or pip install implicit)"
            )
    from pipelines.personalize import RECIPES, get_recipe

    names = [n.strip() for n in args.recipes.split(",") if n.strip()] if args.recipes else None
    if names is None:
        names = [n for n in DEFAULT_RECIPES if n in RECIPES]  # deepfm where registered
    if not names and not args.peers:
        return _usage("--recipes names no recipe")
    try:
        recipes = [get_recipe(n) for n in names]
        data = load_data(args.interactions, args.items, args.users)
    except ValueError as exc:
        return _usage(str(exc))
    result = benchmark(
        data,
        recipes,
        peers=args.peers,
        peer_tuning=args.peer_tuning,
        protocol=args.protocol,
        repeats=args.repeats,
        seed=args.seed,
        latency_users=args.latency_users,
        log=None if args.quiet else _log,
    )
    result["data"].update({"interactions_file": args.interactions, "items_file": args.items, "users_file": args.users})
    _write_json(Path(args.out), result)
    if not args.quiet:
        _log(f"wrote {args.out}")
    return 0


def load_data(interactions: str, items: str | None = None, users: str | None = None):
    """``InteractionData`` from CSV files in Personalize's layout; ValueError naming the file and column."""
    from pipelines.personalize import InteractionData

    frames = {
        "INTERACTIONS": _read(interactions, ("USER_ID", "ITEM_ID", "TIMESTAMP")),
        "ITEMS": None if items is None else _read(items, ("ITEM_ID",)),
        "USERS": None if users is None else _read(users, ("USER_ID",)),
    }
    frame = frames["INTERACTIONS"]
    if len(frame) == 0:
        raise ValueError(f"{interactions}: no interactions")
    frame["TIMESTAMP"] = _epoch_seconds(frame["TIMESTAMP"], interactions)
    return InteractionData.from_frames(frame, frames["ITEMS"], frames["USERS"])


def _read(path: str, required: tuple[str, ...]):
    import pandas as pd

    header = pd.read_csv(path, nrows=0).columns
    renamed = {c: c.strip().upper() for c in header}
    ids = {c: str for c in header if renamed[c] in ("USER_ID", "ITEM_ID", "EVENT_TYPE")}
    frame = pd.read_csv(path, dtype=ids, keep_default_na=True).rename(columns=renamed)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; Personalize's layout has {list(required)}")
    for column in required:
        if column != "TIMESTAMP" and frame[column].isna().any():
            line = int(frame.index[frame[column].isna()][0]) + 2
            raise ValueError(f"{path}, line {line}: empty {column}")
    return frame


def _epoch_seconds(column, path: str):
    """Epoch seconds from numbers, ISO text, or a mix of the two."""
    import pandas as pd

    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().all():
        return numbers.astype("int64")
    text = numbers.isna()
    stamps = pd.to_datetime(column[text], errors="coerce", utc=True, format="mixed")
    bad = stamps.isna()
    if bad.any():
        line = int(stamps.index[bad][0]) + 2
        raise ValueError(f"{path}, line {line}: TIMESTAMP {column[line - 2]!r} is neither epoch seconds nor a date")
    numbers[text] = stamps.dt.tz_localize(None).astype("datetime64[s]").astype("int64")
    return numbers.astype("int64")


def benchmark(
    data,
    recipes: list,
    peers: bool = False,
    protocol: str = "personalize",
    repeats: int = 1,
    seed: int = 42,
    latency_users: int = 1000,
    log=None,
    peer_tuning: str = "none",
) -> dict:
    """Evaluate each recipe (and the peers, tuned when ``peer_tuning`` is "grid") ``repeats`` times;
    the RESULT.json structure."""
    import numpy as np

    models = [(r, "recipe") for r in recipes]
    tuning: dict[str, list[dict]] = {}
    if peers:
        for peer in peer_recipes():
            if peer_tuning == "grid":
                params, tuning[peer.name] = tune_peer(peer, data, seed + TUNING_SEED_OFFSET, log)
                models.append((peer(**params), "peer"))
            else:
                models.append((peer(), "peer"))
    seeds = [seed + k for k in range(repeats)]
    runs: dict[str, list[dict]] = {m.name: [] for m, _ in models}
    for k, split_seed in enumerate(seeds):
        for model, _ in models:
            measured = measure(model, data, protocol, split_seed, latency_users)
            runs[model.name].append(measured)
            if log is not None:
                headline = "normalized_discounted_cumulative_gain_at_10" if protocol == "personalize" else "ndcg_at_10"
                log(
                    f"[{k + 1}/{repeats}] {model.name}: {headline} {measured[headline]:.4f}, "
                    f"train {measured['train_seconds']:.1f} s, p99 {measured['recommend_p99_ms']:.2f} ms"
                )
    entries = []
    for model, kind in models:
        measured = runs[model.name]
        entry = {"name": model.name, "kind": kind, "hyperparameters": _jsonable(model.get_params())}
        for key in measured[0]:
            values = [float(m[key]) for m in measured]
            std = float(np.std(values, ddof=1)) if len(values) > 1 else None
            entry[key] = {
                "mean": _round(np.mean(values)),
                "std": None if std is None else _round(std),
                "values": values,
            }
        entries.append(entry)
    return {
        "benchmark": "personalize",
        "protocol": protocol,
        "repeats": repeats,
        "seeds": seeds,
        "statistics": "each measured value is {mean, std, values}: std is the sample standard deviation "
        "over repeats (null for one repeat)",
        "data": {"users": data.n_users, "items": data.n_items, "interactions": data.n_interactions},
        "machine": machine(),
        "models": entries,
        "peer_tuning": {
            "method": peer_tuning if peers else None,
            "seed": seed + TUNING_SEED_OFFSET,
            "metric": "normalized_discounted_cumulative_gain_at_10",
            "points": tuning,
        },
    }


def tune_peer(peer, data, seed: int, log=None) -> tuple[dict, list[dict]]:
    """(the best settings, every point scored) of ``peer`` over its ``PEER_GRIDS`` grid, each scored by
    NDCG@10 of Personalize's protocol on the user split of ``seed`` (ties: the first point)."""
    import itertools

    from pipelines.personalize.evaluation import evaluate

    grid = PEER_GRIDS[peer.name]
    points = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        report = evaluate(peer(**params, random_state=seed), data, seed=seed)
        points.append({**params, "ndcg_at_10": report["metrics"]["normalized_discounted_cumulative_gain_at_10"]})
    best = max(points, key=lambda p: p["ndcg_at_10"])  # max keeps the first of equals
    chosen = {k: best[k] for k in grid}
    if log is not None:
        log(f"{peer.name}: tuned on {len(points)} points, best {chosen} (NDCG@10 {best['ndcg_at_10']:.4f})")
    return chosen, points


def measure(recipe, data, protocol: str, seed: int, latency_users: int) -> dict:
    """One model on one split: the protocol's metrics, training time, peak memory, recommend latency."""
    from pipelines.personalize.evaluation import evaluate, evaluate_leave_last_out

    recipe = _seeded(recipe, seed)
    traced = _Traced(recipe)
    before = _reset_peak_rss()
    if protocol == "personalize":
        report = evaluate(traced, data, seed=seed)
    elif protocol == "leave-last-out":
        report = evaluate_leave_last_out(traced, data)
    else:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    peak = _peak_rss_mb()
    p50, p99 = recommend_latency(traced.model, data, latency_users, seed)
    return {
        **report["metrics"],
        "train_seconds": report["fit_seconds"],
        "peak_memory_mb": round(peak, 1),
        "memory_added_mb": round(max(0.0, peak - before), 1),
        "recommend_p50_ms": p50,
        "recommend_p99_ms": p99,
        "test_users": report["test_users"],
    }


def recommend_latency(model, data, users: int, seed: int) -> tuple[float, float]:
    """p50 and p99 milliseconds of ``recommend(user, 25)`` for up to ``users`` random users, after a warm-up."""
    import time

    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    chosen = rng.choice(data.user_ids, size=min(users, data.n_users), replace=False).tolist()
    timings = []
    with threadpool_limits(1, "blas"):  # one request, one core: as a server with a worker per core runs
        model.recommend(chosen[0], n=LATENCY_RESULTS)
        for user in chosen:
            start = time.perf_counter_ns()
            model.recommend(user, n=LATENCY_RESULTS)
            timings.append(time.perf_counter_ns() - start)
    p50, p99 = np.percentile(np.asarray(timings) / 1e6, [50, 99])
    return round(float(p50), 4), round(float(p99), 4)


class _Traced:
    """A recipe as ``evaluate`` sees it, keeping the model it trains, so latency is timed on that model.

    ``evaluate`` trains ``recipe.clone()``; here the clone is this object, whose ``fit`` trains a
    real clone of the recipe and keeps it, and every other attribute is the trained model's.
    """

    def __init__(self, recipe):
        self.recipe, self.name, self.model = recipe, recipe.name, None

    def get_params(self) -> dict:
        return self.recipe.get_params()

    def clone(self) -> _Traced:
        return self

    def fit(self, data) -> _Traced:
        self.model = self.recipe.clone().fit(data)
        return self

    def __getattr__(self, name: str):
        if self.__dict__.get("model") is None:
            raise AttributeError(name)
        return getattr(self.model, name)


def _seeded(recipe, seed: int):
    params = recipe.get_params()
    if "seed" in params:
        return type(recipe)(**{**params, "seed": seed})
    if "random_state" in params:
        return type(recipe)(**{**params, "random_state": seed})
    return recipe


def peer_recipes():
    """implicit's ALS and BPR behind the recipe interface: ``(ImplicitALS, ImplicitBPR)`` classes
    (``implicit_peers.py``), loaded only when a benchmark runs the peers."""
    from pipelines.benchmarking import implicit_peers

    return implicit_peers.ImplicitALS, implicit_peers.ImplicitBPR


def machine() -> dict:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("numpy", "pandas", "scipy", "torch", "implicit"):
        with contextlib.suppress(PackageNotFoundError):
            versions[package] = version(package)
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(), **versions}


def _reset_peak_rss() -> float:
    """Reset the process's peak resident memory where Linux allows it; the resident memory now, MB."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass  # elsewhere the peak is the process's since start
    return _status_mb("VmRSS") or 0.0


def _peak_rss_mb() -> float:
    peak = _status_mb("VmHWM")
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _round(value: float) -> float:
    return float(f"{float(value):.6g}")


def _write_json(path, payload: dict) -> None:
    """Through a temporary name and a rename, so a reader never sees half a result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def _jsonable(params: dict) -> dict:
    return {k: v if isinstance(v, str | int | float | bool | type(None)) else repr(v) for k, v in params.items()}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # the same command without the rest of the CLI: python -m pipelines.benchmarking.personalize
    cli = argparse.ArgumentParser(prog="airsight bench personalize", description=__doc__.split("\n")[0])
    add_arguments(cli)
    sys.exit(run(cli.parse_args()))
