"""User-Personalization: HRNN-Coldstart that also explores new and rarely shown items (aws-user-personalization).

A model that only exploits never learns about an item nobody has been shown: it has no
interactions, so it never scores high, so it is never shown. Exploration gives such items
impressions. An item is in scope when it was created within ``exploration_item_age_cut_off``
days of the newest interaction (Personalize's definition), read from the live clock: the
newest of the training data's events and the events ``update`` has taken since, so items age
as events arrive instead of staying as young as they were at training. An item's creation is
ITEMS' CREATION_TIMESTAMP (or what ``add_items`` says, as PutItems does); without one, its
first event, including one first seen in ``update``. In scope, an item's bonus is upper-confidence
style, 1 / sqrt(1 + exposures), where exposures are its impressions when interactions carry
an IMPRESSION column (an event counts as one too) and its events otherwise, and grow with every
live impression (``observe_impressions``: PutEvents' ``impression``, or the items of the answer
its ``recommendationId`` names): the less an item has been shown, the more it is worth showing,
and an item shown many times without interactions loses its bonus.

Impressions also speak for one user. An item shown to a user k times since the user last
interacted with it (counted from the training IMPRESSION lists, then live) has that user's score
divided by sqrt(1 + k): as in Personalize, items a user was shown and let pass are less likely to
come back to that user, while others still explore them.

The score blends ``(1 - w) * exploitation + w * bonus`` with ``w = exploration_weight``:
exploitation is the HRNN probability over the best item's, 0 is pure exploitation (the same
list as hrnn-coldstart, for a user with no impressions let pass) and 1 ranks only by the bonus.
Each bonus is scaled by a random
factor in [0.5, 1], seeded by ``seed``, the user and the length of the user's history: a
request is reproducible, while different users, and the same user after new events, are
shown different new items instead of all the same few.

Personalize's ``itemExplorationConfig`` (explorationWeight, explorationItemAgeCutOff) sets the
two for a campaign or a request: ``item_exploration(weight, cut_off_days)`` holds them for the
calls made inside it (a context variable, so concurrent requests do not mix); None keeps the
trained hyperparameter.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
import pandas as pd

from pipelines.personalize.base import EMPTY
from pipelines.personalize.data import InteractionData, _epoch_seconds
from pipelines.personalize.hrnn import DAY, REQUEST_USER, extends, top_n
from pipelines.personalize.hrnn_metadata import HrnnColdstart

EXPLORATION: ContextVar[tuple[float | None, float | None]] = ContextVar("item_exploration", default=(None, None))


@contextmanager
def item_exploration(weight: float | None = None, cut_off_days: float | None = None) -> Iterator[None]:
    """Explore with ``weight`` and ``cut_off_days`` (None: the model's own) in the calls made inside."""
    if weight is not None and not 0 <= weight <= 1:
        raise ValueError(f"explorationWeight must be between 0 and 1, got {weight}")
    if cut_off_days is not None and not cut_off_days > 0:
        raise ValueError(f"explorationItemAgeCutOff must be more than 0 days, got {cut_off_days}")
    token = EXPLORATION.set((weight, cut_off_days))
    try:
        yield
    finally:
        EXPLORATION.reset(token)


class Exploration:
    """Exploration over a recipe's exploitation scores, mixed in before the recipe (``Exploration, Recipe``).

    The recipe sets ``exploration_weight`` and ``exploration_item_age_cut_off`` in its constructor
    (each recipe has its own default weight) and provides ``_serving_state`` and ``_scores``.
    """

    exploration_weight: float
    exploration_item_age_cut_off: float

    def _rules(self) -> list[tuple[str, bool]]:
        return [
            *super()._rules(),
            ("exploration_weight", 0 <= self.exploration_weight <= 1),
            ("exploration_item_age_cut_off", self.exploration_item_age_cut_off > 0),
        ]

    def _fit(self, data: InteractionData) -> None:
        super()._fit(data)
        self.created_ = creation_times(data)
        events = np.bincount(data.items, minlength=data.n_items).astype(np.float64)
        self.exposures_ = np.maximum(events, impressions(data))
        self.ignored_ = ignored_impressions(data)

    def exploration(self) -> tuple[float, float]:
        """explorationWeight and explorationItemAgeCutOff (days) in force: ``item_exploration``'s, else the model's."""
        weight, cut_off = EXPLORATION.get()
        return (self.exploration_weight if weight is None else weight,
                self.exploration_item_age_cut_off if cut_off is None else cut_off)  # fmt: skip

    def live_clock(self) -> float:
        """The newest interaction's time, the training data's or a live one's: what item age is measured from."""
        return max(float(self.latest_timestamp_), getattr(self, "clock_", 0.0))

    def _candidates(self, history: np.ndarray, times: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        state = self._serving_state(history, times)
        weight, cut_off = self.exploration()
        in_scope = self._in_scope(weight, cut_off)
        ignored = getattr(self, "ignored_", {}).get(REQUEST_USER.get() or "")
        shown = np.fromiter(ignored, np.int64, len(ignored)) if ignored else EMPTY
        scope, draws = self._bonus_in_scope(len(history), in_scope)
        pool = None if state is None else self._exploitation_pool(state, n)
        if pool is None:
            bonus = np.zeros(len(self.exposures_))
            bonus[scope] = draws
        else:  # through an index: the best exploited, the best explored and the shown items, a pool that
            # holds the top n of the mix unless an item just outside both lists beats one in them
            best = np.argpartition(-draws, n)[:n] if len(scope) > n else np.arange(len(scope))
            pool = np.union1d(pool, np.concatenate([scope[best], shown]))
            bonus = np.zeros(len(pool))
            bonus[np.searchsorted(pool, scope[best])] = draws[best]
        if state is None:  # nothing to exploit: popularity fills in after the explored items
            scores = weight * bonus
        else:
            exploitation = self._scores(state) if pool is None else self._scores_of(state, pool, pooled=True)
            scores = (1 - weight) * exploitation / exploitation.max() + weight * bonus
            scores /= max(scores.sum(), np.finfo(np.float64).tiny)  # all 0 (pure exploration, none in scope): 0
        if ignored:  # shown to this user without an interaction since: less likely to be wanted now
            where = shown if pool is None else np.searchsorted(pool, shown)
            scores[where] /= np.sqrt(1 + np.fromiter(ignored.values(), np.float64, len(ignored)))
        items, top = top_n(scores, n)
        return (items, top) if pool is None else (pool[items], top)

    def _in_scope(self, weight: float, cut_off_days: float) -> np.ndarray:
        """Which items exploration may promote: created within the cut-off (none when the weight is 0)."""
        if weight == 0:
            return np.zeros(len(self.exposures_), dtype=bool)
        return self.created_ >= self.live_clock() - cut_off_days * DAY

    def _bonus_in_scope(self, history_length: int, in_scope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The items in scope and exploration's bonus of each: fewer exposures, a random draw per request
        (every other item's bonus is 0)."""
        scope = np.flatnonzero(in_scope)  # none where the weight is 0 (``_in_scope``)
        if not len(scope):
            return EMPTY, np.zeros(0)
        user = zlib.crc32((REQUEST_USER.get() or "").encode())
        rng = np.random.default_rng([self.seed, user, history_length])
        return scope, rng.uniform(0.5, 1.0, len(scope)) / np.sqrt(1 + self.exposures_[scope])

    def observe_impressions(self, user_id: str, impressions: Iterable[tuple[Sequence[str], str | None]]) -> None:
        """The user's live events as ``(impression, item_id)``, oldest first, after ``update`` took their items.

        Each item shown beside the one interacted with (or shown with none) is one more exposure,
        and one more impression the user let pass; an interaction clears the user's count of its
        item. Items the model does not know are left out.
        """
        ignored = self.__dict__.setdefault("ignored_", {})  # absent from models pickled before it was kept
        mine = ignored.get(user_id, {})
        for shown, chosen in impressions:
            item = self.item_index_.get(chosen) if chosen else None
            mine.pop(item, None)
            for other in {self.item_index_[i] for i in shown if i in self.item_index_} - {item}:
                mine[other] = mine.get(other, 0) + 1
                self.exposures_[other] += 1
        if mine:
            ignored[user_id] = mine
        else:
            ignored.pop(user_id, None)

    def _grow(self, count: int) -> None:
        super()._grow(count)
        self.created_ = np.concatenate([self.created_, np.full(count, np.inf)])
        self.exposures_ = np.concatenate([self.exposures_, np.zeros(count)])

    def _observe(self, items: np.ndarray, times: np.ndarray) -> None:
        super()._observe(items, times)
        np.add.at(self.exposures_, items, 1.0)
        if len(times):
            self.clock_ = max(self.live_clock(), float(times.max()))
            first_seen = np.isinf(self.created_[items])  # items new to the model: created at their first event
            np.minimum.at(self.created_, items[first_seen], times[first_seen].astype(np.float64))

    def _describe(self, items: np.ndarray, metadata: list[Mapping[str, Any]]) -> None:
        super()._describe(items, metadata)
        for item, fields in zip(items.tolist(), metadata, strict=True):
            created = fields.get("CREATION_TIMESTAMP")
            if created is not None:
                self.created_[item] = float(created)


class UserPersonalization(Exploration, HrnnColdstart):
    name = "user-personalization"

    @extends(HrnnColdstart.__init__)
    def __init__(self, exploration_weight: float = 0.3, exploration_item_age_cut_off: float = 30.0, **hrnn):
        super().__init__(**hrnn)
        self.exploration_weight = exploration_weight
        self.exploration_item_age_cut_off = exploration_item_age_cut_off


def creation_times(data: InteractionData) -> np.ndarray:
    """Each item's creation time: CREATION_TIMESTAMP, else its first event, else +inf (new)."""
    created = np.full(data.n_items, np.inf)
    np.minimum.at(created, data.items, data.timestamps.astype(np.float64))
    meta = data.item_metadata
    if meta is not None and "CREATION_TIMESTAMP" in meta:
        column = meta["CREATION_TIMESTAMP"]
        given = column.notna().to_numpy()
        if given.any():
            created[given] = _epoch_seconds(column[given]).astype(np.float64)
    return created


def impressions(data: InteractionData) -> np.ndarray:
    """How often each item was shown, from the IMPRESSION lists of the interactions (0 without them)."""
    shown = np.zeros(data.n_items)
    np.add.at(shown, _shown(data)["item"].to_numpy(), 1.0)
    return shown


def ignored_impressions(data: InteractionData) -> dict[str, dict[int, int]]:
    """Per user, each item's impressions since the user last interacted with it (IMPRESSION lists), if any."""
    shown = _shown(data)
    if shown.empty:
        return {}
    shown["user"], shown["time"] = data.users[shown["row"]], data.timestamps[shown["row"]]
    last = pd.DataFrame({"user": data.users, "item": data.items, "last": data.timestamps})
    shown = shown.join(last.groupby(["user", "item"])["last"].max(), on=["user", "item"])
    counts = shown[~(shown["time"] <= shown["last"])].groupby(["user", "item"]).size()  # the row's own item: not
    ignored: dict[str, dict[int, int]] = {}
    for (user, item), count in counts.items():
        ignored.setdefault(str(data.user_ids[user]), {})[int(item)] = int(count)
    return ignored


def _shown(data: InteractionData) -> pd.DataFrame:
    """One row per (interaction, item code) its IMPRESSION list shows; items outside the catalog left out."""
    if data.context is None or "IMPRESSION" not in data.context:
        return pd.DataFrame({"row": np.zeros(0, np.int64), "item": np.zeros(0, np.int64)})
    ids = pd.Series(data.context["IMPRESSION"].tolist()).map(_impression_list).explode().dropna()
    codes = pd.Index(data.item_ids).get_indexer(ids.astype(str))
    keep = codes >= 0
    return pd.DataFrame({"row": ids.index.to_numpy()[keep].astype(np.int64), "item": codes[keep].astype(np.int64)})


def _impression_list(cell) -> list:
    if isinstance(cell, str):
        return cell.split("|")
    if isinstance(cell, list | tuple | np.ndarray):
        return list(cell)
    return []
