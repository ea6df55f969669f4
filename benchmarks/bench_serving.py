"""Serving benchmark: GetRecommendations and PutEvents over loopback HTTP, event-to-effect, SIGKILL.

A SIMS champion is fitted on generated interactions (100,000 users, 10,000 items in 100 taste
clusters, 10 events a user), registered in a temporary MLflow store, and served by
``python -m pipelines.serving`` (uvicorn) with 1 and 2 worker processes on 127.0.0.1. The
load generator is a closed loop of keep-alive HTTP/1.1 connections in one asyncio process,
bounded by time and by request count per phase. It shares the machine's cores with the
server, as a sidecar client would; the JSON records the core count.

Phases per worker count: GetRecommendations (random known users, numResults 25), the same with a
filter (``FILTER``: what the user clicked drops out, live events included), PutEvents
(one event per call, random users and items), event-to-effect (a user's top recommended item
is clicked; the time from the PutEvents acknowledgement until the user's recommendations change,
and through the filter until they no longer list it). Then the SIGKILL test: PutEvents with unique eventIds,
PutItems and PutUsers of new ids, all at full speed, the server is killed with SIGKILL mid-load
and restarted, and every acknowledged eventId, item and user is looked up in the store.

    nice -n 10 .venv/bin/python benchmarks/bench_serving.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"throughput_rps": 500, "p99_ms": 20, "event_to_effect_ms": 50}
GROUP = """\
name: bench
kind: personalize
storage: ./bench_store
datasets:
  INTERACTIONS:
    path: interactions.csv
    schema:
      - {name: USER_ID, type: string}
      - {name: ITEM_ID, type: string}
      - {name: TIMESTAMP, type: long}
      - {name: EVENT_TYPE, type: string}
  ITEMS:
    path: items.csv
    schema:
      - {name: ITEM_ID, type: string}
      - {name: GENRE, type: string, categorical: true}
  USERS:
    path: users.csv
    schema:
      - {name: USER_ID, type: string}
      - {name: SEGMENT, type: string, categorical: true}
"""
# The filtered phases' filter: what a user clicked drops out, live events included (Personalize's
# "exclude interacted items"); it reads the group's snapshot and every event since.
FILTER = ("not-clicked", 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")')


def generate(users: int, items: int, per_user: int, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    clusters = 100
    taste = rng.integers(0, clusters, users)
    members = rng.permutation(items).reshape(clusters, items // clusters)
    weights = 1 / np.arange(1, items // clusters + 1) ** 0.9
    weights /= weights.sum()
    who = np.repeat(np.arange(users), per_user)
    own = rng.random(len(who)) < 0.8
    what = np.where(own, members[taste[who], rng.choice(items // clusters, len(who), p=weights)],
                    rng.integers(0, items, len(who)))  # fmt: skip
    return pd.DataFrame({
        "USER_ID": np.char.add("u", who.astype(str)),
        "ITEM_ID": np.char.add("i", what.astype(str)),
        "TIMESTAMP": 1_700_000_000 + rng.integers(0, 90 * 86_400, len(who)),
        "EVENT_TYPE": "click",
    })  # fmt: skip


def prepare(work: Path, users: int, items: int) -> dict:
    """Groups dir, MLflow store with a SIMS champion, an API key; the environment to serve them."""
    env = {
        "AIRSIGHT_HOME": str(work / "home"),
        "AIRSIGHT_GROUPS_DIR": str(work / "groups.d"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "AIRSIGHT_MLFLOW_ARTIFACTS": (work / "artifacts").as_uri(),
        "AIRSIGHT_SERVING_DB": f"sqlite:///{work / 'serving.db'}",
        "AIRSIGHT_SERVING_POLL_SECONDS": "5",
    }
    os.environ.update(env)
    (work / "groups.d").mkdir(parents=True)
    (work / "groups.d" / "bench.yaml").write_text(GROUP)
    import mlflow
    import pandas as pd

    from pipelines.personalize import InteractionData, get_recipe
    from pipelines.serving.auth import create_key
    from pipelines.serving.store import Store
    from pipelines.training import pyfunc as models
    from pipelines.training import registry

    start = time.perf_counter()
    frame = generate(users, items, 10)
    model = get_recipe("sims", max_similar_items=100).fit(InteractionData.from_frames(frame))
    fit_seconds = time.perf_counter() - start
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(env["MLFLOW_TRACKING_URI"])
    with mlflow.start_run(experiment_id=registry.experiment(models.registered_name("personalize", "bench"))):
        info = models.log_model("personalize", model, pd.DataFrame({"userId": ["u1"], "itemId": [""]}))
    version = models.register(info, "personalize", "bench", {"recipe": "sims"})
    registry.gate(models.registered_name("personalize", "bench"), version, "coverage", 0.5)
    snapshot = work / "groups.d" / "bench_store" / "snapshots" / "as_of=20240101T000000"  # what filters read
    snapshot.mkdir(parents=True)
    frame.to_parquet(snapshot / "INTERACTIONS.parquet", index=False)
    catalog = pd.DataFrame({"ITEM_ID": sorted(frame["ITEM_ID"].unique())})
    catalog["GENRE"] = [f"g{k % 20}" for k in range(len(catalog))]
    catalog.to_parquet(snapshot / "ITEMS.parquet", index=False)
    (snapshot / "manifest.json").write_text(json.dumps({"rows": len(frame)}))
    store = Store(env["AIRSIGHT_SERVING_DB"])
    key = create_key(store, "bench", ["read", "write"])
    store.add_filter(*FILTER[:1], "bench", FILTER[1])
    store.close()
    return {"env": env, "key": key, "interactions": len(frame), "fit_seconds": round(fit_seconds, 2),
            "version": version}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict, port: int, workers: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "pipelines.serving", "--port", str(port), "--workers", str(workers)]
    with open(log, "ab") as handle:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=handle, stderr=handle,
                                   start_new_session=True)  # fmt: skip
    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see {log}")
        try:
            status, body = asyncio.run(one_request(port, "GET", "/health", None, ""))
            ready = status == 200 and json.loads(body)["models"]["bench"]["version"]
            # with several workers, each loads the model: wait until health answers stay ready
            if ready and (workers == 1 or all(_ready(port) for _ in range(10))):
                return process
        except (OSError, ValueError, KeyError, asyncio.IncompleteReadError):
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the server did not become ready; see {log}")


def _ready(port: int) -> bool:
    status, body = asyncio.run(one_request(port, "GET", "/health", None, ""))
    return status == 200 and bool(json.loads(body)["models"]["bench"]["version"])


def stop_server(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# The load generator: raw HTTP/1.1 on keep-alive connections (a Python HTTP client library
# would spend more of the shared cores than the server does).
def http_request(method: str, path: str, body: bytes | None, key: str) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + (body or b"")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length) if length else b""


async def one_request(port: int, method: str, path: str, body: bytes | None, key: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(http_request(method, path, body, key))
        return await read_response(reader)
    finally:
        writer.close()


async def closed_loop(port: int, key: str, path: str, make_body, seconds: float, max_requests: int,
                      connections: int) -> dict:  # fmt: skip
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    acked: list = []
    issued = 0
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal issued
        reader = writer = None
        while time.perf_counter() < deadline and issued < max_requests:
            issued += 1
            body, tag = make_body()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                start = time.perf_counter()
                writer.write(http_request("POST", path, body, key))
                status, _ = await read_response(reader)
                latencies.append(time.perf_counter() - start)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 200 and tag is not None:
                    acked.append(tag)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                statuses["connection_error"] = statuses.get("connection_error", 0) + 1
                writer = None
                await asyncio.sleep(0.05)
        if writer is not None:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    errors = sum(v for k, v in statuses.items() if k != "200")
    return {
        "requests": sum(statuses.values()),
        "seconds": round(elapsed, 2),
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "errors": errors,
        "statuses": statuses,
        "acked": acked,
    }


async def fixed_rate(port: int, key: str, path: str, make_body, rate: float, seconds: float, connections: int) -> dict:
    """Open loop: requests are due at a steady ``rate``; latency counts from when each was due.

    Counting from the due time (not the send time) keeps a slow answer from hiding the requests
    queued behind it (coordinated omission), so p99 is what clients sending at that rate see.
    """
    due: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    total = int(rate * seconds)

    async def schedule() -> None:
        start = time.perf_counter()
        for k in range(total):
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            due.put_nowait(start + k / rate)
        for _ in range(connections):
            due.put_nowait(None)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (when := await due.get()) is not None:
            body, _ = make_body()
            try:
                writer.write(http_request("POST", path, body, key))
                status, _ = await read_response(reader)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                latencies.append(time.perf_counter() - when)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                statuses["connection_error"] = statuses.get("connection_error", 0) + 1
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(schedule(), *(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "target_rps": rate,
        "requests": sum(statuses.values()),
        "achieved_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "errors": sum(v for k, v in statuses.items() if k != "200"),
        "statuses": statuses,
    }


async def event_to_effect(port: int, key: str, probes: int, filtered: bool = False) -> dict:
    """Click a user's top item; time from the PutEvents ack until the user's recommendations change
    (with ``filtered``, until the not-clicked filter drops the item: a filter sees the live event)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    reader2, writer2 = await asyncio.open_connection("127.0.0.1", port)  # with 2 workers, likely the other one
    delays, failures = [], 0

    async def recommend(r, w, user: str) -> list[str]:
        ask = {"campaignArn": "bench", "userId": user, "numResults": 25}
        if filtered:
            ask["filterArn"] = f"filter/{FILTER[0]}"
        w.write(http_request("POST", "/recommendations", json.dumps(ask).encode(), key))
        status, body = await read_response(r)
        if status != 200:
            raise RuntimeError(f"GetRecommendations answered {status}: {body[:200]!r}")
        return [e["itemId"] for e in json.loads(body)["itemList"]]

    for k in range(probes):
        user = f"u{random.randrange(100_000)}"
        before = await recommend(reader, writer, user)
        top = before[0]
        event = {"trackingId": "bench", "userId": user, "sessionId": f"e2e-{k}",
                 "eventList": [{"eventType": "click", "itemId": top, "sentAt": time.time()}]}  # fmt: skip
        writer.write(http_request("POST", "/events", json.dumps(event).encode(), key))
        status, _ = await read_response(reader)
        if status != 200:
            raise RuntimeError(f"PutEvents answered {status}")
        acked = time.perf_counter()
        for _ in range(200):
            r, w = (reader2, writer2) if k % 2 else (reader, writer)  # alternate connections
            now = await recommend(r, w, user)
            # Unfiltered, the clicked item may stay (Personalize keeps seen items unless a filter drops them):
            # the effect is the list changing. Through the filter, the clicked item must be gone.
            if (top not in now) if filtered else (now != before):
                delays.append(time.perf_counter() - acked)
                break
        else:
            failures += 1
    writer.close()
    writer2.close()
    ms = np.array(delays) * 1000 if delays else np.array([np.nan])
    return {"probes": probes, "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2),
            "not_reflected": failures}  # fmt: skip


def random_recommendation(users: int, filtered: bool = False):
    def make():
        body = {"campaignArn": "bench", "userId": f"u{random.randrange(users)}", "numResults": 25}
        if filtered:
            body["filterArn"] = f"filter/{FILTER[0]}"
        return json.dumps(body).encode(), None

    return make


def random_record(kind: str):
    """PutItems or PutUsers of one new item or user (its id is the tag the SIGKILL test looks for)."""
    counter = [0]

    def make():
        counter[0] += 1
        ident = f"{kind[0]}-{os.getpid()}-{counter[0]}"
        if kind == "items":
            body = {"datasetArn": "bench/ITEMS", "items": [{"itemId": ident, "properties": '{"GENRE": "g1"}'}]}
        else:
            body = {"datasetArn": "bench/USERS", "users": [{"userId": ident, "properties": '{"SEGMENT": "s1"}'}]}
        return json.dumps(body).encode(), ident

    return make


def random_event(users: int, items: int, unique: list | None = None):
    counter = [0]

    def make():
        counter[0] += 1
        event_id = f"ev-{os.getpid()}-{counter[0]}"
        event = {"eventType": "click", "itemId": f"i{random.randrange(items)}", "sentAt": time.time(),
                 "eventId": event_id}  # fmt: skip
        body = {"trackingId": "bench", "userId": f"u{random.randrange(users)}", "sessionId": "bench",
                "eventList": [event]}  # fmt: skip
        return json.dumps(body).encode(), event_id

    return make


def stored_event_ids(database_url: str) -> set[str]:
    import sqlite3

    conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    try:
        return {row[0] for row in conn.execute("SELECT event_id FROM airsight_events WHERE event_id IS NOT NULL")}
    finally:
        conn.close()


def stored_record_ids(database_url: str) -> dict[str, set[str]]:
    import sqlite3

    conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    try:
        found: dict[str, set[str]] = {"ITEMS": set(), "USERS": set()}
        for kind, ident in conn.execute("SELECT dataset_type, record_id FROM airsight_records"):
            found.setdefault(kind, set()).add(ident)
        return found
    finally:
        conn.close()


def run_workers(setup: dict, workers: int, args, work: Path) -> dict:
    port = free_port()
    server = start_server(setup["env"], port, workers, work / f"server_{workers}.log")
    try:
        key = setup["key"]
        asyncio.run(closed_loop(port, key, "/recommendations", random_recommendation(args.users), 2, 500,
                                args.connections))  # warm-up  # fmt: skip
        recs = asyncio.run(closed_loop(port, key, "/recommendations", random_recommendation(args.users),
                                       args.seconds, args.max_requests, args.connections))  # fmt: skip
        make = random_recommendation(args.users)
        steady = [
            asyncio.run(fixed_rate(port, key, "/recommendations", make, float(r), args.seconds, 2 * args.connections))
            for r in args.rates.split(",")
        ]
        filtered = asyncio.run(closed_loop(port, key, "/recommendations", random_recommendation(args.users, True),
                                           args.seconds, args.max_requests, args.connections))  # fmt: skip
        make = random_recommendation(args.users, True)
        filtered_steady = [
            asyncio.run(fixed_rate(port, key, "/recommendations", make, float(r), args.seconds, 2 * args.connections))
            for r in args.rates.split(",")
        ]
        events = asyncio.run(closed_loop(port, key, "/events", random_event(args.users, args.items),
                                         args.seconds, args.max_requests, args.connections))  # fmt: skip
        effect = asyncio.run(event_to_effect(port, key, args.probes))
        filtered_effect = asyncio.run(event_to_effect(port, key, args.probes, filtered=True))
    finally:
        stop_server(server)
    for phase in (recs, filtered, events):
        phase.pop("acked")
    return {"workers": workers, "get_recommendations": recs, "get_recommendations_at_rate": steady,
            "filtered_get_recommendations": filtered, "filtered_get_recommendations_at_rate": filtered_steady,
            "put_events": events, "event_to_effect": effect, "filtered_event_to_effect": filtered_effect}  # fmt: skip


def sigkill_test(setup: dict, args, work: Path) -> dict:
    port = free_port()
    log = work / "server_kill.log"
    server = start_server(setup["env"], port, 1, log)
    key = setup["key"]

    async def load_and_kill() -> tuple[dict, dict, dict]:
        def loop(path, make):
            return asyncio.create_task(closed_loop(port, key, path, make, args.kill_after + 3, args.max_requests,
                                                   max(1, args.connections // 2)))  # fmt: skip

        loads = [loop("/events", random_event(args.users, args.items)), loop("/items", random_record("items")),
                 loop("/users", random_record("users"))]  # fmt: skip
        await asyncio.sleep(args.kill_after)
        os.killpg(server.pid, signal.SIGKILL)
        killed_at = time.perf_counter()
        events, items, users = [await load for load in loads]
        events["killed_after_s"] = args.kill_after
        events["load_ran_after_kill_s"] = round(time.perf_counter() - killed_at, 2)
        return events, items, users

    result, items, users = asyncio.run(load_and_kill())
    server.wait()
    restarted = start_server(setup["env"], port, 1, log)  # replays stored events into the model
    try:
        stored = stored_event_ids(setup["env"]["AIRSIGHT_SERVING_DB"])
        records = stored_record_ids(setup["env"]["AIRSIGHT_SERVING_DB"])
        acked = set(result.pop("acked"))
        acked_records = {"ITEMS": set(items.pop("acked")), "USERS": set(users.pop("acked"))}
        health = json.loads(asyncio.run(one_request(port, "GET", "/health", None, ""))[1])
    finally:
        stop_server(restarted)
    return {
        "events_acknowledged": len(acked),
        "acknowledged_and_stored": len(acked & stored),
        "events_lost": len(acked - stored),
        "items_acknowledged": len(acked_records["ITEMS"]),
        "items_lost": len(acked_records["ITEMS"] - records["ITEMS"]),
        "users_acknowledged": len(acked_records["USERS"]),
        "users_lost": len(acked_records["USERS"] - records["USERS"]),
        "events_replayed_after_restart": health["models"]["bench"]["events_applied"],
        "requests_during_load": result["requests"],
        "statuses": result["statuses"],
        "killed_after_s": result["killed_after_s"],
    }


def markdown(report: dict) -> str:
    rates = [float(r) for r in report["setup"]["rates"].split(",")]
    rows = []
    for label, prefix in (("no filter", ""), (f"with the filter `{FILTER[1]}`", "filtered_")):
        rows += [
            f"GetRecommendations {label}:",
            "",
            "| workers | GetRecommendations max req/s (p50 / p99 ms) | "
            + " | ".join(f"at {r:.0f} req/s: achieved, p50 / p99 ms" for r in rates)
            + " | PutEvents max req/s (p99 ms) | event-to-effect p50 / p99 ms | errors |",
            "|---|---|" + "---|" * len(rates) + "---|---|---|",
        ]
        for r in report["runs"]:
            g, p, e = r[f"{prefix}get_recommendations"], r["put_events"], r[f"{prefix}event_to_effect"]
            steady = r[f"{prefix}get_recommendations_at_rate"]
            errors = g["errors"] + p["errors"] + e["not_reflected"] + sum(f["errors"] for f in steady)
            at_rate = " | ".join(f"{f['achieved_rps']:.0f}, {f['p50_ms']:.1f} / {f['p99_ms']:.1f}" for f in steady)
            rows.append(f"| {r['workers']} | {g['throughput_rps']:.0f} ({g['p50_ms']:.1f} / {g['p99_ms']:.1f}) | "
                        f"{at_rate} | {p['throughput_rps']:.0f} ({p['p99_ms']:.1f}) | "
                        f"{e['p50_ms']:.1f} / {e['p99_ms']:.1f} | {errors} |")  # fmt: skip
        rows.append("")
    k = report["sigkill"]
    t = TARGETS
    rows += [
        f"Targets: >= {t['throughput_rps']} req/s with p99 < {t['p99_ms']} ms, filters on; event-to-effect < "
        f"{t['event_to_effect_ms']} ms (< 1 s through a filter); zero errors; nothing acknowledged lost.",
        f"SIGKILL mid-load (PutEvents, PutItems and PutUsers at once): {k['events_acknowledged']} events "
        f"acknowledged, {k['acknowledged_and_stored']} of them stored after the restart, **{k['events_lost']} lost**; "
        f"{k['items_acknowledged']} items and {k['users_acknowledged']} users acknowledged, "
        f"**{k['items_lost']} and {k['users_lost']} lost**; the restarted server replayed "
        f"{k['events_replayed_after_restart']} stored events into its model.",
        f"Machine: {report['machine']['cores']} cores ({report['machine']['platform']}), shared by the server and "
        f"the load generator; {report['setup']['users']:,} users, {report['setup']['items']:,} items, "
        f"{report['setup']['interactions']:,} interactions, SIMS; closed loops on {report['setup']['connections']} "
        f"keep-alive connections, {report['setup']['seconds']} s (at most {report['setup']['max_requests']:,} "
        "requests) per phase; load average before the run: " + report["machine"]["load_average_before"] + ".",
    ]
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load phase")
    parser.add_argument("--max-requests", type=int, default=20_000, help="request cap of each load phase")
    parser.add_argument("--connections", type=int, default=8, help="connections of the closed-loop phases")
    parser.add_argument("--rates", default="250,500", help="request rates of the open-loop phases (req/s)")
    parser.add_argument("--probes", type=int, default=100, help="event-to-effect probes")
    parser.add_argument("--kill-after", type=float, default=2.0, help="seconds of PutEvents load before SIGKILL")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()

    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())  # other work on the shared cores
    with tempfile.TemporaryDirectory(prefix="airsight-bench-serving-") as tmp:
        work = Path(tmp)
        setup = prepare(work, args.users, args.items)
        runs = [run_workers(setup, int(w), args, work) for w in args.workers.split(",")]
        kill = sigkill_test(setup, args, work)
    report = {
        "benchmark": "serving",
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_before": load_before,
        },
        "setup": {
            "users": args.users,
            "items": args.items,
            "interactions": setup["interactions"],
            "recipe": "sims",
            "fit_seconds": setup["fit_seconds"],
            "connections": args.connections,
            "seconds": args.seconds,
            "max_requests": args.max_requests,
            "rates": args.rates,
        },
        "targets": TARGETS,
        "runs": runs,
        "sigkill": kill,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "serving.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
