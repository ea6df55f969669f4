"""Serving a 1,000,000-item catalog: user-personalization-v2 through its approximate index, against
the exact scan of the same model, in one run.

A seeded catalog: ``--items`` items in 2,000 topics (a GENRE field in ITEMS), ``--users`` users
with tastes over 3 topics, ``--events`` events each (half uniform within a topic, half its
Zipf-popular head), and one more event for every item from a user of its topic; a year of
timestamps. The recipe trains with
a small budget (``--epochs``, no validation slice: this measures serving, not accuracy), then
``recommend(user, 25)`` is timed for ``--latency-users`` random users, one thread for BLAS and
faiss, warm: through the index (the default at this size), and with the index removed (every
request scans the catalog). Recall@25 is how many of the exact scan's 25 items the index path
returned. Exploration (weight 0.1, the default) and none are both timed: exploration scores every
item created within its cut-off (30 days) on each request, whatever the catalog's size.

    nice -n 5 python benchmarks/bench_catalog.py [--out benchmarks/results] [--items 1000000]

Writes catalog.json and catalog.md to --out.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = 25
TOPICS = 2_000
START = 1_700_000_000
YEAR = 365 * 86_400


def catalog(items: int, users: int, events: int, seed: int):
    """Interactions (a DataFrame in Personalize's layout) over ``items`` items in topics."""
    from pipelines.personalize import InteractionData

    rng = np.random.default_rng(seed)
    topic = rng.integers(0, TOPICS, items)
    order = np.argsort(topic, kind="stable")
    bounds = np.searchsorted(topic[order], np.arange(TOPICS + 1))
    chosen_items, chosen_users, times = [], [], []
    for u in range(users):
        tastes = rng.choice(TOPICS, size=3, replace=False)
        picks = []
        for t in tastes:  # half uniform within the topic, half its Zipf-popular head
            members = order[bounds[t] : bounds[t + 1]]
            ranks = np.minimum(rng.zipf(1.3, size=events), len(members)) - 1
            uniform = rng.integers(0, len(members), events)
            picks.append(members[np.where(rng.random(events) < 0.5, uniform, ranks)])
        mixed = np.concatenate(picks)[rng.permutation(3 * events)[:events]]
        chosen_items.append(mixed)
        chosen_users.append(np.full(events, u))
        times.append(START + np.sort(rng.integers(0, YEAR, events)))
    # Every item has an event (from a user who likes its topic where one does), so no two items share the
    # untrained "unknown item" vector and the exact list has no ties for the index to break otherwise.
    fans = np.concatenate(chosen_users)
    topic_of_pick = topic[np.concatenate(chosen_items)]
    fan_order = np.argsort(topic_of_pick, kind="stable")
    fan_bounds = np.searchsorted(topic_of_pick[fan_order], np.arange(TOPICS + 1))
    seeded = np.empty(items, np.int64)
    for t in range(TOPICS):
        members = order[bounds[t] : bounds[t + 1]]
        pool = fans[fan_order[fan_bounds[t] : fan_bounds[t + 1]]]
        seeded[members] = rng.choice(pool, len(members)) if len(pool) else rng.integers(0, users, len(members))
    chosen_items.append(np.arange(items))
    chosen_users.append(seeded)
    times.append(START + rng.integers(0, YEAR, items))
    frame = pd.DataFrame(
        {
            "USER_ID": np.char.add("u", np.concatenate(chosen_users).astype(str)),
            "ITEM_ID": np.char.add("i", np.concatenate(chosen_items).astype(str)),
            "TIMESTAMP": np.concatenate(times),
            "EVENT_TYPE": "click",
        }
    )
    every = pd.DataFrame(  # the whole catalog, with each item's topic as a categorical field
        {"ITEM_ID": np.char.add("i", np.arange(items).astype(str)), "GENRE": np.char.add("t", topic.astype(str))}
    )
    return InteractionData.from_frames(frame.sort_values("TIMESTAMP", kind="stable"), items=every)


def timed(model, users: list[str]) -> tuple[list[float], list[list[str]]]:
    timings, answers = [], []
    model.recommend(users[0], n=RESULTS)  # warm
    for user in users:
        start = time.perf_counter_ns()
        answer = model.recommend(user, n=RESULTS)
        timings.append((time.perf_counter_ns() - start) / 1e6)
        answers.append([item for item, _ in answer])
    return timings, answers


def recall_at(found: list[str], truth: list[str]) -> float:
    """Share of the exact scan's 25 items that the index path returned."""
    return len(set(found) & set(truth)) / RESULTS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--latency-users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ann-min-items", type=int, default=100_000, help="the recipe's: index from this size")
    args = parser.parse_args()

    import faiss
    from threadpoolctl import threadpool_limits

    from pipelines.personalize import get_recipe

    started = time.perf_counter()
    data = catalog(args.items, args.users, args.events, args.seed)
    generated = time.perf_counter() - started
    recipe = get_recipe(
        "user-personalization-v2",
        epochs=args.epochs,
        validation_fraction=0.0,
        seed=args.seed,
        ann_min_items=args.ann_min_items,
    )
    model = recipe.fit(data)
    build = time.perf_counter()
    model.build_index()
    index_seconds = time.perf_counter() - build
    rng = np.random.default_rng(args.seed)
    users = rng.choice(data.user_ids, size=min(args.latency_users, data.n_users), replace=False).tolist()
    exact = copy.copy(model)
    exact.index_ = None
    rows = []
    faiss.omp_set_num_threads(1)
    with threadpool_limits(1):
        for weight in (0.1, 0.0):
            model.exploration_weight = exact.exploration_weight = weight
            scan, truth = timed(exact, users)
            indexed, found = timed(model, users)
            recall = float(np.mean([recall_at(a, b) for a, b in zip(found, truth, strict=True)]))
            for path, timings in (("index", indexed), ("exact scan", scan)):
                p50, p99 = np.percentile(timings, [50, 99])
                rows.append(
                    {
                        "exploration_weight": weight,
                        "path": path,
                        "p50_ms": round(float(p50), 3),
                        "p99_ms": round(float(p99), 3),
                        "recall_at_25": round(recall, 4) if path == "index" else 1.0,
                    }
                )
    in_scope = int(model._in_scope(0.1, model.exploration_item_age_cut_off).sum())
    result = {
        "benchmark": "catalog",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "items": data.n_items,
        "users": data.n_users,
        "interactions": data.n_interactions,
        "items_in_exploration_scope": in_scope,
        "generate_seconds": round(generated, 1),
        "train_seconds": round(model.fit_seconds_, 1),
        "index_build_seconds": round(index_seconds, 1),
        "index": {"cells": model.index_.nlist, "probed": model.index_.nprobe, "candidates": model.ann_candidates},
        "latency_users": len(users),
        "load_average": list(os.getloadavg()),
        "command": " ".join(["python", "benchmarks/bench_catalog.py", *sys.argv[1:]]),
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "catalog.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "catalog.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    lines = [
        "# Serving a large catalog",
        "",
        f"`{result['command']}`: {result['items']:,} items, {result['users']:,} users, "
        f"{result['interactions']:,} interactions; user-personalization-v2 trained in {result['train_seconds']} s, "
        f"its index ({result['index']['cells']} cells, {result['index']['probed']} probed, "
        f"{result['index']['candidates']} candidates scored exactly) built in {result['index_build_seconds']} s. "
        f"`recommend(user, 25)` for {result['latency_users']} users, one thread, warm; "
        f"{result['items_in_exploration_scope']:,} items within exploration's cut-off. "
        f"Load average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in result['load_average'])}.",
        "",
        "| exploration weight | path | p50 ms | p99 ms | recall@25 vs exact |",
        "|---:|---|---:|---:|---:|",
    ]
    for row in result["rows"]:
        cells = (row["exploration_weight"], row["path"], row["p50_ms"], row["p99_ms"], row["recall_at_25"])
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
