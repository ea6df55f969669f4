"""A Python client for Airsight's serving API: Personalize's event, catalog and recommendation calls.

Standard library only (``urllib``), so a backend can use it without the rest of the package::

    from pipelines.client import Client

    client = Client()  # AIRSIGHT_URL and AIRSIGHT_API_KEY from the environment
    with client.tracker("shop", session_id="s-1", user_id="u-42") as events:
        events.record("click", item_id="i-7")  # batched: sent 10 at a time, or every second
    items = client.get_recommendations("shop", user_id="u-42", num_results=10)

Every call has a timeout and is retried with exponential backoff (and jitter) on network errors,
timeouts, 429 and 5xx; a 4xx is not retried and raises ``ApiError`` with the status and the
server's field errors. Events get an ``eventId`` when they have none, so a batch retried after
a lost response carries the ids it had. ``put_events``, ``put_items`` and ``put_users`` split
long lists into Personalize's batches of 10.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MAX_BATCH = 10  # Personalize's limit per PutEvents, PutItems and PutUsers call
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class ApiError(Exception):
    """The server refused the request: ``status``, its ``message`` and ``errors`` (field and rule)."""

    def __init__(self, status: int, message: str, errors: list | None = None):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.errors = status, message, errors or []


class Client:
    """Calls to one Airsight server. ``base_url`` and ``api_key`` default to ``AIRSIGHT_URL`` and
    ``AIRSIGHT_API_KEY``; ``retries`` more attempts after the first, ``backoff`` seconds doubling."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
    ):
        base_url = base_url or os.environ.get("AIRSIGHT_URL")
        if not base_url:
            raise ValueError("no server: pass base_url or set AIRSIGHT_URL")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("AIRSIGHT_API_KEY")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

    # Personalize's calls.
    def put_events(
        self, tracking_id: str, session_id: str, events: Sequence[Mapping[str, Any]], user_id: str | None = None
    ) -> list[int]:
        """PutEvents: store the events (in batches of 10); the stored ids, in order."""
        stored = []
        for batch in _batches([_event(e) for e in events]):
            body = {"trackingId": tracking_id, "sessionId": session_id, "eventList": batch}
            if user_id is not None:
                body["userId"] = user_id
            stored.extend(self.request("POST", "/events", body)["eventIds"])
        return stored

    def put_items(self, items: Sequence[Mapping[str, Any]], dataset_arn: str | None = None) -> list[int]:
        """PutItems: each ``{"itemId": ..., "properties": {...}}`` (in batches of 10)."""
        return self._put_records("/items", "items", items, dataset_arn)

    def put_users(self, users: Sequence[Mapping[str, Any]], dataset_arn: str | None = None) -> list[int]:
        """PutUsers: each ``{"userId": ..., "properties": {...}}`` (in batches of 10)."""
        return self._put_records("/users", "users", users, dataset_arn)

    def get_recommendations(
        self,
        campaign_arn: str,
        user_id: str | None = None,
        item_id: str | None = None,
        num_results: int = 25,
        **options: Any,
    ) -> dict:
        """GetRecommendations; ``options`` are the API's other fields (filterArn, filterValues,
        context, promotions, itemExplorationConfig)."""
        body = {"campaignArn": campaign_arn, "numResults": num_results, **options}
        body.update({k: v for k, v in (("userId", user_id), ("itemId", item_id)) if v is not None})
        return self.request("POST", "/recommendations", body)

    def get_personalized_ranking(self, campaign_arn: str, user_id: str, input_list: Sequence[str], **options) -> dict:
        """GetPersonalizedRanking of ``input_list`` for the user; ``options`` as the API's (context, filterArn)."""
        body = {"campaignArn": campaign_arn, "userId": user_id, "inputList": list(input_list), **options}
        return self.request("POST", "/personalize-ranking", body)

    def tracker(self, tracking_id: str, session_id: str, user_id: str | None = None, **batching) -> EventTracker:
        """An ``EventTracker`` for one session: ``record`` events, sent in the background in batches."""
        return EventTracker(self, tracking_id, session_id, user_id, **batching)

    # The transport.
    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One API call, retried on network errors, timeouts, 429 and 5xx; the decoded JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    raw = answer.read()
                return json.loads(raw) if raw else None
            except urllib.error.HTTPError as error:
                if error.code not in RETRIED_STATUSES or last:
                    raise _api_error(error) from None
                wait = _retry_after(error)
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                if last:
                    raise
                wait = None
            time.sleep(wait if wait is not None else self.backoff * 2**attempt * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")

    def _put_records(self, path: str, field: str, records: Sequence[Mapping[str, Any]], arn: str | None) -> list[int]:
        stored = []
        for batch in _batches([dict(r) for r in records]):
            for record in batch:
                if isinstance(record.get("properties"), Mapping):
                    record["properties"] = json.dumps(record["properties"])
            body = {field: batch, **({"datasetArn": arn} if arn else {})}
            stored.extend(self.request("POST", path, body)["recordIds"])
        return stored


class EventTracker:
    """Events of one session, sent by a background thread in batches of ``max_batch`` or every
    ``flush_seconds``; ``flush`` sends what is waiting now, ``close`` (or leaving a ``with``) too.

    A batch that fails after the client's retries is kept and tried again at the next flush;
    ``errors`` holds the last failures. Pending events beyond ``max_pending`` drop the oldest.
    """

    def __init__(
        self,
        client: Client,
        tracking_id: str,
        session_id: str,
        user_id: str | None = None,
        max_batch: int = MAX_BATCH,
        flush_seconds: float = 1.0,
        max_pending: int = 10_000,
    ):
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH}")
        self.client, self.tracking_id, self.session_id, self.user_id = client, tracking_id, session_id, user_id
        self.max_batch, self.flush_seconds, self.max_pending = max_batch, flush_seconds, max_pending
        self.pending: list[dict] = []
        self.sent: list[int] = []
        self.errors: list[Exception] = []
        self._lock, self._send_lock = threading.Lock(), threading.Lock()
        self._wake, self._stopped = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"airsight-events-{session_id}", daemon=True)
        self._thread.start()

    def record(self, event_type: str, item_id: str | None = None, sent_at: float | None = None, **fields) -> str:
        """Queue one event (``sent_at`` now by default); its eventId."""
        event = _event({"eventType": event_type, "itemId": item_id, "sentAt": sent_at or time.time(), **fields})
        with self._lock:
            self.pending.append({k: v for k, v in event.items() if v is not None})
            del self.pending[: max(0, len(self.pending) - self.max_pending)]
            full = len(self.pending) % self.max_batch == 0  # each full batch wakes the sender once
        if full:
            self._wake.set()
        return event["eventId"]

    def flush(self) -> None:
        """Send every pending event now (raises the last error if a batch could not be sent)."""
        with self._send_lock:
            while True:
                with self._lock:
                    batch = self.pending[: self.max_batch]
                if not batch:
                    return
                try:
                    ids = self.client.put_events(self.tracking_id, self.session_id, batch, self.user_id)
                except Exception as error:
                    self.errors = [*self.errors[-9:], error]
                    raise
                with self._lock:
                    del self.pending[: len(batch)]
                    self.sent.extend(ids)

    def close(self) -> None:
        self._stopped.set()
        self._wake.set()
        self._thread.join()
        self.flush()

    def __enter__(self) -> EventTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stopped.is_set():
                return
            with contextlib.suppress(Exception):  # kept in errors; the events stay pending for the next flush
                self.flush()


def _event(event: Mapping[str, Any]) -> dict:
    out = {k: v for k, v in event.items() if v is not None}
    out.setdefault("eventId", uuid.uuid4().hex)
    return out


def _batches(records: list, size: int = MAX_BATCH) -> Iterable[list]:
    return (records[i : i + size] for i in range(0, len(records), size))


def _api_error(error: urllib.error.HTTPError) -> ApiError:
    try:
        body = json.loads(error.read() or b"{}")
    except ValueError:
        body = {}
    message = body.get("message") or body.get("detail") or error.reason
    return ApiError(error.code, str(message), body.get("errors"))


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    value = error.headers.get("Retry-After") if error.headers else None
    try:
        return min(float(value), 30.0) if value is not None else None
    except ValueError:
        return None
