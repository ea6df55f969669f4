"""The champion model of each Personalize group, hot-swapped, and the event stream that updates it.

``ModelHolder`` keeps one immutable ``ModelState`` (version, model, the snapshot filters read)
behind a reference that is replaced in one assignment: a request takes the reference once and
finishes on that model even if a new one is swapped in meanwhile, so a swap fails no request.
A new champion is loaded and brought up to date in the poll thread, off the request path; a
version that fails to load leaves the previous model serving and is reported in /health.

``EventTail`` is how events reach models. PutEvents writes to the store, then asks the tail to
catch up; requests ask too. The tail reads events by id past its watermark from the store and
gives each to its group's model (``Recipe.update``, with its event type; only events that pass
the group's training filter, as at import; with the items it was shown beside, to recipes that
learn from impressions, ``observe_impressions``) and to the state's per-user live events that
Interactions filters read (every event), so every server process (uvicorn workers, the Airflow
plugin) applies every event, its own and the others', in the order stored. Ids
that are skipped (a PostgreSQL transaction that commits late) are asked for again for a while.

A newly loaded model (a server start, a swap to a new champion) replays the stored events it
has not seen (``unseen``): all but those its own training history holds (same user, item and
second, which is how an exported event comes back through an import), whatever their sentAt, so
a late, back-dated event stays in effect after a restart or a swap, in every process.

PutItems and PutUsers records travel the same way, in a log of their own: the tail gives each
to its group's state, which tells the model about new items (``Recipe.add_items``) and grows the
data filters read (``catalog.grow``), so Items and CurrentUser conditions see a new item or user,
and its fields, at the next request in every process. Items first seen in an event join that
data too, so no filter drops them for being unknown. A freshly loaded model gets every stored
record of its group before its replayed events.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pipelines.serving.store import Store, StoredEvent, StoredRecord

log = logging.getLogger("airsight.serving")
REPLAY_LIMIT = 1_000_000  # events replayed into a freshly loaded model
GAP_SECONDS = 5.0  # how long a skipped id is looked for
LIVE_EVENTS_PER_USER = 1000  # live events a filter may read per user (Personalize reads 100 per event type)


@dataclass
class ModelState:
    version: str
    model: Any  # a fitted pipelines.personalize.base.Recipe
    data: Any = None  # the group's latest InteractionData snapshot, which filters read
    loaded_at: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock)  # Recipe.update mutates the model
    events_applied: int = 0
    # Each user's live events, (item_id, event_type, sent_at), newest last: what Interactions filters
    # read beside the snapshot. Every process's tail applies every stored event, so all agree.
    live: dict[str, deque] = field(default_factory=dict)
    trains_on: Callable[[StoredEvent], bool] | None = None  # the solution's training filter; None: every event
    records_applied: int = 0

    def apply_records(self, records: list[StoredRecord]) -> None:
        """PutItems and PutUsers records, oldest first: the model learns of new items, filters of every field."""
        from pipelines.serving.catalog import grow

        items: dict[str, dict] = {}
        users: dict[str, dict] = {}
        created: dict[str, float] = {}
        for record in records:
            (items if record.dataset_type == "ITEMS" else users)[record.record_id] = record.properties
            if record.dataset_type == "ITEMS":
                created[record.record_id] = record.received_at
        if not items and not users:
            return
        with self.lock:
            if items:  # an item without a CREATION_TIMESTAMP was created when it was put
                metadata = [{"CREATION_TIMESTAMP": created[i], **fields} for i, fields in items.items()]
                self.model.add_items(list(items), metadata)
            if self.data is not None:
                self.data = grow(self.data, items, users)
            self.records_applied += len(records)

    def apply(self, events: list[StoredEvent]) -> None:
        """Events, oldest first: the model learns those that pass the training filter, impressions included."""
        per_user: dict[str, list[StoredEvent]] = defaultdict(list)
        for event in events:
            if event.item_id or event.impression:
                per_user[event.user_id].append(event)
        with self.lock:
            if self.data is not None:  # items first seen here join the catalog filters read
                index = self.data.item_index
                new = {e.item_id: None for mine in per_user.values() for e in mine if e.item_id not in index}
                new.pop(None, None)  # impressions without an item
                if new:
                    from pipelines.serving.catalog import grow

                    self.data = grow(self.data, new, {})
            impressions = getattr(self.model, "observe_impressions", None)  # recipes that learn from impressions
            for user, mine in per_user.items():
                learned = mine if self.trains_on is None else [e for e in mine if self.trains_on(e)]
                interactions = [(e.item_id, int(e.sent_at), e.event_type) for e in learned if e.item_id]
                if interactions:
                    self.model.update(user, interactions)
                if impressions is not None and learned:
                    impressions(user, [(e.impression, e.item_id) for e in learned])
                kept = self.live.get(user)
                if kept is None:
                    kept = self.live[user] = deque(maxlen=LIVE_EVENTS_PER_USER)
                kept.extend((e.item_id, e.event_type, e.sent_at) for e in mine if e.item_id)
            self.events_applied += len(events)

    def live_events(self, user_id: str | None) -> list[tuple[str, str, float]] | None:
        """A copy of the user's live events (call it holding ``lock``), or None."""
        kept = self.live.get(user_id) if user_id is not None else None
        return list(kept) if kept else None


def training_filter(event_types: Iterable[str] = (), event_value_threshold: float | None = None):
    """The group's training filter as a test of one live event (None when it keeps everything).

    As at import (``pipelines.preparation.importing.personalize``): the event type must be one of
    ``event_types`` (exactly), and the event value at least the threshold (an event without a
    value fails a threshold). Models learn only what passes; filters read every event.
    """
    types = frozenset(event_types)
    if not types and event_value_threshold is None:
        return None

    def passes(event: StoredEvent) -> bool:
        if types and event.event_type not in types:
            return False
        value = event.event_value
        return event_value_threshold is None or (value is not None and value >= event_value_threshold)

    return passes


def unseen(model: Any, events: list[StoredEvent]) -> list[StoredEvent]:
    """The stored events ``model`` did not train on, whenever they were sent: what a loaded model replays.

    A model has seen an event when its training history of the event's user holds the event's item
    at the event's second: the event was exported (``export_events``) before the import that built
    the model's snapshot, and sent by that snapshot's as_of. Every other stored event is replayed,
    whatever its sentAt: one stored after the snapshot was cut, a late (back-dated) one, one never
    exported, one the import's training filter left out (the model skips it again, filters read it).
    """
    indptr = getattr(model, "history_indptr_", None)
    users, items = getattr(model, "user_index_", {}), getattr(model, "item_index_", {})
    latest = int(getattr(model, "latest_timestamp_", 0) or 0)
    check = [k for k, e in enumerate(events)
             if e.item_id in items and e.user_id in users and int(e.sent_at) <= latest]  # fmt: skip
    if indptr is None or not check:
        return events
    import numpy as np
    import pandas as pd

    asked = pd.MultiIndex.from_arrays([[users[events[k].user_id] for k in check],
                                       [items[events[k].item_id] for k in check],
                                       [int(events[k].sent_at) for k in check]])  # fmt: skip
    owner = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))  # each training-history row's user
    rows = np.isin(owner, asked.get_level_values(0).unique())
    trained = pd.MultiIndex.from_arrays([owner[rows], model.history_items_[rows], model.history_times_[rows]])
    seen = {check[k] for k in np.flatnonzero(asked.isin(trained))}
    return [e for k, e in enumerate(events) if k not in seen]


class ModelHolder:
    """The serving model of one Personalize group."""

    def __init__(
        self,
        group: str,
        store: Store,
        champion_version: Callable[[], str | None],
        load_version: Callable[[str], Any],
        load_data: Callable[[], Any] | None = None,
        trains_on: Callable[[StoredEvent], bool] | None = None,
        dataset_group: str | None = None,
    ):
        self.group, self.store, self.trains_on = group, store, trains_on
        self.source = dataset_group or group  # whose stored events and records it replays (a recommender's group)
        self._champion_version, self._load_version, self._load_data = champion_version, load_version, load_data
        self.state: ModelState | None = None
        self.error: str | None = None  # the last failed load, reported in /health
        self.failed_version: str | None = None
        self._failed_at = 0.0
        self.swaps = 0

    def poll(self, tail: EventTail, retry_seconds: float = 60.0) -> bool:
        """Load the champion if it moved; True if a new model now serves."""
        try:
            version = self._champion_version()
        except Exception as exc:
            self.error = f"cannot read the champion alias: {type(exc).__name__}: {exc}"
            return False
        if version is None or (self.state is not None and self.state.version == version):
            return False
        if version == self.failed_version and time.monotonic() - self._failed_at < retry_seconds:
            return False
        return self.load(version, tail)

    def load(self, version: str, tail: EventTail) -> bool:
        start = time.perf_counter()
        try:
            model = self._load_version(version)
            for method in ("recommend", "related_items", "rank", "update"):
                if not callable(getattr(model, method, None)):
                    raise TypeError(f"{type(model).__name__} has no {method}(): not a Personalize model")
            data = self._load_data() if self._load_data else None
            state = ModelState(version, model, data, trains_on=self.trains_on)
            mark, records_mark = tail.watermark, tail.records_watermark
            state.apply_records(self.store.records_of_group(self.source, up_to_id=records_mark))
            replay = self.store.events_of_group(self.source, up_to_id=mark, limit=REPLAY_LIMIT, newest=True)
            state.apply(unseen(model, replay))
        except Exception as exc:
            self.error = f"version {version} failed to load: {type(exc).__name__}: {exc}"
            self.failed_version, self._failed_at = version, time.monotonic()
            log.error("model load failed", extra={"group": self.group, "version": version, "error": self.error})
            return False
        with tail.lock:  # records and events stored while loading, then the swap, with nothing in between
            state.apply_records(
                self.store.records_of_group(self.source, after_id=records_mark, up_to_id=tail.records_watermark)
            )
            state.apply(self.store.events_of_group(self.source, after_id=mark, up_to_id=tail.watermark))
            previous, self.state = self.state, state
        self.error, self.failed_version = None, None
        self.swaps += 1
        log.info(
            "model swapped in",
            extra={"group": self.group, "version": version, "previous": previous and previous.version,
                   "replayed_events": state.events_applied, "seconds": round(time.perf_counter() - start, 3)},
        )  # fmt: skip
        return True

    def health(self) -> dict:
        state = self.state
        return {
            "status": "ok" if state and not self.error else "degraded" if state else "unavailable",
            "version": state.version if state else None,
            "loaded_at": state.loaded_at if state else None,
            "recipe": getattr(state.model, "name", None) if state else None,
            "events_applied": state.events_applied if state else 0,
            "records_applied": state.records_applied if state else 0,
            "filters_data": state is not None and state.data is not None,
            "error": self.error,
        }


class _Follower:
    """Rows of one append-only table past a watermark, by id; ids skipped on the way are asked for again a while."""

    def __init__(self, fetch: Callable[..., list], watermark: int):
        self.fetch, self.watermark = fetch, watermark
        self._missing: dict[int, float] = {}

    def next(self) -> list:
        rows = self.fetch(self.watermark, self._missing)
        if not rows:
            self._expire()
            return rows
        now = time.monotonic()
        seen = {r.id for r in rows}
        for missing in [i for i in self._missing if i in seen]:
            del self._missing[missing]
        for gap in range(self.watermark + 1, max(seen)):
            if gap not in seen and len(self._missing) < 10_000:
                self._missing.setdefault(gap, now)
        self.watermark = max(self.watermark, max(seen))
        self._expire()
        return rows

    def _expire(self) -> None:
        if self._missing:
            limit = time.monotonic() - GAP_SECONDS
            for stale in [i for i, t in self._missing.items() if t < limit]:
                del self._missing[stale]


class EventTail:
    """Follows the store's records and events by id and hands them to each group's current state."""

    def __init__(self, store: Store, holders: dict[str, ModelHolder], dataset_groups: dict[str, str] | None = None):
        self.store, self.holders = store, holders
        # a dataset group's events reach its recommenders' models too (served name -> dataset group)
        self.served: dict[str, list[str]] = defaultdict(list)
        for name, group in (dataset_groups or {n: n for n in holders}).items():
            self.served[group].append(name)
        self.lock = threading.Lock()
        # models replay older events and records themselves when they load
        self._events = _Follower(store.events_after, store.max_event_id())
        self._records = _Follower(store.records_after, store.max_record_id())

    @property
    def watermark(self) -> int:
        return self._events.watermark

    @property
    def records_watermark(self) -> int:
        return self._records.watermark

    def catch_up(self) -> int:
        with self.lock:
            records, events = self._records.next(), self._events.next()
            for group, rows in _by_group(records).items():
                for state in self._states(group):
                    state.apply_records(rows)
            for group, rows in _by_group(events).items():
                for state in self._states(group):
                    state.apply(rows)
            return len(records) + len(events)

    def _states(self, group: str) -> list[ModelState]:
        """The current states of the models a dataset group's rows go to: its own, its recommenders'."""
        holders = [self.holders.get(name) for name in self.served.get(group, [group])]
        return [h.state for h in holders if h is not None and h.state is not None]


def _by_group(rows: list) -> dict[str, list]:
    per_group: dict[str, list] = defaultdict(list)
    for row in rows:
        per_group[row.dataset_group].append(row)
    return per_group
