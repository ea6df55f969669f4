"""The serving store: events, item and user records, filters, campaigns and API keys in SQLite or PostgreSQL.

Tables are prefixed ``airsight_`` so that a shared PostgreSQL database stays readable.

PutEvents is acknowledged only after its transaction commits: SQLite runs in WAL mode with
``synchronous=FULL`` (the log is fsynced at each commit), PostgreSQL with its default
``synchronous_commit``. Event ids grow with each insert, which is how every server process
follows the events the others wrote (``events_after``) and how exports resume. PutItems and
PutUsers append records to a log of their own (``airsight_records``: one row per item or user
record, the newest of an id wins), acknowledged the same way and followed the same way.
``airsight_answers`` keeps each recommendation answer's item list for a while, so that an event
naming its recommendationId takes those items as its impression (``pipelines.serving.answers``).

Each thread has its own connection: SQLite connections are not shared between threads, and a
PostgreSQL connection runs one statement at a time.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

EVENT_COLUMNS = (
    "dataset_group",
    "tracking_id",
    "user_id",
    "session_id",
    "event_id",
    "event_type",
    "event_value",
    "item_id",
    "sent_at",
    "recommendation_id",
    "impression",
    "properties",
    "received_at",
)


def _schema(serial: str, real: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS airsight_events (
            id {serial} PRIMARY KEY, dataset_group TEXT NOT NULL, tracking_id TEXT NOT NULL,
            user_id TEXT NOT NULL, session_id TEXT NOT NULL, event_id TEXT, event_type TEXT NOT NULL,
            event_value {real}, item_id TEXT, sent_at {real} NOT NULL, recommendation_id TEXT,
            impression TEXT, properties TEXT, received_at {real} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS airsight_events_group_id ON airsight_events (dataset_group, id)",
        f"""CREATE TABLE IF NOT EXISTS airsight_records (
            id {serial} PRIMARY KEY, dataset_group TEXT NOT NULL, dataset_type TEXT NOT NULL,
            record_id TEXT NOT NULL, properties TEXT NOT NULL, received_at {real} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS airsight_records_group_id ON airsight_records (dataset_group, id)",
        f"""CREATE TABLE IF NOT EXISTS airsight_answers (
            recommendation_id TEXT PRIMARY KEY, dataset_group TEXT NOT NULL, item_ids TEXT NOT NULL,
            created_at {real} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS airsight_answers_created ON airsight_answers (created_at)",
        f"""CREATE TABLE IF NOT EXISTS airsight_campaigns (
            name TEXT PRIMARY KEY, config TEXT NOT NULL, updated_at {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS airsight_filters (
            name TEXT PRIMARY KEY, dataset_group TEXT NOT NULL, expression TEXT NOT NULL,
            created_at {real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS airsight_batch_jobs (
            name TEXT PRIMARY KEY, dataset_group TEXT NOT NULL, status TEXT NOT NULL, request TEXT NOT NULL,
            summary TEXT, failure TEXT, created_at {real} NOT NULL, finished_at {real},
            owner TEXT, heartbeat_at {real}, kind TEXT)""",
        f"""CREATE TABLE IF NOT EXISTS airsight_api_keys (
            key_id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, salt TEXT NOT NULL, digest TEXT NOT NULL,
            scopes TEXT NOT NULL, created_at {real} NOT NULL, revoked_at {real})""",
    ]


class DuplicateName(ValueError):
    """A filter or key with this name exists."""


@dataclass(frozen=True)
class StoredEvent:
    id: int
    dataset_group: str
    user_id: str
    item_id: str | None
    sent_at: float
    event_type: str
    event_value: float | None
    impression: tuple[str, ...] = ()  # the items shown with it: explicit, or the answer its recommendationId names


def _stored_event(row: tuple) -> StoredEvent:
    *fields, impression = row
    return StoredEvent(*fields, tuple(json.loads(impression)) if impression else ())


@dataclass(frozen=True)
class StoredRecord:
    """One PutItems or PutUsers record: ``properties`` maps schema field names to values."""

    id: int
    dataset_group: str
    dataset_type: str  # ITEMS or USERS
    record_id: str
    properties: dict
    received_at: float


@dataclass
class _Pending:
    rows: list[tuple]
    ids: list[int] = field(default_factory=list)
    done: bool = False
    error: Exception | None = None


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    name: str
    salt: str
    digest: str
    scopes: frozenset[str]
    revoked: bool


class Store:
    """One database: ``sqlite:///path`` or ``postgresql://…``."""

    def __init__(self, url: str):
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        if not self.postgres and not url.startswith("sqlite:///"):
            raise ValueError(f"serving database {url!r}: expected sqlite:///PATH or postgresql://…")
        self._local = threading.local()
        self._all: list = []
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._pending_lock, self._commit_lock = threading.Lock(), threading.Lock()
        with self._cursor() as cur:
            for statement in _schema("BIGSERIAL" if self.postgres else "INTEGER", "DOUBLE PRECISION"):
                cur.execute(statement)
            self._add_columns(cur, "airsight_batch_jobs",
                              {"owner": "TEXT", "heartbeat_at": "DOUBLE PRECISION", "kind": "TEXT"})  # fmt: skip

    def _add_columns(self, cur, table: str, columns: dict[str, str]) -> None:
        """Bring a table created by an earlier release up to date: add the columns it lacks."""
        if self.postgres:
            for name, kind in columns.items():
                cur.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {kind}")
            return
        present = {row[1] for row in cur.execute(f"PRAGMA table_info({table})").fetchall()}
        for name, kind in columns.items():
            if name not in present:
                cur.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    # Connections.
    def _connect(self):
        if self.postgres:
            import psycopg2

            conn = psycopg2.connect(self.url, connect_timeout=5)
        else:
            path = Path(self.url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        with self._lock:
            self._all.append(conn)
        return conn

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or (self.postgres and conn.closed):
            conn = self._local.conn = self._connect()
        return conn

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    class _Tx:
        def __init__(self, store: Store):
            self.store, self.conn = store, store._conn()

        def __enter__(self):
            if not self.store.postgres:
                self.conn.execute("BEGIN IMMEDIATE")
            self.cur = self.conn.cursor()
            return self

        def execute(self, statement: str, params: Iterable = ()):
            self.cur.execute(self.store._sql(statement), tuple(params))
            return self.cur

        def __exit__(self, kind, value, tb):
            if kind is None:
                self.conn.commit() if self.store.postgres else self.conn.execute("COMMIT")
            else:
                self.conn.rollback() if self.store.postgres else self.conn.execute("ROLLBACK")
            self.cur.close()

    def _cursor(self):
        return self._Tx(self)

    def _query(self, statement: str, params: Iterable = ()) -> list[tuple]:
        conn = self._conn()
        cur = conn.cursor()
        try:
            cur.execute(self._sql(statement), tuple(params))
            rows = cur.fetchall()
        finally:
            cur.close()
        if self.postgres:
            conn.rollback()  # end the read transaction, so the next read sees new commits
        return rows

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(Exception):  # a connection of a finished thread
                    conn.close()
            self._all.clear()
        self._local = threading.local()

    # Events.
    def put_events(self, group: str, tracking_id: str, user_id: str, session_id: str, events: list[dict]) -> list[int]:
        """Insert the events; return their ids once the transaction holding them is committed.

        Group commit: calls that arrive while a commit is being flushed wait, and the next of them
        writes all waiting calls' events in one transaction, so concurrent PutEvents share one
        fsync instead of queueing for one each. Every caller still returns only after its own
        events are committed.
        """
        now = time.time()
        rows = [
            (
                group,
                tracking_id,
                user_id,
                session_id,
                e.get("eventId"),
                e["eventType"],
                e.get("eventValue"),
                e.get("itemId"),
                float(e["sentAt"]),
                e.get("recommendationId"),
                json.dumps(e["impression"]) if e.get("impression") else None,
                json.dumps(e["properties"]) if e.get("properties") else None,
                now,
            )
            for e in events
        ]
        mine = _Pending(rows)
        with self._pending_lock:
            self._pending.append(mine)
        with self._commit_lock:
            if not mine.done:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._commit(batch)
        if mine.error is not None:
            raise mine.error
        return mine.ids

    def _commit(self, batch: list[_Pending]) -> None:
        insert = (
            f"INSERT INTO airsight_events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
        )
        try:
            with self._cursor() as tx:
                for pending in batch:
                    for row in pending.rows:
                        if self.postgres:
                            pending.ids.append(tx.execute(insert + " RETURNING id", row).fetchone()[0])
                        else:
                            pending.ids.append(tx.execute(insert, row).lastrowid)
        except Exception as exc:
            for pending in batch:
                pending.error, pending.ids = exc, []
        finally:
            for pending in batch:
                pending.done = True

    _EVENT_FIELDS = "id, dataset_group, user_id, item_id, sent_at, event_type, event_value, impression"

    def events_after(self, after_id: int, also: Iterable[int] = (), limit: int = 10_000) -> list[StoredEvent]:
        """Events with id > ``after_id`` (and the ids in ``also``), by id."""
        also = list(also)
        where = "id > ?" + (f" OR id IN ({', '.join('?' * len(also))})" if also else "")
        rows = self._query(f"SELECT {self._EVENT_FIELDS} FROM airsight_events WHERE {where} ORDER BY id LIMIT ?",
                           [after_id, *also, limit])  # fmt: skip
        return [_stored_event(r) for r in rows]

    def events_of_group(
        self,
        group: str,
        after_id: int = 0,
        up_to_id: int | None = None,
        sent_after: float | None = None,
        limit: int = 100_000,
        newest: bool = False,
    ) -> list[StoredEvent]:
        where, params = "dataset_group = ? AND id > ?", [group, after_id]
        if up_to_id is not None:
            where, params = where + " AND id <= ?", [*params, up_to_id]
        if sent_after is not None:
            where, params = where + " AND sent_at > ?", [*params, sent_after]
        order = "DESC" if newest else "ASC"  # newest: the last ``limit`` events, still returned oldest first
        statement = f"SELECT {self._EVENT_FIELDS} FROM airsight_events WHERE {where} ORDER BY id {order} LIMIT ?"
        rows = self._query(statement, [*params, limit])
        return [_stored_event(r) for r in (reversed(rows) if newest else rows)]

    def event_rows(self, group: str, after_id: int = 0, batch: int = 10_000) -> Iterator[tuple]:
        """Every column of a group's events after ``after_id``, by id, in batches (for exports)."""
        while True:
            rows = self._query(
                f"SELECT id, {', '.join(EVENT_COLUMNS)} FROM airsight_events WHERE dataset_group = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                [group, after_id, batch],
            )
            yield from rows
            if len(rows) < batch:
                return
            after_id = rows[-1][0]

    def max_event_id(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(id), 0) FROM airsight_events")[0][0])

    def count_events(self, group: str | None = None) -> int:
        if group is None:
            return int(self._query("SELECT COUNT(*) FROM airsight_events")[0][0])
        return int(self._query("SELECT COUNT(*) FROM airsight_events WHERE dataset_group = ?", [group])[0][0])

    # Item and user records (PutItems, PutUsers).
    def put_records(self, group: str, dataset_type: str, records: list[tuple[str, dict]]) -> list[int]:
        """Append ``(id, properties)`` records of ``dataset_type`` in one transaction; their ids once committed."""
        insert = (
            "INSERT INTO airsight_records (dataset_group, dataset_type, record_id, properties, received_at) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        now, ids = time.time(), []
        with self._cursor() as tx:
            for record_id, properties in records:
                row = (group, dataset_type, record_id, json.dumps(properties, sort_keys=True), now)
                if self.postgres:
                    ids.append(tx.execute(insert + " RETURNING id", row).fetchone()[0])
                else:
                    ids.append(tx.execute(insert, row).lastrowid)
        return ids

    _RECORD_FIELDS = "id, dataset_group, dataset_type, record_id, properties, received_at"

    def _records(self, where: str, params: list) -> list[StoredRecord]:
        rows = self._query(f"SELECT {self._RECORD_FIELDS} FROM airsight_records WHERE {where} ORDER BY id LIMIT ?",
                           params)  # fmt: skip
        return [StoredRecord(i, g, t, r, json.loads(p), at) for i, g, t, r, p, at in rows]

    def records_after(self, after_id: int, also: Iterable[int] = (), limit: int = 10_000) -> list[StoredRecord]:
        """Records with id > ``after_id`` (and the ids in ``also``), by id."""
        also = list(also)
        where = "id > ?" + (f" OR id IN ({', '.join('?' * len(also))})" if also else "")
        return self._records(where, [after_id, *also, limit])

    def records_of_group(
        self, group: str, after_id: int = 0, up_to_id: int | None = None, dataset_type: str | None = None,
        limit: int = 1_000_000,
    ) -> list[StoredRecord]:  # fmt: skip
        where, params = "dataset_group = ? AND id > ?", [group, after_id]
        if up_to_id is not None:
            where, params = where + " AND id <= ?", [*params, up_to_id]
        if dataset_type is not None:
            where, params = where + " AND dataset_type = ?", [*params, dataset_type]
        return self._records(where, [*params, limit])

    def max_record_id(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(id), 0) FROM airsight_records")[0][0])

    # Answers: each recommendationId's item list, kept a while so that PutEvents can name it (RecentAnswers).
    def put_answers(self, rows: list[tuple[str, str, list[str], float]]) -> None:
        """Store ``(recommendation_id, group, item_ids, created_at)`` rows in one transaction.

        Committed without waiting for the disk (SQLite ``synchronous=NORMAL`` for this commit only,
        PostgreSQL ``synchronous_commit = off``): an answer lost in a power cut only loses the
        impressions a later event would have taken from it, and no fsync competes with PutEvents'.
        """
        insert = "INSERT INTO airsight_answers (recommendation_id, dataset_group, item_ids, created_at) "
        insert += "VALUES (?, ?, ?, ?)"
        conn = None if self.postgres else self._conn()
        if conn is not None:
            conn.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._cursor() as tx:
                if self.postgres:
                    tx.execute("SET LOCAL synchronous_commit TO OFF")
                for rid, group, items, created in rows:
                    tx.execute(insert, (rid, group, json.dumps(items), created))
        finally:
            if conn is not None:
                conn.execute("PRAGMA synchronous=FULL")  # this thread's connection may commit events next

    def get_answer(self, recommendation_id: str) -> tuple[str, list[str], float] | None:
        """``(group, item_ids, created_at)`` of a stored answer, or None."""
        rows = self._query("SELECT dataset_group, item_ids, created_at FROM airsight_answers "
                           "WHERE recommendation_id = ?", [recommendation_id])  # fmt: skip
        return (rows[0][0], json.loads(rows[0][1]), rows[0][2]) if rows else None

    def expire_answers(self, before: float) -> int:
        with self._cursor() as tx:
            return tx.execute("DELETE FROM airsight_answers WHERE created_at < ?", (before,)).rowcount

    # Campaigns (their campaignConfig).
    def put_campaign(self, name: str, config: dict) -> float:
        updated = time.time()
        with self._cursor() as tx:
            tx.execute("DELETE FROM airsight_campaigns WHERE name = ?", (name,))
            tx.execute("INSERT INTO airsight_campaigns (name, config, updated_at) VALUES (?, ?, ?)",
                       (name, json.dumps(config, sort_keys=True), updated))  # fmt: skip
        return updated

    def get_campaign(self, name: str) -> tuple[dict, float] | None:
        rows = self._query("SELECT config, updated_at FROM airsight_campaigns WHERE name = ?", [name])
        return (json.loads(rows[0][0]), rows[0][1]) if rows else None

    # Filters.
    def add_filter(self, name: str, group: str, expression: str) -> float:
        created = time.time()
        try:
            with self._cursor() as tx:
                tx.execute(
                    "INSERT INTO airsight_filters (name, dataset_group, expression, created_at) VALUES (?, ?, ?, ?)",
                    (name, group, expression, created),
                )
        except Exception as exc:
            if _is_unique_violation(exc):
                raise DuplicateName(f"a filter named {name!r} exists") from exc
            raise
        return created

    def get_filter(self, name: str) -> tuple[str, str, str, float] | None:
        rows = self._query(
            "SELECT name, dataset_group, expression, created_at FROM airsight_filters WHERE name = ?", [name]
        )
        return rows[0] if rows else None

    def list_filters(self, group: str | None = None) -> list[tuple[str, str, str, float]]:
        if group is None:
            return self._query("SELECT name, dataset_group, expression, created_at FROM airsight_filters ORDER BY name")
        return self._query(
            "SELECT name, dataset_group, expression, created_at FROM airsight_filters WHERE dataset_group = ? "
            "ORDER BY name",
            [group],
        )

    def delete_filter(self, name: str) -> bool:
        with self._cursor() as tx:
            return tx.execute("DELETE FROM airsight_filters WHERE name = ?", (name,)).rowcount > 0

    # Batch jobs: batch inference jobs (kind ``inference``; NULL in rows of earlier releases) and batch
    # segment jobs (``segment``), in one table and one namespace of names.
    def add_job(self, name: str, group: str, request: dict, owner: str, kind: str = "inference") -> None:
        """Record a job IN_PROGRESS, run by ``owner`` (host:pid), which beats ``beat_job`` while it runs."""
        now = time.time()
        try:
            with self._cursor() as tx:
                tx.execute(
                    "INSERT INTO airsight_batch_jobs (name, dataset_group, status, request, created_at, owner, "
                    "heartbeat_at, kind) VALUES (?, ?, 'IN_PROGRESS', ?, ?, ?, ?, ?)",
                    (name, group, json.dumps(request), now, owner, now, kind),
                )
        except Exception as exc:
            if _is_unique_violation(exc):
                raise DuplicateName(f"a batch job named {name!r} exists (batch inference and segment jobs "
                                    "share names)") from exc  # fmt: skip
            raise

    def finish_job(self, name: str, summary: dict | None, failure: str | None) -> None:
        with self._cursor() as tx:
            tx.execute(
                "UPDATE airsight_batch_jobs SET status = ?, summary = ?, failure = ?, finished_at = ? WHERE name = ?",
                ("FAILED" if failure else "ACTIVE", json.dumps(summary) if summary else None, failure, time.time(),
                 name),
            )  # fmt: skip

    def beat_job(self, name: str) -> None:
        with self._cursor() as tx:
            tx.execute(
                "UPDATE airsight_batch_jobs SET heartbeat_at = ? WHERE name = ? AND status = 'IN_PROGRESS'",
                (time.time(), name),
            )

    def fail_orphaned_jobs(self, stale_after: float, dead: Callable[[str], bool], name: str | None = None) -> list[str]:
        """Mark FAILED the IN_PROGRESS jobs (or job ``name``) whose runner is gone; their names.

        A runner is gone when ``dead(owner)`` says so (a process of this host that no longer
        runs) or when its job's heartbeat is older than ``stale_after`` seconds (any host).
        """
        now = time.time()
        query = "SELECT name, owner, COALESCE(heartbeat_at, created_at) FROM airsight_batch_jobs "
        query += "WHERE status = 'IN_PROGRESS'" + (" AND name = ?" if name is not None else "")
        rows = self._query(query, [] if name is None else [name])
        orphaned = [job for job, owner, beat in rows if (owner and dead(owner)) or beat < now - stale_after]
        with self._cursor() as tx:
            for job in orphaned:
                tx.execute(
                    "UPDATE airsight_batch_jobs SET status = 'FAILED', failure = ?, finished_at = ? "
                    "WHERE name = ? AND status = 'IN_PROGRESS'",
                    ("orphaned: the server process that ran this job stopped before it finished; create it again",
                     now, job),
                )  # fmt: skip
        return orphaned

    def get_job(self, name: str, kind: str = "inference") -> dict | None:
        rows = self._query(
            "SELECT name, dataset_group, status, request, summary, failure, created_at, finished_at "
            "FROM airsight_batch_jobs WHERE name = ? AND COALESCE(kind, 'inference') = ?",
            [name, kind],
        )
        if not rows:
            return None
        name, group, status, request, summary, failure, created, finished = rows[0]
        return {"jobName": name, "datasetGroup": group, "status": status, "request": json.loads(request),
                "summary": json.loads(summary) if summary else None, "failureReason": failure,
                "creationDateTime": created, "lastUpdatedDateTime": finished}  # fmt: skip

    # API keys.
    def add_key(self, key_id: str, name: str, salt: str, digest: str, scopes: Iterable[str]) -> None:
        try:
            with self._cursor() as tx:
                tx.execute(
                    "INSERT INTO airsight_api_keys (key_id, name, salt, digest, scopes, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (key_id, name, salt, digest, " ".join(sorted(scopes)), time.time()),
                )
        except Exception as exc:
            if _is_unique_violation(exc):
                raise DuplicateName(f"an API key named {name!r} exists") from exc
            raise

    def get_key(self, key_id: str) -> StoredKey | None:
        rows = self._query(
            "SELECT key_id, name, salt, digest, scopes, revoked_at FROM airsight_api_keys WHERE key_id = ?", [key_id]
        )
        if not rows:
            return None
        key_id, name, salt, digest, scopes, revoked = rows[0]
        return StoredKey(key_id, name, salt, digest, frozenset(scopes.split()), revoked is not None)

    def list_keys(self) -> list[tuple[str, str, str, bool]]:
        rows = self._query("SELECT name, key_id, scopes, revoked_at FROM airsight_api_keys ORDER BY name")
        return [(name, key_id, scopes, revoked is not None) for name, key_id, scopes, revoked in rows]

    def revoke_key(self, name: str) -> bool:
        with self._cursor() as tx:
            cur = tx.execute("UPDATE airsight_api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                             (time.time(), name))  # fmt: skip
            return cur.rowcount > 0


def _is_unique_violation(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE" in str(exc)
    return getattr(exc, "pgcode", None) == "23505"
