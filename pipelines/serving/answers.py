"""Recent answers by recommendationId, so that PutEvents naming one takes its items as the impression.

In Personalize an event may carry the ``recommendationId`` of the GetRecommendations (or
GetPersonalizedRanking) answer the user acted on; Personalize then takes that answer's item list
as the event's impression (implicit impressions), unless the event lists its own ``impression``
(explicit ones win). To resolve an id, whichever process answered the request, every answer's
item list goes to a small table of the shared serving store (``airsight_answers``) and is kept
``seconds`` (an hour by default, ``AIRSIGHT_SERVING_RECOMMENDATION_ID_SECONDS``); older rows are
deleted. An id that is unknown, expired or from another group's answer leaves the event without
an impression, as Personalize accepts any recommendationId: the event is stored and learned as
it is.

The answer path stays as fast as before: a request only appends to an in-process queue that a
writer thread commits in batches, without an fsync per commit (an answer lost in a crash costs
impressions, never events). The process that answered resolves its own ids from memory at once;
another process reads the table, and waits up to ``FRESH_SECONDS`` for an id minted so recently
that its row may not be committed yet (the id carries its minting time). The resolved impression
is stored in the event's row, so every process, and every model that replays the event later,
reads the same list.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict

from pipelines.serving.store import Store

log = logging.getLogger("airsight.serving")
FRESH_SECONDS = 2.0  # how long after minting an id's row may still be on its way to the store
LOCAL_ANSWERS = 10_000  # answers a process resolves from memory
MAX_QUEUED = 100_000  # answers waiting for the store; beyond it the oldest are dropped (the store is down)


def new_recommendation_id() -> str:
    """``RID-<minting time, ms, hex>-<random>``: opaque to clients, readable for ``FRESH_SECONDS``."""
    return f"RID-{int(time.time() * 1000):x}-{uuid.uuid4().hex}"


def minted_at(recommendation_id: str) -> float | None:
    parts = recommendation_id.split("-")
    try:
        return int(parts[1], 16) / 1000 if len(parts) == 3 and parts[0] == "RID" else None
    except ValueError:
        return None


class RecentAnswers:
    """Each answer's items by recommendationId: remembered here, stored for the other processes."""

    def __init__(self, store: Store, seconds: float = 3600.0):
        self.store, self.seconds = store, seconds
        self._recent: OrderedDict[str, tuple[str, tuple[str, ...], float]] = OrderedDict()
        self._queue: list[tuple[str, str, list[str], float]] = []
        self._lock, self._wake = threading.Lock(), threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._expired_at = 0.0

    def remember(self, recommendation_id: str, group: str, item_ids: list[str]) -> None:
        now = time.time()
        with self._lock:
            self._recent[recommendation_id] = (group, tuple(item_ids), now)
            while len(self._recent) > LOCAL_ANSWERS:
                self._recent.popitem(last=False)
            self._queue.append((recommendation_id, group, list(item_ids), now))
            del self._queue[:-MAX_QUEUED]
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="airsight-answers", daemon=True)
                self._thread.start()
        self._wake.set()

    def resolve(self, recommendation_id: str, group: str) -> list[str] | None:
        """The items of the answer ``recommendation_id`` names, if it is ``group``'s and not expired."""
        with self._lock:
            found = self._recent.get(recommendation_id)
        if found is None:
            found = self._stored(recommendation_id)
        if found is None or found[0] != group or found[2] < time.time() - self.seconds:
            return None
        return list(found[1])

    def fill_impressions(self, group: str, events: list[dict]) -> None:
        """Give each event naming a recommendationId, and listing no impression, that answer's items."""
        for event in events:
            if event.get("recommendationId") and not event.get("impression"):
                shown = self.resolve(event["recommendationId"], group)
                if shown:
                    event["impression"] = shown

    def _stored(self, recommendation_id: str):
        minted, now = minted_at(recommendation_id), time.time()
        until = now if minted is None else min(minted, now) + FRESH_SECONDS  # an id from the future waits no more
        while True:
            found = self.store.get_answer(recommendation_id)
            if found is not None or time.time() >= until:
                return found
            time.sleep(0.01)  # minted a moment ago elsewhere: its row is on the way

    def flush(self) -> None:
        """Commit the queued answers (the writer thread does it after every wake-up)."""
        with self._lock:
            batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            self.store.put_answers(batch)
        except Exception:
            log.exception("storing recommendation answers failed; retrying")
            with self._lock:
                self._queue[:0] = batch
                del self._queue[:-MAX_QUEUED]
            raise

    def _run(self) -> None:
        while True:
            self._wake.wait(60)
            self._wake.clear()
            try:
                self.flush()
                if time.time() - self._expired_at > min(60.0, self.seconds / 4):
                    self._expired_at = time.time()
                    self.store.expire_answers(self._expired_at - self.seconds)
            except Exception:
                time.sleep(1)  # the store is unreachable: try again soon, keeping the queue
                self._wake.set()
            if self._closed:
                return

    def close(self) -> None:
        """Stop the writer after it committed what is queued."""
        with self._lock:
            self._closed, thread = True, self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=10)
